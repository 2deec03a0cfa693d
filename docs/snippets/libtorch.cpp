// psap in a libtorch training loop (docs/integration.md, "libtorch"): a
// small torch::nn CNN trained from scratch on a synthetic 10-class task while
// PSAP removes half of its MACs, then compacted into a smaller torch::nn
// model from the keep-lists. Exits non-zero unless the loss falls, the budget
// is met, and the compact model gives the masked model's logits (1e-5).
// Built only when CMake finds libtorch (Debian: libtorch-dev).
#include <psap/psap.hpp>
#include <psap/tensor/torch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

constexpr int classes = 10, side = 12;

// [module]
/// conv -> batch norm -> ReLU, with the normalisation written out so that a
/// hook can form PSAP's gate gradient: for each channel, the sum over the
/// batch of dL/d(output) * x_hat where x_hat > 0 (how the loss would move if a
/// gated channel's gamma rose from 0; autograd cannot give it, since a gated
/// channel's ReLU passes no gradient).
struct ConvBNImpl : torch::nn::Module {
    torch::nn::Conv2d conv{nullptr};
    torch::nn::BatchNorm2d bn{nullptr};
    torch::Tensor gate_grad;  // filled by the hook on every backward pass

    ConvBNImpl(int in, int out, int stride) {
        conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
        bn = register_module("bn", torch::nn::BatchNorm2d(out));
        gate_grad = torch::zeros({out});
    }
    torch::Tensor forward(const torch::Tensor& x) {
        const auto y = conv->forward(x);
        const auto x_hat = torch::batch_norm(y, {}, {}, bn->running_mean, bn->running_var, is_training(),
                                             bn->options.momentum().value(), bn->options.eps(), false);
        auto out = torch::relu(x_hat * bn->weight.view({1, -1, 1, 1}) + bn->bias.view({1, -1, 1, 1}));
        if (out.requires_grad())
            out.register_hook([this, x_hat = x_hat.detach()](const torch::Tensor& g) {
                gate_grad.copy_((g * x_hat.clamp_min(0)).sum({0, 2, 3}));
            });
        return out;
    }
};
TORCH_MODULE(ConvBN);
// [module]

struct NetImpl : torch::nn::Module {
    ConvBN c1{nullptr}, c2{nullptr}, c3{nullptr};
    torch::nn::Linear fc{nullptr};
    NetImpl(int w1, int w2, int w3) {
        c1 = register_module("c1", ConvBN(1, w1, 1));
        c2 = register_module("c2", ConvBN(w1, w2, 2));
        c3 = register_module("c3", ConvBN(w2, w3, 1));
        fc = register_module("fc", torch::nn::Linear(w3, classes));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        return fc->forward(c3->forward(c2->forward(c1->forward(x))).mean({2, 3}));
    }
};
TORCH_MODULE(Net);

/// A learnable synthetic task: class k is a fixed random 12x12 pattern plus noise.
struct task {
    torch::Tensor patterns = torch::randn({classes, 1, side, side});
    std::pair<torch::Tensor, torch::Tensor> batch(int n) const {
        const auto y = torch::randint(classes, {n}, torch::kLong);
        return {patterns.index_select(0, y) + 1.5 * torch::randn({n, 1, side, side}), y};
    }
};

// [describe]
/// A ConvBN as a psap layer: views of the torch parameters, their gradients
/// and the gate gradient (no copies; gradients allocated beforehand).
psap::layer<float> describe(const std::string& name, ConvBN& m, psap::index out_positions) {
    auto& conv = m->conv;
    auto& bn = m->bn;
    return {.name = name,
            .out_channels = conv->weight.size(0),
            .in_channels = conv->weight.size(1),
            .kernel_area = conv->weight.size(2) * conv->weight.size(3),
            .out_positions = out_positions,
            .weight = psap::filters(conv->weight),
            .grad = psap::filters(conv->weight.grad()),
            .bn = psap::batch_norm_views<float>{.gamma = psap::channels(bn->weight),
                                                .beta = psap::channels(bn->bias),
                                                .running_mean = psap::channels(bn->running_mean),
                                                .running_var = psap::channels(bn->running_var),
                                                .grad_gamma = psap::channels(bn->weight.grad()),
                                                .grad_beta = psap::channels(bn->bias.grad()),
                                                .gate_grad = psap::channels(m->gate_grad),
                                                .eps = bn->options.eps()}};
}

