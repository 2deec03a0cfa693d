// Consumer that vendors psap with add_subdirectory: a model in plain float
// arrays pruned with the SFP preset; checks the decision.
#include <psap/psap.hpp>

#include <cstdio>
#include <vector>

int main() {
    // conv1: 8 filters of 3x3x3 where every weight of filter i is i + 1, so
    // the L2 criterion ranks filter i by i. conv2 reads conv1's 8 channels.
    std::vector<float> w1(8 * 27), w2(4 * 72, 0.5f);
    for (std::size_t p = 0; p < w1.size(); ++p) w1[p] = static_cast<float>(p / 27 + 1);

    psap::network<float> net;
    const auto a = net.add_layer({.name = "conv1", .out_channels = 8, .in_channels = 3, .kernel_area = 9,
                                  .out_positions = 64, .weight = psap::filters(w1.data(), 8, 27)});
    const auto b = net.add_layer({.name = "conv2", .out_channels = 4, .in_channels = 8, .kernel_area = 9,
                                  .out_positions = 16, .weight = psap::filters(w2.data(), 4, 72)});
    net.add_group("conv1", 8).member(a).consumer(b);

    // MACs: 13824 + 4608 = 18432; each conv1 channel costs 2304, so removing
    // half of them (9216) takes exactly 4 channels: filters 0..3.
    auto pruner = psap::presets::sfp({psap::budget_kind::flops, 0.5}, 1);
    const auto& log = pruner.step(net, 0);
    int bad = 0;
    if (log.groups.at(0).pruned != 4) {
        std::printf("expected 4 pruned channels, got %lld\n", static_cast<long long>(log.groups.at(0).pruned));
        ++bad;
    }
    for (std::size_t p = 0; p < w1.size(); ++p) {
        const std::size_t filter = p / 27;
        const float expect = filter < 4 ? 0.0f : static_cast<float>(filter + 1);
        if (w1[p] != expect) {
            std::printf("conv1 filter %zu holds %g, expected %g\n", filter, w1[p], expect);
            ++bad;
        }
    }
    if (bad) return 1;
#if defined(_OPENMP)
    std::printf("psap consumer (add_subdirectory): ok (OpenMP)\n");
#else
    std::printf("psap consumer (add_subdirectory): ok (single-threaded)\n");
#endif
    return 0;
}
