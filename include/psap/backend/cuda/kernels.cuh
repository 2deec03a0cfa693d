#pragma once
/// \file kernels.cuh
/// The CUDA backend's kernels. Include from .cu translation units only
/// (src/cuda/launch.cu); C++ code uses psap/backend/cuda.hpp.
///
/// Each kernel is a thin __global__ shell around __host__ __device__ bodies
/// that take the block and thread index as arguments, so that
/// tests/backend_cuda/kernel_emulation_test.cu can run the very same bodies on
/// the host, block by block and phase by phase, without a GPU.
///
/// Row reductions: a block of 256 threads serves 32 rows; thread t is lane
/// t % 8 of row t / 8. Lane l sums op over the elements j = l, l + 8, l + 16,
/// ... in increasing j, starting from 0 -- exactly psap::reduce::binary's
/// accumulator acc[l] (its unrolled loop and its tail both send element j to
/// lane j % 8 in increasing j). After a barrier, lane 0 combines the 8 partial
/// sums with psap::reduce::combine, the same fixed tree. Every operation is an
/// IEEE double add of a value that is exact in double (a float product, a
/// float-rounded difference squared), so FMA contraction cannot change a bit;
/// a product of doubles is fused explicitly (psap::reduce::add). The result
/// equals psap::cpu_backend's bit for bit.
///
/// Batches (the `batch_*` bodies): one launch over the rows, entries or
/// elements of many views, found from a device array of descriptors and
/// offsets by binary search; each row is still one block-local reduction in
/// the canonical order.

#if !defined(__CUDACC__)
#error "psap/backend/cuda/kernels.cuh holds __global__ code: include it from .cu files only (C++ code includes psap/backend/cuda.hpp)"
#endif

#include <psap/backend/reduce.hpp>
#include <psap/tensor/memory.hpp>

#include <cmath>

