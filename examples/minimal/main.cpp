// A model held in plain float arrays, pruned with PSAP through the four hooks.
// The "training" is a stand-in (seeded noise as gradients, a plain SGD step);
// examples/resnet_trainer does the real thing.
#include <psap/psap.hpp>

#include <cstdio>
#include <random>
#include <vector>

struct conv_bn {  // the user's own layer: no psap type inside
    int out, in, k, hw;
    std::vector<float> w, gw, gamma, beta, mean, var, ggamma, gbeta;
    conv_bn(int o, int i, int kk, int h, std::mt19937& rng)
        : out(o), in(i), k(kk), hw(h), w(o * i * kk * kk), gw(w.size()), gamma(o, 1.f), beta(o, 0.f), mean(o, 0.f), var(o, 1.f),
          ggamma(o), gbeta(o) {
        std::normal_distribution<float> n(0.f, 0.1f);
        for (auto& x : w) x = n(rng);
    }
    psap::layer<float> describe(const char* name) {
        return {.name = name,
                .out_channels = out,
                .in_channels = in,
                .kernel_area = k * k,
                .out_positions = hw * hw,
                .weight = psap::filters(w.data(), out, in * k * k),
                .grad = psap::filters(gw.data(), out, in * k * k),
                .bn = psap::batch_norm_views<float>{.gamma = psap::channels(gamma.data(), out),
                                                    .beta = psap::channels(beta.data(), out),
                                                    .running_mean = psap::channels(mean.data(), out),
                                                    .running_var = psap::channels(var.data(), out),
                                                    .grad_gamma = psap::channels(ggamma.data(), out),
                                                    .grad_beta = psap::channels(gbeta.data(), out)}};
    }
};

int main() {
    std::mt19937 rng(42);
    std::printf("seed 42\n");
    std::vector<conv_bn> model{{32, 3, 3, 32, rng}, {64, 32, 3, 16, rng}, {64, 64, 3, 8, rng}};
    psap::network<float> net;
    const auto a = net.add_layer(model[0].describe("conv1"));
    const auto b = net.add_layer(model[1].describe("conv2"));
    const auto c = net.add_layer(model[2].describe("conv3"));
    net.add_group("conv1", 32).member(a).consumer(b);
    net.add_group("conv2", 64).member(b).consumer(c);

    const int epochs = 12;
    auto pruner = psap::presets::psap({psap::budget_kind::flops, 0.5}, epochs);
    std::normal_distribution<float> noise(0.f, 0.01f);
    pruner.step(net, 0);
    for (int e = 1; e <= epochs; ++e) {
        for (int it = 0; it < 50; ++it) {
            for (auto& l : model) {
                for (auto& g : l.gw) g = noise(rng);
                for (auto& g : l.ggamma) g = noise(rng);
            }
            pruner.observe(net);  // after backward
            for (auto& l : model)
                for (std::size_t i = 0; i < l.w.size(); ++i) l.w[i] -= 0.1f * l.gw[i];
            pruner.after_update(net);  // after the optimizer step
        }
        const auto& s = pruner.step(net, e);
        std::printf("epoch %2d  budget %.3f  MACs -%.1f%%  churn %lld%s\n", e, s.budget_now, 100 * s.reduction,
                    static_cast<long long>(s.churn()), s.frozen ? "  (frozen)" : "");
    }
    std::printf("\n%s", pruner.finalize(net).table().c_str());
}
