#pragma once
/// \file cuda.hpp
/// The CUDA backend: the arithmetic the policies ask for, on views tagged
/// psap::device_memory. Including this header makes backend_t<device_memory>
/// psap::cuda_backend, so a pruner over network<T, device_memory> runs its
/// policies on the GPU; nothing else changes (no global switch).
///
/// Plain C++ (no nvcc needed): it calls the host launchers of the psap::cuda
/// library (link psap::cuda) on psap::cuda::current_stream() and throws
/// psap::error, naming the operation, when one reports an error. T is float or
/// double. Outputs the CPU backend writes into std::span<double> stay host
/// spans; index lists are host spans. Reductions are bitwise equal to
/// psap::cpu_backend's (psap::reduce's order; see docs/cuda.md).

#include <psap/backend/cpu.hpp>
#include <psap/backend/cuda/device_buffer.hpp>
#include <psap/backend/cuda/launch.hpp>
#include <psap/backend/cuda/status.hpp>
#include <psap/backend/reduce.hpp>
#include <psap/error.hpp>
#include <psap/tensor/device.hpp>
#include <psap/tensor/view.hpp>

#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace psap {

/// Element types the CUDA backend's kernels are compiled for.
template <class T>
concept cuda_scalar = std::same_as<std::remove_const_t<T>, float> || std::same_as<std::remove_const_t<T>, double>;

struct cuda_backend {
    /// Owning device storage (snapshots), zero-initialised, copyable.
    template <class T>
    using buffer = cuda::device_buffer<T>;

    /// The stream psap launches on in this thread (see psap::cuda::set_stream).
    static cudaStream_t stream() noexcept { return cuda::current_stream(); }

    /// out[i] = sum_j op(w(i, j)) for op = psap::reduce::square or psap::reduce::absolute.
    template <class T, class Op>
    static void row_reduce(matrix_view<T, device_memory> w, std::span<double> out, Op) {
        scalar_check<T>();
        static_assert(std::same_as<Op, reduce::square> || std::same_as<Op, reduce::absolute>,
                      "psap::cuda_backend::row_reduce: the device kernels implement reduce::square and reduce::absolute only");
        check_rows(w.rows(), out.size(), "row_reduce");
        using V = std::remove_const_t<T>;
        const auto op = std::same_as<Op, reduce::square> ? cuda::row_op::square : cuda::row_op::absolute;
        check(cuda::row_reduce<V>(w, op, out.data(), stream()), "row_reduce");
    }

    template <class T>
    static void row_sq_norms(matrix_view<T, device_memory> w, std::span<double> out) {
        row_reduce(w, out, reduce::square{});
    }
    template <class T>
    static void row_abs_sums(matrix_view<T, device_memory> w, std::span<double> out) {
        row_reduce(w, out, reduce::absolute{});
    }

    /// out[i] = <a(i, :), b(i, :)>.
    template <class T>
    static void row_dots(matrix_view<T, device_memory> a, matrix_view<T, device_memory> b, std::span<double> out) {
        scalar_check<T>();
        if (a.rows() != b.rows() || a.cols() != b.cols())
            detail::fail("psap::cuda_backend::row_dots: shapes ", a.rows(), "x", a.cols(), " and ", b.rows(), "x", b.cols(), " differ");
        check_rows(a.rows(), out.size(), "row_dots");
        using V = std::remove_const_t<T>;
        check(cuda::row_dots<V>(a, b, out.data(), stream()), "row_dots");
    }

    /// out (n x n, row-major, host) = squared Euclidean distances between rows.
    template <class T>
    static void pairwise_sq_distances(matrix_view<T, device_memory> w, std::span<double> out) {
        scalar_check<T>();
        const index n = w.rows();
        if (static_cast<index>(out.size()) != n * n)
            detail::fail("psap::cuda_backend::pairwise_sq_distances: output holds ", out.size(), " values, need ", n * n);
        using V = std::remove_const_t<T>;
        check(cuda::pairwise_sq_distances<V>(w, out.data(), stream()), "pairwise_sq_distances");
    }

