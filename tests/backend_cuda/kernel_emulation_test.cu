// The CUDA kernels' bodies (psap/backend/cuda/kernels.cuh), run on the host:
// every block of a launch is emulated thread by thread, phase by phase (the
// writes to shared memory, the barrier, the combine), and compared bit for
// bit with psap::reduce, which is what the CPU backend computes. This checks
// the kernels' index arithmetic and summation order without a GPU; the real
// launches are tested against the CPU backend in tests/backend/cuda_backend_test.cpp.
#include <psap/backend/cuda/kernels.cuh>
#include <psap/backend/reduce.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

namespace k = psap::cuda::kernels;
using psap::index;

int failures = 0, checks = 0;

template <class T>
bool same_bits(T a, T b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}
#define EXPECT(cond, ...)                                             \
    do {                                                              \
        ++checks;                                                     \
        if (!(cond)) {                                                \
            ++failures;                                               \
            std::printf("FAILED %s:%d: %s  ", __FILE__, __LINE__, #cond); \
            std::printf(__VA_ARGS__);                                 \
            std::printf("\n");                                        \
        }                                                             \
    } while (0)

/// One row-reduction launch of `items` rows (or pairs): every block runs
/// phase 1 for all its threads into its shared array, then phase 2.
template <class P, class Part, class Store>
void emulate(index items, Part part, Store store) {
    const index blocks = (items + k::rows_per_block - 1) / k::rows_per_block;
    for (index b = 0; b < blocks; ++b) {
        P shared[k::rows_per_block][k::lanes];
        for (auto& row : shared)
            for (auto& x : row) x = P(-12345);  // poison: every slot must be written
        for (int t = 0; t < k::block_threads; ++t) {
            const auto tl = k::row_lane_of(b, t);
            shared[tl.local][tl.lane] = part(tl);
        }
        for (int t = 0; t < k::block_threads; ++t) {
            const auto tl = k::row_lane_of(b, t);
            store(tl, shared[tl.local]);
        }
    }
}

struct layout {
    index rows, cols, cs, pad;
    index rs() const { return cols * cs + pad; }
    std::size_t storage() const { return static_cast<std::size_t>(rows * rs()); }
};

template <class T>
std::vector<T> random_values(std::size_t n, std::mt19937_64& g) {
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto r = g() % 8;
        v[i] = r == 0 ? T(0) : r == 1 ? -T(0) : r == 2 ? static_cast<T>(1e-41 * normal(g)) : r == 3 ? static_cast<T>(1e4 * normal(g))
                                                                                                    : static_cast<T>(normal(g));
    }
    return v;
}

