// Host launchers of psap's CUDA backend (declared in psap/backend/cuda/launch.hpp).
// Arguments are checked on the host before any CUDA call; CUDA errors come
// back as psap::cuda::status values, never as exceptions.
#include <psap/backend/cuda/kernels.cuh>
#include <psap/backend/cuda/launch.hpp>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

namespace psap::cuda {

namespace {

namespace k = kernels;

std::string prefix(const char* op) { return std::string("psap::cuda::") + op + ": "; }

status cuda_failure(const char* op, cudaError_t e, const std::string& during) {
    return {e, prefix(op) + during + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
}

status invalid(const char* op, const std::string& what) { return {cudaErrorInvalidValue, prefix(op) + what}; }

template <class T>
k::mat<T> arg(matrix_view<T, device_memory> w) {
    return {w.data(), w.rows(), w.cols(), w.row_stride(), w.col_stride()};
}
template <class T>
k::vec<T> arg(vector_view<T, device_memory> v) {
    return {v.data(), v.size(), v.stride()};
}

/// Blocks of a grid-stride elementwise launch over n elements.
unsigned elementwise_blocks(index n) {
    const index b = (n + k::elementwise_threads - 1) / k::elementwise_threads;
    return static_cast<unsigned>(std::clamp<index>(b, 1, 8192));
}

/// Blocks of a row-reduction launch over n rows (or pairs); 0 when too many.
unsigned reduction_blocks(index n) {
    const index b = (n + k::rows_per_block - 1) / k::rows_per_block;
    return b <= INT_MAX ? static_cast<unsigned>(b) : 0u;
}

/// psap's own stream-ordered memory pool on the current device (created once
/// per device, kept for the process; the user's default pool is left alone).
/// It keeps up to 64 MiB cached across synchronisations, so the per-call
/// scratch memory of the launchers costs no new mapping. nullptr where the
/// device has no memory pools.
cudaMemPool_t psap_pool() {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
        (void)cudaGetLastError();
        return nullptr;
    }
    static std::mutex mutex;
    static std::vector<std::pair<bool, cudaMemPool_t>> pools;  // per device: (tried, pool)
    const std::lock_guard<std::mutex> lock(mutex);
    if (pools.size() <= static_cast<std::size_t>(device)) pools.resize(static_cast<std::size_t>(device) + 1, {false, nullptr});
    auto& [tried, pool] = pools[static_cast<std::size_t>(device)];
    if (!tried) {
        tried = true;
        int supported = 0;
        if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess && supported) {
            cudaMemPoolProps props{};
            props.allocType = cudaMemAllocationTypePinned;
            props.location.type = cudaMemLocationTypeDevice;
            props.location.id = device;
            if (cudaMemPoolCreate(&pool, &props) == cudaSuccess) {
                std::uint64_t keep = std::uint64_t{64} << 20;
                (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
            } else {
                pool = nullptr;
            }
        }
        (void)cudaGetLastError();
    }
    return pool;
}

/// Stream-ordered device scratch memory from psap's pool, or plain cudaMalloc
/// (freed after a stream synchronisation) where memory pools are unsupported.
class scratch {
public:
    scratch(std::size_t bytes, cudaStream_t s) : stream_(s) {
        if (bytes == 0) return;
        if (cudaMemPool_t pool = psap_pool()) {
            error_ = cudaMallocFromPoolAsync(&ptr_, bytes, pool, s);
        } else {
            async_ = false;
            error_ = cudaMalloc(&ptr_, bytes);
        }
        if (error_ != cudaSuccess) ptr_ = nullptr;
    }
    ~scratch() {
        if (!ptr_) return;
        if (async_) {
            (void)cudaFreeAsync(ptr_, stream_);
        } else {
            (void)cudaStreamSynchronize(stream_);
            (void)cudaFree(ptr_);
        }
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;

    cudaError_t error() const noexcept { return error_; }
    template <class U>
    U* as() const noexcept {
        return static_cast<U*>(ptr_);
    }

private:
    void* ptr_ = nullptr;
    cudaStream_t stream_;
    cudaError_t error_ = cudaSuccess;
    bool async_ = true;
};

/// Checks a host index list against [0, bound); with `distinct`, rejects repeats.
status check_list(const char* op, const char* what, const index* list, index count, index bound, bool distinct) {
    if (count < 0) return invalid(op, std::string("negative ") + what + " count " + std::to_string(count));
    if (count > 0 && list == nullptr) return invalid(op, std::string("null ") + what + " list of " + std::to_string(count) + " entries");
    std::vector<std::uint8_t> seen(distinct ? static_cast<std::size_t>(bound) : 0, 0);
    for (index k = 0; k < count; ++k) {
        const index r = list[k];
        if (r < 0 || r >= bound)
            return invalid(op, std::string(what) + " " + std::to_string(r) + " (entry " + std::to_string(k) + " of the list) is outside [0, " +
                                   std::to_string(bound) + ")");
        if (distinct) {
            if (seen[static_cast<std::size_t>(r)])
                return invalid(op, std::string(what) + " " + std::to_string(r) + " is listed twice; the list's entries must be distinct");
            seen[static_cast<std::size_t>(r)] = 1;
        }
    }
    return {};
}

/// Copies a checked host index list to device scratch memory on `s`.
status stage_list(const char* op, const index* list, index count, scratch& dev, cudaStream_t s) {
    if (dev.error() != cudaSuccess) return cuda_failure(op, dev.error(), "allocating the index list");
    const cudaError_t e = cudaMemcpyAsync(dev.as<index>(), list, static_cast<std::size_t>(count) * sizeof(index), cudaMemcpyHostToDevice, s);
    return e == cudaSuccess ? status{} : cuda_failure(op, e, "copying the index list to the device");
}

status after_launch(const char* op) {
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? status{} : cuda_failure(op, e, "kernel launch");
}

/// Copies `count` results from device scratch to host memory and waits for the stream.
template <class U>
status fetch(const char* op, U* host, const U* dev, index count, cudaStream_t s) {
    if (auto st = after_launch(op); !st) return st;
    cudaError_t e = cudaMemcpyAsync(host, dev, static_cast<std::size_t>(count) * sizeof(U), cudaMemcpyDeviceToHost, s);
    if (e != cudaSuccess) return cuda_failure(op, e, "copying the result to the host");
    e = cudaStreamSynchronize(s);
    return e == cudaSuccess ? status{} : cuda_failure(op, e, "kernel execution");
}

status check_out(const char* op, const void* out, index count) {
    if (count > 0 && out == nullptr) return invalid(op, "null host output for " + std::to_string(count) + " values");
    return {};
}

std::string shape(index r, index c) { return std::to_string(r) + "x" + std::to_string(c); }

/// Row reductions: 32 rows per 256-thread block (kernels.cuh).
template <class T, class Launch>
status reduce_rows(const char* op, index rows, double* out_host, cudaStream_t s, Launch launch) {
    if (auto st = check_out(op, out_host, rows); !st) return st;
    if (rows == 0) return {};
    const unsigned blocks = reduction_blocks(rows);
    if (blocks == 0) return invalid(op, std::to_string(rows) + " rows need more than 2^31 blocks");
    scratch out(static_cast<std::size_t>(rows) * sizeof(double), s);
    if (out.error() != cudaSuccess) return cuda_failure(op, out.error(), "allocating the result");
    launch(blocks, out.template as<double>());
    return fetch(op, out_host, out.template as<double>(), rows, s);
}

}  // namespace

// ------------------------------------------------------------------ reductions

template <class T>
status row_reduce(dmatrix<const T> w, row_op op, double* out_host, cudaStream_t s) {
    const char* name = op == row_op::square ? "row_sq_norms" : "row_abs_sums";
    return reduce_rows<T>(name, w.rows(), out_host, s, [&](unsigned blocks, double* out) {
        if (op == row_op::square)
            k::row_reduce_kernel<<<blocks, k::block_threads, 0, s>>>(arg(w), reduce::square{}, out);
        else
            k::row_reduce_kernel<<<blocks, k::block_threads, 0, s>>>(arg(w), reduce::absolute{}, out);
    });
}

template <class T>
status row_dots(dmatrix<const T> a, dmatrix<const T> b, double* out_host, cudaStream_t s) {
    if (a.rows() != b.rows() || a.cols() != b.cols())
        return invalid("row_dots", "shapes " + shape(a.rows(), a.cols()) + " and " + shape(b.rows(), b.cols()) + " differ");
    return reduce_rows<T>("row_dots", a.rows(), out_host, s, [&](unsigned blocks, double* out) {
        k::row_dots_kernel<<<blocks, k::block_threads, 0, s>>>(arg(a), arg(b), out);
    });
}

template <class T>
status pairwise_sq_distances(dmatrix<const T> w, double* out_host, cudaStream_t s) {
    const index n = w.rows();
    return reduce_rows<T>("pairwise_sq_distances", n * n, out_host, s, [&](unsigned blocks, double* out) {
        k::pairwise_kernel<<<blocks, k::block_threads, 0, s>>>(arg(w), out);
    });
}

template <class T>
status row_count_below(dmatrix<const T> w, double threshold, double* out_host, cudaStream_t s) {
    return reduce_rows<T>("row_count_below", w.rows(), out_host, s, [&](unsigned blocks, double* out) {
        k::count_below_kernel<<<blocks, k::block_threads, 0, s>>>(arg(w), threshold, out);
    });
}

template <class T>
status read(dvector<const T> v, double* out_host, cudaStream_t s) {
    const char* op = "read";
    if (auto st = check_out(op, out_host, v.size()); !st) return st;
    if (v.size() == 0) return {};
    scratch out(static_cast<std::size_t>(v.size()) * sizeof(double), s);
    if (out.error() != cudaSuccess) return cuda_failure(op, out.error(), "allocating the result");
    k::read_kernel<<<elementwise_blocks(v.size()), k::elementwise_threads, 0, s>>>(arg(v), out.as<double>());
    return fetch(op, out_host, out.as<double>(), v.size(), s);
}

namespace {
template <class Launch>
status first_index(const char* op, index n, index* result_host, cudaStream_t s, Launch launch) {
    if (result_host == nullptr) return invalid(op, "null host output");
    *result_host = -1;
    if (n == 0) return {};
    scratch first(sizeof(unsigned long long), s);
    if (first.error() != cudaSuccess) return cuda_failure(op, first.error(), "allocating the result");
    if (const cudaError_t e = cudaMemsetAsync(first.as<unsigned long long>(), 0xff, sizeof(unsigned long long), s); e != cudaSuccess)
        return cuda_failure(op, e, "initialising the result");
    launch(first.as<unsigned long long>());
    unsigned long long r = ~0ull;
    if (auto st = fetch(op, &r, first.as<unsigned long long>(), 1, s); !st) return st;
    if (r != ~0ull) *result_host = static_cast<index>(r);
    return {};
}
}  // namespace

template <class T>
status first_nonfinite_row(dmatrix<const T> w, index* row_host, cudaStream_t s) {
    return first_index("first_nonfinite_row", w.rows() * w.cols(), row_host, s, [&](unsigned long long* first) {
        k::first_nonfinite_row_kernel<<<elementwise_blocks(w.rows() * w.cols()), k::elementwise_threads, 0, s>>>(arg(w), first);
    });
}

template <class T>
status first_nonfinite(dvector<const T> v, index* entry_host, cudaStream_t s) {
    return first_index("first_nonfinite", v.size(), entry_host, s, [&](unsigned long long* first) {
        k::first_nonfinite_kernel<<<elementwise_blocks(v.size()), k::elementwise_threads, 0, s>>>(arg(v), first);
    });
}

// ------------------------------------------------------------------ writes

namespace {
/// Checks an index list, then launches `launch(list)` with the list passed by
/// value (k::inline_list, up to its capacity) or staged in device scratch
/// memory (`const index*`). Enqueued, not waited for.
template <class Launch>
status with_list(const char* op, const char* what, const index* list, index count, index bound, bool distinct, cudaStream_t s,
                 Launch launch) {
    if (auto st = check_list(op, what, list, count, bound, distinct); !st) return st;
    if (count == 0) return {};
    if (count <= k::inline_list::capacity) {
        k::inline_list inline_rows{};
        std::copy(list, list + count, inline_rows.v);
        launch(inline_rows);
        return after_launch(op);
    }
    scratch dev(static_cast<std::size_t>(count) * sizeof(index), s);
    if (auto st = stage_list(op, list, count, dev, s); !st) return st;
    launch(static_cast<const index*>(dev.as<index>()));
    return after_launch(op);
}
}  // namespace

template <class T>
status set_entries(dvector<T> v, const index* which, index count, T value, cudaStream_t s) {
    return with_list("set_entries", "entry", which, count, v.size(), false, s, [&](const auto& dev) {
        k::set_entries_kernel<<<elementwise_blocks(count), k::elementwise_threads, 0, s>>>(arg(v), dev, count, value);
    });
}

template <class T>
status scale_entries(dvector<T> v, const index* which, index count, T factor, cudaStream_t s) {
    return with_list("scale_entries", "entry", which, count, v.size(), true, s, [&](const auto& dev) {
        k::scale_entries_kernel<<<elementwise_blocks(count), k::elementwise_threads, 0, s>>>(arg(v), dev, count, factor);
    });
}

template <class T>
status add_scaled_sign(dvector<T> grad, dvector<const T> value, T lambda, cudaStream_t s) {
    if (grad.size() != value.size())
        return invalid("add_scaled_sign", "sizes " + std::to_string(grad.size()) + " and " + std::to_string(value.size()) + " differ");
    if (grad.size() == 0) return {};
    k::add_scaled_sign_kernel<<<elementwise_blocks(grad.size()), k::elementwise_threads, 0, s>>>(arg(grad), arg(value), lambda);
    return after_launch("add_scaled_sign");
}

template <class T>
status zero_rows(dmatrix<T> w, const index* rows, index count, cudaStream_t s) {
    return with_list("zero_rows", "row", rows, count, w.rows(), false, s, [&](const auto& dev) {
        if (w.cols() > 0)
            k::zero_rows_kernel<<<elementwise_blocks(count * w.cols()), k::elementwise_threads, 0, s>>>(arg(w), dev, count);
    });
}

template <class T>
status scale_rows(dmatrix<T> w, const index* rows, index count, T factor, cudaStream_t s) {
    return with_list("scale_rows", "row", rows, count, w.rows(), true, s, [&](const auto& dev) {
        if (w.cols() > 0)
            k::scale_rows_kernel<<<elementwise_blocks(count * w.cols()), k::elementwise_threads, 0, s>>>(arg(w), dev, count, factor);
    });
}

template <class T>
status copy_rows(dmatrix<const T> src, dmatrix<T> dst, const index* rows, index count, cudaStream_t s) {
    if (src.rows() != dst.rows() || src.cols() != dst.cols())
        return invalid("copy_rows", "shapes " + shape(src.rows(), src.cols()) + " and " + shape(dst.rows(), dst.cols()) + " differ");
    return with_list("copy_rows", "row", rows, count, src.rows(), false, s, [&](const auto& dev) {
        if (src.cols() > 0)
            k::copy_rows_kernel<<<elementwise_blocks(count * src.cols()), k::elementwise_threads, 0, s>>>(arg(src), arg(dst), dev, count);
    });
}

template <class T>
status copy_entries(dvector<const T> src, dvector<T> dst, const index* which, index count, cudaStream_t s) {
    if (src.size() != dst.size())
        return invalid("copy_entries", "sizes " + std::to_string(src.size()) + " and " + std::to_string(dst.size()) + " differ");
    return with_list("copy_entries", "entry", which, count, src.size(), false, s, [&](const auto& dev) {
        k::copy_entries_kernel<<<elementwise_blocks(count), k::elementwise_threads, 0, s>>>(arg(src), arg(dst), dev, count);
    });
}

// ------------------------------------------------------------------ batches

namespace {

/// Arrays of a batch (view descriptors, offsets, thresholds) packed into one
/// host buffer and copied to device scratch memory with one copy; at(offset)
/// gives the device address of an array added at that offset.
class packed {
public:
    template <class U>
    std::size_t add(const std::vector<U>& v) {
        static_assert(std::is_trivially_copyable_v<U> && alignof(U) <= 8);
        const std::size_t at = host_.size();
        host_.resize(at + (v.size() * sizeof(U) + 7) / 8 * 8);
        if (!v.empty()) std::memcpy(host_.data() + at, v.data(), v.size() * sizeof(U));
        return at;
    }
    /// Copies the packed arrays to the device (the host buffer outlives the copy: it lives as long as this object).
    status upload(const char* op, cudaStream_t s) {
        dev_.emplace(host_.size(), s);
        if (dev_->error() != cudaSuccess) return cuda_failure(op, dev_->error(), "allocating the batch's descriptors");
        const cudaError_t e = cudaMemcpyAsync(dev_->as<unsigned char>(), host_.data(), host_.size(), cudaMemcpyHostToDevice, s);
        return e == cudaSuccess ? status{} : cuda_failure(op, e, "copying the batch's descriptors to the device");
    }
    template <class U>
    const U* at(std::size_t offset) const {
        return reinterpret_cast<const U*>(dev_->as<unsigned char>() + offset);
    }

private:
    std::vector<unsigned char> host_;
    std::optional<scratch> dev_;
};

status check_batch(const char* op, const void* views, index count, const void* outs) {
    if (count < 0) return invalid(op, "negative batch size " + std::to_string(count));
    if (count > 0 && (views == nullptr || outs == nullptr))
        return invalid(op, "null view or output array for a batch of " + std::to_string(count) + " views");
    return {};
}

/// Scatters the batch's results (view k's at all[offset[k] ..]) into the host outputs.
void scatter(const std::vector<double>& all, const std::vector<index>& offset, double* const* outs_host) {
    for (std::size_t k = 0; k + 1 < offset.size(); ++k)
        std::copy(all.begin() + offset[k], all.begin() + offset[k + 1], outs_host[k]);
}

/// A row-reduction batch: one launch over the rows of all views (`second`:
/// row_dots' b views, `thresholds`: row_count_below's), one copy, one synchronisation.
/// launch(blocks, batch, second, thresholds, total, out).
template <class T, class Launch>
status reduce_batch(const char* op, const dmatrix<const T>* views, const dmatrix<const T>* second, const double* thresholds, index count,
                    double* const* outs_host, cudaStream_t s, Launch launch) {
    if (auto st = check_batch(op, views, count, outs_host); !st) return st;
    std::vector<k::mat<const T>> desc, desc2;
    std::vector<index> offset{0};
    std::vector<double> limits;
    for (index v = 0; v < count; ++v) {
        const auto& w = views[v];
        if (second != nullptr && (second[v].rows() != w.rows() || second[v].cols() != w.cols()))
            return invalid(op, "view " + std::to_string(v) + ": shapes " + shape(w.rows(), w.cols()) + " and " +
                                   shape(second[v].rows(), second[v].cols()) + " differ");
        if (auto st = check_out(op, outs_host[v], w.rows()); !st) return st;
        desc.push_back(arg(w));
        if (second != nullptr) desc2.push_back(arg(second[v]));
        if (thresholds != nullptr) limits.push_back(thresholds[v]);
        offset.push_back(offset.back() + w.rows());
    }
    const index total = offset.back();
    if (total == 0) return {};
    const unsigned blocks = reduction_blocks(total);
    if (blocks == 0) return invalid(op, std::to_string(total) + " rows need more than 2^31 blocks");
    packed in;
    const std::size_t d = in.add(desc), o = in.add(offset), d2 = in.add(desc2), x = in.add(limits);
    if (auto st = in.upload(op, s); !st) return st;
    scratch out(static_cast<std::size_t>(total) * sizeof(double), s);
    if (out.error() != cudaSuccess) return cuda_failure(op, out.error(), "allocating the result");
    const k::batch<k::mat<const T>> b{in.at<k::mat<const T>>(d), in.at<index>(o), count};
    launch(blocks, b, second != nullptr ? in.at<k::mat<const T>>(d2) : nullptr, thresholds != nullptr ? in.at<double>(x) : nullptr, total,
           out.as<double>());
    std::vector<double> all(static_cast<std::size_t>(total));
    if (auto st = fetch(op, all.data(), out.as<double>(), total, s); !st) return st;
    scatter(all, offset, outs_host);
    return {};
}

/// A finiteness batch over `items(view)` elements per view: first[k] starts at
/// ~0ull, the kernel lowers it with atomicMin; one copy, one synchronisation.
template <class V, class Items, class Launch>
status nonfinite_batch(const char* op, const std::vector<V>& desc, Items items, index* result_host, cudaStream_t s, Launch launch) {
    const index count = static_cast<index>(desc.size());
    std::fill(result_host, result_host + count, index{-1});
    std::vector<index> offset{0};
    for (index v = 0; v < count; ++v) offset.push_back(offset.back() + items(v));
    const index total = offset.back();
    if (total == 0) return {};
    packed in;
    const std::size_t d = in.add(desc), o = in.add(offset);
    if (auto st = in.upload(op, s); !st) return st;
    scratch first(static_cast<std::size_t>(count) * sizeof(unsigned long long), s);
    if (first.error() != cudaSuccess) return cuda_failure(op, first.error(), "allocating the result");
    if (const cudaError_t e = cudaMemsetAsync(first.as<unsigned long long>(), 0xff, static_cast<std::size_t>(count) * sizeof(unsigned long long), s);
        e != cudaSuccess)
        return cuda_failure(op, e, "initialising the result");
    launch(k::batch<V>{in.at<V>(d), in.at<index>(o), count}, total, first.as<unsigned long long>());
    std::vector<unsigned long long> r(static_cast<std::size_t>(count));
    if (auto st = fetch(op, r.data(), first.as<unsigned long long>(), count, s); !st) return st;
    for (index v = 0; v < count; ++v)
        if (r[static_cast<std::size_t>(v)] != ~0ull) result_host[v] = static_cast<index>(r[static_cast<std::size_t>(v)]);
    return {};
}

}  // namespace

template <class T>
status row_reduce_batch(const dmatrix<const T>* views, index count, row_op op, double* const* outs_host, cudaStream_t s) {
    const char* name = op == row_op::square ? "row_sq_norms_batch" : "row_abs_sums_batch";
    return reduce_batch<T>(name, views, nullptr, nullptr, count, outs_host, s,
                           [&](unsigned blocks, k::batch<k::mat<const T>> b, const k::mat<const T>*, const double*, index total, double* out) {
                               if (op == row_op::square)
                                   k::batch_reduce_kernel<<<blocks, k::block_threads, 0, s>>>(b, total, reduce::square{}, out);
                               else
                                   k::batch_reduce_kernel<<<blocks, k::block_threads, 0, s>>>(b, total, reduce::absolute{}, out);
                           });
}

template <class T>
status row_dots_batch(const dmatrix<const T>* a, const dmatrix<const T>* b, index count, double* const* outs_host, cudaStream_t s) {
    if (count > 0 && b == nullptr) return invalid("row_dots_batch", "null second view array");
    return reduce_batch<T>("row_dots_batch", a, b, nullptr, count, outs_host, s,
                           [&](unsigned blocks, k::batch<k::mat<const T>> x, const k::mat<const T>* y, const double*, index total, double* out) {
                               k::batch_dots_kernel<<<blocks, k::block_threads, 0, s>>>(x, y, total, out);
                           });
}

template <class T>
status row_count_below_batch(const dmatrix<const T>* views, const double* thresholds, index count, double* const* outs_host, cudaStream_t s) {
    if (count > 0 && thresholds == nullptr) return invalid("row_count_below_batch", "null threshold array");
    return reduce_batch<T>("row_count_below_batch", views, nullptr, thresholds, count, outs_host, s,
                           [&](unsigned blocks, k::batch<k::mat<const T>> b, const k::mat<const T>*, const double* t, index total, double* out) {
                               k::batch_count_below_kernel<<<blocks, k::block_threads, 0, s>>>(b, t, total, out);
                           });
}

template <class T>
status pairwise_sq_distances_batch(const dmatrix<const T>* views, index count, double* const* outs_host, cudaStream_t s) {
    const char* op = "pairwise_sq_distances_batch";
    if (auto st = check_batch(op, views, count, outs_host); !st) return st;
    std::vector<index> offset{0};
    for (index v = 0; v < count; ++v) {
        const index n = views[v].rows();
        if (auto st = check_out(op, outs_host[v], n * n); !st) return st;
        if (n > 0 && reduction_blocks(n * n) == 0) return invalid(op, std::to_string(n * n) + " pairs need more than 2^31 blocks");
        offset.push_back(offset.back() + n * n);
    }
    const index total = offset.back();
    if (total == 0) return {};
    scratch out(static_cast<std::size_t>(total) * sizeof(double), s);
    if (out.error() != cudaSuccess) return cuda_failure(op, out.error(), "allocating the result");
    for (index v = 0; v < count; ++v) {
        const index n = views[v].rows();
        if (n > 0)
            k::pairwise_kernel<<<reduction_blocks(n * n), k::block_threads, 0, s>>>(arg(views[v]), out.as<double>() + offset[static_cast<std::size_t>(v)]);
    }
    std::vector<double> all(static_cast<std::size_t>(total));
    if (auto st = fetch(op, all.data(), out.as<double>(), total, s); !st) return st;
    scatter(all, offset, outs_host);
    return {};
}

template <class T>
status read_batch(const dvector<const T>* views, index count, double* const* outs_host, cudaStream_t s) {
    const char* op = "read_batch";
    if (auto st = check_batch(op, views, count, outs_host); !st) return st;
    std::vector<k::vec<const T>> desc;
    std::vector<index> offset{0};
    for (index v = 0; v < count; ++v) {
        if (auto st = check_out(op, outs_host[v], views[v].size()); !st) return st;
        desc.push_back(arg(views[v]));
        offset.push_back(offset.back() + views[v].size());
    }
    const index total = offset.back();
    if (total == 0) return {};
    packed in;
    const std::size_t d = in.add(desc), o = in.add(offset);
    if (auto st = in.upload(op, s); !st) return st;
    scratch out(static_cast<std::size_t>(total) * sizeof(double), s);
    if (out.error() != cudaSuccess) return cuda_failure(op, out.error(), "allocating the result");
    k::batch_read_kernel<<<elementwise_blocks(total), k::elementwise_threads, 0, s>>>(
        k::batch<k::vec<const T>>{in.at<k::vec<const T>>(d), in.at<index>(o), count}, total, out.as<double>());
    std::vector<double> all(static_cast<std::size_t>(total));
    if (auto st = fetch(op, all.data(), out.as<double>(), total, s); !st) return st;
    scatter(all, offset, outs_host);
    return {};
}

template <class T>
status first_nonfinite_rows(const dmatrix<const T>* views, index count, index* rows_host, cudaStream_t s) {
    const char* op = "first_nonfinite_rows";
    if (auto st = check_batch(op, views, count, rows_host); !st) return st;
    std::vector<k::mat<const T>> desc;
    for (index v = 0; v < count; ++v) desc.push_back(arg(views[v]));
    return nonfinite_batch(op, desc, [&](index v) { return views[v].rows() * views[v].cols(); }, rows_host, s,
                           [&](k::batch<k::mat<const T>> b, index total, unsigned long long* first) {
                               k::batch_nonfinite_rows_kernel<<<elementwise_blocks(total), k::elementwise_threads, 0, s>>>(b, total, first);
                           });
}

template <class T>
status first_nonfinite_batch(const dvector<const T>* views, index count, index* entries_host, cudaStream_t s) {
    const char* op = "first_nonfinite_batch";
    if (auto st = check_batch(op, views, count, entries_host); !st) return st;
    std::vector<k::vec<const T>> desc;
    for (index v = 0; v < count; ++v) desc.push_back(arg(views[v]));
    return nonfinite_batch(op, desc, [&](index v) { return views[v].size(); }, entries_host, s,
                           [&](k::batch<k::vec<const T>> b, index total, unsigned long long* first) {
                               k::batch_nonfinite_kernel<<<elementwise_blocks(total), k::elementwise_threads, 0, s>>>(b, total, first);
                           });
}

// ------------------------------------------------------------------ memory

status allocate_zeroed(void** ptr, std::size_t bytes, cudaStream_t s) {
    const char* op = "allocate_zeroed";
    if (ptr == nullptr) return invalid(op, "null output pointer");
    *ptr = nullptr;
    if (bytes == 0) return {};
    void* p = nullptr;
    if (const cudaError_t e = cudaMalloc(&p, bytes); e != cudaSuccess)
        return cuda_failure(op, e, "cudaMalloc of " + std::to_string(bytes) + " bytes");
    cudaError_t e = cudaMemsetAsync(p, 0, bytes, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) {
        (void)cudaFree(p);
        return cuda_failure(op, e, "zeroing");
    }
    *ptr = p;
    return {};
}

status deallocate(void* ptr) noexcept {
    if (ptr == nullptr) return {};
    const cudaError_t e = cudaFree(ptr);
    // At exit the runtime may be unloaded before static objects free their memory.
    if (e == cudaSuccess || e == cudaErrorCudartUnloading) return {};
    return {e, std::string("psap::cuda::deallocate: cudaFree failed: ") + cudaGetErrorName(e)};
}

namespace {
status copy(const char* op, void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    if (bytes == 0) return {};
    if (dst == nullptr || src == nullptr) return invalid(op, "null pointer for " + std::to_string(bytes) + " bytes");
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, s);
    if (e != cudaSuccess) return cuda_failure(op, e, "cudaMemcpyAsync");
    e = cudaStreamSynchronize(s);
    return e == cudaSuccess ? status{} : cuda_failure(op, e, "cudaStreamSynchronize");
}
}  // namespace

status copy_device(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
    return copy("copy_device", dst, src, bytes, cudaMemcpyDeviceToDevice, s);
}
status copy_to_host(void* dst_host, const void* src, std::size_t bytes, cudaStream_t s) {
    return copy("copy_to_host", dst_host, src, bytes, cudaMemcpyDeviceToHost, s);
}
status copy_from_host(void* dst, const void* src_host, std::size_t bytes, cudaStream_t s) {
    return copy("copy_from_host", dst, src_host, bytes, cudaMemcpyHostToDevice, s);
}
status synchronize(cudaStream_t s) {
    const cudaError_t e = cudaStreamSynchronize(s);
    return e == cudaSuccess ? status{} : cuda_failure("synchronize", e, "cudaStreamSynchronize");
}

// ------------------------------------------------------------------ instantiations

#define PSAP_CUDA_INSTANTIATE(T)                                                                                 \
    template status row_reduce<T>(dmatrix<const T>, row_op, double*, cudaStream_t);                              \
    template status row_dots<T>(dmatrix<const T>, dmatrix<const T>, double*, cudaStream_t);                      \
    template status pairwise_sq_distances<T>(dmatrix<const T>, double*, cudaStream_t);                           \
    template status read<T>(dvector<const T>, double*, cudaStream_t);                                            \
    template status row_count_below<T>(dmatrix<const T>, double, double*, cudaStream_t);                         \
    template status first_nonfinite_row<T>(dmatrix<const T>, index*, cudaStream_t);                              \
    template status first_nonfinite<T>(dvector<const T>, index*, cudaStream_t);                                  \
    template status set_entries<T>(dvector<T>, const index*, index, T, cudaStream_t);                            \
    template status scale_entries<T>(dvector<T>, const index*, index, T, cudaStream_t);                          \
    template status add_scaled_sign<T>(dvector<T>, dvector<const T>, T, cudaStream_t);                           \
    template status zero_rows<T>(dmatrix<T>, const index*, index, cudaStream_t);                                 \
    template status scale_rows<T>(dmatrix<T>, const index*, index, T, cudaStream_t);                             \
    template status copy_rows<T>(dmatrix<const T>, dmatrix<T>, const index*, index, cudaStream_t);               \
    template status copy_entries<T>(dvector<const T>, dvector<T>, const index*, index, cudaStream_t);                 \
    template status row_reduce_batch<T>(const dmatrix<const T>*, index, row_op, double* const*, cudaStream_t);            \
    template status row_dots_batch<T>(const dmatrix<const T>*, const dmatrix<const T>*, index, double* const*, cudaStream_t); \
    template status pairwise_sq_distances_batch<T>(const dmatrix<const T>*, index, double* const*, cudaStream_t);         \
    template status row_count_below_batch<T>(const dmatrix<const T>*, const double*, index, double* const*, cudaStream_t); \
    template status read_batch<T>(const dvector<const T>*, index, double* const*, cudaStream_t);                          \
    template status first_nonfinite_rows<T>(const dmatrix<const T>*, index, index*, cudaStream_t);                        \
    template status first_nonfinite_batch<T>(const dvector<const T>*, index, index*, cudaStream_t);

PSAP_CUDA_INSTANTIATE(float)
PSAP_CUDA_INSTANTIATE(double)

#undef PSAP_CUDA_INSTANTIATE

}  // namespace psap::cuda
