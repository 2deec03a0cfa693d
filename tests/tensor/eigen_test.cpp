// psap/tensor/eigen.hpp: Eigen dense objects and tensors as psap views,
// checked element by element against Eigen's own indexing (pointer identity),
// plus writes through the view and the host backend acting on strided views.
#include <psap/backend/cpu.hpp>
#include <psap/tensor/concepts.hpp>
#include <psap/tensor/eigen.hpp>

#include <doctest/doctest.h>

#include <array>
#include <span>
#include <type_traits>
#include <vector>

namespace {

template <class T>
using rm_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Every (i, j) of the view is the very element Eigen's m(i, j) names.
template <class V, class M>
void check_aliases(const V& v, M& m) {
    REQUIRE(v.rows() == m.rows());
    REQUIRE(v.cols() == m.cols());
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) {
            INFO("element (", i, ", ", j, ")");
            CHECK(&v(i, j) == &m(i, j));
        }
}

// Writing through the view changes exactly m(i, j) in the user's object.
template <class V, class M>
void check_write_through(const V& v, M&& m, Eigen::Index i, Eigen::Index j) {
    using S = typename std::remove_cvref_t<M>::Scalar;
    const auto before = m.eval();
    v(i, j) = S(-123);
    CHECK(m(i, j) == S(-123));
    auto diff = (m.array() != before.array()).count();
    CHECK(diff == 1);
}

}  // namespace

// ---------------------------------------------------------------- dense 2-D

TEST_CASE("Eigen Matrix, column-major: row i of the view is filter i") {
    Eigen::MatrixXf m = Eigen::MatrixXf::Random(5, 7);
    const auto v = psap::filters(m);
    static_assert(std::is_same_v<decltype(v), const psap::matrix_view<float>>);
    CHECK(v.data() == m.data());
    CHECK(v.row_stride() == 1);
    CHECK(v.col_stride() == 5);
    check_aliases(v, m);
    check_write_through(v, m, 3, 6);
}

TEST_CASE("Eigen Matrix, row-major and fixed size") {
    rm_matrix<double> m = rm_matrix<double>::Random(4, 6);
    const auto v = psap::filters(m);
    CHECK(v.row_stride() == 6);
    CHECK(v.col_stride() == 1);
    CHECK(v.rows_contiguous());
    check_aliases(v, m);
    check_write_through(v, m, 0, 5);

    Eigen::Matrix<float, 3, 4> f = Eigen::Matrix<float, 3, 4>::Random();
    const auto vf = psap::filters(f);
    check_aliases(vf, f);
}

TEST_CASE("Eigen Array and const Matrix give const views of the same storage") {
    Eigen::ArrayXXf a = Eigen::ArrayXXf::Random(3, 2);
    const auto va = psap::filters(a);
    check_aliases(va, a);

    const Eigen::MatrixXd c = Eigen::MatrixXd::Random(2, 3);
    const auto vc = psap::filters(c);
    static_assert(std::is_same_v<decltype(vc), const psap::matrix_view<const double>>);
    static_assert(!psap::mutable_filter_bank<std::remove_cvref_t<decltype(vc)>>);
    check_aliases(vc, c);
}

