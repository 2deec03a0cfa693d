// psap/tensor/xtensor.hpp: xtensor containers, adaptors and strided views as
// psap views, checked element by element against xtensor's own indexing
// (pointer identity); layouts no single stride can walk raise psap::error.
// Built only when CMake finds xtensor (tests/CMakeLists.txt links it).
#if __has_include(<xtensor/xarray.hpp>)

#include <psap/tensor/eigen.hpp>
#include <psap/tensor/xtensor.hpp>

#include <doctest/doctest.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <array>
#include <cstddef>
#include <numeric>
#include <type_traits>
#include <vector>

namespace {

constexpr auto rm = xt::layout_type::row_major;
constexpr auto cm = xt::layout_type::column_major;

// Every (i, j) of a view of a rank-2 expression is the element e(i, j).
template <class V, class E>
void check_aliases_2d(const V& v, E& e) {
    REQUIRE(static_cast<std::size_t>(v.rows()) == e.shape()[0]);
    REQUIRE(static_cast<std::size_t>(v.cols()) == e.shape()[1]);
    for (std::size_t i = 0; i < e.shape()[0]; ++i)
        for (std::size_t j = 0; j < e.shape()[1]; ++j) {
            INFO("element (", i, ", ", j, ")");
            CHECK(&v(static_cast<psap::index>(i), static_cast<psap::index>(j)) == &e(i, j));
        }
}

// Conv weight (N, C, kh, kw): view element (i, j) is e(i, c, y, x) with j in
// the fan-in order xtensor.hpp states for the given storage order.
template <class V, class E>
void check_conv_weight(const V& v, E& e, bool row_major_fan_in) {
    const std::size_t n = e.shape()[0], ch = e.shape()[1], kh = e.shape()[2], kw = e.shape()[3];
    REQUIRE(static_cast<std::size_t>(v.rows()) == n);
    REQUIRE(static_cast<std::size_t>(v.cols()) == ch * kh * kw);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t c = 0; c < ch; ++c)
            for (std::size_t y = 0; y < kh; ++y)
                for (std::size_t x = 0; x < kw; ++x) {
                    const std::size_t j = row_major_fan_in ? (c * kh + y) * kw + x : c + ch * (y + kh * x);
                    CHECK(&v(static_cast<psap::index>(i), static_cast<psap::index>(j)) == &e(i, c, y, x));
                }
}

}  // namespace

TEST_CASE("xarray and xtensor, rank 2, both layouts") {
    xt::xarray<float, rm> a = xt::reshape_view(xt::arange<float>(12), {3, 4});
    xt::xtensor<double, 2, cm> t = xt::zeros<double>({3, 4});
    const auto va = psap::filters(a);
    CHECK(va.data() == a.data());
    CHECK(va.row_stride() == 4);
    CHECK(va.col_stride() == 1);
    check_aliases_2d(va, a);
    CHECK(va(2, 1) == 9.0f);  // hand-computed: 2*4 + 1
    const auto vt = psap::filters(t);
    CHECK(vt.row_stride() == 1);
    CHECK(vt.col_stride() == 3);
    check_aliases_2d(vt, t);
    vt(1, 3) = 7.0;
    CHECK(t(1, 3) == 7.0);
    CHECK(xt::sum(t)() == 7.0);  // nothing else was written
}