template <class T>
void reductions(const layout& l, std::mt19937_64& g) {
    const auto a = random_values<T>(l.storage(), g), b = random_values<T>(l.storage(), g);
    const k::mat<const T> A{a.data(), l.rows, l.cols, l.rs(), l.cs}, B{b.data(), l.rows, l.cols, l.rs(), l.cs};
    const auto n = static_cast<std::size_t>(l.rows);
    const std::string where = std::to_string(l.rows) + "x" + std::to_string(l.cols) + " cs " + std::to_string(l.cs) + " pad " +
                              std::to_string(l.pad) + (sizeof(T) == 4 ? " float" : " double");

    // row_reduce (square, absolute) against psap::reduce::unary
    auto unary = [&](auto op, const char* name) {
        std::vector<double> out(n, -1.0);
        emulate<double>(
            l.rows, [&](k::row_lane t) { return k::row_reduce_part(A, op, t); },
            [&](k::row_lane t, const double* part) { k::row_store(l.rows, t, part, out.data()); });
        for (std::size_t i = 0; i < n; ++i) {
            const double ref = psap::reduce::unary(a.data() + i * static_cast<std::size_t>(l.rs()), l.cs, l.cols, op);
            EXPECT(same_bits(out[i], ref), "%s %s row %zu: %.17g vs %.17g", name, where.c_str(), i, out[i], ref);
        }
    };
    unary(psap::reduce::square{}, "row_sq_norms");
    unary(psap::reduce::absolute{}, "row_abs_sums");

    // row_dots against psap::reduce::binary
    {
        std::vector<double> out(n, -1.0);
        emulate<double>(
            l.rows, [&](k::row_lane t) { return k::row_dots_part(A, B, t); },
            [&](k::row_lane t, const double* part) { k::row_store(l.rows, t, part, out.data()); });
        for (std::size_t i = 0; i < n; ++i) {
            const auto off = i * static_cast<std::size_t>(l.rs());
            const double ref = psap::reduce::binary(a.data() + off, l.cs, b.data() + off, l.cs, l.cols, psap::reduce::product{});
            EXPECT(same_bits(out[i], ref), "row_dots %s row %zu", where.c_str(), i);
        }
    }

    // pairwise_sq_distances against the CPU backend's loop
    if (l.rows <= 100) {
        std::vector<double> out(n * n, -1.0);
        emulate<double>(
            l.rows * l.rows, [&](k::row_lane t) { return k::pairwise_part(A, t); },
            [&](k::row_lane t, const double* part) { k::pairwise_store(l.rows, t, part, out.data()); });
        for (std::size_t i = 0; i < n; ++i) {
            EXPECT(same_bits(out[i * n + i], 0.0), "pairwise %s diagonal %zu", where.c_str(), i);
            for (std::size_t j = i + 1; j < n; ++j) {
                const double ref = psap::reduce::binary(a.data() + i * static_cast<std::size_t>(l.rs()), l.cs,
                                                        a.data() + j * static_cast<std::size_t>(l.rs()), l.cs, l.cols,
                                                        psap::reduce::squared_difference{});
                EXPECT(same_bits(out[i * n + j], ref) && same_bits(out[j * n + i], ref), "pairwise %s (%zu, %zu)", where.c_str(), i, j);
            }
        }
    }

    // row_count_below against a plain count
    for (double threshold : {0.0, 1e-30, 0.5, 1.0}) {
        std::vector<double> out(n, -1.0);
        emulate<index>(
            l.rows, [&](k::row_lane t) { return k::count_below_part(A, threshold, t); },
            [&](k::row_lane t, const index* part) { k::count_store(l.rows, t, part, out.data()); });
        for (std::size_t i = 0; i < n; ++i) {
            index c = 0;
            for (index j = 0; j < l.cols; ++j)
                c += std::abs(static_cast<double>(a[i * static_cast<std::size_t>(l.rs()) + static_cast<std::size_t>(j * l.cs)])) < threshold;
            EXPECT(out[i] == static_cast<double>(c), "row_count_below %s row %zu", where.c_str(), i);
        }
    }
}

/// Calls f(list) with the list in memory (`const index*`) or, with
/// `by_value`, as a k::inline_list (lists longer than its capacity: in memory).
template <class F>
void with_list(const std::vector<index>& list, bool by_value, F f) {
    if (by_value && list.size() <= static_cast<std::size_t>(k::inline_list::capacity)) {
        k::inline_list l{};
        std::copy(list.begin(), list.end(), l.v);
        f(l);
    } else {
        f(static_cast<const index*>(list.data()));
    }
}