psap::network<float> describe(Net& net) {
    for (auto& p : net->parameters()) p.mutable_grad() = torch::zeros_like(p);  // views need the storage now
    psap::network<float> d;
    const auto c1 = d.add_layer(describe("c1", net->c1, side * side));
    const auto c2 = d.add_layer(describe("c2", net->c2, side * side / 4));
    const auto c3 = d.add_layer(describe("c3", net->c3, side * side / 4));
    const auto fc = d.add_layer({.name = "fc", .out_channels = classes, .in_channels = net->fc->weight.size(1),
                                 .weight = psap::filters(net->fc->weight), .grad = psap::filters(net->fc->weight.grad()),
                                 .bias = psap::channels(net->fc->bias), .grad_bias = psap::channels(net->fc->bias.grad())});
    d.add_group("c1", net->c1->conv->weight.size(0)).member(c1).consumer(c2);
    d.add_group("c2", net->c2->conv->weight.size(0)).member(c2).consumer(c3);
    d.add_group("c3", net->c3->conv->weight.size(0)).member(c3).consumer(fc);
    return d;
}
// [describe]

// [compact]
torch::Tensor kept_index(const psap::pruning_result& r, const std::string& group) {
    for (const auto& g : r.groups)
        if (g.group == group) return torch::tensor(std::vector<int64_t>(g.kept.begin(), g.kept.end()), torch::kLong);
    throw std::runtime_error("no group " + group);
}

/// A physically smaller Net: each group's kept output channels, and the same
/// channels as its consumer's inputs.
Net compact(Net& big, const psap::pruning_result& r) {
    const auto k1 = kept_index(r, "c1"), k2 = kept_index(r, "c2"), k3 = kept_index(r, "c3");
    Net small(static_cast<int>(k1.size(0)), static_cast<int>(k2.size(0)), static_cast<int>(k3.size(0)));
    torch::NoGradGuard no_grad;
    const auto copy = [](ConvBN& from, ConvBN& to, const torch::Tensor& out, const torch::Tensor* in) {
        auto w = from->conv->weight.index_select(0, out);
        to->conv->weight.copy_(in ? w.index_select(1, *in) : w);
        to->bn->weight.copy_(from->bn->weight.index_select(0, out));
        to->bn->bias.copy_(from->bn->bias.index_select(0, out));
        to->bn->running_mean.copy_(from->bn->running_mean.index_select(0, out));
        to->bn->running_var.copy_(from->bn->running_var.index_select(0, out));
    };
    copy(big->c1, small->c1, k1, nullptr);
    copy(big->c2, small->c2, k2, &k1);
    copy(big->c3, small->c3, k3, &k2);
    small->fc->weight.copy_(big->fc->weight.index_select(1, k3));
    small->fc->bias.copy_(big->fc->bias);
    return small;
}
// [compact]

}  // namespace