TEST_CASE("Eigen Map with outer and inner strides") {
    std::vector<float> buf(64);
    for (std::size_t p = 0; p < buf.size(); ++p) buf[p] = static_cast<float>(p);

    SUBCASE("row-major, padded rows (OuterStride)") {
        Eigen::Map<rm_matrix<float>, 0, Eigen::OuterStride<>> m(buf.data(), 3, 5, Eigen::OuterStride<>(8));
        const auto v = psap::filters(m);
        CHECK(v.row_stride() == 8);
        CHECK(v.col_stride() == 1);
        check_aliases(v, m);
        CHECK(v(2, 4) == 20.0f);  // hand-computed: 2*8 + 4
        check_write_through(v, m, 1, 2);
        CHECK(buf[10] == -123.0f);
    }
    SUBCASE("column-major, every other element (InnerStride<2>)") {
        Eigen::Map<Eigen::MatrixXf, 0, Eigen::InnerStride<2>> m(buf.data(), 4, 3);
        const auto v = psap::filters(m);
        CHECK(v.row_stride() == 2);
        CHECK(v.col_stride() == 8);  // outer stride = rows * inner stride
        check_aliases(v, m);
        CHECK(v(3, 2) == 22.0f);  // 3*2 + 2*8
    }
    SUBCASE("row-major, both strides dynamic") {
        using S = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
        Eigen::Map<rm_matrix<float>, 0, S> m(buf.data() + 1, 3, 4, S(12, 3));
        const auto v = psap::filters(m);
        CHECK(v.row_stride() == 12);
        CHECK(v.col_stride() == 3);
        check_aliases(v, m);
        CHECK(v(2, 3) == 34.0f);  // 1 + 2*12 + 3*3
        check_write_through(v, m, 2, 3);
        CHECK(buf[34] == -123.0f);
    }
}

TEST_CASE("Eigen Ref and Block: sub-matrices as banks, no copy") {
    Eigen::MatrixXf m = Eigen::MatrixXf::Random(8, 9);
    rm_matrix<float> r = rm_matrix<float>::Random(8, 9);

    SUBCASE("Block of a column-major matrix") {
        auto b = m.block(2, 3, 4, 5);
        const auto v = psap::filters(b);
        CHECK(v.data() == &m(2, 3));
        check_aliases(v, b);
        check_write_through(v, m.block(2, 3, 4, 5), 3, 4);
        CHECK(m(5, 7) == -123.0f);
    }
    SUBCASE("Block of a row-major matrix, passed as a temporary expression") {
        const auto v = psap::filters(r.middleRows(1, 3));
        CHECK(v.rows() == 3);
        CHECK(v.row_stride() == 9);
        for (psap::index i = 0; i < 3; ++i)
            for (psap::index j = 0; j < 9; ++j) CHECK(&v(i, j) == &r(i + 1, j));
    }
    SUBCASE("Ref<MatrixXf> and Ref with an outer stride") {
        Eigen::Ref<Eigen::MatrixXf> ref = m;
        check_aliases(psap::filters(ref), m);
        Eigen::Ref<rm_matrix<float>, 0, Eigen::OuterStride<>> rb = r.block(1, 2, 3, 4);
        const auto v = psap::filters(rb);
        CHECK(v.data() == &r(1, 2));
        CHECK(v.row_stride() == 9);
        check_aliases(v, rb);
        check_write_through(v, rb, 2, 0);
        CHECK(r(3, 2) == -123.0f);
    }
    SUBCASE("Ref<const MatrixXf> gives a read-only view of the same storage") {
        Eigen::Ref<const Eigen::MatrixXf> cref = m;
        const auto v = psap::filters(cref);
        static_assert(std::is_same_v<decltype(v), const psap::matrix_view<const float>>);
        CHECK(v.data() == m.data());
        check_aliases(v, m);
    }
    SUBCASE("Transpose: output channels stored as columns") {
        // A linear layer stored as in x out (column-major): its transpose is
        // the out x in filter bank.
        const auto v = psap::filters(m.transpose());
        CHECK(v.rows() == 9);
        CHECK(v.cols() == 8);
        for (psap::index i = 0; i < 9; ++i)
            for (psap::index j = 0; j < 8; ++j) CHECK(&v(i, j) == &m(j, i));
    }
}

// ---------------------------------------------------------------- channels