template <class T>
void writes_with(const layout& l, std::mt19937_64& g, bool by_value) {
    if (l.rows == 0 || l.cols == 0) return;
    auto w = random_values<T>(l.storage(), g);
    auto ref = w;
    const k::mat<T> W{w.data(), l.rows, l.cols, l.rs(), l.cs};
    std::vector<index> rows;
    for (index r = l.rows - 1; r >= 0; r -= 2) rows.push_back(r);  // descending, every other row
    const index count = static_cast<index>(rows.size());
    auto at = [&](std::vector<T>& v, index r, index j) -> T& { return v[static_cast<std::size_t>(r * l.rs() + j * l.cs)]; };
    auto same = [&] { return std::memcmp(w.data(), ref.data(), w.size() * sizeof(T)) == 0; };
    const std::string where = std::to_string(l.rows) + "x" + std::to_string(l.cols) + (by_value ? " (list by value)" : " (list in memory)");

    with_list(rows, by_value, [&](const auto& list) {
        for (index e = 0; e < count * l.cols; ++e) k::scale_row_element(W, list, T(0.3), e);
    });
    for (index r : rows)
        for (index j = 0; j < l.cols; ++j) at(ref, r, j) *= T(0.3);
    EXPECT(same(), "scale_rows %s", where.c_str());

    auto src = random_values<T>(static_cast<std::size_t>(l.rows * l.cols), g);
    const k::mat<const T> S{src.data(), l.rows, l.cols, l.cols, 1};
    with_list(rows, by_value, [&](const auto& list) {
        for (index e = 0; e < count * l.cols; ++e) k::copy_row_element(S, W, list, e);
    });
    for (index r : rows)
        for (index j = 0; j < l.cols; ++j) at(ref, r, j) = src[static_cast<std::size_t>(r * l.cols + j)];
    EXPECT(same(), "copy_rows %s", where.c_str());

    with_list(rows, by_value, [&](const auto& list) {
        for (index e = 0; e < count * l.cols; ++e) k::zero_row_element(W, list, e);
    });
    for (index r : rows)
        for (index j = 0; j < l.cols; ++j) at(ref, r, j) = T(0);
    EXPECT(same(), "zero_rows %s", where.c_str());

    // entries of a stride-2 vector
    const index n = static_cast<index>(w.size()) / 2;
    const k::vec<T> V{w.data(), n, 2};
    std::vector<index> which;
    for (index i = n - 1; i >= 0; i -= 3) which.push_back(i);
    const index m = static_cast<index>(which.size());
    with_list(which, by_value, [&](const auto& list) {
        for (index e = 0; e < m; ++e) k::scale_one(V, list, T(-1.5), e);
    });
    for (index i : which) ref[static_cast<std::size_t>(2 * i)] *= T(-1.5);
    EXPECT(same(), "scale_entries %s", where.c_str());
    with_list(which, by_value, [&](const auto& list) {
        for (index e = 0; e < m; ++e) k::set_one(V, list, T(7), e);
    });
    for (index i : which) ref[static_cast<std::size_t>(2 * i)] = T(7);
    EXPECT(same(), "set_entries %s", where.c_str());
    auto other = random_values<T>(static_cast<std::size_t>(n), g);
    with_list(which, by_value, [&](const auto& list) {
        for (index e = 0; e < m; ++e) k::copy_entry(k::vec<const T>{other.data(), n, 1}, V, list, e);
    });
    for (index i : which) ref[static_cast<std::size_t>(2 * i)] = other[static_cast<std::size_t>(i)];
    EXPECT(same(), "copy_entries %s", where.c_str());

    std::vector<double> read(static_cast<std::size_t>(n));
    for (index e = 0; e < n; ++e) k::read_one(k::vec<const T>{w.data(), n, 2}, read.data(), e);
    bool ok = true;
    for (index i = 0; i < n; ++i) ok = ok && same_bits(read[static_cast<std::size_t>(i)], static_cast<double>(w[static_cast<std::size_t>(2 * i)]));
    EXPECT(ok, "read %s", where.c_str());

    auto grad = random_values<T>(static_cast<std::size_t>(n), g);
    auto gref = grad;
    for (index e = 0; e < n; ++e) k::add_scaled_sign_one(k::vec<T>{grad.data(), n, 1}, k::vec<const T>{w.data(), n, 2}, T(1e-3), e);
    for (index i = 0; i < n; ++i) {
        const T v = w[static_cast<std::size_t>(2 * i)];
        gref[static_cast<std::size_t>(i)] += T(1e-3) * static_cast<T>((v > 0) - (v < 0));
    }
    EXPECT(std::memcmp(grad.data(), gref.data(), grad.size() * sizeof(T)) == 0, "add_scaled_sign %s", where.c_str());
}

/// The write bodies with the index list in memory (`const index*`) and, when
/// it fits, passed by value (k::inline_list), as the launchers do.
template <class T>
void writes(const layout& l, std::mt19937_64& g) {
    writes_with<T>(l, g, false);
    writes_with<T>(l, g, true);
}