    /// Per-entry values of a channel vector, widened to double (host output).
    template <class T>
    static void read(vector_view<T, device_memory> v, std::span<double> out) {
        scalar_check<T>();
        check_rows(v.size(), out.size(), "read");
        using V = std::remove_const_t<T>;
        check(cuda::read<V>(v, out.data(), stream()), "read");
    }
    /// acc[i] += |v[i]| (or v[i] when signed), acc on the host.
    template <class T>
    static void accumulate(vector_view<T, device_memory> v, std::span<double> acc, bool absolute) {
        check_rows(v.size(), acc.size(), "accumulate");
        std::vector<double> x(acc.size());
        read(v, x);
        for (std::size_t i = 0; i < x.size(); ++i) acc[i] += absolute ? std::abs(x[i]) : x[i];
    }
    template <class T>
    static void set_entries(vector_view<T, device_memory> v, std::span<const index> which, T value) {
        scalar_check<T>();
        check(cuda::set_entries<T>(v, which.data(), static_cast<index>(which.size()), value, stream()), "set_entries");
    }
    /// v[i] *= factor for the listed (distinct) entries.
    template <class T>
    static void scale_entries(vector_view<T, device_memory> v, std::span<const index> which, T factor) {
        scalar_check<T>();
        check(cuda::scale_entries<T>(v, which.data(), static_cast<index>(which.size()), factor, stream()), "scale_entries");
    }

    /// grad[i] += lambda * sign(value[i]): the L1 subgradient (Network Slimming).
    template <class T>
    static void add_scaled_sign(vector_view<T, device_memory> grad, vector_view<T, device_memory> value, T lambda) {
        scalar_check<T>();
        check(cuda::add_scaled_sign<T>(grad, value, lambda, stream()), "add_scaled_sign");
    }

    /// Row operations used by the reconstruction policies (rows: host list, distinct for scale_rows).
    template <class T>
    static void scale_rows(matrix_view<T, device_memory> w, std::span<const index> rows, T factor) {
        scalar_check<T>();
        check(cuda::scale_rows<T>(w, rows.data(), static_cast<index>(rows.size()), factor, stream()), "scale_rows");
    }
    template <class T>
    static void zero_rows(matrix_view<T, device_memory> w, std::span<const index> rows) {
        scalar_check<T>();
        check(cuda::zero_rows<T>(w, rows.data(), static_cast<index>(rows.size()), stream()), "zero_rows");
    }
    /// dst(r, :) = src(r, :) for the listed rows (snapshots and restores).
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_rows(matrix_view<S, device_memory> src, matrix_view<T, device_memory> dst, std::span<const index> rows) {
        scalar_check<T>();
        if (src.rows() != dst.rows() || src.cols() != dst.cols())
            detail::fail("psap::cuda_backend::copy_rows: shapes ", src.rows(), "x", src.cols(), " and ", dst.rows(), "x", dst.cols(),
                         " differ");
        check(cuda::copy_rows<T>(src, dst, rows.data(), static_cast<index>(rows.size()), stream()), "copy_rows");
    }
    /// dst[i] = src[i] for the listed entries.
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_entries(vector_view<S, device_memory> src, vector_view<T, device_memory> dst, std::span<const index> which) {
        scalar_check<T>();
        check(cuda::copy_entries<T>(src, dst, which.data(), static_cast<index>(which.size()), stream()), "copy_entries");
    }
    /// Number of elements with |w| < threshold in each row (host output).
    template <class T>
    static void row_count_below(matrix_view<T, device_memory> w, double threshold, std::span<double> out) {
        scalar_check<T>();
        check_rows(w.rows(), out.size(), "row_count_below");
        using V = std::remove_const_t<T>;
        check(cuda::row_count_below<V>(w, threshold, out.data(), stream()), "row_count_below");
    }

    /// Index of the first row holding a NaN or Inf, or -1.
    template <class T>
    static index first_nonfinite_row(matrix_view<T, device_memory> w) {
        scalar_check<T>();
        using V = std::remove_const_t<T>;
        index r = -1;
        check(cuda::first_nonfinite_row<V>(w, &r, stream()), "first_nonfinite_row");
        return r;
    }
    template <class T>
    static index first_nonfinite(vector_view<T, device_memory> v) {
        scalar_check<T>();
        using V = std::remove_const_t<T>;
        index r = -1;
        check(cuda::first_nonfinite<V>(v, &r, stream()), "first_nonfinite");
        return r;
    }

    // ------------------------------------------------------------ batches
    // The CPU backend's batched forms: one launch over the rows (entries) of
    // all views, one copy of all results and one synchronisation, instead of
    // one round trip per view; the writes are launched per view and never wait.

