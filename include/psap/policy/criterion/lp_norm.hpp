#pragma once
/// \file lp_norm.hpp
/// Filter magnitude: the Lp norm of each filter (L1: Li et al. 2017; L2: SFP,
/// He et al. 2018), summed over the group's members. With fold_bn the norm is
/// scaled by the batch norm that follows, |gamma| / sqrt(running_var + eps):
/// the magnitude the channel actually contributes (PSAP's selection).

#include <psap/backend/cpu.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>

#include <cmath>
#include <span>
#include <vector>

namespace psap {

template <int P>
struct lp_norm {
    static_assert(P == 1 || P == 2, "psap::lp_norm: P must be 1 or 2");
    bool fold_bn = false;

    static constexpr const char* name = P == 1 ? "l1_norm" : "l2_norm";

    template <class V>
    void fields(V&& v) {
        v("fold_bn", fold_bn);
    }

    template <class Net>
    void score(const Net& net, const step_context&, std::span<std::vector<double>> scores) const {
        using B = backend_t<typename Net::memory_type>;
        for (std::size_t g = 0; g < scores.size(); ++g) {
            const auto& grp = net.groups()[g];
            auto& out = scores[g];
            std::fill(out.begin(), out.end(), 0.0);
            std::vector<double> norm(out.size()), gamma(out.size()), var(out.size());
            for (std::size_t m = 0; m < grp.members.size(); ++m) {
                const auto mv = member_of(net, static_cast<index>(g), m);
                if constexpr (P == 1)
                    B::row_abs_sums(mv.weight, norm);
                else {
                    B::row_sq_norms(mv.weight, norm);
                    for (auto& x : norm) x = std::sqrt(x);
                }
                if (fold_bn && mv.bn) {
                    B::read(mv.bn->gamma, gamma);
                    // Without running statistics the fold uses variance 1 (no rescaling).
                    if (mv.bn->running_var.empty())
                        std::fill(var.begin(), var.end(), 1.0);
                    else
                        B::read(mv.bn->running_var, var);
                    for (std::size_t i = 0; i < out.size(); ++i)
                        out[i] += std::abs(gamma[i]) * norm[i] / std::sqrt(std::max(var[i], 0.0) + mv.bn->eps);
                } else {
                    for (std::size_t i = 0; i < out.size(); ++i) out[i] += norm[i];
                }
            }
        }
    }
};

using l1_norm = lp_norm<1>;
using l2_norm = lp_norm<2>;

}  // namespace psap