int main() {
    constexpr int epochs = 8, iters = 25, batch_size = 64;
    constexpr int64_t seed = 11;
    std::printf("seed %lld\n", static_cast<long long>(seed));
    torch::manual_seed(seed);
    torch::set_num_threads(1);  // deterministic and light; the machine's other tests run beside it
    const task data;
    Net net(32, 64, 64);
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(5e-4));
    const auto test = data.batch(512);
    const torch::Tensor &test_x = test.first, &test_y = test.second;
    const auto accuracy = [&](Net& m) {
        torch::NoGradGuard no_grad;
        m->eval();
        const double a = m->forward(test_x).argmax(1).eq(test_y).to(torch::kDouble).mean().item<double>();
        m->train();
        return a;
    };

    // [loop]
    psap::network<float> desc = describe(net);
    auto pruner = psap::presets::psap({psap::budget_kind::flops, 0.5}, epochs);
    pruner.step(desc, 0);  // pruning from scratch
    std::vector<double> losses;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        double loss = 0;
        for (int it = 0; it < iters; ++it) {
            const auto [x, y] = data.batch(batch_size);
            opt.zero_grad();  // in place: the gradient views stay valid
            const auto l = torch::nn::functional::cross_entropy(net->forward(x), y);
            l.backward();
            pruner.observe(desc);       // after backward, before the optimizer step
            opt.step();
            pruner.after_update(desc);  // holds the gated channels at gamma = beta = 0
            loss += l.item<double>();
        }
        const psap::step_log& s = pruner.step(desc, epoch);
        std::printf("epoch %d  loss %.3f  test acc %5.1f%%  MACs -%4.1f%%  restored %lld%s\n", epoch, loss / iters,
                    100 * accuracy(net), 100 * s.reduction,
                    static_cast<long long>(s.groups[0].restored + s.groups[1].restored + s.groups[2].restored),
                    s.frozen ? "  frozen" : "");
        losses.push_back(loss / iters);
    }
    const psap::pruning_result result = pruner.finalize(desc);
    std::printf("\n%s", result.table().c_str());
    // [loop]

    Net small = compact(net, result);
    net->eval(), small->eval();
    double diff = 0;
    {
        torch::NoGradGuard no_grad;
        diff = (net->forward(test_x) - small->forward(test_x)).abs().max().item<double>();
    }
    const double reduction = result.reduction(psap::budget_kind::flops);
    std::printf("\ncompact: %lld, %lld, %lld channels; test acc %.1f%%; max |logit difference| vs masked %.2g\n",
                static_cast<long long>(small->c1->conv->weight.size(0)), static_cast<long long>(small->c2->conv->weight.size(0)),
                static_cast<long long>(small->c3->conv->weight.size(0)), 100 * accuracy(small), diff);

    // The hook's gate gradient against a one-sided finite difference: the
    // first gated channel of c2, its gamma raised from 0 to h (train mode:
    // batch statistics, so the loss is a function of gamma alone).
    const auto kept2 = kept_index(result, "c2");
    int64_t gated = 0;
    while (kept2.eq(gated).any().item<bool>()) ++gated;
    net->train();
    const auto probe = data.batch(256);
    const auto loss_of = [&] { return torch::nn::functional::cross_entropy(net->forward(probe.first), probe.second); };
    opt.zero_grad();
    loss_of().backward();
    const double analytic = net->c2->gate_grad[gated].item<double>();
    double numeric = 0;
    {
        torch::NoGradGuard no_grad;
        constexpr double h = 1e-3;  // smaller drowns in float rounding, larger in the kinks downstream
        auto gamma = net->c2->bn->weight;
        const double l0 = loss_of().item<double>();
        gamma[gated].fill_(h);
        numeric = (loss_of().item<double>() - l0) / h;
        gamma[gated].fill_(0.0);
    }
    const bool gate_ok = std::abs(analytic - numeric) <= 0.05 * std::abs(numeric) + 2e-5;
    std::printf("gate gradient of c2 channel %lld: hook %.5f, finite difference %.5f\n", static_cast<long long>(gated),
                analytic, numeric);

    const bool learned = losses.back() < 0.5 * losses.front(), met = reduction >= 0.5 - 0.02, exact = diff < 1e-5;
    if (!learned) std::printf("FAIL: the loss did not fall (%.3f -> %.3f)\n", losses.front(), losses.back());
    if (!met) std::printf("FAIL: MACs reduced by %.1f%%, the budget is 50%%\n", 100 * reduction);
    if (!exact) std::printf("FAIL: the compact model's logits differ from the masked model's\n");
    if (!gate_ok) std::printf("FAIL: the hook's gate gradient differs from the finite difference\n");
    return learned && met && exact && gate_ok ? 0 : 1;
}
