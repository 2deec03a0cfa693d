#pragma once
/// \file lp_norm.hpp
/// Filter magnitude: the Lp norm of each filter (L1: Li et al. 2017; L2: SFP,
/// He et al. 2018), summed over the group's members. With fold_bn the norm is
/// scaled by the batch norm that follows, |gamma| / sqrt(running_var + eps):
/// the magnitude the channel actually contributes (PSAP's selection).

#include <psap/backend/cpu.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>
#include <vector>

namespace psap {

template <int P>
struct lp_norm {
    static_assert(P == 1 || P == 2, "psap::lp_norm: P must be 1 or 2");
    bool fold_bn = false;
    /// Working memory (not configuration, not state): a step at steady state allocates nothing here.
    mutable measure::workspace_slot workspace{};

    static constexpr const char* name = P == 1 ? "l1_norm" : "l2_norm";
    /// A NaN/Inf weight makes its filter's norm, hence the score, non-finite
    /// (|gamma| = 0 or an infinite variance give 0 * Inf or Inf / Inf = NaN);
    /// finite floats cannot overflow a double sum of squares.
    static constexpr bool reveals_nonfinite_weights = true;

    template <class V>
    void fields(V&& v) {
        v("fold_bn", fold_bn);
    }

    template <class Net>
    void score(const Net& net, const step_context&, std::span<std::vector<double>> scores) const {
        using BN = batch_norm_views<typename Net::value_type, typename Net::memory_type>;
        // One batched call per quantity for the whole network: filter norms,
        // then (fold_bn) gamma and the running variances.
        auto& w = workspace.template get<Net>();
        auto& mem = w.mem;
        auto &norm = w.a, &gamma = w.b, &var = w.c;
        // Host batch norms are read where they lie; device ones are copied first.
        constexpr bool host = std::is_same_v<typename Net::memory_type, host_memory>;
        mem.assign(net);
        measure::member_row_norms(net, mem, P, norm, w.buf);
        if (fold_bn && !host) {
            measure::read_member_bn(net, mem, &BN::gamma, gamma, w.buf);
            measure::read_member_bn(net, mem, &BN::running_var, var, w.buf);
        }
        for (std::size_t g = 0; g < scores.size(); ++g) {
            auto& out = scores[g];
            std::fill(out.begin(), out.end(), 0.0);
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                const auto& mv = mem.views[k];
                const auto n = norm[k];
                if constexpr (P == 2) cpu_detail::sqrt_each(n);
                if (fold_bn && mv.bn) {
                    // Without running statistics the fold uses variance 1 (no rescaling).
                    if constexpr (host) {
                        cpu_detail::add_bn_folded(out, mv.bn->gamma, n, mv.bn->running_var, mv.bn->eps);
                    } else {
                        const bool unit = mv.bn->running_var.empty();
                        cpu_detail::add_bn_folded(out, gamma[k], n, unit ? std::span<const double>() : std::span<const double>(var[k]),
                                                  mv.bn->eps);
                    }
                } else {
                    for (std::size_t i = 0; i < out.size(); ++i) out[i] += n[i];
                }
            }
        }
    }
};

using l1_norm = lp_norm<1>;
using l2_norm = lp_norm<2>;

}  // namespace psap