TEST_CASE("rank-4 conv weights (N, C, kh, kw), both layouts") {
    SUBCASE("xarray row-major") {
        xt::xarray<float> w = xt::zeros<float>({4, 3, 2, 3});
        const auto v = psap::filters(w);
        CHECK(v.row_stride() == 18);
        CHECK(v.col_stride() == 1);
        check_conv_weight(v, w, true);
    }
    SUBCASE("xarray column-major") {
        xt::xarray<float, cm> w = xt::zeros<float>({4, 3, 2, 3});
        const auto v = psap::filters(w);
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == 4);
        check_conv_weight(v, w, false);
    }
    SUBCASE("xtensor<double, 4> row-major") {
        xt::xtensor<double, 4> w = xt::zeros<double>({2, 3, 3, 3});
        check_conv_weight(psap::filters(w), w, true);
    }
    SUBCASE("xtensor<float, 4> column-major") {
        xt::xtensor<float, 4, cm> w = xt::zeros<float>({2, 3, 3, 3});
        check_conv_weight(psap::filters(w), w, false);
    }
    SUBCASE("xtensor_fixed row-major") {
        xt::xtensor_fixed<float, xt::xshape<3, 2, 2, 2>> w = xt::zeros<float>({3, 2, 2, 2});
        const auto v = psap::filters(w);
        CHECK(v.data() == w.data());
        check_conv_weight(v, w, true);
    }
    SUBCASE("unit dimensions (xtensor strides them 0) are skipped") {
        xt::xtensor<float, 4> w = xt::zeros<float>({4, 1, 2, 2});
        const auto v = psap::filters(w);
        CHECK(v.cols() == 4);
        CHECK(v.col_stride() == 1);
        check_conv_weight(v, w, true);
        xt::xtensor<float, 4> one = xt::zeros<float>({1, 2, 2, 2});
        const auto v1 = psap::filters(one);
        CHECK(v1.rows() == 1);
        check_conv_weight(v1, one, true);
    }
}

TEST_CASE("xarray and Eigen::Tensor agree on the fan-in order of a column-major conv weight") {
    // Two libraries, one stated rule: the same logical weights map to the same (i, j).
    Eigen::Tensor<float, 4> e(3, 2, 2, 3);
    xt::xarray<float, cm> x = xt::zeros<float>({3, 2, 2, 3});
    float value = 0;
    for (Eigen::Index i = 0; i < 3; ++i)
        for (Eigen::Index c = 0; c < 2; ++c)
            for (Eigen::Index y = 0; y < 2; ++y)
                for (Eigen::Index z = 0; z < 3; ++z) {
                    e(i, c, y, z) = value;
                    x(static_cast<std::size_t>(i), static_cast<std::size_t>(c), static_cast<std::size_t>(y),
                      static_cast<std::size_t>(z)) = value;
                    value += 1;
                }
    const auto ve = psap::filters(e);
    const auto vx = psap::filters(x);
    REQUIRE(ve.cols() == vx.cols());
    for (psap::index i = 0; i < 3; ++i)
        for (psap::index j = 0; j < ve.cols(); ++j) CHECK(ve(i, j) == vx(i, j));
}

TEST_CASE("xt::adapt over a raw buffer aliases the buffer") {
    std::vector<float> buf(2 * 3 * 2 * 2);
    std::iota(buf.begin(), buf.end(), 0.0f);
    SUBCASE("rank 4, row-major") {
        auto a = xt::adapt(buf.data(), buf.size(), xt::no_ownership(), std::vector<std::size_t>{2, 3, 2, 2});
        const auto v = psap::filters(a);
        CHECK(v.data() == buf.data());
        check_conv_weight(v, a, true);
        v(1, 11) = -1.0f;
        CHECK(buf[23] == -1.0f);
    }
    SUBCASE("rank 2, column-major") {
        auto a = xt::adapt<cm>(buf.data(), buf.size(), xt::no_ownership(), std::array<std::size_t, 2>{4, 6});
        const auto v = psap::filters(a);
        CHECK(v.data() == buf.data());
        CHECK(v(3, 5) == 23.0f);  // 3 + 4*5
        check_aliases_2d(v, a);
    }
    SUBCASE("an adaptor of a std::vector (by reference)") {
        auto a = xt::adapt(buf, std::vector<std::size_t>{4, 6});
        CHECK(psap::filters(a).data() == buf.data());
    }
}

