// psap/tensor/{memory,view,concepts}.hpp: strided views over raw memory, the
// raw-pointer adapters, and the filter_bank / channel_vector concepts.
#include <psap/tensor/concepts.hpp>
#include <psap/tensor/memory.hpp>
#include <psap/tensor/view.hpp>

#include <doctest/doctest.h>

#include <array>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace {

// A buffer whose value at offset p is p, so a value read through a view names
// the address it came from.
std::vector<float> iota_buffer(std::size_t n) {
    std::vector<float> b(n);
    std::iota(b.begin(), b.end(), 0.0f);
    return b;
}

// A user's own filter bank type: models psap::filter_bank without any psap base.
struct user_bank {
    using value_type = double;
    using memory_type = psap::host_memory;
    double* p;
    psap::index n, k;
    double* data() const { return p; }
    psap::index rows() const { return n; }
    psap::index cols() const { return k; }
    psap::index row_stride() const { return 1; }  // column-major
    psap::index col_stride() const { return n; }
};

struct user_channels {
    using value_type = float;
    using memory_type = psap::host_memory;
    const float* p;
    const float* data() const { return p; }
    psap::index size() const { return 3; }
    psap::index stride() const { return 2; }
};

}  // namespace

// ---------------------------------------------------------------- concepts

static_assert(psap::memory_space<psap::host_memory> && psap::memory_space<psap::device_memory>);
static_assert(!psap::memory_space<int>);

// Archetypes are the minimum: each models its concept and nothing stronger.
static_assert(psap::filter_bank<psap::filter_bank_archetype>);
static_assert(!psap::mutable_filter_bank<psap::filter_bank_archetype>);
static_assert(psap::mutable_filter_bank<psap::mutable_filter_bank_archetype>);
static_assert(psap::channel_vector<psap::channel_vector_archetype>);
static_assert(!psap::channel_vector<psap::filter_bank_archetype>);
static_assert(!psap::filter_bank<psap::channel_vector_archetype>);

// psap's own views and a user type model the concepts; containers and
// non-floating element types do not.
static_assert(psap::mutable_filter_bank<psap::matrix_view<double, psap::device_memory>>);
static_assert(psap::filter_bank<psap::matrix_view<const float>> && !psap::mutable_filter_bank<psap::matrix_view<const float>>);
static_assert(psap::channel_vector<psap::vector_view<const double>>);
static_assert(psap::mutable_filter_bank<user_bank>);
static_assert(psap::channel_vector<user_channels>);
static_assert(!psap::filter_bank<std::vector<float>>);
static_assert(!psap::channel_vector<std::vector<float>>);
static_assert(!psap::filter_bank<psap::matrix_view<int>>);
static_assert(!psap::channel_vector<psap::vector_view<int>>);
static_assert(!psap::filter_bank<psap::vector_view<float>>);
static_assert(!psap::channel_vector<psap::matrix_view<float>>);

// A type with the right members but an unknown memory tag is not a bank.
struct bank_in_unknown_memory : psap::mutable_filter_bank_archetype {
    using memory_type = int;
};
static_assert(!psap::filter_bank<bank_in_unknown_memory>);

// Raw-pointer adapters keep constness.
static_assert(std::is_same_v<decltype(psap::filters(std::declval<const float*>(), 1, 1)), psap::matrix_view<const float>>);
static_assert(std::is_same_v<decltype(psap::filters(std::declval<double*>(), 1, 1, 1, 1)), psap::matrix_view<double>>);
static_assert(std::is_same_v<decltype(psap::channels(std::declval<float*>(), 1)), psap::vector_view<float>>);
static_assert(std::is_same_v<decltype(psap::as_matrix_view(std::declval<const user_bank&>())), psap::matrix_view<double>>);

// ---------------------------------------------------------------- matrix_view

TEST_CASE("matrix_view: contiguous row-major bank, element (i, j) at data[i*k + j]") {
    auto buf = iota_buffer(12);
    const auto v = psap::filters(buf.data(), 3, 4);
    CHECK(v.rows() == 3);
    CHECK(v.cols() == 4);
    CHECK(v.row_stride() == 4);
    CHECK(v.col_stride() == 1);
    CHECK(v.rows_contiguous());
    CHECK(v.data() == buf.data());
    for (psap::index i = 0; i < 3; ++i)
        for (psap::index j = 0; j < 4; ++j) {
            CHECK(&v(i, j) == &buf[static_cast<std::size_t>(i * 4 + j)]);
            CHECK(v(i, j) == static_cast<float>(i * 4 + j));
        }
    v(2, 1) = -7.0f;  // writes land in the user's buffer
    CHECK(buf[9] == -7.0f);
}

