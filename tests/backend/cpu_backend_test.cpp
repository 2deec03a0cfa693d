// The CPU backend's batched operations against independent oracles: the
// reductions against psap::reduce row by row (the canonical order every
// backend must follow), the counts, finiteness scans and row writes against
// plain loops, and every batched call against the same call on one view at a
// time. Bitwise, on random strided views (padded rows, strided columns, empty
// views, widths that are not multiples of the 8 lanes), float and double, for
// every thread count 1..4 with the parallel threshold at 0 (every call opens a
// parallel region) and at its default.
#include <psap/backend/cpu.hpp>

#include <support/seed.hpp>
#include <support/threading.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

using psap::cpu_backend;
using psap::cpu_threading;
using idx = psap::index;  // not `index`: <strings.h> declares ::index

using psap_test::threading_scope;

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

/// A strided matrix in owned storage: rows x cols, column stride cs, rows padded by pad.
template <class T>
struct strided {
    idx rows = 0, cols = 0, cs = 1, pad = 0;
    std::vector<T> data;
    idx rs() const { return cols * cs + pad; }
    psap::matrix_view<T> view() { return {data.data(), rows, cols, rs(), cs}; }
    psap::matrix_view<const T> cview() const { return {data.data(), rows, cols, rs(), cs}; }
    T& at(idx i, idx j) { return data[static_cast<std::size_t>(i * rs() + j * cs)]; }
};

template <class T>
T random_value(std::mt19937_64& g) {
    std::normal_distribution<double> normal(0.0, 1.0);
    switch (g() % 8) {
        case 0: return T(0);
        case 1: return -T(0);
        case 2: return static_cast<T>(1e-41 * normal(g));  // subnormal in float
        case 3: return static_cast<T>(1e4 * normal(g));
        default: return static_cast<T>(normal(g));
    }
}

template <class T>
std::vector<strided<T>> random_batch(std::mt19937_64& g) {
    // widths around the 8 lanes and the 4-row blocks, and ResNet-like ones
    const idx widths[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 27, 144, 145, 288, 576};
    std::vector<strided<T>> b;
    const int count = 3 + static_cast<int>(g() % 10);
    for (int k = 0; k < count; ++k) {
        strided<T> m;
        m.rows = static_cast<idx>(g() % 70);
        m.cols = widths[g() % std::size(widths)];
        m.cs = (g() % 4 == 0) ? 2 : 1;
        m.pad = static_cast<idx>(g() % 3) * 5;
        m.data.resize(static_cast<std::size_t>(std::max<idx>(m.rows * m.rs(), 1)));
        for (auto& x : m.data) x = random_value<T>(g);
        b.push_back(std::move(m));
    }
    return b;
}

template <class T>
std::vector<psap::matrix_view<const T>> views_of(const std::vector<strided<T>>& b) {
    std::vector<psap::matrix_view<const T>> v;
    for (const auto& m : b) v.push_back(m.cview());
    return v;
}

/// Output buffers of the given sizes (pre-filled with a poison value) and spans over them.
struct outputs {
    std::vector<std::vector<double>> buf;
    std::vector<std::span<double>> spans;
    explicit outputs(const std::vector<std::size_t>& sizes) {
        for (auto n : sizes) buf.emplace_back(n, -7.25);
        for (auto& b : buf) spans.emplace_back(b);
    }
    std::span<const std::span<double>> all() const { return spans; }
};

template <class T>
std::vector<std::size_t> row_counts(const std::vector<strided<T>>& b) {
    std::vector<std::size_t> s;
    for (const auto& m : b) s.push_back(static_cast<std::size_t>(m.rows));
    return s;
}

