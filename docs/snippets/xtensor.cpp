// Views of xtensor containers (docs/integration.md, "Eigen, xtensor, raw
// pointers and device memory"), checked element by element. Built only when
// CMake finds xtensor.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <psap/psap.hpp>
#include <psap/tensor/xtensor.hpp>

#include <xtensor/xadapt.hpp>
#include <xtensor/xrandom.hpp>

#include <vector>

TEST_CASE("xtensor containers and adaptors") {
    // [xtensor]
    // Dimension 0 indexes filters; the other dimensions are the fan-in.
    xt::xtensor<float, 4> conv = xt::random::randn<float>({32, 16, 3, 3});
    xt::xtensor<float, 1> gamma = xt::ones<float>({32});
    auto w = psap::filters(conv);   // 32 filters of 144 values, no copy
    auto g = psap::channels(gamma);

    std::vector<double> storage(8 * 27);  // memory you own, adapted without a copy
    auto adapted = xt::adapt(storage, std::vector<std::size_t>{8, 3, 3, 3});
    auto w2 = psap::filters(adapted);     // 8 filters of 27 values
    // [xtensor]
    CHECK(w.rows() == 32);
    CHECK(w.cols() == 144);
    CHECK(w(7, (5 * 3 + 1) * 3 + 2) == conv(7, 5, 1, 2));
    CHECK(g.size() == 32);
    storage[3 * 27 + 26] = 4.0;
    CHECK(w2(3, 26) == 4.0);
    CHECK(w2.data() == storage.data());
}
