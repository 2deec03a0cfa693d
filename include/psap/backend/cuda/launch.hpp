#pragma once
/// \file launch.hpp
/// Host launchers of the CUDA backend (compiled into psap::cuda, src/cuda/).
/// Every launcher takes device views, a stream, and returns a status: it
/// never throws. Outputs named `*_host` are host memory of the stated length:
/// the launcher copies the result back and synchronizes the stream before it
/// returns. Index lists (`which`, `rows`) are host memory too: the launcher
/// checks them (in range; distinct where a duplicate would race), stages them
/// in stream-ordered device scratch memory and returns once they are copied,
/// so the caller may free them at once. Launchers that only write device
/// memory return after enqueueing their kernel.
///
/// T is float or double (explicit instantiations in src/cuda/launch.cu).
/// Reductions follow psap::reduce's order, so results are bitwise equal to
/// psap::cpu_backend's (docs/cuda.md).

#include <psap/backend/cuda/status.hpp>
#include <psap/tensor/view.hpp>

#include <cstddef>

namespace psap::cuda {

template <class T>
using dmatrix = matrix_view<T, device_memory>;
template <class T>
using dvector = vector_view<T, device_memory>;

/// The per-element maps of the unary row reductions.
enum class row_op {
    square,   ///< psap::reduce::square   (row_sq_norms)
    absolute  ///< psap::reduce::absolute (row_abs_sums)
};

/// out_host[i] = sum_j op(w(i, j)); out_host holds w.rows() doubles.
template <class T>
status row_reduce(dmatrix<const T> w, row_op op, double* out_host, cudaStream_t stream);

/// out_host[i] = <a(i, :), b(i, :)>; a and b have the same shape.
template <class T>
status row_dots(dmatrix<const T> a, dmatrix<const T> b, double* out_host, cudaStream_t stream);

/// out_host (w.rows() x w.rows(), row-major) = squared distances between rows
/// (psap::reduce::squared_difference), zero on the diagonal.
template <class T>
status pairwise_sq_distances(dmatrix<const T> w, double* out_host, cudaStream_t stream);

/// out_host[i] = double(v[i]); out_host holds v.size() doubles.
template <class T>
status read(dvector<const T> v, double* out_host, cudaStream_t stream);

/// out_host[i] = number of j with |double(w(i, j))| < threshold.
template <class T>
status row_count_below(dmatrix<const T> w, double threshold, double* out_host, cudaStream_t stream);

/// *row_host = the first row holding a NaN or Inf, or -1.
template <class T>
status first_nonfinite_row(dmatrix<const T> w, index* row_host, cudaStream_t stream);

/// *entry_host = the first entry that is NaN or Inf, or -1.
template <class T>
status first_nonfinite(dvector<const T> v, index* entry_host, cudaStream_t stream);

/// v[which[k]] = value for k < count.
template <class T>
status set_entries(dvector<T> v, const index* which, index count, T value, cudaStream_t stream);

/// v[which[k]] *= factor for k < count (the entries must be distinct).
template <class T>
status scale_entries(dvector<T> v, const index* which, index count, T factor, cudaStream_t stream);

/// grad[i] += lambda * sign(value[i]) (sign of 0 is 0).
template <class T>
status add_scaled_sign(dvector<T> grad, dvector<const T> value, T lambda, cudaStream_t stream);

/// w(rows[k], :) = 0 for k < count.
template <class T>
status zero_rows(dmatrix<T> w, const index* rows, index count, cudaStream_t stream);

/// w(rows[k], :) *= factor for k < count (the rows must be distinct).
template <class T>
status scale_rows(dmatrix<T> w, const index* rows, index count, T factor, cudaStream_t stream);

/// dst(rows[k], :) = src(rows[k], :) for k < count; src and dst have the same shape.
template <class T>
status copy_rows(dmatrix<const T> src, dmatrix<T> dst, const index* rows, index count, cudaStream_t stream);

/// dst[which[k]] = src[which[k]] for k < count; src and dst have the same size.
template <class T>
status copy_entries(dvector<const T> src, dvector<T> dst, const index* which, index count, cudaStream_t stream);

// ------------------------------------------------------------------ batches
// Many views in one call: the reductions run as one launch over the rows
// (entries, elements) of all views, found from a device array of view
// descriptors; pairwise distances as one launch per view. Either way all
// results come back in one copy and one synchronisation. `views` (and `b`,
// `thresholds`) are host arrays of `count` entries; outs_host[k] is view k's
// host output of the size the single-view launcher states. Results are those
// of the single-view launchers, bit for bit.

/// row_reduce for every view.
template <class T>
status row_reduce_batch(const dmatrix<const T>* views, index count, row_op op, double* const* outs_host, cudaStream_t stream);

/// row_dots(a[k], b[k]) for every k.
template <class T>
status row_dots_batch(const dmatrix<const T>* a, const dmatrix<const T>* b, index count, double* const* outs_host, cudaStream_t stream);

/// pairwise_sq_distances for every view (outs_host[k]: rows x rows).
template <class T>
status pairwise_sq_distances_batch(const dmatrix<const T>* views, index count, double* const* outs_host, cudaStream_t stream);

/// row_count_below(views[k], thresholds[k]) for every k.
template <class T>
status row_count_below_batch(const dmatrix<const T>* views, const double* thresholds, index count, double* const* outs_host,
                             cudaStream_t stream);

/// read for every view.
template <class T>
status read_batch(const dvector<const T>* views, index count, double* const* outs_host, cudaStream_t stream);

/// rows_host[k] = first_nonfinite_row(views[k]) for every k.
template <class T>
status first_nonfinite_rows(const dmatrix<const T>* views, index count, index* rows_host, cudaStream_t stream);

/// entries_host[k] = first_nonfinite(views[k]) for every k.
template <class T>
status first_nonfinite_batch(const dvector<const T>* views, index count, index* entries_host, cudaStream_t stream);

// ------------------------------------------------------------------ memory

/// *ptr = `bytes` of zeroed device memory of the current device (cudaMalloc,
/// then a memset on `stream`, synchronized). bytes == 0 gives nullptr.
status allocate_zeroed(void** ptr, std::size_t bytes, cudaStream_t stream);
/// Frees memory from allocate_zeroed (nullptr is ignored).
status deallocate(void* ptr) noexcept;
/// Device-to-device copy on `stream`, synchronized.
status copy_device(void* dst, const void* src, std::size_t bytes, cudaStream_t stream);
/// Device-to-host copy on `stream`, synchronized.
status copy_to_host(void* dst_host, const void* src, std::size_t bytes, cudaStream_t stream);
/// Host-to-device copy on `stream`, synchronized.
status copy_from_host(void* dst, const void* src_host, std::size_t bytes, cudaStream_t stream);
/// Waits for everything enqueued on `stream`; reports asynchronous errors.
status synchronize(cudaStream_t stream);

}  // namespace psap::cuda
