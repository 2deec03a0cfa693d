#pragma once
/// \file cpu.hpp
/// The host backend: the arithmetic the policies ask for, on host views.
///
/// Reductions follow psap::reduce's canonical order (bitwise equal to the
/// CUDA backend); rows are independent, so the OpenMP split over rows cannot
/// change a result. Copies and zeroing use Eigen maps.

#include <psap/backend/reduce.hpp>
#include <psap/error.hpp>
#include <psap/tensor/view.hpp>

#include <Eigen/Core>

#include <cmath>
#include <concepts>
#include <type_traits>
#include <span>
#include <vector>

/// PSAP_OMP(clauses) expands to `#pragma omp clauses` when the translation
/// unit is compiled with OpenMP and to nothing otherwise, so a build without
/// OpenMP runs single-threaded and stays free of -Wunknown-pragmas warnings.
#if defined(_OPENMP)
#define PSAP_OMP_PRAGMA(x) _Pragma(#x)
#define PSAP_OMP(clauses) PSAP_OMP_PRAGMA(omp clauses)
#else
#define PSAP_OMP(clauses)
#endif

namespace psap {

struct cpu_backend {
    template <class T>
    using buffer = std::vector<T>;

    /// Below this many elements a parallel region costs more than it saves.
    static constexpr index parallel_threshold = 1 << 15;

    /// out[i] = sum_j op(w(i, j)) for every row i.
    template <class T, class Op>
    static void row_reduce(matrix_view<T> w, std::span<double> out, Op op) {
        check_rows(w.rows(), out.size(), "row_reduce");
        const index n = w.rows();
        [[maybe_unused]] const bool par = w.rows() * w.cols() >= parallel_threshold;
PSAP_OMP(parallel for schedule(static) if (par))
        for (index i = 0; i < n; ++i) out[i] = reduce::unary(w.row_data(i), w.col_stride(), w.cols(), op);
    }

    template <class T>
    static void row_sq_norms(matrix_view<T> w, std::span<double> out) {
        row_reduce(w, out, reduce::square{});
    }
    template <class T>
    static void row_abs_sums(matrix_view<T> w, std::span<double> out) {
        row_reduce(w, out, reduce::absolute{});
    }

    /// out[i] = <a(i, :), b(i, :)>.
    template <class T>
    static void row_dots(matrix_view<T> a, matrix_view<T> b, std::span<double> out) {
        if (a.rows() != b.rows() || a.cols() != b.cols())
            detail::fail("psap::cpu_backend::row_dots: shapes ", a.rows(), "x", a.cols(), " and ", b.rows(), "x", b.cols(),
                         " differ");
        check_rows(a.rows(), out.size(), "row_dots");
        const index n = a.rows();
        [[maybe_unused]] const bool par = a.rows() * a.cols() >= parallel_threshold;
PSAP_OMP(parallel for schedule(static) if (par))
        for (index i = 0; i < n; ++i)
            out[i] = reduce::binary(a.row_data(i), a.col_stride(), b.row_data(i), b.col_stride(), a.cols(), reduce::product{});
    }

    /// out (n x n, row-major) = squared Euclidean distances between rows.
    template <class T>
    static void pairwise_sq_distances(matrix_view<T> w, std::span<double> out) {
        const index n = w.rows();
        if (static_cast<index>(out.size()) != n * n)
            detail::fail("psap::cpu_backend::pairwise_sq_distances: output holds ", out.size(), " values, need ", n * n);
        [[maybe_unused]] const bool par = n * n * w.cols() >= parallel_threshold;
PSAP_OMP(parallel for schedule(dynamic, 4) if (par))
        for (index i = 0; i < n; ++i) {
            out[i * n + i] = 0.0;
            for (index j = i + 1; j < n; ++j) {
                const double d = reduce::binary(w.row_data(i), w.col_stride(), w.row_data(j), w.col_stride(), w.cols(),
                                                reduce::squared_difference{});
                out[i * n + j] = d;
                out[j * n + i] = d;
            }
        }
    }

