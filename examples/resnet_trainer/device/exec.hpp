#pragma once
/// Where the device engine runs: memory, the kernels of device/kernels.hpp,
/// and a column-major GEMM. Two implementations: cuda_exec (device/
/// cuda_exec.cu: cudaMalloc, kernel launches on one stream, cuBLAS) and
/// host_exec (device/host_exec.cpp: host memory, the same kernel bodies in
/// loops, a reference GEMM), which lets the engine be tested without a GPU.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "device/kernels.hpp"

namespace trainer::device {

/// A device call failed (CUDA error, no device, out of memory); the message
/// names the call and the runtime's reason.
class device_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class exec {
 public:
  virtual ~exec() = default;
  /// "cuda:0 (NVIDIA H200)", "host emulation".
  virtual std::string name() const = 0;

  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* src, std::size_t bytes) = 0;
  /// Waits for the work queued before it.
  virtual void download(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void zero(void* dst, std::size_t bytes) = 0;

  /// f(i) for every i in [0, n).
#define TRAINER_DECLARE_RUN(K) virtual void run(const kernels::K& f, std::int64_t n) = 0;
  TRAINER_DEVICE_ELEMENT_KERNELS(TRAINER_DECLARE_RUN)
#undef TRAINER_DECLARE_RUN
  /// out[ch] = Σ_{i < per_channel} f(ch, i) for ch in [0, channels); out is device memory.
#define TRAINER_DECLARE_SUMS(K) \
  virtual void sums(const kernels::K& f, int channels, std::int64_t per_channel, kernels::sums3* out) = 0;
  TRAINER_DEVICE_SUM_KERNELS(TRAINER_DECLARE_SUMS)
#undef TRAINER_DECLARE_SUMS

  /// C ← α·op(A)·op(B) + β·C, column-major, cuBLAS's sgemm conventions
  /// (op(A) is m × k, op(B) k × n, C m × n with leading dimension ldc).
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                    const float* b, int ldb, float beta, float* c, int ldc) = 0;
};

/// The host emulation of a device (always available).
std::unique_ptr<exec> make_host_exec();
/// CUDA device `ordinal`; device_error if the build has no CUDA or the
/// machine no usable device.
std::unique_ptr<exec> make_cuda_exec(int ordinal = 0);
/// Whether this build includes the CUDA executor.
bool cuda_built();

/// Device memory owned by an exec (grow-only, like trainer::tensor).
template <class T>
class buffer {
 public:
  buffer() = default;
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  buffer(buffer&& o) noexcept : x_(o.x_), p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  ~buffer() { reset(); }

  void ensure(exec& x, std::size_t count) {
    if (count <= n_ && p_ != nullptr) return;
    reset();
    x_ = &x;
    p_ = static_cast<T*>(x.allocate(sizeof(T) * (count == 0 ? 1 : count)));
    n_ = count;
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  void reset() noexcept {
    if (p_ != nullptr) x_->release(p_);
    p_ = nullptr;
    n_ = 0;
  }
  exec* x_ = nullptr;
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace trainer::device
