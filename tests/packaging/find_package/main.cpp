// Consumer of the installed package: an Eigen-held model (conv weights as
// row-major Eigen tensors) pruned with the L1 preset; checks the decision.
#include <psap/psap.hpp>
#include <psap/tensor/eigen.hpp>

#include <cstdio>

int main() {
    // conv1: 8 filters of 3x3x3 where every weight of filter i is i + 1, so the
    // L1 criterion ranks filter i by i. conv2 reads conv1's 8 channels.
    Eigen::Tensor<float, 4, Eigen::RowMajor> w1(8, 3, 3, 3), w2(4, 8, 3, 3);
    for (int i = 0; i < 8; ++i) w1.chip(i, 0).setConstant(static_cast<float>(i + 1));
    w2.setConstant(0.5f);

    psap::network<float> net;
    const auto a = net.add_layer({.name = "conv1", .out_channels = 8, .in_channels = 3, .kernel_area = 9,
                                  .out_positions = 64, .weight = psap::filters(w1)});
    const auto b = net.add_layer({.name = "conv2", .out_channels = 4, .in_channels = 8, .kernel_area = 9,
                                  .out_positions = 16, .weight = psap::filters(w2)});
    net.add_group("conv1", 8).member(a).consumer(b);

    // MACs: conv1 8*27*64 = 13824, conv2 4*72*16 = 4608, total 18432. Each
    // pruned conv1 channel saves 27*64 + 4*9*16 = 2304, so removing 25% of
    // the MACs (4608) takes exactly 2 channels: filters 0 and 1.
    auto pruner = psap::presets::l1({psap::budget_kind::flops, 0.25}, 1);
    const auto& log = pruner.step(net, 0);
    int bad = 0;
    if (log.groups.at(0).pruned != 2) {
        std::printf("expected 2 pruned channels, got %lld\n", static_cast<long long>(log.groups.at(0).pruned));
        ++bad;
    }
    for (int i = 0; i < 8; ++i) {
        const float expect = i < 2 ? 0.0f : static_cast<float>(i + 1);
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < 3; ++y)
                for (int x = 0; x < 3; ++x)
                    if (w1(i, c, y, x) != expect) {
                        std::printf("conv1 filter %d holds %g at (%d, %d, %d), expected %g\n", i, w1(i, c, y, x), c, y, x,
                                    expect);
                        ++bad;
                    }
    }
    const auto result = pruner.finalize(net);
    if (result.groups.at(0).kept.size() != 6) ++bad;
    std::printf("%s", result.table().c_str());
    if (bad) return 1;
#if defined(_OPENMP)
    std::printf("psap consumer (find_package): ok (OpenMP)\n");
#else
    std::printf("psap consumer (find_package): ok (single-threaded)\n");
#endif
    return 0;
}