    template <class T, class Op>
    static void row_reduce_batch(std::span<const matrix_view<T, device_memory>> ws, std::span<const std::span<double>> outs, Op) {
        scalar_check<T>();
        static_assert(std::same_as<Op, reduce::square> || std::same_as<Op, reduce::absolute>,
                      "psap::cuda_backend::row_reduce_batch: the device kernels implement reduce::square and reduce::absolute only");
        check_batch(ws.size(), outs.size(), "row_reduce_batch");
        for (std::size_t k = 0; k < ws.size(); ++k) check_rows(ws[k].rows(), outs[k].size(), "row_reduce_batch");
        using V = std::remove_const_t<T>;
        const auto op = std::same_as<Op, reduce::square> ? cuda::row_op::square : cuda::row_op::absolute;
        const auto views = const_views(ws);
        const auto dst = out_pointers(outs);
        check(cuda::row_reduce_batch<V>(views.data(), static_cast<index>(views.size()), op, dst.data(), stream()), "row_reduce_batch");
    }
    template <class T>
    static void row_sq_norms_batch(std::span<const matrix_view<T, device_memory>> ws, std::span<const std::span<double>> outs) {
        row_reduce_batch(ws, outs, reduce::square{});
    }
    template <class T>
    static void row_abs_sums_batch(std::span<const matrix_view<T, device_memory>> ws, std::span<const std::span<double>> outs) {
        row_reduce_batch(ws, outs, reduce::absolute{});
    }

    template <class T>
    static void row_dots_batch(std::span<const matrix_view<T, device_memory>> as, std::span<const matrix_view<T, device_memory>> bs,
                               std::span<const std::span<double>> outs) {
        scalar_check<T>();
        check_batch(as.size(), bs.size(), "row_dots_batch");
        check_batch(as.size(), outs.size(), "row_dots_batch");
        for (std::size_t k = 0; k < as.size(); ++k) {
            if (as[k].rows() != bs[k].rows() || as[k].cols() != bs[k].cols())
                detail::fail("psap::cuda_backend::row_dots_batch: shapes ", as[k].rows(), "x", as[k].cols(), " and ", bs[k].rows(), "x",
                             bs[k].cols(), " differ");
            check_rows(as[k].rows(), outs[k].size(), "row_dots_batch");
        }
        using V = std::remove_const_t<T>;
        const auto a = const_views(as), b = const_views(bs);
        const auto dst = out_pointers(outs);
        check(cuda::row_dots_batch<V>(a.data(), b.data(), static_cast<index>(a.size()), dst.data(), stream()), "row_dots_batch");
    }

    template <class T>
    static void pairwise_sq_distances_batch(std::span<const matrix_view<T, device_memory>> ws, std::span<const std::span<double>> outs) {
        scalar_check<T>();
        check_batch(ws.size(), outs.size(), "pairwise_sq_distances_batch");
        for (std::size_t k = 0; k < ws.size(); ++k)
            if (static_cast<index>(outs[k].size()) != ws[k].rows() * ws[k].rows())
                detail::fail("psap::cuda_backend::pairwise_sq_distances_batch: output holds ", outs[k].size(), " values, need ",
                             ws[k].rows() * ws[k].rows());
        using V = std::remove_const_t<T>;
        const auto views = const_views(ws);
        const auto dst = out_pointers(outs);
        check(cuda::pairwise_sq_distances_batch<V>(views.data(), static_cast<index>(views.size()), dst.data(), stream()),
              "pairwise_sq_distances_batch");
    }

    template <class T>
    static void row_count_below_batch(std::span<const matrix_view<T, device_memory>> ws, std::span<const double> thresholds,
                                      std::span<const std::span<double>> outs) {
        scalar_check<T>();
        check_batch(ws.size(), outs.size(), "row_count_below_batch");
        check_batch(ws.size(), thresholds.size(), "row_count_below_batch");
        for (std::size_t k = 0; k < ws.size(); ++k) check_rows(ws[k].rows(), outs[k].size(), "row_count_below_batch");
        using V = std::remove_const_t<T>;
        const auto views = const_views(ws);
        const auto dst = out_pointers(outs);
        check(cuda::row_count_below_batch<V>(views.data(), thresholds.data(), static_cast<index>(views.size()), dst.data(), stream()),
              "row_count_below_batch");
    }