TEST_CASE("matrix_view: explicit strides address padded and column-major storage") {
    // 3 filters of 2 values stored column-major in a 4-row buffer (padding row).
    auto buf = iota_buffer(8);
    const auto v = psap::filters(buf.data(), 3, 2, 1, 4);
    CHECK_FALSE(v.rows_contiguous());
    const std::array<std::array<float, 2>, 3> expect{{{0, 4}, {1, 5}, {2, 6}}};
    for (psap::index i = 0; i < 3; ++i)
        for (psap::index j = 0; j < 2; ++j) CHECK(v(i, j) == expect[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)]);
    v(1, 1) = 99.0f;
    CHECK(buf[5] == 99.0f);
    CHECK(buf[3] == 3.0f);  // the padding row is never touched
    CHECK(buf[7] == 7.0f);
}

TEST_CASE("matrix_view: middle_rows and row slice without copying") {
    auto buf = iota_buffer(20);
    const psap::matrix_view<float> v(buf.data(), 4, 3, 5, 1);  // rows padded to 5
    const auto mid = v.middle_rows(1, 2);
    CHECK(mid.rows() == 2);
    CHECK(mid.cols() == 3);
    CHECK(&mid(0, 0) == &buf[5]);
    CHECK(&mid(1, 2) == &buf[12]);
    const auto r = v.row(3);
    CHECK(r.size() == 3);
    CHECK(r.stride() == 1);
    CHECK(&r[2] == &buf[17]);
    CHECK(v.row_data(2) == buf.data() + 10);
}

TEST_CASE("matrix_view: a view of T converts to a view of const T over the same memory") {
    auto buf = iota_buffer(6);
    const psap::matrix_view<float> v(buf.data(), 2, 3);
    const psap::matrix_view<const float> c = v;
    CHECK(c.data() == v.data());
    CHECK(c.row_stride() == 3);
    static_assert(!std::is_convertible_v<psap::matrix_view<const float>, psap::matrix_view<float>>);
}

TEST_CASE("matrix_view: bad extents and null data raise psap::error, empty views are fine") {
    float x = 0;
    CHECK_THROWS_AS(psap::matrix_view<float>(&x, -1, 2), psap::error);
    CHECK_THROWS_WITH_AS(psap::matrix_view<float>(nullptr, 2, 3), doctest::Contains("null data pointer"), psap::error);
    CHECK_NOTHROW(psap::matrix_view<float>(nullptr, 0, 3));
    CHECK(psap::matrix_view<float>(nullptr, 0, 3).empty());
    CHECK(psap::matrix_view<float>().empty());
}

// ---------------------------------------------------------------- vector_view

TEST_CASE("vector_view: strided channels and segments alias the buffer") {
    auto buf = iota_buffer(10);
    const auto v = psap::channels(buf.data() + 1, 4, 2);  // odd offsets 1, 3, 5, 7
    CHECK(v.size() == 4);
    for (psap::index c = 0; c < 4; ++c) CHECK(&v[c] == &buf[static_cast<std::size_t>(1 + 2 * c)]);
    const auto s = v.segment(2, 2);
    CHECK(s.size() == 2);
    CHECK(&s[0] == &buf[5]);
    s[1] = -1.0f;
    CHECK(buf[7] == -1.0f);
    CHECK_THROWS_AS(psap::vector_view<float>(nullptr, 3), psap::error);
    CHECK_THROWS_AS(psap::vector_view<float>(buf.data(), -2), psap::error);
}

// ---------------------------------------------------------------- concept models

TEST_CASE("a user type modelling filter_bank passes through psap::filters without a copy") {
    std::vector<double> buf(6);
    std::iota(buf.begin(), buf.end(), 0.0);
    const user_bank b{buf.data(), 3, 2};  // column-major 3 x 2
    const auto v = psap::filters(b);
    static_assert(std::is_same_v<decltype(v), const psap::matrix_view<double>>);
    CHECK(v.data() == buf.data());
    CHECK(v(2, 1) == 5.0);  // (i, j) at i + 3*j
    CHECK(v(1, 0) == 1.0);
    v(0, 1) = 42.0;
    CHECK(buf[3] == 42.0);
}

TEST_CASE("a user type modelling channel_vector converts with its stride") {
    const std::array<float, 6> buf{0, 1, 2, 3, 4, 5};
    const auto v = psap::channels(user_channels{buf.data()});
    static_assert(std::is_same_v<decltype(v), const psap::vector_view<const float>>);
    CHECK(v.size() == 3);
    CHECK(&v[2] == &buf[4]);
}