template <class T>
void check_reductions(std::mt19937_64& g) {
    const auto b = random_batch<T>(g), b2 = random_batch<T>(g);
    const auto vs = views_of(b);
    using V = psap::matrix_view<const T>;

    // row_reduce_batch against psap::reduce::unary per row, and against the single-view call
    auto unary = [&](auto op, const char* name) {
        outputs batch(row_counts(b));
        cpu_backend::row_reduce_batch(std::span<const V>(vs), batch.all(), op);
        for (std::size_t k = 0; k < b.size(); ++k) {
            std::vector<double> one(static_cast<std::size_t>(b[k].rows));
            cpu_backend::row_reduce(vs[k], std::span<double>(one), op);
            for (idx i = 0; i < b[k].rows; ++i) {
                const double ref = psap::reduce::unary(vs[k].row_data(i), vs[k].col_stride(), vs[k].cols(), op);
                INFO(name, sizeof(T), " view ", k, " (", b[k].rows, "x", b[k].cols, " cs ", b[k].cs, " pad ", b[k].pad, ") row ", i, " got ", batch.buf[k][static_cast<std::size_t>(i)], " ref ", ref);
                CHECK(same_bits(batch.buf[k][static_cast<std::size_t>(i)], ref));
                CHECK(same_bits(one[static_cast<std::size_t>(i)], ref));
            }
        }
    };
    unary(psap::reduce::square{}, "square");
    unary(psap::reduce::absolute{}, "absolute");

    // row_dots_batch: pairs of views with equal shapes and independent layouts
    {
        std::vector<strided<T>> other;
        for (const auto& m : b) {
            strided<T> o = m;
            o.cs = (g() % 2) ? 1 : 3;
            o.pad = 1;
            o.data.assign(static_cast<std::size_t>(std::max<idx>(o.rows * o.rs(), 1)), T(0));
            for (auto& x : o.data) x = random_value<T>(g);
            other.push_back(std::move(o));
        }
        const auto ws = views_of(other);
        outputs batch(row_counts(b));
        cpu_backend::row_dots_batch(std::span<const V>(vs), std::span<const V>(ws), batch.all());
        for (std::size_t k = 0; k < b.size(); ++k)
            for (idx i = 0; i < b[k].rows; ++i) {
                const double ref = psap::reduce::binary(vs[k].row_data(i), vs[k].col_stride(), ws[k].row_data(i), ws[k].col_stride(),
                                                        vs[k].cols(), psap::reduce::product{});
                INFO("row_dots view ", k, " row ", i);
                CHECK(same_bits(batch.buf[k][static_cast<std::size_t>(i)], ref));
            }
    }

    // pairwise_sq_distances_batch: every pair, symmetric, 0 on the diagonal
    {
        std::vector<std::size_t> sizes;
        for (const auto& m : b2) sizes.push_back(static_cast<std::size_t>(m.rows * m.rows));
        const auto ws = views_of(b2);
        outputs batch(sizes);
        cpu_backend::pairwise_sq_distances_batch(std::span<const V>(ws), batch.all());
        for (std::size_t k = 0; k < b2.size(); ++k) {
            const idx n = b2[k].rows;
            std::vector<double> one(static_cast<std::size_t>(n * n));
            cpu_backend::pairwise_sq_distances(ws[k], std::span<double>(one));
            for (idx i = 0; i < n; ++i)
                for (idx j = 0; j < n; ++j) {
                    const double ref = i == j ? 0.0
                                              : psap::reduce::binary(ws[k].row_data(std::min(i, j)), ws[k].col_stride(),
                                                                     ws[k].row_data(std::max(i, j)), ws[k].col_stride(), ws[k].cols(),
                                                                     psap::reduce::squared_difference{});
                    const auto at = static_cast<std::size_t>(i * n + j);
                    INFO("pairwise view ", k, " (", i, ", ", j, ")");
                    CHECK(same_bits(batch.buf[k][at], ref));
                    CHECK(same_bits(one[at], ref));
                }
        }
    }

    // row_count_below_batch against a plain count, a threshold per view
    {
        std::vector<double> thresholds;
        for (std::size_t k = 0; k < b.size(); ++k) thresholds.push_back(std::vector<double>{0.0, 1e-30, 0.5, 1.0}[k % 4]);
        outputs batch(row_counts(b));
        cpu_backend::row_count_below_batch(std::span<const V>(vs), std::span<const double>(thresholds), batch.all());
        for (std::size_t k = 0; k < b.size(); ++k)
            for (idx i = 0; i < b[k].rows; ++i) {
                idx c = 0;
                for (idx j = 0; j < b[k].cols; ++j) c += std::abs(static_cast<double>(vs[k](i, j))) < thresholds[k];
                CHECK(batch.buf[k][static_cast<std::size_t>(i)] == static_cast<double>(c));
            }
    }

    // read_batch and first_nonfinite_batch on vectors (strided views of the same storage)
    {
        std::vector<psap::vector_view<const T>> vv;
        std::vector<std::size_t> sizes;
        for (const auto& m : b)
            if (m.rows > 0 && m.cols > 0) {
                vv.push_back(vs[&m - b.data()].row(0));
                sizes.push_back(static_cast<std::size_t>(m.cols));
            }
        outputs batch(sizes);
        cpu_backend::read_batch(std::span<const psap::vector_view<const T>>(vv), batch.all());
        for (std::size_t k = 0; k < vv.size(); ++k)
            for (idx i = 0; i < vv[k].size(); ++i) CHECK(same_bits(batch.buf[k][static_cast<std::size_t>(i)], static_cast<double>(vv[k][i])));
        std::vector<idx> first(vv.size(), 99);
        cpu_backend::first_nonfinite_batch(std::span<const psap::vector_view<const T>>(vv), std::span<idx>(first));
        for (auto f : first) CHECK(f == -1);
    }
}

