// The CUDA executor: kernels of device/kernels.hpp launched on one stream,
// cuBLAS for the GEMMs. Every CUDA and cuBLAS status is checked and turned
// into a device_error naming the call.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "device/exec.hpp"

namespace trainer::device {
namespace {

using kernels::sums3;
using i64 = std::int64_t;

constexpr int threads = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw device_error(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(e));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw device_error(std::string("cuBLAS: ") + what + " failed: " + cublasGetStatusString(s));
}

template <class F>
__global__ void element_kernel(F f, i64 n) {
  for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<i64>(gridDim.x) * blockDim.x)
    f(i);
}

// Channel sums in two passes, both in a fixed order (same inputs, same bits
// on every run): blockIdx.y is the channel, blockIdx.x one of `chunks`
// contiguous ranges of its `per` values, reduced by a fixed tree over the
// block's threads into partial[ch·chunks + chunk]; then one thread per
// channel adds its chunks in order. Several blocks per channel keep the
// GPU busy when a layer has few channels (16 in a CIFAR ResNet's stage 1).
template <class F>
__global__ void partial_sums_kernel(F f, i64 per, int chunks, sums3* partial) {
  __shared__ double sa[threads], sb[threads], sc[threads];
  const int ch = static_cast<int>(blockIdx.y);
  const int t = static_cast<int>(threadIdx.x);
  const i64 span = (per + chunks - 1) / chunks;
  const i64 begin = static_cast<i64>(blockIdx.x) * span;
  const i64 end = begin + span < per ? begin + span : per;
  sums3 s;
  for (i64 i = begin + t; i < end; i += threads) {
    const sums3 v = f(ch, i);
    s.a += v.a;
    s.b += v.b;
    s.c += v.c;
  }
  sa[t] = s.a;
  sb[t] = s.b;
  sc[t] = s.c;
  __syncthreads();
  for (int half = threads / 2; half > 0; half /= 2) {
    if (t < half) {
      sa[t] += sa[t + half];
      sb[t] += sb[t + half];
      sc[t] += sc[t + half];
    }
    __syncthreads();
  }
  if (t == 0) partial[static_cast<i64>(ch) * chunks + blockIdx.x] = sums3{sa[0], sb[0], sc[0]};
}

__global__ void combine_sums_kernel(const sums3* partial, int chunks, int channels, sums3* out) {
  const int ch = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (ch >= channels) return;
  sums3 s;
  for (int k = 0; k < chunks; ++k) {
    const sums3 v = partial[static_cast<i64>(ch) * chunks + k];
    s.a += v.a;
    s.b += v.b;
    s.c += v.c;
  }
  out[ch] = s;
}

class cuda_exec final : public exec {
 public:
  explicit cuda_exec(int ordinal) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
      throw device_error(std::string("no usable CUDA device (") +
                         (e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none") +
                         "); use --device cpu");
    if (ordinal < 0 || ordinal >= count)
      throw device_error("CUDA device " + std::to_string(ordinal) + " does not exist (this machine has " +
                         std::to_string(count) + "); use --device cuda:0 .. cuda:" + std::to_string(count - 1));
    check(cudaSetDevice(ordinal), "cudaSetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties");
    name_ = "cuda:" + std::to_string(ordinal) + " (" + prop.name + ")";
    blocks_ = prop.multiProcessorCount * 8;
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    check(cublasCreate(&blas_), "cublasCreate");
    check(cublasSetStream(blas_, stream_), "cublasSetStream");
    // Plain FP32 (no TF32 tensor cores): results within float tolerance of the CPU trainer.
    check(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  ~cuda_exec() override {
    if (partial_ != nullptr) release(partial_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return name_; }

  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
    return p;
  }
  void release(void* p) noexcept override {
    cudaStreamSynchronize(stream_);
    cudaFree(p);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (upload)");
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (download)");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  void zero(void* dst, std::size_t bytes) override {
    check(cudaMemsetAsync(dst, 0, bytes, stream_), "cudaMemsetAsync");
  }

#define TRAINER_DEFINE_RUN(K) \
  void run(const kernels::K& f, i64 n) override { launch(f, n, #K); }
  TRAINER_DEVICE_ELEMENT_KERNELS(TRAINER_DEFINE_RUN)
#undef TRAINER_DEFINE_RUN
#define TRAINER_DEFINE_SUMS(K) \
  void sums(const kernels::K& f, int channels, i64 per, sums3* out) override { reduce(f, channels, per, out, #K); }
  TRAINER_DEVICE_SUM_KERNELS(TRAINER_DEFINE_SUMS)
#undef TRAINER_DEFINE_SUMS

  void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
            float beta, float* c, int ldc) override {
    check(cublasSgemm(blas_, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a, lda, b,
                      ldb, &beta, c, ldc),
          "cublasSgemm");
  }

 private:
  template <class F>
  void launch(const F& f, i64 n, const char* what) {
    if (n <= 0) return;
    const i64 want = (n + threads - 1) / threads;
    const int grid = static_cast<int>(want < blocks_ ? want : blocks_);
    element_kernel<<<grid, threads, 0, stream_>>>(f, n);
    check(cudaGetLastError(), what);
  }
  template <class F>
  void reduce(const F& f, int channels, i64 per, sums3* out, const char* what) {
    if (channels <= 0) return;
    // ~16 values per thread and chunk, at most 256 chunks per channel.
    const i64 want = (per + threads * 16 - 1) / (threads * 16);
    const int chunks = static_cast<int>(want < 1 ? 1 : (want > 256 ? 256 : want));
    if (chunks == 1) {
      partial_sums_kernel<<<dim3(1, static_cast<unsigned>(channels)), threads, 0, stream_>>>(f, per, 1, out);
      check(cudaGetLastError(), what);
      return;
    }
    const std::size_t need = static_cast<std::size_t>(chunks) * static_cast<std::size_t>(channels);
    if (need > partial_size_) {
      if (partial_ != nullptr) release(partial_);
      partial_ = static_cast<sums3*>(allocate(need * sizeof(sums3)));
      partial_size_ = need;
    }
    partial_sums_kernel<<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(channels)), threads, 0, stream_>>>(
        f, per, chunks, partial_);
    check(cudaGetLastError(), what);
    combine_sums_kernel<<<(channels + threads - 1) / threads, threads, 0, stream_>>>(partial_, chunks, channels, out);
    check(cudaGetLastError(), what);
  }

  std::string name_;
  int blocks_ = 1024;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  sums3* partial_ = nullptr;  // per-chunk partial sums (stream-ordered reuse)
  std::size_t partial_size_ = 0;
};

}  // namespace

bool cuda_built() { return true; }

std::unique_ptr<exec> make_cuda_exec(int ordinal) { return std::make_unique<cuda_exec>(ordinal); }

}  // namespace trainer::device
