#pragma once
/// \file presets.hpp
/// PSAP and every baseline of docs/criteria.md and docs/schedules.md as ready-made pruners.
/// Each takes the budget and the number of training epochs; every policy
/// stays reachable afterwards (p.schedule().eta = 0.3, ...).

#include <psap/policy/criterion/bn_scale.hpp>
#include <psap/policy/criterion/fpgm.hpp>
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/criterion/random.hpp>
#include <psap/policy/criterion/taylor.hpp>
#include <psap/policy/protect/gradient_pulse.hpp>
#include <psap/policy/protect/none.hpp>
#include <psap/policy/reconstruct/decay.hpp>
#include <psap/policy/reconstruct/hard.hpp>
#include <psap/policy/reconstruct/protective.hpp>
#include <psap/policy/reconstruct/soft.hpp>
#include <psap/policy/schedule/adaptive_sparsity.hpp>
#include <psap/policy/schedule/agp.hpp>
#include <psap/policy/schedule/asymptotic.hpp>
#include <psap/policy/schedule/global_threshold.hpp>
#include <psap/policy/schedule/uniform.hpp>
#include <psap/pruner.hpp>

#include <array>
#include <string_view>

namespace psap::presets {

/// PSAP (docs/psap.md): sparsity-driven ratios, gradient-pulse protection,
/// BN gating with snapshots; masks frozen over the last quarter.
template <network_description Net = network<float>>
auto psap(budget target, double total_epochs) {
    return pruner<adaptive_sparsity, l2_norm, gradient_pulse, protective, Net>(
        {target, total_epochs, 0.25}, adaptive_sparsity{}, l2_norm{.fold_bn = true}, gradient_pulse{}, protective{});
}

/// The control every PSAP variant must beat: PSAP with allocation and
/// restore off (a static BN gate under a ramped uniform budget).
template <network_description Net = network<float>>
auto static_gate(budget target, double total_epochs) {
    return pruner<adaptive_sparsity, l2_norm, no_protection, protective, Net>(
        {target, total_epochs, 0.25}, adaptive_sparsity{.allocation = adaptive_sparsity::rule::uniform},
        l2_norm{.fold_bn = true}, no_protection{}, protective{});
}

/// SFP (He et al. 2018): uniform ratio from the first step, L2 norm, zeroed
/// filters keep training.
template <network_description Net = network<float>>
auto sfp(budget target, double total_epochs) {
    return pruner<uniform, l2_norm, no_protection, soft, Net>({target, total_epochs});
}

/// ASFP (He et al. 2019): SFP with an asymptotically rising budget.
template <network_description Net = network<float>>
auto asfp(budget target, double total_epochs) {
    return pruner<asymptotic, l2_norm, no_protection, soft, Net>({target, total_epochs});
}

/// FPGM (He et al. 2019): geometric-median criterion, soft pruning with the
/// gradient mask of the authors' code.
template <network_description Net = network<float>>
auto fpgm_pruner(budget target, double total_epochs) {
    return pruner<uniform, fpgm, no_protection, soft, Net>({target, total_epochs}, uniform{}, fpgm{}, no_protection{},
                                                          soft{.mask_gradients = true});
}

/// L1 / PFEC (Li et al. 2017): one step on a trained network, hard masks,
/// then fine-tuning.
template <network_description Net = network<float>>
auto l1(budget target, double total_epochs) {
    return pruner<uniform, l1_norm, no_protection, hard, Net>({target, total_epochs});
}

/// Network Slimming (Liu et al. 2017): L1 on gamma while training (observe),
/// one global |gamma| threshold, hard masks, then fine-tuning.
template <network_description Net = network<float>>
auto slimming(budget target, double total_epochs) {
    return pruner<global_threshold, bn_scale, no_protection, hard, Net>({target, total_epochs}, global_threshold{},
                                                                         bn_scale{.l1 = 1e-5}, no_protection{}, hard{});
}

/// Taylor-FO-BN (Molchanov et al. 2019): accumulated first-order importance,
/// global ranking, iterative hard pruning over the first half.
template <network_description Net = network<float>>
auto taylor_pruner(budget target, double total_epochs) {
    return pruner<global_threshold, taylor, no_protection, hard, Net>(
        {target, total_epochs}, global_threshold{.ramp = ramp_shape::linear, .ramp_end = 0.5}, taylor{}, no_protection{},
        hard{});
}

/// AGP (Zhu & Gupta 2017) with the L2 criterion and hard masks.
template <network_description Net = network<float>>
auto agp_pruner(budget target, double total_epochs) {
    return pruner<agp, l2_norm, no_protection, hard, Net>({target, total_epochs}, agp{.ramp_end = 0.5});
}

/// Random channels (seeded), uniform ratio, soft pruning: the floor.
template <network_description Net = network<float>>
auto random(budget target, double total_epochs, std::uint64_t seed = 0) {
    return pruner<uniform, random_score, no_protection, soft, Net>({target, total_epochs}, uniform{},
                                                                   random_score{.seed = seed}, no_protection{}, soft{});
}

/// Names accepted by make_pruner's "preset" key.
inline constexpr std::array<std::string_view, 10> names = {"psap", "static_gate", "sfp",    "asfp", "fpgm",
                                                           "l1",   "slimming",    "taylor", "agp",  "random"};

}  // namespace psap::presets