template <class T>
void check_nonfinite(std::mt19937_64& g) {
    auto b = random_batch<T>(g);
    // Poison some views: a NaN or an Inf at random positions (sometimes several).
    std::vector<idx> expect(b.size(), -1);
    for (std::size_t k = 0; k < b.size(); ++k) {
        auto& m = b[k];
        if (m.rows == 0 || m.cols == 0 || g() % 3 == 0) continue;
        const int hits = 1 + static_cast<int>(g() % 3);
        for (int h = 0; h < hits; ++h) {
            const idx i = static_cast<idx>(g() % static_cast<std::uint64_t>(m.rows)), j = static_cast<idx>(g() % static_cast<std::uint64_t>(m.cols));
            m.at(i, j) = (g() % 2) ? std::numeric_limits<T>::quiet_NaN() : -std::numeric_limits<T>::infinity();
            expect[k] = expect[k] < 0 ? i : std::min(expect[k], i);
        }
    }
    const auto vs = views_of(b);
    std::vector<idx> got(b.size(), 99);
    cpu_backend::first_nonfinite_rows(std::span<const psap::matrix_view<const T>>(vs), std::span<idx>(got));
    for (std::size_t k = 0; k < b.size(); ++k) {
        INFO("view ", k, " (", b[k].rows, "x", b[k].cols, ")");
        CHECK(got[k] == expect[k]);
        CHECK(cpu_backend::first_nonfinite_row(vs[k]) == expect[k]);
    }
}

template <class T>
void check_writes(std::mt19937_64& g) {
    auto b = random_batch<T>(g);
    auto ref = b;
    std::vector<std::vector<idx>> lists;
    for (const auto& m : b) {
        std::vector<idx> l;
        for (idx r = 0; r < m.rows; ++r)
            if (g() % 2) l.push_back(r);
        if (l.size() > 1 && g() % 2) std::swap(l.front(), l.back());  // any order
        lists.push_back(std::move(l));
    }
    std::vector<std::span<const idx>> spans(lists.begin(), lists.end());
    std::vector<psap::matrix_view<T>> ws;
    for (auto& m : b) ws.push_back(m.view());

    // copy_rows_batch from fresh sources of the same shapes and other layouts
    auto src = random_batch<T>(g);
    src.resize(b.size());
    for (std::size_t k = 0; k < b.size(); ++k) {
        src[k].rows = b[k].rows;
        src[k].cols = b[k].cols;
        src[k].cs = 1;
        src[k].pad = 3;
        src[k].data.assign(static_cast<std::size_t>(std::max<idx>(src[k].rows * src[k].rs(), 1)), T(0));
        for (auto& x : src[k].data) x = random_value<T>(g);
    }
    const auto ss = views_of(src);
    cpu_backend::copy_rows_batch(std::span<const psap::matrix_view<const T>>(ss), std::span<const psap::matrix_view<T>>(ws),
                                 std::span<const std::span<const idx>>(spans));
    for (std::size_t k = 0; k < b.size(); ++k)
        for (idx r : lists[k])
            for (idx j = 0; j < b[k].cols; ++j) ref[k].at(r, j) = src[k].at(r, j);
    for (std::size_t k = 0; k < b.size(); ++k) CHECK(std::memcmp(b[k].data.data(), ref[k].data.data(), b[k].data.size() * sizeof(T)) == 0);

    // zero_rows_batch with every other list reversed
    for (auto& l : lists) std::reverse(l.begin(), l.end());
    spans.assign(lists.begin(), lists.end());
    cpu_backend::zero_rows_batch(std::span<const psap::matrix_view<T>>(ws), std::span<const std::span<const idx>>(spans));
    for (std::size_t k = 0; k < b.size(); ++k)
        for (idx r : lists[k])
            for (idx j = 0; j < b[k].cols; ++j) ref[k].at(r, j) = T(0);
    for (std::size_t k = 0; k < b.size(); ++k) CHECK(std::memcmp(b[k].data.data(), ref[k].data.data(), b[k].data.size() * sizeof(T)) == 0);
}

}  // namespace

