// The host emulation of a device: "device memory" is host memory and every
// kernel of device/kernels.hpp runs as a loop over its indices, in the order
// a GPU would not guarantee but whose result it may not depend on (each
// index writes only its own element). Channel sums run serially per channel.
#include "nn/eigen.hpp"  // first: it must precede the intrinsics headers

#include <cstdlib>
#include <cstring>
#include <new>

#include "device/exec.hpp"

namespace trainer::device {
namespace {

using col_major = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
using col_major_out = Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>;

class host_exec final : public exec {
 public:
  std::string name() const override { return "host emulation"; }

  void* allocate(std::size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    // Poison: a kernel that reads memory nobody wrote gives NaN, not a plausible 0.
    std::memset(p, 0xff, bytes);
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void zero(void* dst, std::size_t bytes) override { std::memset(dst, 0, bytes); }

#define TRAINER_DEFINE_RUN(K) \
  void run(const kernels::K& f, std::int64_t n) override { for_each(f, n); }
  TRAINER_DEVICE_ELEMENT_KERNELS(TRAINER_DEFINE_RUN)
#undef TRAINER_DEFINE_RUN
#define TRAINER_DEFINE_SUMS(K)                                                                 \
  void sums(const kernels::K& f, int channels, std::int64_t per, kernels::sums3* out) override { \
    channel_sums(f, channels, per, out);                                                        \
  }
  TRAINER_DEVICE_SUM_KERNELS(TRAINER_DEFINE_SUMS)
#undef TRAINER_DEFINE_SUMS

  void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
            float beta, float* c, int ldc) override {
    const col_major am(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
    const col_major bm(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
    col_major_out cm(c, m, n, Eigen::OuterStride<>(ldc));
    Eigen::MatrixXf prod(m, n);
    if (ta && tb) prod.noalias() = am.transpose() * bm.transpose();
    else if (ta) prod.noalias() = am.transpose() * bm;
    else if (tb) prod.noalias() = am * bm.transpose();
    else prod.noalias() = am * bm;
    // cuBLAS: with β = 0, C is not read (it may hold NaN).
    if (beta == 0.0f) cm = alpha * prod;
    else cm = alpha * prod + beta * cm;
  }

 private:
  template <class F>
  static void for_each(const F& f, std::int64_t n) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) f(i);
  }
  template <class F>
  static void channel_sums(const F& f, int channels, std::int64_t per, kernels::sums3* out) {
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < channels; ++ch) {
      kernels::sums3 s;
      for (std::int64_t i = 0; i < per; ++i) {
        const kernels::sums3 v = f(ch, i);
        s.a += v.a;
        s.b += v.b;
        s.c += v.c;
      }
      out[ch] = s;
    }
  }
};

}  // namespace

std::unique_ptr<exec> make_host_exec() { return std::make_unique<host_exec>(); }

}  // namespace trainer::device