TEST_CASE("Eigen vectors as channels: BN parameters, rows and columns of matrices") {
    Eigen::VectorXf gamma = Eigen::VectorXf::Random(6);
    const auto g = psap::channels(gamma);
    CHECK(g.size() == 6);
    CHECK(g.stride() == 1);
    for (psap::index c = 0; c < 6; ++c) CHECK(&g[c] == &gamma(c));
    g[4] = 0.0f;
    CHECK(gamma(4) == 0.0f);

    Eigen::MatrixXf m = Eigen::MatrixXf::Random(4, 5);  // column-major
    rm_matrix<float> r = rm_matrix<float>::Random(4, 5);

    SUBCASE("a column of a row-major matrix strides by the row length") {
        const auto c = psap::channels(r.col(2));
        CHECK(c.stride() == 5);
        for (psap::index i = 0; i < 4; ++i) CHECK(&c[i] == &r(i, 2));
    }
    SUBCASE("a row of a column-major matrix strides by the column length") {
        const auto c = psap::channels(m.row(1));
        CHECK(c.stride() == 4);
        for (psap::index j = 0; j < 5; ++j) CHECK(&c[j] == &m(1, j));
    }
    SUBCASE("a dynamic 1 x n block (a row only at run time) strides by the column length") {
        const auto c = psap::channels(m.block(3, 0, 1, 5));
        CHECK(c.size() == 5);
        for (psap::index j = 0; j < 5; ++j) CHECK(&c[j] == &m(3, j));
    }
    SUBCASE("a dynamic n x 1 block of a row-major matrix strides by the row length") {
        const auto c = psap::channels(r.block(0, 4, 4, 1));
        for (psap::index i = 0; i < 4; ++i) CHECK(&c[i] == &r(i, 4));
    }
    SUBCASE("a strided Map") {
        std::array<double, 9> buf{0, 1, 2, 3, 4, 5, 6, 7, 8};
        Eigen::Map<Eigen::VectorXd, 0, Eigen::InnerStride<3>> s(buf.data(), 3);
        const auto c = psap::channels(s);
        CHECK(c[2] == 6.0);
        CHECK(&c[1] == &buf[3]);
    }
    SUBCASE("a matrix that is not a vector is rejected with a hint") {
        CHECK_THROWS_WITH_AS(psap::channels(m), doctest::Contains("m.col(0)"), psap::error);
    }
}

// ---------------------------------------------------------------- tensors

TEST_CASE("Eigen::Tensor rank 2, both layouts") {
    Eigen::Tensor<float, 2, Eigen::RowMajor> r(3, 4);
    Eigen::Tensor<float, 2, Eigen::ColMajor> c(3, 4);
    r.setRandom();
    c.setRandom();
    const auto vr = psap::filters(r);
    const auto vc = psap::filters(c);
    for (Eigen::Index i = 0; i < 3; ++i)
        for (Eigen::Index j = 0; j < 4; ++j) {
            CHECK(&vr(i, j) == &r(i, j));
            CHECK(&vc(i, j) == &c(i, j));
        }
    vc(2, 3) = 5.5f;
    CHECK(c(2, 3) == 5.5f);
}

namespace {
// Conv weight (N, C, kh, kw): view element (i, j) is tensor element
// (i, c, y, x) with j decoded by the fan-in order eigen.hpp states.
template <class V, class Tn>
void check_conv_weight(const V& v, Tn& t, bool row_major) {
    const Eigen::Index n = t.dimension(0), ch = t.dimension(1), kh = t.dimension(2), kw = t.dimension(3);
    REQUIRE(v.rows() == n);
    REQUIRE(v.cols() == ch * kh * kw);
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index c = 0; c < ch; ++c)
            for (Eigen::Index y = 0; y < kh; ++y)
                for (Eigen::Index x = 0; x < kw; ++x) {
                    const Eigen::Index j = row_major ? (c * kh + y) * kw + x : c + ch * (y + kh * x);
                    CHECK(&v(i, j) == &t(i, c, y, x));
                }
}
}  // namespace

TEST_CASE("Eigen::Tensor rank 4: a conv weight (N, C, kh, kw) becomes N filters of C*kh*kw") {
    SUBCASE("row-major: fan-in contiguous") {
        Eigen::Tensor<float, 4, Eigen::RowMajor> w(4, 3, 2, 3);
        w.setRandom();
        const auto v = psap::filters(w);
        CHECK(v.row_stride() == 18);
        CHECK(v.col_stride() == 1);
        check_conv_weight(v, w, true);
    }
    SUBCASE("column-major: filters adjacent, fan-in N apart") {
        Eigen::Tensor<double, 4> w(4, 3, 2, 3);
        w.setRandom();
        const auto v = psap::filters(w);
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == 4);
        check_conv_weight(v, w, false);
        v(3, 17) = 9.0;
        CHECK(w(3, 2, 1, 2) == 9.0);  // j = 17 -> c = 2, y = 1, x = 2
    }
}

