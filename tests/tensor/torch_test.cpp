// psap/tensor/torch.hpp: libtorch tensors and torch::nn parameters as psap
// views, checked element by element against libtorch's own indexing (pointer
// identity); bad tensors raise psap::error; views of parameters and gradients
// stay valid through backward passes and optimizer steps, so a pruner
// described once can follow a whole libtorch training loop.
// Built only when CMake finds libtorch (tests/CMakeLists.txt).
#include <psap/psap.hpp>
#include <psap/tensor/torch.hpp>

#include <doctest/doctest.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>

namespace {

/// Every element of view v is element (i, j) of t flattened to (rows, fan-in), by address.
void check_aliases(const psap::matrix_view<float>& v, const torch::Tensor& t) {
    const auto flat = t.reshape({t.size(0), -1});  // a view: t is contiguous in these tests
    REQUIRE(flat.data_ptr<float>() == t.data_ptr<float>());
    REQUIRE(v.rows() == flat.size(0));
    REQUIRE(v.cols() == flat.size(1));
    const auto a = flat.accessor<float, 2>();
    for (psap::index i = 0; i < v.rows(); ++i)
        for (psap::index j = 0; j < v.cols(); ++j) REQUIRE(&v(i, j) == &a[i][j]);
}

}  // namespace

TEST_CASE("torch::nn parameters as filters and channels, without copies") {
    torch::manual_seed(3);
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 8, 3).padding(1).bias(false));
    torch::nn::BatchNorm2d bn(8);
    torch::nn::Linear fc(8, 5);

    const auto w = psap::filters(conv->weight);
    CHECK(w.rows() == 8);
    CHECK(w.cols() == 27);
    CHECK(w.row_stride() == 27);
    CHECK(w.col_stride() == 1);
    check_aliases(w, conv->weight);
    check_aliases(psap::filters(fc->weight), fc->weight);

    const auto gamma = psap::channels(bn->weight);
    const auto mean = psap::channels(bn->running_mean);
    CHECK(gamma.size() == 8);
    for (psap::index c = 0; c < 8; ++c) {
        CHECK(&gamma[c] == bn->weight.data_ptr<float>() + c);
        CHECK(&mean[c] == bn->running_mean.data_ptr<float>() + c);
    }

    // Writes go to the parameter (under NoGradGuard, as an optimizer writes).
    torch::NoGradGuard no_grad;
    w(5, 13) = 42.0f;
    CHECK(conv->weight[5][13 / 9][(13 % 9) / 3][13 % 3].item<float>() == 42.0f);
    gamma[2] = 0.0f;
    CHECK(bn->weight[2].item<float>() == 0.0f);
}

TEST_CASE("strided tensors: a slice of filters, a strided vector, double") {
    auto big = torch::arange(6 * 2 * 3, torch::kFloat).reshape({6, 2, 3});
    const auto rows = big.slice(0, 1, 6, 2);  // filters 1, 3, 5
    const auto v = psap::filters(rows);
    CHECK(v.rows() == 3);
    CHECK(v.cols() == 6);
    CHECK(v.row_stride() == 12);
    CHECK(v(2, 4) == big[5][1][1].item<float>());

    const auto col = psap::channels(big.select(2, 1).select(1, 0));  // big[:, 0, 1]: stride 6
    CHECK(col.size() == 6);
    CHECK(col.stride() == 6);
    for (psap::index i = 0; i < 6; ++i) CHECK(col[i] == big[i][0][1].item<float>());

    // A column-major fan-in (the transpose of a contiguous tensor's fan-in) walks with one stride.
    auto m = torch::arange(4 * 5, torch::kFloat).reshape({5, 4}).t();  // (4, 5), strides (1, 4)
    const auto mt = psap::filters(m);
    CHECK(mt.row_stride() == 1);
    CHECK(mt.col_stride() == 4);
    for (psap::index i = 0; i < 4; ++i)
        for (psap::index j = 0; j < 5; ++j) CHECK(mt(i, j) == m[i][j].item<float>());

    auto d = torch::ones({4, 6}, torch::kDouble);
    const auto dv = psap::torch_filters<double>(d);
    CHECK(dv.rows() == 4);
    CHECK(&dv(3, 5) == d.data_ptr<double>() + 23);
}

