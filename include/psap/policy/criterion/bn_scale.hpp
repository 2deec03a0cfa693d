#pragma once
/// \file bn_scale.hpp
/// Network Slimming (Liu et al., ICCV 2017): a channel's importance is its
/// batch-norm scale |gamma| (summed over members). With l1 > 0, observe() adds
/// the sparsity subgradient l1 * sign(gamma) to every BN's gamma gradient, as
/// the paper trains (call observe() before the optimizer step).

#include <psap/backend/cpu.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>

#include <span>
#include <utility>
#include <vector>

namespace psap {

struct bn_scale {
    double l1 = 0;  ///< sparsity strength lambda (1e-5 for ResNets, 1e-4 for VGG in the paper)

    static constexpr const char* name = "bn_scale";

    template <class V>
    void fields(V&& v) {
        v("l1", l1);
    }

    template <class Net>
    void observe(const Net& net, const observe_context<Net>&) const {
        if (l1 <= 0) return;
        using B = backend_t<typename Net::memory_type>;
        using T = typename Net::value_type;
        for (const auto& l : net.layers())
            if (l.bn && !l.bn->grad_gamma.empty()) B::add_scaled_sign(l.bn->grad_gamma, l.bn->gamma, static_cast<T>(l1));
    }

    template <class Net>
    void score(const Net& net, const step_context&, std::span<std::vector<double>> scores) const {
        auto all = measure::abs_gamma_all(net);
        for (std::size_t g = 0; g < scores.size(); ++g) scores[g] = std::move(all[g]);
    }
};

}  // namespace psap