TEST_CASE("cpu_backend batches: bitwise equal to psap::reduce and to one view at a time, for 1..4 threads") {
#if defined(PSAP_CPU_SIMD) && defined(__AVX512F__) && PSAP_CPU_SIMD_WIDTH == 512
    MESSAGE("reduction path under test: AVX-512, 512-bit registers");
#elif defined(PSAP_CPU_SIMD) && defined(__AVX512F__)
    MESSAGE("reduction path under test: AVX-512, 256-bit registers");
#elif defined(PSAP_CPU_SIMD)
    MESSAGE("reduction path under test: AVX");
#else
    MESSAGE("reduction path under test: scalar");
#endif
    std::mt19937_64 g(psap_test::seed());
    for (idx min_work : {idx{0}, cpu_threading{}.min_parallel_work})
        for (int threads = 1; threads <= 4; ++threads) {
            CAPTURE(min_work);
            CAPTURE(threads);
            const threading_scope ts(threads, min_work);
            for (int rep = 0; rep < 6; ++rep) {
                check_reductions<float>(g);
                check_reductions<double>(g);
                check_nonfinite<float>(g);
                check_nonfinite<double>(g);
                check_writes<float>(g);
                check_writes<double>(g);
            }
        }
}

namespace {

/// ResNet-56-like conv filter banks: `per_width` of each of 16, 32 and 64
/// filters of c * 9 random weights, large enough to be split at the default threshold.
std::vector<strided<float>> conv_like_batch(std::mt19937_64& g, int per_width) {
    std::vector<strided<float>> b;
    for (idx c : {16, 32, 64})
        for (int k = 0; k < per_width; ++k) {
            strided<float> m;
            m.rows = c;
            m.cols = c * 9;
            m.data.resize(static_cast<std::size_t>(m.rows * m.cols));
            for (auto& x : m.data) x = random_value<float>(g);
            b.push_back(std::move(m));
        }
    return b;
}

}  // namespace

TEST_CASE("cpu_backend batches: a large batch gives the same bits on every thread count") {
    std::mt19937_64 g(psap_test::seed() + 1);
    const auto b = conv_like_batch(g, 9);
    const auto vs = views_of(b);
    using V = psap::matrix_view<const float>;
    auto run = [&](int threads) {
        const threading_scope ts(threads, cpu_threading{}.min_parallel_work);
        outputs norms(row_counts(b));
        cpu_backend::row_sq_norms_batch(std::span<const V>(vs), norms.all());
        std::vector<std::size_t> sq;
        for (const auto& m : b) sq.push_back(static_cast<std::size_t>(m.rows * m.rows));
        outputs dist(sq);
        cpu_backend::pairwise_sq_distances_batch(std::span<const V>(vs), dist.all());
        return std::make_pair(norms.buf, dist.buf);
    };
    const auto one = run(1);
    for (int threads = 2; threads <= 4; ++threads) {
        const auto other = run(threads);
        for (std::size_t k = 0; k < b.size(); ++k) {
            CHECK(std::memcmp(one.first[k].data(), other.first[k].data(), one.first[k].size() * sizeof(double)) == 0);
            CHECK(std::memcmp(one.second[k].data(), other.second[k].data(), one.second[k].size() * sizeof(double)) == 0);
        }
    }
}

