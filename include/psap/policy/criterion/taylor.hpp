#pragma once
/// \file taylor.hpp
/// Taylor-FO (Molchanov et al., CVPR 2019): the squared first-order change of
/// the loss when a channel is removed, accumulated over the iterations since
/// the last step. With batch norm (the paper's best "gate after BN" variant)
/// v_i = sum_m gamma_mi dL/dgamma_mi + beta_mi dL/dbeta_mi; without it
/// v_i = sum_m <F_mi, dL/dF_mi>. Score = mean of v_i^2, smoothed across steps
/// by an exponential moving average (momentum 0.9 in the paper's code).

#include <psap/backend/cpu.hpp>
#include <psap/error.hpp>
#include <psap/policy/context.hpp>
#include <psap/policy/measure.hpp>

#include <nlohmann/json.hpp>

#include <span>
#include <vector>

namespace psap {

struct taylor {
    double momentum = 0.9;  ///< EMA across steps; 0 uses each step's mean alone

    static constexpr const char* name = "taylor";

    template <class V>
    void fields(V&& v) {
        v("momentum", momentum);
    }

    template <class Net>
    void bind(const Net& net) {
        sum_.clear();
        avg_.clear();
        for (const auto& g : net.groups()) {
            sum_.emplace_back(static_cast<std::size_t>(g.size), 0.0);
            avg_.emplace_back(static_cast<std::size_t>(g.size), 0.0);
        }
        count_ = 0;
        have_avg_ = false;
        pending_ = false;
    }

    template <class Net>
    void observe(const Net& net, const observe_context<Net>&) {
        using B = backend_t<typename Net::memory_type>;
        using BN = batch_norm_views<typename Net::value_type, typename Net::memory_type>;
        using W = matrix_view<typename Net::value_type, typename Net::memory_type>;
        const measure::members<Net> mem(net);
        // Check every member first (the same errors, in the same order, as one
        // group at a time), then read everything in one batched call per quantity.
        std::vector<W> ws, gs;
        std::vector<std::size_t> plain;  // members without batch norm, in order
        for (std::size_t k = 0; k < mem.count(); ++k) {
            const auto& mv = mem.views[k];
            if (mv.bn) {
                if (mv.bn->grad_gamma.empty() || mv.bn->grad_beta.empty())
                    detail::fail("psap::taylor: layer '", mv.source->name,
                                 "' has batch norm without gamma/beta gradient views; give the layer grad_gamma and grad_beta");
            } else {
                if (mv.grad.empty()) detail::fail("psap::taylor: layer '", mv.source->name, "' has no gradient view; taylor needs dL/dW");
                ws.push_back(mv.weight);
                gs.push_back(mv.grad);
                plain.push_back(k);
            }
        }
        const auto gamma = measure::read_member_bn(net, mem, &BN::gamma);
        const auto ggamma = measure::read_member_bn(net, mem, &BN::grad_gamma);
        const auto beta = measure::read_member_bn(net, mem, &BN::beta);
        const auto gbeta = measure::read_member_bn(net, mem, &BN::grad_beta);
        std::vector<std::size_t> sizes;
        for (std::size_t k : plain) sizes.push_back(static_cast<std::size_t>(mem.views[k].weight.rows()));
        measure::slices dots(sizes);
        if (!plain.empty()) B::row_dots_batch(std::span<const W>(ws), std::span<const W>(gs), dots.all());

        std::vector<double> v;
        std::size_t next_plain = 0;
        for (std::size_t g = 0; g < sum_.size(); ++g) {
            v.assign(sum_[g].size(), 0.0);
            for (std::size_t k = mem.first[g]; k < mem.first[g + 1]; ++k) {
                if (mem.views[k].bn) {
                    for (std::size_t i = 0; i < v.size(); ++i) v[i] += gamma[k][i] * ggamma[k][i];
                    for (std::size_t i = 0; i < v.size(); ++i) v[i] += beta[k][i] * gbeta[k][i];
                } else {
                    const auto a = dots[next_plain++];
                    for (std::size_t i = 0; i < v.size(); ++i) v[i] += a[i];
                }
            }
            for (std::size_t i = 0; i < v.size(); ++i) sum_[g][i] += v[i] * v[i];
        }
        count_ += 1;
    }

    template <class Net>
    void score(const Net& net, const step_context& ctx, std::span<std::vector<double>> scores) {
        if (count_ <= 0) {
            // A step at init (before any training) has nothing to rank yet: all
            // channels score 0. Later, a step without observations is a usage error.
            if (ctx.info.step == 0 && !have_avg_) {
                for (auto& s : scores) std::fill(s.begin(), s.end(), 0.0);
                return;
            }
            if (have_avg_) {
                for (std::size_t g = 0; g < scores.size(); ++g) scores[g] = avg_[g];
                return;
            }
            detail::fail("psap::taylor: no gradients were observed since the last step; call observe() after every backward pass");
        }
        (void)net;
        // The new average goes into the scores only: a step that fails after
        // scoring (a budget that cannot be met) must leave the average as it
        // was, so that a retried step scores the same. after_step() takes it.
        next_.resize(scores.size());
        for (std::size_t g = 0; g < scores.size(); ++g) {
            next_[g].resize(scores[g].size());
            for (std::size_t i = 0; i < scores[g].size(); ++i) {
                const double mean = sum_[g][i] / count_;
                next_[g][i] = (have_avg_ && momentum > 0) ? momentum * avg_[g][i] + (1 - momentum) * mean : mean;
                scores[g][i] = next_[g][i];
            }
        }
        pending_ = true;
    }

    /// The step succeeded: its scores become the average.
    void after_step() {
        if (pending_) {
            avg_.swap(next_);
            have_avg_ = true;
        }
        pending_ = false;
        for (auto& s : sum_) std::fill(s.begin(), s.end(), 0.0);
        count_ = 0;
    }
    /// The step threw after scoring: nothing of it is kept.
    void after_failed_step() noexcept { pending_ = false; }

    void reduce(const all_reduce_fn& all_reduce) {
        for (auto& s : sum_) all_reduce(s);
        std::span<double> c(&count_, 1);
        all_reduce(c);
    }

    void save(nlohmann::json& j) const { j = {{"sum", sum_}, {"avg", avg_}, {"count", count_}, {"have_avg", have_avg_}}; }
    /// After bind(): the state must match the bound network's group sizes.
    void load(const nlohmann::json& j) {
        auto sum = j.at("sum").get<std::vector<std::vector<double>>>();
        auto avg = j.at("avg").get<std::vector<std::vector<double>>>();
        auto shape_of = [](const std::vector<std::vector<double>>& v) {
            std::vector<std::size_t> s;
            for (const auto& x : v) s.push_back(x.size());
            return s;
        };
        if (shape_of(sum) != shape_of(sum_) || shape_of(avg) != shape_of(avg_))
            detail::fail("psap::taylor: the saved statistics do not match the network's groups; the state blob is corrupt");
        sum_ = std::move(sum);
        avg_ = std::move(avg);
        count_ = j.at("count").get<double>();
        have_avg_ = j.at("have_avg").get<bool>();
        pending_ = false;
    }

private:
    std::vector<std::vector<double>> sum_, avg_;
    double count_ = 0;
    bool have_avg_ = false;
    std::vector<std::vector<double>> next_;  ///< the average of the step in progress
    bool pending_ = false;                   ///< next_ holds a step's scores not yet committed
};

}  // namespace psap
