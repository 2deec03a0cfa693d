#pragma once
/// \file psap.hpp
/// Umbrella header: the pruner, every shipped policy, presets, run-time
/// composition and the CPU backend. Adapters (tensor/eigen.hpp,
/// tensor/xtensor.hpp) and the CUDA backend are included separately.

#include <psap/any_pruner.hpp>
#include <psap/backend/cpu.hpp>
#include <psap/config.hpp>
#include <psap/error.hpp>
#include <psap/network/budget.hpp>
#include <psap/network/network.hpp>
#include <psap/presets.hpp>
#include <psap/pruner.hpp>
#include <psap/report/result.hpp>
#include <psap/report/step_log.hpp>
#include <psap/tensor/concepts.hpp>
#include <psap/tensor/view.hpp>