TEST_CASE("strided views that keep a uniform fan-in stride") {
    xt::xarray<float> w = xt::zeros<float>({6, 3, 2, 2});
    SUBCASE("a range of filters (xt::view)") {
        auto s = xt::view(w, xt::range(2, 5), xt::all(), xt::all(), xt::all());
        const auto v = psap::filters(s);
        CHECK(v.rows() == 3);
        CHECK(v.data() == &w(2, 0, 0, 0));
        check_conv_weight(v, s, true);
        v(0, 0) = 4.0f;
        CHECK(w(2, 0, 0, 0) == 4.0f);
    }
    SUBCASE("every other filter (xt::strided_view with a step)") {
        auto s = xt::strided_view(w, {xt::range(0, 6, 2), xt::all(), xt::all(), xt::all()});
        const auto v = psap::filters(s);
        CHECK(v.rows() == 3);
        CHECK(v.row_stride() == 24);
        check_conv_weight(v, s, true);
    }
    SUBCASE("a column range of a matrix: padded rows") {
        xt::xarray<double> m = xt::zeros<double>({4, 6});
        auto s = xt::view(m, xt::all(), xt::range(1, 4));
        const auto v = psap::filters(s);
        CHECK(v.row_stride() == 6);
        CHECK(v.col_stride() == 1);
        check_aliases_2d(v, s);
        CHECK(&v(0, 0) == &m(0, 1));
    }
    SUBCASE("a transposed row-major matrix walks its fan-in with a stride") {
        xt::xarray<float> m = xt::zeros<float>({5, 4});
        auto t = xt::transpose(m);
        const auto v = psap::filters(t);
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == 4);
        check_aliases_2d(v, t);
    }
}

TEST_CASE("layouts no single stride can walk raise psap::error naming the remedy") {
    xt::xarray<float> w = xt::zeros<float>({4, 4, 2, 2});
    SUBCASE("every other input channel of a row-major conv weight") {
        auto s = xt::view(w, xt::all(), xt::range(0, 4, 2), xt::all(), xt::all());
        CHECK_THROWS_WITH_AS(psap::filters(s), doctest::Contains("copy it into a contiguous xt::xarray"), psap::error);
        CHECK_THROWS_WITH_AS(psap::filters(s), doctest::Contains("strides (16, 8, 2, 1)"), psap::error);
    }
    SUBCASE("a permutation that interleaves fan-in dimensions") {
        auto p = xt::transpose(w, {0, 2, 1, 3});  // (N, kh, C, kw): strides (16, 2, 4, 1)
        CHECK_THROWS_AS(psap::filters(p), psap::error);
    }
    SUBCASE("a fan-in dimension with stride 0 repeats weights") {
        std::vector<float> buf(8);
        auto a = xt::adapt(buf.data(), buf.size(), xt::no_ownership(), std::vector<std::size_t>{2, 4},
                           std::vector<std::size_t>{4, 0});
        CHECK_THROWS_WITH_AS(psap::filters(a), doctest::Contains("stride 0"), psap::error);
    }
    SUBCASE("rank 1 is not a filter bank") {
        xt::xarray<float> v = xt::zeros<float>({4});
        CHECK_THROWS_WITH_AS(psap::filters(v), doctest::Contains("rank >= 2"), psap::error);
    }
}

TEST_CASE("rank-1 xtensor expressions as channels") {
    xt::xtensor<float, 1> gamma = xt::ones<float>({5});
    const auto g = psap::channels(gamma);
    CHECK(g.size() == 5);
    for (std::size_t c = 0; c < 5; ++c) CHECK(&g[static_cast<psap::index>(c)] == &gamma(c));
    g[3] = 0.0f;
    CHECK(gamma(3) == 0.0f);

    xt::xarray<double> m = xt::zeros<double>({3, 4});
    const auto col = psap::channels(xt::view(m, xt::all(), 2));  // a strided column
    CHECK(col.stride() == 4);
    for (std::size_t i = 0; i < 3; ++i) CHECK(&col[static_cast<psap::index>(i)] == &m(i, 2));

    CHECK_THROWS_WITH_AS(psap::channels(m), doctest::Contains("rank-1"), psap::error);
}

TEST_CASE("const containers give read-only views") {
    const xt::xarray<float> w = xt::zeros<float>({2, 3});
    const auto v = psap::filters(w);
    static_assert(std::is_same_v<decltype(v), const psap::matrix_view<const float>>);
    CHECK(v.data() == w.data());
}

#endif  // xtensor available