    /// Per-entry values of a channel vector, widened to double.
    template <class T>
    static void read(vector_view<T> v, std::span<double> out) {
        check_rows(v.size(), out.size(), "read");
        for (index i = 0; i < v.size(); ++i) out[i] = static_cast<double>(v[i]);
    }
    /// acc[i] += |v[i]| (or v[i] when signed) for every channel: one observe() call.
    template <class T>
    static void accumulate(vector_view<T> v, std::span<double> acc, bool absolute) {
        check_rows(v.size(), acc.size(), "accumulate");
        for (index i = 0; i < v.size(); ++i) {
            const double x = static_cast<double>(v[i]);
            acc[i] += absolute ? std::abs(x) : x;
        }
    }
    template <class T>
    static void set_entries(vector_view<T> v, std::span<const index> which, T value) {
        for (index i : which) v[i] = value;
    }
    template <class T>
    static void scale_entries(vector_view<T> v, std::span<const index> which, T factor) {
        for (index i : which) v[i] *= factor;
    }

    /// grad[i] += lambda * sign(value[i]): the L1 subgradient (Network Slimming).
    template <class T>
    static void add_scaled_sign(vector_view<T> grad, vector_view<T> value, T lambda) {
        for (index i = 0; i < grad.size(); ++i) grad[i] += lambda * static_cast<T>((value[i] > 0) - (value[i] < 0));
    }

    /// Row operations used by the reconstruction policies.
    template <class T>
    static void scale_rows(matrix_view<T> w, std::span<const index> rows, T factor) {
        for (index r : rows) row_map(w, r) *= factor;
    }
    template <class T>
    static void zero_rows(matrix_view<T> w, std::span<const index> rows) {
        for (index r : rows) row_map(w, r).setZero();
    }
    /// dst(r, :) = src(r, :) for the listed rows (snapshots and restores).
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_rows(matrix_view<S> src, matrix_view<T> dst, std::span<const index> rows) {
        if (src.rows() != dst.rows() || src.cols() != dst.cols())
            detail::fail("psap::cpu_backend::copy_rows: shapes ", src.rows(), "x", src.cols(), " and ", dst.rows(), "x", dst.cols(),
                         " differ");
        for (index r : rows) row_map(dst, r) = row_map(src, r);
    }
    /// dst[i] = src[i] for the listed entries.
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_entries(vector_view<S> src, vector_view<T> dst, std::span<const index> which) {
        for (index i : which) dst[i] = src[i];
    }
    /// Number of elements with |w| < threshold in each row.
    template <class T>
    static void row_count_below(matrix_view<T> w, double threshold, std::span<double> out) {
        check_rows(w.rows(), out.size(), "row_count_below");
        for (index i = 0; i < w.rows(); ++i) {
            index c = 0;
            for (index j = 0; j < w.cols(); ++j) c += std::abs(static_cast<double>(w(i, j))) < threshold;
            out[i] = static_cast<double>(c);
        }
    }

    /// Index of the first row holding a NaN or Inf, or -1.
    template <class T>
    static index first_nonfinite_row(matrix_view<T> w) {
        for (index i = 0; i < w.rows(); ++i)
            if (!row_map(w, i).allFinite()) return i;
        return -1;
    }
    template <class T>
    static index first_nonfinite(vector_view<T> v) {
        for (index i = 0; i < v.size(); ++i)
            if (!std::isfinite(static_cast<double>(v[i]))) return i;
        return -1;
    }

private:
    static void check_rows(index rows, std::size_t out, const char* what) {
        if (static_cast<index>(out) != rows)
            detail::fail("psap::cpu_backend::", what, ": output holds ", out, " values for ", rows, " rows");
    }
    template <class T>
    static auto row_map(matrix_view<T> w, index r) {
        using Row = std::conditional_t<std::is_const_v<T>, const Eigen::Matrix<std::remove_const_t<T>, 1, Eigen::Dynamic>,
                                       Eigen::Matrix<T, 1, Eigen::Dynamic>>;
        return Eigen::Map<Row, 0, Eigen::InnerStride<>>(w.row_data(r), w.cols(), Eigen::InnerStride<>(w.col_stride()));
    }
};

/// The backend that serves views tagged with memory space M.
template <memory_space M>
struct backend_for;
template <>
struct backend_for<host_memory> {
    using type = cpu_backend;
};
template <memory_space M>
using backend_t = typename backend_for<M>::type;

}  // namespace psap