TEST_CASE("shared_work: a leader's batched calls are shared with its helpers, every chunk and background item runs once") {
#if defined(_OPENMP)
    // psap::pruner's step: thread 0 leads (its backend calls post their row
    // chunks) while the others run background items and take posted chunks first.
    std::mt19937_64 g(psap_test::seed() + 2);
    const auto b = conv_like_batch(g, 3);
    const auto vs = views_of(b);
    using V = psap::matrix_view<const float>;
    outputs serial(row_counts(b));
    {
        const threading_scope ts(1, 0);
        cpu_backend::row_sq_norms_batch(std::span<const V>(vs), serial.all());
    }
    struct tally {
        mutable std::vector<std::atomic<int>> runs;  // counted through the const context pointer
        explicit tally(std::size_t n) : runs(n) {}
    };
    for (int threads = 2; threads <= 4; ++threads) {
        CAPTURE(threads);
        const threading_scope ts(threads, 0);  // min_work 0: every backend call of the leader is shared
        constexpr int jobs = 40, background_items = 300;
        std::vector<tally> chunks;
        for (int j = 0; j < jobs; ++j) chunks.emplace_back(static_cast<std::size_t>(1 + j % 17));
        tally background(background_items);
        std::atomic<int> next{0};
        const auto item = [&] {
            const int k = next.fetch_add(1);
            if (k >= background_items) return false;
            background.runs[static_cast<std::size_t>(k)].fetch_add(1);
            return true;
        };
        std::vector<outputs> norms;
        for (int j = 0; j < jobs; ++j) norms.emplace_back(row_counts(b));
        psap::cpu_detail::shared_work work;
#pragma omp parallel num_threads(threads)
        {
            if (omp_get_thread_num() == 0) {
                {
                    const psap::cpu_detail::leading lead(work);
                    for (int j = 0; j < jobs; ++j) {
                        // a posted job of its own, then a batched backend call (for_rows)
                        auto& t = chunks[static_cast<std::size_t>(j)];
                        work.run([](const void* c, idx k) { static_cast<const tally*>(c)->runs[static_cast<std::size_t>(k)].fetch_add(1); },
                                 &t, static_cast<idx>(t.runs.size()));
                        cpu_backend::row_sq_norms_batch(std::span<const V>(vs), norms[static_cast<std::size_t>(j)].all());
                    }
                }
                work.retire();
                while (item()) {}
            } else {
                work.help(item);
            }
        }
        for (const auto& t : chunks)
            for (const auto& r : t.runs) CHECK(r.load() == 1);
        for (const auto& r : background.runs) CHECK(r.load() == 1);
        for (const auto& n : norms)
            for (std::size_t k = 0; k < b.size(); ++k)
                CHECK(std::memcmp(n.buf[k].data(), serial.buf[k].data(), serial.buf[k].size() * sizeof(double)) == 0);
    }
#else
    MESSAGE("skipped: built without OpenMP, there are no helpers to share with");
#endif
}

TEST_CASE_TEMPLATE("set_entries: the listed entries hold the value bit for bit (-0, NaN and equal values included), the rest untouched", T,
                   float, double) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    for (const T value : {T(0), T(-0.0), T(1.5)}) {
        CAPTURE(value);
        std::vector<T> x{T(-0.0), T(0), nan, T(1.5), T(2), T(-3)};
        const std::vector<T> before = x;
        const std::vector<idx> which{0, 1, 2, 3, 4};
        cpu_backend::set_entries(psap::vector_view<T>(x.data(), static_cast<idx>(x.size())), std::span<const idx>(which), value);
        for (std::size_t i = 0; i < 5; ++i) CHECK(std::memcmp(&x[i], &value, sizeof(T)) == 0);
        CHECK(std::memcmp(&x[5], &before[5], sizeof(T)) == 0);
    }
}

TEST_CASE("side_task: run once, by a helper or by the thread that needs it; its exception reaches that thread") {
    // Serial: run_or_wait runs it here; later calls neither run it again nor wait.
    {
        psap::cpu_detail::side_task t;
        int runs = 0;
        auto f = [&] { ++runs; };
        t.run_or_wait(f);
        t.run_or_wait(f);
        CHECK_FALSE(t.try_run(f));
        CHECK(runs == 1);
    }
    {
        psap::cpu_detail::side_task t;
        auto f = [] { throw psap::error("side task failed"); };
        CHECK(t.try_run(f));  // the exception is kept, not thrown here
        CHECK_THROWS_WITH_AS(t.run_or_wait(f), "side task failed", psap::error);
    }
#if defined(_OPENMP)
    // Threads race for it: exactly one runs it, and the waiting thread sees its result.
    for (int threads = 2; threads <= 4; ++threads) {
        CAPTURE(threads);
        for (int round = 0; round < 200; ++round) {
            psap::cpu_detail::side_task t;
            std::atomic<int> runs{0};
            std::vector<int> result(64, 0);
            bool seen = true;
            auto f = [&] {
                runs.fetch_add(1);
                for (std::size_t i = 0; i < result.size(); ++i) result[i] = static_cast<int>(i) + round;
            };
#pragma omp parallel num_threads(threads)
            {
                if (omp_get_thread_num() == 0) {
                    t.run_or_wait(f);
                    for (std::size_t i = 0; i < result.size(); ++i) seen = seen && result[i] == static_cast<int>(i) + round;
                } else {
                    t.try_run(f);
                }
            }
            CHECK(runs.load() == 1);
            CHECK(seen);
        }
    }
#endif
}