TEST_CASE("bad tensors raise psap::error naming the problem and the fix") {
    SUBCASE("an undefined gradient (before the first backward pass)") {
        torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 8, 3));
        CHECK_THROWS_WITH_AS(psap::filters(conv->weight.grad()), doctest::Contains("mutable_grad() = torch::zeros_like"),
                             psap::error);
    }
    SUBCASE("another element type") {
        auto d = torch::zeros({4, 6}, torch::kDouble);
        CHECK_THROWS_WITH_AS(psap::filters(d), doctest::Contains("holds Double values and the view float; view it as its own type (psap::torch_filters<double>"), psap::error);
        auto h = torch::zeros({4}, torch::kHalf);
        CHECK_THROWS_WITH_AS(psap::channels(h), doctest::Contains("Half"), psap::error);
    }
    SUBCASE("a CPU tensor asked for as device memory") {
        auto w = torch::zeros({4, 6});
        CHECK_THROWS_WITH_AS(psap::device_filters(w), doctest::Contains("not a CUDA device"), psap::error);
        CHECK_THROWS_WITH_AS(psap::device_channels(w.select(1, 0)), doctest::Contains("not a CUDA device"), psap::error);
    }
    SUBCASE("interleaved fan-in dimensions (channels_last)") {
        auto w = torch::zeros({8, 3, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast);  // strides (27, 1, 9, 3)
        CHECK_THROWS_WITH_AS(psap::filters(w), doctest::Contains("strides (27, 1, 9, 3)"), psap::error);
        CHECK_THROWS_WITH_AS(psap::filters(w), doctest::Contains("p.set_data(p.contiguous())"), psap::error);
    }
    SUBCASE("repeated values (expand)") {
        auto row = torch::zeros({1, 6}).expand({4, 6});
        CHECK_THROWS_WITH_AS(psap::filters(row), doctest::Contains("stride 0 along dimension 0"), psap::error);
        auto fan = torch::zeros({4, 1}).expand({4, 6});
        CHECK_THROWS_WITH_AS(psap::filters(fan), doctest::Contains("stride 0"), psap::error);
        auto v = torch::zeros({1}).expand({5});
        CHECK_THROWS_WITH_AS(psap::channels(v), doctest::Contains("stride 0"), psap::error);
    }
    SUBCASE("ranks") {
        CHECK_THROWS_WITH_AS(psap::filters(torch::zeros({4})), doctest::Contains("rank >= 2"), psap::error);
        CHECK_THROWS_WITH_AS(psap::channels(torch::zeros({4, 2})), doctest::Contains("rank-1"), psap::error);
    }
    SUBCASE("a sparse tensor") {
        auto s = torch::zeros({4, 6}).to_sparse();
        CHECK_THROWS_WITH_AS(psap::filters(s), doctest::Contains("to_dense()"), psap::error);
    }
}

TEST_CASE("views stay valid through backward passes, zero_grad and optimizer steps") {
    torch::manual_seed(5);
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3).padding(1).bias(false));
    torch::nn::BatchNorm2d bn(4);
    for (auto* p : {&conv->weight, &bn->weight, &bn->bias}) p->mutable_grad() = torch::zeros_like(*p);
    const auto w = psap::filters(conv->weight);
    const auto g = psap::filters(conv->weight.grad());
    const auto gg = psap::channels(bn->weight.grad());
    torch::optim::SGD opt(std::vector<torch::Tensor>{conv->weight, bn->weight, bn->bias},
                          torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4));
    for (int it = 0; it < 3; ++it) {
        opt.zero_grad();
        const auto x = torch::randn({5, 2, 6, 6});
        const auto loss = torch::relu(bn->forward(conv->forward(x))).pow(2).mean();
        loss.backward();
        // The views see this iteration's gradients and, after the step, the new weights.
        REQUIRE(conv->weight.grad().data_ptr<float>() == g.data());
        REQUIRE(bn->weight.grad().data_ptr<float>() == gg.data());
        CHECK(g(1, 7) == conv->weight.grad()[1][0][2][1].item<float>());
        CHECK(gg[3] == bn->weight.grad()[3].item<float>());
        CHECK(g(1, 7) != 0.0f);
        opt.step();
        REQUIRE(conv->weight.data_ptr<float>() == w.data());
        CHECK(w(2, 10) == conv->weight[2][1][0][1].item<float>());
    }
}

TEST_CASE("a pruner over torch views gates the channels it prunes in the torch model") {
    torch::manual_seed(9);
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 16, 3).padding(1).bias(false));
    torch::nn::BatchNorm2d bn(16);
    torch::nn::Linear fc(16, 4);
    for (auto* p : {&conv->weight, &bn->weight, &bn->bias}) p->mutable_grad() = torch::zeros_like(*p);
    psap::network<float> net;
    const auto c = net.add_layer({.name = "conv", .out_channels = 16, .in_channels = 3, .kernel_area = 9, .out_positions = 64,
                                  .weight = psap::filters(conv->weight), .grad = psap::filters(conv->weight.grad()),
                                  .bn = psap::batch_norm_views<float>{.gamma = psap::channels(bn->weight),
                                                                      .beta = psap::channels(bn->bias),
                                                                      .running_mean = psap::channels(bn->running_mean),
                                                                      .running_var = psap::channels(bn->running_var),
                                                                      .grad_gamma = psap::channels(bn->weight.grad()),
                                                                      .grad_beta = psap::channels(bn->bias.grad())}});
    const auto f = net.add_layer({.name = "fc", .out_channels = 4, .in_channels = 16, .weight = psap::filters(fc->weight)});
    net.add_group("conv", 16).member(c).consumer(f);

    // Four epochs; a step at epoch 3 (progress 0.75) is the last before the frozen final quarter.
    auto pruner = psap::presets::psap({psap::budget_kind::filters, 0.5}, 4);
    {
        torch::NoGradGuard no_grad;
        bn->bias.fill_(0.1);
    }
    const auto x = torch::randn({8, 3, 8, 8});
    const auto loss = fc->forward(torch::relu(bn->forward(conv->forward(x))).mean({2, 3})).pow(2).mean();
    loss.backward();
    pruner.observe(net);
    const auto pruned = pruner.step(net, 3).groups[0].pruned;
    CHECK(pruned > 0);
    // PSAP's protective reconstruction gates pruned BN channels (gamma = beta
    // = 0) in the torch module itself, and leaves the kept ones alone.
    const auto keep = pruner.finalize(net).groups[0].kept;
    CHECK(static_cast<psap::index>(keep.size()) == 16 - pruned);
    for (std::int64_t ch = 0; ch < 16; ++ch) {
        const bool kept = std::find(keep.begin(), keep.end(), ch) != keep.end();
        const bool gated = bn->weight[ch].item<float>() == 0.0f && bn->bias[ch].item<float>() == 0.0f;
        CHECK(kept != gated);
    }
}