TEST_CASE("Eigen::TensorMap over a raw buffer, rank 2 and 4, both layouts") {
    std::vector<float> buf(4 * 3 * 2 * 2);
    SUBCASE("rank 4 row-major") {
        Eigen::TensorMap<Eigen::Tensor<float, 4, Eigen::RowMajor>> t(buf.data(), 4, 3, 2, 2);
        const auto v = psap::filters(t);
        CHECK(v.data() == buf.data());
        check_conv_weight(v, t, true);
    }
    SUBCASE("rank 4 column-major") {
        Eigen::TensorMap<Eigen::Tensor<float, 4>> t(buf.data(), 4, 3, 2, 2);
        const auto v = psap::filters(t);
        CHECK(v.data() == buf.data());
        check_conv_weight(v, t, false);
    }
    SUBCASE("rank 2 over const data") {
        Eigen::TensorMap<const Eigen::Tensor<float, 2>> t(buf.data(), 6, 8);
        const auto v = psap::filters(t);
        static_assert(std::is_same_v<decltype(v), const psap::matrix_view<const float>>);
        for (Eigen::Index i = 0; i < 6; ++i)
            for (Eigen::Index j = 0; j < 8; ++j) CHECK(&v(i, j) == &t(i, j));
    }
    SUBCASE("TensorFixedSize") {
        Eigen::TensorFixedSize<float, Eigen::Sizes<2, 3, 1, 2>, Eigen::RowMajor> t;
        t.setRandom();
        check_conv_weight(psap::filters(t), t, true);
    }
}

TEST_CASE("rank-1 Eigen::Tensor / TensorMap as channels") {
    Eigen::Tensor<float, 1> beta(5);
    beta.setRandom();
    const auto c = psap::channels(beta);
    CHECK(c.size() == 5);
    for (Eigen::Index i = 0; i < 5; ++i) CHECK(&c[i] == &beta(i));
    std::array<double, 3> raw{1, 2, 3};
    Eigen::TensorMap<Eigen::Tensor<double, 1>> m(raw.data(), 3);
    CHECK(psap::channels(m).data() == raw.data());
}

// ---------------------------------------------------------------- with the backend

TEST_CASE("the host backend zeroes exactly the chosen filters of a column-major conv tensor") {
    // The backend sees only the strided view; an independent check through
    // Eigen's indexing confirms it touched the chosen filters and no others.
    Eigen::Tensor<float, 4> w(6, 3, 3, 3);
    w.setConstant(1.0f);
    const std::vector<psap::index> rows{1, 4};
    psap::cpu_backend::zero_rows(psap::filters(w), std::span<const psap::index>(rows));
    for (Eigen::Index i = 0; i < 6; ++i) {
        float sum = 0;
        for (Eigen::Index c = 0; c < 3; ++c)
            for (Eigen::Index y = 0; y < 3; ++y)
                for (Eigen::Index x = 0; x < 3; ++x) sum += w(i, c, y, x);
        CHECK(sum == ((i == 1 || i == 4) ? 0.0f : 27.0f));
    }
    // Squared row norms through a padded row-major Map: hand-computed values.
    std::vector<float> buf{1, 2, 0, 99, 3, 4, 0, 99};  // 2 x 3, rows padded to 4
    Eigen::Map<rm_matrix<float>, 0, Eigen::OuterStride<>> m(buf.data(), 2, 3, Eigen::OuterStride<>(4));
    std::array<double, 2> norms{};
    psap::cpu_backend::row_sq_norms(psap::filters(m), std::span<double>(norms));
    CHECK(norms[0] == 5.0);
    CHECK(norms[1] == 25.0);
}