/// The batch bodies: several views (empty ones too) in one emulated launch,
/// against psap::reduce view by view, as the single-view bodies are.
template <class T>
void batches(const std::vector<layout>& ls, std::mt19937_64& g) {
    std::vector<std::vector<T>> a, b;
    std::vector<k::mat<const T>> A, Bv;
    std::vector<index> rows{0}, elements{0};
    for (const auto& l : ls) {
        a.push_back(random_values<T>(l.storage(), g));
        b.push_back(random_values<T>(l.storage(), g));
    }
    for (std::size_t v = 0; v < ls.size(); ++v) {
        const auto& l = ls[v];
        A.push_back({a[v].data(), l.rows, l.cols, l.rs(), l.cs});
        Bv.push_back({b[v].data(), l.rows, l.cols, l.rs(), l.cs});
        rows.push_back(rows.back() + l.rows);
        elements.push_back(elements.back() + l.rows * l.cols);
    }
    const index count = static_cast<index>(ls.size()), total = rows.back();
    const k::batch<k::mat<const T>> batch{A.data(), rows.data(), count};
    const char* type = sizeof(T) == 4 ? "float" : "double";

    for (index e = 0; e < total; ++e) {
        const index v = k::batch_view_of(rows.data(), count, e);
        EXPECT(rows[static_cast<std::size_t>(v)] <= e && e < rows[static_cast<std::size_t>(v) + 1], "batch_view_of %s item %lld", type,
               static_cast<long long>(e));
    }
    auto check_rows = [&](const std::vector<double>& out, auto ref, const char* name) {
        for (std::size_t v = 0; v < ls.size(); ++v)
            for (index i = 0; i < ls[v].rows; ++i) {
                const double r = ref(v, i);
                const double got = out[static_cast<std::size_t>(rows[v] + i)];
                EXPECT(same_bits(got, r), "%s %s view %zu row %lld: %.17g vs %.17g", name, type, v, static_cast<long long>(i), got, r);
            }
    };
    auto row_of = [&](const std::vector<std::vector<T>>& x, std::size_t v, index i) { return x[v].data() + i * ls[v].rs(); };

    auto unary = [&](auto op, const char* name) {
        std::vector<double> out(static_cast<std::size_t>(total), -1.0);
        emulate<double>(
            total, [&](k::row_lane t) { return k::batch_reduce_part(batch, total, op, t); },
            [&](k::row_lane t, const double* part) { k::row_store(total, t, part, out.data()); });
        check_rows(out, [&](std::size_t v, index i) { return psap::reduce::unary(row_of(a, v, i), ls[v].cs, ls[v].cols, op); }, name);
    };
    unary(psap::reduce::square{}, "batch row_sq_norms");
    unary(psap::reduce::absolute{}, "batch row_abs_sums");
    {
        std::vector<double> out(static_cast<std::size_t>(total), -1.0);
        emulate<double>(
            total, [&](k::row_lane t) { return k::batch_dots_part(batch, Bv.data(), total, t); },
            [&](k::row_lane t, const double* part) { k::row_store(total, t, part, out.data()); });
        check_rows(out,
                   [&](std::size_t v, index i) {
                       return psap::reduce::binary(row_of(a, v, i), ls[v].cs, row_of(b, v, i), ls[v].cs, ls[v].cols, psap::reduce::product{});
                   },
                   "batch row_dots");
    }
    {
        std::vector<double> thresholds;
        for (std::size_t v = 0; v < ls.size(); ++v) thresholds.push_back(std::vector<double>{0.0, 1e-30, 0.5, 1.0}[v % 4]);
        std::vector<double> out(static_cast<std::size_t>(total), -1.0);
        emulate<index>(
            total, [&](k::row_lane t) { return k::batch_count_below_part(batch, thresholds.data(), total, t); },
            [&](k::row_lane t, const index* part) { k::count_store(total, t, part, out.data()); });
        check_rows(out,
                   [&](std::size_t v, index i) {
                       index c = 0;
                       for (index j = 0; j < ls[v].cols; ++j) c += std::abs(static_cast<double>(row_of(a, v, i)[j * ls[v].cs])) < thresholds[v];
                       return static_cast<double>(c);
                   },
                   "batch row_count_below");
    }
    // read: the rows of every view as vectors (stride cs)
    {
        std::vector<k::vec<const T>> V;
        std::vector<index> entries{0};
        for (std::size_t v = 0; v < ls.size(); ++v)
            if (ls[v].rows > 0) {
                V.push_back({a[v].data(), ls[v].cols, ls[v].cs});
                entries.push_back(entries.back() + ls[v].cols);
            }
        const k::batch<k::vec<const T>> vb{V.data(), entries.data(), static_cast<index>(V.size())};
        std::vector<double> out(static_cast<std::size_t>(entries.back()), -1.0);
        for (index e = 0; e < entries.back(); ++e) k::batch_read_one(vb, out.data(), e);
        bool ok = true;
        for (std::size_t v = 0; v < V.size(); ++v)
            for (index i = 0; i < V[v].n; ++i)
                ok = ok && same_bits(out[static_cast<std::size_t>(entries[v] + i)], static_cast<double>(V[v].p[i * V[v].s]));
        EXPECT(ok, "batch read %s", type);
    }
    // finiteness: poison one element of every other non-empty view
    {
        std::vector<index> expect(ls.size(), -1);
        for (std::size_t v = 0; v < ls.size(); v += 2)
            if (ls[v].rows > 0 && ls[v].cols > 0) {
                const index i = static_cast<index>(g() % static_cast<std::uint64_t>(ls[v].rows));
                const index j = static_cast<index>(g() % static_cast<std::uint64_t>(ls[v].cols));
                a[v][static_cast<std::size_t>(i * ls[v].rs() + j * ls[v].cs)] = std::numeric_limits<T>::quiet_NaN();
                expect[v] = i;
            }
        const k::batch<k::mat<const T>> eb{A.data(), elements.data(), count};
        std::vector<index> first(ls.size(), -1);
        for (index e = 0; e < elements.back(); ++e) {
            const auto r = k::batch_nonfinite_row_one(eb, e);
            if (r.view >= 0) {
                auto& f = first[static_cast<std::size_t>(r.view)];
                f = f < 0 ? r.row : std::min(f, r.row);
            }
        }
        EXPECT(first == expect, "batch first_nonfinite_rows %s", type);
    }
}

}  // namespace