TEST_CASE("pairwise_sq_distances: double filters closer than float resolution keep their distance") {
    // Rows 1 + 2^-30 and 1 apart in one element: as floats both are 1. The
    // difference is exact in double (Sterbenz), so its square is 2^-60.
    const double eps = std::ldexp(1.0, -30);
    std::vector<double> w = {1.0 + eps, 0.5, 1.0, 0.5, 1.0, 0.5};  // 3 filters x 2
    std::vector<double> out(9);
    cpu_backend::pairwise_sq_distances(psap::filters(w.data(), 3, 2), std::span<double>(out));
    CHECK(out[0 * 3 + 1] == std::ldexp(1.0, -60));
    CHECK(out[1 * 3 + 0] == std::ldexp(1.0, -60));
    CHECK(out[0 * 3 + 2] == std::ldexp(1.0, -60));
    CHECK(out[1 * 3 + 2] == 0.0);
    // Float filters keep the float rounding: 1 + 2^-30 is 1 as a float.
    std::vector<float> f = {1.0f, 0.5f, 1.0f, 0.5f};
    std::vector<double> outf(4);
    cpu_backend::pairwise_sq_distances(psap::filters(f.data(), 2, 2), std::span<double>(outf));
    CHECK(outf[1] == 0.0);
    // Across 8 lanes and a tail (n = 11): sums of squared double differences
    // in the canonical order, each square fused into its lane's sum.
    std::vector<double> a(22);
    for (std::size_t j = 0; j < 11; ++j) a[j] = 1.0 + static_cast<double>(j + 1) * eps, a[11 + j] = 1.0;
    std::vector<double> d2(4);
    cpu_backend::pairwise_sq_distances(psap::filters(a.data(), 2, 11), std::span<double>(d2));
    double lane[8] = {};
    for (std::size_t j = 0; j < 11; ++j) lane[j % 8] = std::fma(static_cast<double>(j + 1) * eps, static_cast<double>(j + 1) * eps, lane[j % 8]);
    CHECK(d2[1] == psap::reduce::combine(lane));
    CHECK(d2[1] > 0.0);
}

TEST_CASE("cpu_backend batches: mismatched batches and bad row lists are errors") {
    std::vector<float> w(12, 1.0f);
    const psap::matrix_view<const float> v(w.data(), 3, 4);
    std::vector<double> out(3);
    const std::span<double> outs[1] = {out};
    const psap::matrix_view<const float> two[2] = {v, v};
    CHECK_THROWS_AS(cpu_backend::row_sq_norms_batch(std::span<const psap::matrix_view<const float>>(two), std::span<const std::span<double>>(outs)),
                    psap::error);
    std::vector<double> short_out(2);
    const std::span<double> short_outs[1] = {short_out};
    CHECK_THROWS_AS(cpu_backend::row_sq_norms_batch(std::span<const psap::matrix_view<const float>>(&v, 1),
                                                    std::span<const std::span<double>>(short_outs)),
                    psap::error);
    std::vector<float> d(12, 2.0f);
    const psap::matrix_view<float> dv(d.data(), 3, 4);
    const std::vector<idx> bad{0, 3};
    const std::span<const idx> lists[1] = {bad};
    CHECK_THROWS_AS(cpu_backend::zero_rows_batch(std::span<const psap::matrix_view<float>>(&dv, 1), std::span<const std::span<const idx>>(lists)),
                    psap::error);
    CHECK(d == std::vector<float>(12, 2.0f));  // checked before anything is written
}

TEST_CASE("cpu_threading: settings round-trip; small calls stay on the calling thread") {
    const cpu_threading saved = cpu_threading::get();
    cpu_threading::set({3, 1000});
    CHECK(cpu_threading::get().max_threads == 3);
    CHECK(cpu_threading::get().min_parallel_work == 1000);
    CHECK(cpu_threading::team_for(999) == 1);
#if defined(_OPENMP)
    CHECK(cpu_threading::team_for(1000) == 3);
    cpu_threading::set({0, 1000});
    CHECK(cpu_threading::team_for(1000) == omp_get_max_threads());
#endif
    cpu_threading::set(saved);
}

