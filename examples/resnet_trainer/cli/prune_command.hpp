// psap-train prune: a training run driven by a psap pruner through the four
// hooks of train_loop, then BN recalibration, optional fine-tuning,
// compaction and the reports (docs/pruning-run.md).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "prune/describe.hpp"

namespace trainer {

// The prune options as a flat JSON object, keys = long option names without
// dashes: preset, config (the parsed --config file, not its path), set (list
// of "key=value"), budget, budget_kind, groups, finetune_epochs, finetune_lr,
// recalibrate_batches, init_step. Like the run settings, only what the user
// gave is present; resolve_prune_options fills in the defaults.
[[nodiscard]] nlohmann::json resolve_prune_options(const nlohmann::json& given);

// Applies one --set override "a.b.c=value" to a make_pruner configuration.
// The value is parsed as JSON when it is valid JSON (numbers, true, null,
// objects), otherwise taken as a string (names: --set reconstruct=hard).
void apply_pruner_override(nlohmann::json& config, const std::string& assignment);

// The make_pruner configuration of a run: the --config file or {"preset"},
// then --budget/--budget-kind, then each --set, then total_epochs = epochs
// and, for the random criterion, seed = the run's seed unless set.
// Throws usage_error (with psap's message) for an invalid configuration.
[[nodiscard]] nlohmann::json pruner_config(const nlohmann::json& prune_options, std::int64_t epochs, std::uint64_t seed);

// Refuses combinations that cannot end in an exact compact model: soft
// reconstruction (pruned channels still emit the BN constant) with residual
// stream groups, and fine-tuning with soft reconstruction (pruned filters
// regrow). `resolved` is psap::describe(pruner). Throws usage_error.
void check_prune_plan(const nlohmann::json& resolved, prune::group_mode mode, bool has_streams, std::int64_t finetune_epochs);

// psap's preset names (psap::presets::names), for the command line.
[[nodiscard]] std::vector<std::string> pruner_preset_names();

// The whole command: returns the exit code; errors are thrown like run_train's.
int run_prune(const nlohmann::json& given_settings, const nlohmann::json& given_prune, const runtime_options& rt);

}  // namespace trainer