int main() {
    std::uint64_t seed = 20261128;
    if (const char* e = std::getenv("PSAP_TEST_SEED")) seed = std::strtoull(e, nullptr, 10);
    std::printf("psap CUDA kernel bodies on the host: seed %llu (set PSAP_TEST_SEED to change)\n", static_cast<unsigned long long>(seed));
    std::mt19937_64 g(seed);
    const std::vector<layout> layouts = {{1, 1, 1, 0},  {7, 8, 1, 0},   {33, 9, 1, 3}, {64, 576, 1, 0}, {5, 17, 3, 2},
                                         {100, 1, 1, 0}, {3, 0, 1, 0},  {0, 5, 1, 0},  {40, 23, 2, 1}, {129, 15, 1, 1}, {700, 3, 1, 1}};
    for (const auto& l : layouts) {
        reductions<float>(l, g);
        reductions<double>(l, g);
        writes<float>(l, g);
        writes<double>(l, g);
    }
    batches<float>(layouts, g);
    batches<double>(layouts, g);
    batches<float>({{0, 4, 1, 0}, {5, 17, 3, 2}, {0, 0, 1, 0}, {64, 576, 1, 0}, {1, 1, 1, 0}}, g);
    // a sum whose value depends on the order: the bodies must follow reduce's lanes
    {
        std::vector<float> v(64, 1.0f);
        v[0] = 1e16f;
        v[1] = -1e16f;
        const k::mat<const float> A{v.data(), 1, 64, 64, 1};
        double out = -1;
        emulate<double>(
            1, [&](k::row_lane t) { return k::row_reduce_part(A, psap::reduce::absolute{}, t); },
            [&](k::row_lane t, const double* part) { k::row_store(1, t, part, &out); });
        volatile psap::index n = 64;  // a run-time length: with a constant one g++ 12 warns (falsely) inside reduce::binary's tail loop
        EXPECT(same_bits(out, psap::reduce::unary(v.data(), 1, n, psap::reduce::absolute{})), "order-sensitive sum");
    }
    // non-finite detection
    EXPECT(!k::is_finite(std::numeric_limits<float>::quiet_NaN()) && !k::is_finite(std::numeric_limits<double>::infinity()) &&
               k::is_finite(1e-41f),
           "is_finite");
    std::printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
