// Views of the user's own arrays (docs/integration.md, "Eigen, xtensor, raw
// pointers and device memory"): psap::filters / psap::channels over raw
// pointers and Eigen objects, checked element by element: filter i, fan-in
// element j of the view is the user's element. No copies are made.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <psap/psap.hpp>
#include <psap/tensor/device.hpp>
#include <psap/tensor/eigen.hpp>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <cstdint>
#include <type_traits>
#include <vector>

TEST_CASE("raw pointers") {
    // [raw-pointers]
    std::vector<float> w(16 * 3 * 3 * 3), gamma(16, 1.f);  // conv weight (16, 3, 3, 3), row-major
    auto bank = psap::filters(w.data(), 16, 3 * 3 * 3);  // 16 filters of 27 values
    auto g = psap::channels(gamma.data(), 16);            // one value per channel
    // [raw-pointers]
    w[5 * 27 + 4] = 2.f;
    CHECK(bank(5, 4) == 2.f);
    CHECK(bank.data() == w.data());
    CHECK(g.size() == 16);
}

TEST_CASE("Eigen matrices and vectors") {
    // [eigen-matrix]
    // A linear layer's weight, out x in. Row-major keeps each filter contiguous
    // (the backends' fast path); column-major works too, with strided rows.
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> fc(10, 64);
    Eigen::MatrixXf fc_col_major(10, 64);
    Eigen::VectorXf bias(10);
    auto w = psap::filters(fc);                // 10 filters of 64 values
    auto w2 = psap::filters(fc_col_major);     // the same shape, row stride 1, column stride 10
    auto b = psap::channels(bias);
    auto top = psap::filters(fc.topRows(4));   // a Block: the first 4 filters
    // [eigen-matrix]
    fc.setRandom();
    fc_col_major = fc;
    for (int i = 0; i < 10; ++i)
        for (int j = 0; j < 64; ++j) {
            CHECK(w(i, j) == fc(i, j));
            CHECK(w2(i, j) == fc(i, j));
        }
    CHECK(w.rows_contiguous());
    CHECK_FALSE(w2.rows_contiguous());
    CHECK(b.data() == bias.data());
    CHECK(top.rows() == 4);
    CHECK(top(3, 63) == fc(3, 63));
}

TEST_CASE("Eigen tensors") {
    // [eigen-tensor]
    // A conv weight (N, C, kh, kw) as N filters of C*kh*kw values. Row-major:
    // filters are contiguous; Eigen's default column-major: filters are
    // adjacent, fan-in strided by N. Both are views, no copy.
    Eigen::Tensor<float, 4, Eigen::RowMajor> conv(32, 16, 3, 3);
    Eigen::Tensor<float, 4> conv_col_major(32, 16, 3, 3);
    auto a = psap::filters(conv);            // 32 x 144, row stride 144, column stride 1
    auto b = psap::filters(conv_col_major);  // 32 x 144, row stride 1, column stride 32
    // [eigen-tensor]
    conv.setRandom();
    conv_col_major.setRandom();
    CHECK(a.rows() == 32);
    CHECK(a.cols() == 144);
    CHECK(a(7, (5 * 3 + 1) * 3 + 2) == conv(7, 5, 1, 2));                   // row-major fan-in: (c*kh + y)*kw + x
    CHECK(b(7, 5 + 16 * (1 + 3 * 2)) == conv_col_major(7, 5, 1, 2));        // column-major fan-in: c + C*(y + kh*x)
    CHECK(b.row_stride() == 1);
    CHECK(b.col_stride() == 32);
}

// [device-views]
// Device pointers (cudaMalloc'ed by your framework) as views tagged
// device_memory (psap/tensor/device.hpp): the tag picks the backend, so the
// same pruner code runs its policies on the GPU once psap/backend/cuda.hpp is
// included and psap::cuda is linked (docs/cuda.md). psap never dereferences
// these pointers on the host.
psap::layer<float, psap::device_memory> device_conv(float* d_weight, float* d_grad, psap::index out, psap::index in) {
    return {.name = "conv",
            .out_channels = out,
            .in_channels = in,
            .kernel_area = 9,
            .weight = psap::device_filters(d_weight, out, in * 9),
            .grad = psap::device_filters(d_grad, out, in * 9)};
}
// [device-views]

TEST_CASE("device views carry their tag") {
    static_assert(psap::filter_bank<psap::matrix_view<float, psap::device_memory>>);
    static_assert(std::is_same_v<psap::network<float, psap::device_memory>::memory_type, psap::device_memory>);
    // Describing a device network needs no GPU: nothing is dereferenced.
    psap::network<float, psap::device_memory> net;
    float* fake = reinterpret_cast<float*>(std::uintptr_t{0x1000});
    net.add_layer(device_conv(fake, fake, 8, 4));
    net.add_group("conv", 8).member(0);
    CHECK_NOTHROW(net.validate());
}