    template <class T>
    static void read_batch(std::span<const vector_view<T, device_memory>> vs, std::span<const std::span<double>> outs) {
        scalar_check<T>();
        check_batch(vs.size(), outs.size(), "read_batch");
        for (std::size_t k = 0; k < vs.size(); ++k) check_rows(vs[k].size(), outs[k].size(), "read_batch");
        using V = std::remove_const_t<T>;
        std::vector<vector_view<const V, device_memory>> views(vs.begin(), vs.end());
        const auto dst = out_pointers(outs);
        check(cuda::read_batch<V>(views.data(), static_cast<index>(views.size()), dst.data(), stream()), "read_batch");
    }

    template <class T>
    static void first_nonfinite_rows(std::span<const matrix_view<T, device_memory>> ws, std::span<index> out) {
        scalar_check<T>();
        check_batch(ws.size(), out.size(), "first_nonfinite_rows");
        using V = std::remove_const_t<T>;
        const auto views = const_views(ws);
        check(cuda::first_nonfinite_rows<V>(views.data(), static_cast<index>(views.size()), out.data(), stream()), "first_nonfinite_rows");
    }
    template <class T>
    static void first_nonfinite_batch(std::span<const vector_view<T, device_memory>> vs, std::span<index> out) {
        scalar_check<T>();
        check_batch(vs.size(), out.size(), "first_nonfinite_batch");
        using V = std::remove_const_t<T>;
        std::vector<vector_view<const V, device_memory>> views(vs.begin(), vs.end());
        check(cuda::first_nonfinite_batch<V>(views.data(), static_cast<index>(views.size()), out.data(), stream()), "first_nonfinite_batch");
    }

    template <class T>
    static void zero_rows_batch(std::span<const matrix_view<T, device_memory>> ws, std::span<const std::span<const index>> rows) {
        check_batch(ws.size(), rows.size(), "zero_rows_batch");
        for (std::size_t k = 0; k < ws.size(); ++k)
            if (!rows[k].empty()) zero_rows(ws[k], rows[k]);
    }
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_rows_batch(std::span<const matrix_view<S, device_memory>> src, std::span<const matrix_view<T, device_memory>> dst,
                                std::span<const std::span<const index>> rows) {
        check_batch(src.size(), dst.size(), "copy_rows_batch");
        check_batch(src.size(), rows.size(), "copy_rows_batch");
        for (std::size_t k = 0; k < src.size(); ++k)
            if (!rows[k].empty()) copy_rows(src[k], dst[k], rows[k]);
    }

    /// Buffer bytes to host memory (pruner::state()); `bytes` holds buf.size() * sizeof(U).
    template <class U>
    static void to_host(const buffer<U>& buf, void* bytes) {
        check(cuda::copy_to_host(bytes, buf.data(), buf.bytes(), stream()), "to_host");
    }
    /// Host bytes into a buffer of the right size (pruner::load_state()).
    template <class U>
    static void from_host(const void* bytes, buffer<U>& buf) {
        check(cuda::copy_from_host(buf.data(), bytes, buf.bytes(), stream()), "from_host");
    }

    /// Waits for every operation psap enqueued on its stream in this thread.
    static void synchronize() { check(cuda::synchronize(stream()), "synchronize"); }

private:
    template <class T>
    static constexpr void scalar_check() {
        static_assert(cuda_scalar<T>, "psap::cuda_backend: device views must hold float or double (the kernels are compiled for these)");
    }
    static void check(const cuda::status& s, const char* op) {
        if (!s) detail::fail("psap::cuda_backend::", op, " failed: ", s.message);
    }
    static void check_rows(index rows, std::size_t out, const char* what) {
        if (static_cast<index>(out) != rows)
            detail::fail("psap::cuda_backend::", what, ": output holds ", out, " values for ", rows, " rows");
    }
    static void check_batch(std::size_t a, std::size_t b, const char* what) {
        if (a != b) detail::fail("psap::cuda_backend::", what, ": ", a, " views but ", b, " outputs or lists");
    }
    template <class T>
    static std::vector<matrix_view<const std::remove_const_t<T>, device_memory>> const_views(std::span<const matrix_view<T, device_memory>> ws) {
        return {ws.begin(), ws.end()};
    }
    static std::vector<double*> out_pointers(std::span<const std::span<double>> outs) {
        std::vector<double*> p;
        p.reserve(outs.size());
        for (const auto& o : outs) p.push_back(o.data());
        return p;
    }
};

/// Views tagged device_memory select the CUDA backend.
template <>
struct backend_for<device_memory> {
    using type = cuda_backend;
};

}  // namespace psap