namespace psap::cuda::kernels {

/// Kernel arguments: plain structs (views' accessors are host-only).
template <class T>
struct mat {
    T* p;
    index rows, cols, rs, cs;
};
template <class T>
struct vec {
    T* p;
    index n, s;
};

/// An index list passed by value as a kernel parameter (__grid_constant__:
/// read in place, never copied per thread): the common case of the write
/// kernels needs no staging copy. Longer lists go through device memory.
struct inline_list {
    static constexpr int capacity = 256;
    index v[capacity];
    PSAP_HOST_DEVICE index operator[](index k) const { return v[k]; }
};

inline constexpr int lanes = reduce::lanes;
inline constexpr int rows_per_block = 32;
inline constexpr int block_threads = rows_per_block * lanes;  ///< row-reduction blocks
inline constexpr int elementwise_threads = 256;

// ============================================================== bodies

/// Which row (or pair) and lane of a row-reduction block a thread serves.
struct row_lane {
    index row;  ///< global row (or pair) index
    int local;  ///< row within the block: index into the block's partial sums
    int lane;   ///< psap::reduce lane
};
PSAP_HOST_DEVICE inline row_lane row_lane_of(index block, int thread) {
    return {block * rows_per_block + thread / lanes, thread / lanes, thread % lanes};
}

/// Lane `lane`'s accumulator of psap::reduce::binary(x, sx, y, sy, n, op)
/// (the same rounding: psap::reduce::add).
template <class T, class U, class Op>
PSAP_HOST_DEVICE double lane_sum(const T* x, index sx, const U* y, index sy, index n, int lane, Op op) {
    constexpr bool narrow = reduce::narrow<T> && reduce::narrow<U>;
    double acc = 0;
    for (index j = lane; j < n; j += lanes) acc = reduce::add<narrow>(acc, double(x[j * sx]), double(y[j * sy]), op);
    return acc;
}
/// Lane `lane`'s accumulator of psap::reduce::unary(x, sx, n, op).
template <class T, class Op>
PSAP_HOST_DEVICE double lane_sum(const T* x, index sx, index n, int lane, Op op) {
    return lane_sum(x, sx, x, sx, n, lane, reduce::unary_as_binary<Op>{op});
}

/// Phase 1 of row_reduce: this thread's partial sum (0 past the last row).
template <class T, class Op>
PSAP_HOST_DEVICE double row_reduce_part(mat<const T> w, Op op, row_lane t) {
    if (t.row >= w.rows) return 0.0;
    return lane_sum(w.p + t.row * w.rs, w.cs, w.cols, t.lane, op);
}
/// Phase 1 of row_dots.
template <class T>
PSAP_HOST_DEVICE double row_dots_part(mat<const T> a, mat<const T> b, row_lane t) {
    if (t.row >= a.rows) return 0.0;
    return lane_sum(a.p + t.row * a.rs, a.cs, b.p + t.row * b.rs, b.cs, a.cols, t.lane, reduce::product{});
}
/// Phase 2 of the row reductions: lane 0 combines its row's 8 partial sums.
PSAP_HOST_DEVICE inline void row_store(index rows, row_lane t, const double* part_of_row, double* out) {
    if (t.lane == 0 && t.row < rows) out[t.row] = reduce::combine(part_of_row);
}

/// Pair p of an n x n distance matrix: rows p / n and p % n.
/// Phase 1 of pairwise_sq_distances: pairs i < j only (as the CPU backend).
template <class T>
PSAP_HOST_DEVICE double pairwise_part(mat<const T> w, row_lane t) {
    const index n = w.rows;
    if (t.row >= n * n) return 0.0;
    const index i = t.row / n, j = t.row % n;
    if (i >= j) return 0.0;
    return lane_sum(w.p + i * w.rs, w.cs, w.p + j * w.rs, w.cs, w.cols, t.lane, reduce::squared_difference{});
}
/// Phase 2: d(i, j) goes to (i, j) and (j, i); the diagonal is 0.
PSAP_HOST_DEVICE inline void pairwise_store(index n, row_lane t, const double* part_of_row, double* out) {
    if (t.lane != 0 || t.row >= n * n) return;
    const index i = t.row / n, j = t.row % n;
    if (i == j) {
        out[i * n + i] = 0.0;
    } else if (i < j) {
        const double d = reduce::combine(part_of_row);
        out[i * n + j] = d;
        out[j * n + i] = d;
    }
}

/// Phase 1 of row_count_below: this lane's count (integers: any order is exact).
template <class T>
PSAP_HOST_DEVICE index count_below_part(mat<const T> w, double threshold, row_lane t) {
    if (t.row >= w.rows) return 0;
    const T* x = w.p + t.row * w.rs;
    index c = 0;
    for (index j = t.lane; j < w.cols; j += lanes) c += reduce::absolute{}(double(x[j * w.cs])) < threshold;
    return c;
}
PSAP_HOST_DEVICE inline void count_store(index rows, row_lane t, const index* part_of_row, double* out) {
    if (t.lane != 0 || t.row >= rows) return;
    index c = 0;
    for (int l = 0; l < lanes; ++l) c += part_of_row[l];
    out[t.row] = double(c);
}

template <class T>
PSAP_HOST_DEVICE bool is_finite(T x) {
#if defined(__CUDA_ARCH__)
    return isfinite(x);
#else
    return std::isfinite(x);
#endif
}

// ------------------------------------------------------------ batches
// A batch of views is one launch: item e (a row, an entry or an element) of
// the batch is item e - offset[k] of view k, offset[k] <= e < offset[k + 1].

/// Kernel argument of a batch: `count` view descriptors and count + 1 offsets (device memory).
template <class V>
struct batch {
    const V* views;
    const index* offset;
    index count;
};

/// The view holding batch item e (offset[0] = 0 <= e < offset[count]); views
/// without items are never returned.
PSAP_HOST_DEVICE inline index batch_view_of(const index* offset, index count, index e) {
    index lo = 0, hi = count;  // offset[lo] <= e < offset[hi]
    while (hi - lo > 1) {
        const index mid = lo + (hi - lo) / 2;
        if (offset[mid] <= e)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/// Phase 1 of a batched row reduction over `total` rows (offsets count rows).
template <class T, class Op>
PSAP_HOST_DEVICE double batch_reduce_part(batch<mat<const T>> b, index total, Op op, row_lane t) {
    if (t.row >= total) return 0.0;
    const index k = batch_view_of(b.offset, b.count, t.row);
    const mat<const T> w = b.views[k];
    return lane_sum(w.p + (t.row - b.offset[k]) * w.rs, w.cs, w.cols, t.lane, op);
}
/// Phase 1 of batched row dots: a's and b's views pair up (same shapes).
template <class T>
PSAP_HOST_DEVICE double batch_dots_part(batch<mat<const T>> a, const mat<const T>* b, index total, row_lane t) {
    if (t.row >= total) return 0.0;
    const index k = batch_view_of(a.offset, a.count, t.row);
    const index i = t.row - a.offset[k];
    const mat<const T> x = a.views[k], y = b[k];
    return lane_sum(x.p + i * x.rs, x.cs, y.p + i * y.rs, y.cs, x.cols, t.lane, reduce::product{});
}
/// Phase 1 of batched row_count_below, a threshold per view.
template <class T>
PSAP_HOST_DEVICE index batch_count_below_part(batch<mat<const T>> b, const double* thresholds, index total, row_lane t) {
    if (t.row >= total) return 0;
    const index k = batch_view_of(b.offset, b.count, t.row);
    const mat<const T> w = b.views[k];
    mat<const T> one{w.p + (t.row - b.offset[k]) * w.rs, 1, w.cols, w.rs, w.cs};
    return count_below_part(one, thresholds[k], row_lane{0, t.local, t.lane});
}
/// Batched read, entry e (offsets count entries).
template <class T>
PSAP_HOST_DEVICE void batch_read_one(batch<vec<const T>> b, double* out, index e) {
    const index k = batch_view_of(b.offset, b.count, e);
    const vec<const T> v = b.views[k];
    out[e] = double(v.p[(e - b.offset[k]) * v.s]);
}
/// Batched finiteness scan of matrices, element e (offsets count elements):
/// the view and row of a non-finite element, or view -1.
struct view_row {
    index view, row;
};
template <class T>
PSAP_HOST_DEVICE view_row batch_nonfinite_row_one(batch<mat<const T>> b, index e) {
    const index k = batch_view_of(b.offset, b.count, e);
    const mat<const T> w = b.views[k];
    const index local = e - b.offset[k], i = local / w.cols, j = local % w.cols;
    if (is_finite(w.p[i * w.rs + j * w.cs])) return {-1, -1};
    return {k, i};
}
/// The same for vectors: the view and entry of a non-finite entry, or view -1.
template <class T>
PSAP_HOST_DEVICE view_row batch_nonfinite_one(batch<vec<const T>> b, index e) {
    const index k = batch_view_of(b.offset, b.count, e);
    const vec<const T> v = b.views[k];
    const index i = e - b.offset[k];
    if (is_finite(v.p[i * v.s])) return {-1, -1};
    return {k, i};
}


/// Element e of the listed rows' elements: (rows[e / cols], e % cols).
/// L: `const index*` (device memory) or inline_list.
template <class T, class L>
PSAP_HOST_DEVICE T* listed_element(mat<T> w, const L& rows, index e) {
    const index k = e / w.cols, j = e % w.cols;
    return w.p + rows[k] * w.rs + j * w.cs;
}

/// Elementwise bodies, element e.
template <class T>
PSAP_HOST_DEVICE void read_one(vec<const T> v, double* out, index e) {
    out[e] = double(v.p[e * v.s]);
}
template <class T, class L>
PSAP_HOST_DEVICE void set_one(vec<T> v, const L& which, T value, index e) {
    v.p[which[e] * v.s] = value;
}
template <class T, class L>
PSAP_HOST_DEVICE void scale_one(vec<T> v, const L& which, T factor, index e) {
    T& x = v.p[which[e] * v.s];
    x = x * factor;
}
/// grad += lambda * sign(value): lambda * sign is exact, so a fused multiply-add
/// rounds exactly as the CPU backend's separate multiply and add.
template <class T>
PSAP_HOST_DEVICE void add_scaled_sign_one(vec<T> grad, vec<const T> value, T lambda, index e) {
    const T v = value.p[e * value.s];
    T& g = grad.p[e * grad.s];
    g += lambda * static_cast<T>((v > 0) - (v < 0));
}
template <class T, class L>
PSAP_HOST_DEVICE void zero_row_element(mat<T> w, const L& rows, index e) {
    *listed_element(w, rows, e) = T(0);
}
template <class T, class L>
PSAP_HOST_DEVICE void scale_row_element(mat<T> w, const L& rows, T factor, index e) {
    T& x = *listed_element(w, rows, e);
    x = x * factor;
}
template <class T, class L>
PSAP_HOST_DEVICE void copy_row_element(mat<const T> src, mat<T> dst, const L& rows, index e) {
    const index k = e / src.cols, j = e % src.cols;
    dst.p[rows[k] * dst.rs + j * dst.cs] = src.p[rows[k] * src.rs + j * src.cs];
}
template <class T, class L>
PSAP_HOST_DEVICE void copy_entry(vec<const T> src, vec<T> dst, const L& which, index e) {
    dst.p[which[e] * dst.s] = src.p[which[e] * src.s];
}

// ============================================================== kernels

/// Grid-stride loop over [0, n).
#define PSAP_CUDA_FOR_EACH(e, n) \
    for (index e = index(blockIdx.x) * blockDim.x + threadIdx.x; e < (n); e += index(gridDim.x) * blockDim.x)

template <class T, class Op>
__global__ void __launch_bounds__(block_threads) row_reduce_kernel(mat<const T> w, Op op, double* out) {
    __shared__ double part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = row_reduce_part(w, op, t);
    __syncthreads();
    row_store(w.rows, t, part[t.local], out);
}

template <class T>
__global__ void __launch_bounds__(block_threads) row_dots_kernel(mat<const T> a, mat<const T> b, double* out) {
    __shared__ double part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = row_dots_part(a, b, t);
    __syncthreads();
    row_store(a.rows, t, part[t.local], out);
}

template <class T>
__global__ void __launch_bounds__(block_threads) pairwise_kernel(mat<const T> w, double* out) {
    __shared__ double part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = pairwise_part(w, t);
    __syncthreads();
    pairwise_store(w.rows, t, part[t.local], out);
}

template <class T>
__global__ void __launch_bounds__(block_threads) count_below_kernel(mat<const T> w, double threshold, double* out) {
    __shared__ index part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = count_below_part(w, threshold, t);
    __syncthreads();
    count_store(w.rows, t, part[t.local], out);
}

/// *first = min(*first, i) over rows i holding a non-finite value (*first starts at ~0ull).
template <class T>
__global__ void first_nonfinite_row_kernel(mat<const T> w, unsigned long long* first) {
    PSAP_CUDA_FOR_EACH(e, w.rows * w.cols) {
        const index i = e / w.cols, j = e % w.cols;
        if (!is_finite(w.p[i * w.rs + j * w.cs])) atomicMin(first, static_cast<unsigned long long>(i));
    }
}
template <class T>
__global__ void first_nonfinite_kernel(vec<const T> v, unsigned long long* first) {
    PSAP_CUDA_FOR_EACH(e, v.n) {
        if (!is_finite(v.p[e * v.s])) atomicMin(first, static_cast<unsigned long long>(e));
    }
}

template <class T>
__global__ void read_kernel(vec<const T> v, double* out) {
    PSAP_CUDA_FOR_EACH(e, v.n) read_one(v, out, e);
}
template <class T, class L>
__global__ void set_entries_kernel(vec<T> v, const __grid_constant__ L which, index count, T value) {
    PSAP_CUDA_FOR_EACH(e, count) set_one(v, which, value, e);
}
template <class T, class L>
__global__ void scale_entries_kernel(vec<T> v, const __grid_constant__ L which, index count, T factor) {
    PSAP_CUDA_FOR_EACH(e, count) scale_one(v, which, factor, e);
}
template <class T>
__global__ void add_scaled_sign_kernel(vec<T> grad, vec<const T> value, T lambda) {
    PSAP_CUDA_FOR_EACH(e, grad.n) add_scaled_sign_one(grad, value, lambda, e);
}
template <class T, class L>
__global__ void zero_rows_kernel(mat<T> w, const __grid_constant__ L rows, index count) {
    PSAP_CUDA_FOR_EACH(e, count * w.cols) zero_row_element(w, rows, e);
}
template <class T, class L>
__global__ void scale_rows_kernel(mat<T> w, const __grid_constant__ L rows, index count, T factor) {
    PSAP_CUDA_FOR_EACH(e, count * w.cols) scale_row_element(w, rows, factor, e);
}
template <class T, class L>
__global__ void copy_rows_kernel(mat<const T> src, mat<T> dst, const __grid_constant__ L rows, index count) {
    PSAP_CUDA_FOR_EACH(e, count * src.cols) copy_row_element(src, dst, rows, e);
}
template <class T, class L>
__global__ void copy_entries_kernel(vec<const T> src, vec<T> dst, const __grid_constant__ L which, index count) {
    PSAP_CUDA_FOR_EACH(e, count) copy_entry(src, dst, which, e);
}

// ------------------------------------------------------------ batch kernels

template <class T, class Op>
__global__ void __launch_bounds__(block_threads) batch_reduce_kernel(batch<mat<const T>> b, index total, Op op, double* out) {
    __shared__ double part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = batch_reduce_part(b, total, op, t);
    __syncthreads();
    row_store(total, t, part[t.local], out);
}

template <class T>
__global__ void __launch_bounds__(block_threads) batch_dots_kernel(batch<mat<const T>> a, const mat<const T>* b, index total, double* out) {
    __shared__ double part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = batch_dots_part(a, b, total, t);
    __syncthreads();
    row_store(total, t, part[t.local], out);
}

template <class T>
__global__ void __launch_bounds__(block_threads) batch_count_below_kernel(batch<mat<const T>> b, const double* thresholds, index total,
                                                                          double* out) {
    __shared__ index part[rows_per_block][lanes];
    const row_lane t = row_lane_of(blockIdx.x, threadIdx.x);
    part[t.local][t.lane] = batch_count_below_part(b, thresholds, total, t);
    __syncthreads();
    count_store(total, t, part[t.local], out);
}

template <class T>
__global__ void batch_read_kernel(batch<vec<const T>> b, index total, double* out) {
    PSAP_CUDA_FOR_EACH(e, total) batch_read_one(b, out, e);
}

/// first[k] = min(first[k], row) over non-finite elements of view k (first[] starts at ~0ull).
template <class T>
__global__ void batch_nonfinite_rows_kernel(batch<mat<const T>> b, index total, unsigned long long* first) {
    PSAP_CUDA_FOR_EACH(e, total) {
        const view_row r = batch_nonfinite_row_one(b, e);
        if (r.view >= 0) atomicMin(first + r.view, static_cast<unsigned long long>(r.row));
    }
}
template <class T>
__global__ void batch_nonfinite_kernel(batch<vec<const T>> b, index total, unsigned long long* first) {
    PSAP_CUDA_FOR_EACH(e, total) {
        const view_row r = batch_nonfinite_one(b, e);
        if (r.view >= 0) atomicMin(first + r.view, static_cast<unsigned long long>(r.row));
    }
}

#undef PSAP_CUDA_FOR_EACH

}  // namespace psap::cuda::kernels
