#pragma once
/// \file status.hpp
/// Errors as values for the CUDA launchers (psap::cuda::status) and the
/// stream psap's CUDA backend launches on (per thread, user-settable).
/// Plain C++: needs the CUDA runtime's header, not nvcc.

#if defined(__has_include)
#if !__has_include(<cuda_runtime_api.h>)
#error "psap's CUDA backend needs the CUDA toolkit's headers: link psap::cuda (built when CMake finds the CUDA toolkit)"
#endif
#endif
#include <cuda_runtime_api.h>

#include <string>

namespace psap::cuda {

/// The outcome of a launcher or memory helper: cudaSuccess, or the CUDA error
/// (cudaErrorInvalidValue for bad arguments found on the host, before any
/// CUDA call) with a message that names the operation.
struct status {
    cudaError_t code = cudaSuccess;
    std::string message;  ///< empty on success, else "psap::cuda::<operation>: <what went wrong>"

    bool ok() const noexcept { return code == cudaSuccess; }
    explicit operator bool() const noexcept { return ok(); }
};

namespace detail {
inline cudaStream_t& stream_slot() noexcept {
    static thread_local cudaStream_t s = cudaStreamPerThread;
    return s;
}
}  // namespace detail

/// The stream psap's CUDA backend uses in the calling thread; by default the
/// per-thread default stream (cudaStreamPerThread). Operations that return
/// host results synchronize it; operations that only write device memory
/// (zero/scale/copy rows, set entries) are enqueued on it and return at once.
inline cudaStream_t current_stream() noexcept { return detail::stream_slot(); }

/// Makes psap's CUDA backend use `s` in the calling thread (e.g. the training
/// loop's stream, so psap's writes are ordered with the optimizer's).
inline void set_stream(cudaStream_t s) noexcept { detail::stream_slot() = s; }

/// Sets psap's stream for a scope and restores the previous one.
class stream_guard {
public:
    explicit stream_guard(cudaStream_t s) noexcept : previous_(current_stream()) { set_stream(s); }
    ~stream_guard() { set_stream(previous_); }
    stream_guard(const stream_guard&) = delete;
    stream_guard& operator=(const stream_guard&) = delete;

private:
    cudaStream_t previous_;
};

}  // namespace psap::cuda