TEST_CASE("sqrt_each and add_bn_folded: bitwise equal to the scalar loops, NaN, -0 and negative variances included") {
    std::mt19937_64 g(psap_test::seed());
    std::uniform_real_distribution<double> u(-2.0, 4.0);
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const double special[] = {0.0, -0.0, nan, inf, -inf, -1e-300, 1e-300, 1.0};
    auto same = [](double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); };
    for (std::size_t n : {0u, 1u, 3u, 4u, 5u, 8u, 15u, 64u, 67u}) {
        CAPTURE(n);
        auto fill = [&](std::vector<double>& v) {
            v.resize(n);
            for (auto& x : v) x = (g() % 5 == 0) ? special[g() % std::size(special)] : u(g);
        };
        std::vector<double> x, gamma, norm, var, out;
        fill(x), fill(gamma), fill(norm), fill(var), fill(out);
        std::vector<double> xs = x;
        psap::cpu_detail::sqrt_each(xs);
        for (std::size_t i = 0; i < n; ++i) CHECK(same(xs[i], std::sqrt(x[i])));
        for (bool unit : {false, true}) {
            CAPTURE(unit);
            const double eps = unit ? 1e-3 : 1e-5;
            std::vector<double> got = out, want = out;
            psap::cpu_detail::add_bn_folded(got, gamma, norm, unit ? std::span<const double>() : std::span<const double>(var), eps);
            for (std::size_t i = 0; i < n; ++i)
                want[i] += std::abs(gamma[i]) * norm[i] / std::sqrt(std::max(unit ? 1.0 : var[i], 0.0) + eps);
            for (std::size_t i = 0; i < n; ++i) CHECK(same(got[i], want[i]));
        }
    }
}

TEST_CASE_TEMPLATE("first_nonfinite on vectors: the first NaN or +-Inf, contiguous and strided; the largest finite value is finite", T, float, double) {
    std::mt19937_64 g(psap_test::seed() + 31);
    const T specials_bad[] = {std::numeric_limits<T>::quiet_NaN(), -std::numeric_limits<T>::quiet_NaN(),
                              std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity()};
    const T specials_ok[] = {std::numeric_limits<T>::max(), -std::numeric_limits<T>::max(), std::numeric_limits<T>::denorm_min(),
                             T(-0.0), std::numeric_limits<T>::min()};
    std::vector<psap::vector_view<const T>> views;
    std::vector<std::vector<T>> store;
    std::vector<idx> expect;
    for (int rep = 0; rep < 200; ++rep) {
        const idx n = static_cast<idx>(g() % 71), stride = 1 + static_cast<idx>(g() % 2) * static_cast<idx>(g() % 3);
        std::vector<T> buf(static_cast<std::size_t>(std::max<idx>(n * stride, 1)), T(0.25));
        for (idx i = 0; i < n; ++i)
            if (g() % 4 == 0) buf[static_cast<std::size_t>(i * stride)] = specials_ok[g() % std::size(specials_ok)];
        const int hits = static_cast<int>(g() % 3);
        for (int h = 0; h < hits && n > 0; ++h)
            buf[static_cast<std::size_t>(static_cast<idx>(g() % static_cast<std::uint64_t>(n)) * stride)] = specials_bad[g() % std::size(specials_bad)];
        idx first = -1;
        for (idx i = 0; i < n && first < 0; ++i)
            if (!std::isfinite(static_cast<double>(buf[static_cast<std::size_t>(i * stride)]))) first = i;
        store.push_back(std::move(buf));
        views.emplace_back(store.back().data(), n, stride);
        expect.push_back(first);
        CAPTURE(n);
        CAPTURE(stride);
        CHECK(cpu_backend::first_nonfinite(views.back()) == first);
    }
    std::vector<idx> got(views.size(), 99);
    cpu_backend::first_nonfinite_batch(std::span<const psap::vector_view<const T>>(views), std::span<idx>(got));
    CHECK(got == expect);
    const auto poisoned = std::count_if(expect.begin(), expect.end(), [](idx e) { return e >= 0; });
    CHECK(poisoned > 20);  // both outcomes are exercised
    CHECK(poisoned < 180);
}
