#include "nn/gemm_kernels.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace trainer::kernels {

namespace {

// One SIMD register of floats (GCC/Clang vector extension): 512, 256 or 128
// bits, whatever the target has.
#ifdef __AVX512F__
constexpr int lanes = 16;
constexpr int rows_mr = 8;   // gemm_rows tile: 8 rows × 2 registers = 16 accumulators of 32
constexpr int dot_mo = 4, dot_mk = 6;
#elif defined(__AVX__)
constexpr int lanes = 8;
constexpr int rows_mr = 6;   // 12 accumulators of 16 registers
constexpr int dot_mo = 2, dot_mk = 4;
#else
constexpr int lanes = 4;
constexpr int rows_mr = 6;
constexpr int dot_mo = 2, dot_mk = 4;
#endif
using vf = float __attribute__((vector_size(lanes * sizeof(float))));
constexpr int nr = 2 * lanes;
static_assert(dot_granule % lanes == 0);

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
// Pairwise halving keeps the reduction in vector instructions.
using v4 = float __attribute__((vector_size(4 * sizeof(float))));
using v8 = float __attribute__((vector_size(8 * sizeof(float))));
template <class Half, class Whole>
inline Half fold(Whole v) {
  Half lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  return lo + hi;
}
inline float hsum(vf v) {
  v4 q;
  if constexpr (lanes == 16) q = fold<v4>(fold<v8>(v));
  else if constexpr (lanes == 8) q = fold<v4>(v);
  else std::memcpy(&q, &v, sizeof q);
  return (q[0] + q[2]) + (q[1] + q[3]);
}

template <int R>
void rows_tile(int k, const float* ap, const float* b, const std::ptrdiff_t* boff, std::ptrdiff_t j0, float* c,
               std::ptrdiff_t ldc, std::ptrdiff_t ncols, bool accumulate) {
  vf s0[R], s1[R];
  for (int r = 0; r < R; ++r) s0[r] = s1[r] = vf{};
  for (int kk = 0; kk < k; ++kk) {
    const float* bk = b + boff[kk] + j0;
    const vf b0 = load(bk), b1 = load(bk + lanes);
    const float* a = ap + static_cast<std::ptrdiff_t>(kk) * rows_mr;
    for (int r = 0; r < R; ++r) {
      s0[r] += a[r] * b0;
      s1[r] += a[r] * b1;
    }
  }
  if (ncols == nr) {
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc + j0;
      if (accumulate) {
        store(cr, load(cr) + s0[r]);
        store(cr + lanes, load(cr + lanes) + s1[r]);
      } else {
        store(cr, s0[r]);
        store(cr + lanes, s1[r]);
      }
    }
    return;
  }
  for (int r = 0; r < R; ++r) {
    float tmp[nr];
    store(tmp, s0[r]);
    store(tmp + lanes, s1[r]);
    float* cr = c + r * ldc + j0;
    for (std::ptrdiff_t j = 0; j < ncols; ++j) cr[j] = accumulate ? cr[j] + tmp[j] : tmp[j];
  }
}

struct dot_args {
  std::ptrdiff_t n;
  int batch;
  const float* a;
  std::ptrdiff_t lda, a_batch;
  const float* b;
  std::ptrdiff_t b_batch;
  const std::ptrdiff_t* boff;
  float* c;
  std::ptrdiff_t ldc;
};

template <int RO, int RK>
void dot_tile(const dot_args& d) {
  vf s[RO][RK];
  for (int i = 0; i < RO; ++i)
    for (int j = 0; j < RK; ++j) s[i][j] = vf{};
  for (int img = 0; img < d.batch; ++img) {
    const float* a = d.a + img * d.a_batch;
    const float* b = d.b + img * d.b_batch;
    for (std::ptrdiff_t x = 0; x < d.n; x += lanes) {
      vf av[RO];
      for (int i = 0; i < RO; ++i) av[i] = load(a + i * d.lda + x);
      for (int j = 0; j < RK; ++j) {
        const vf bv = load(b + d.boff[j] + x);
        for (int i = 0; i < RO; ++i) s[i][j] += av[i] * bv;
      }
    }
  }
  float* c = d.c;
  const std::ptrdiff_t ldc = d.ldc;
  for (int i = 0; i < RO; ++i)
    for (int j = 0; j < RK; ++j) c[i * ldc + j] += hsum(s[i][j]);
}

template <int RO, int... RK>
void dot_dispatch_k(int rk, const dot_args& d, std::integer_sequence<int, RK...>) {
  ((rk == RK + 1 ? dot_tile<RO, RK + 1>(d) : void()), ...);
}

template <int... RO>
void dot_dispatch(int ro, int rk, const dot_args& d, std::integer_sequence<int, RO...>) {
  ((ro == RO + 1 ? dot_dispatch_k<RO + 1>(rk, d, std::make_integer_sequence<int, dot_mk>{}) : void()), ...);
}

template <int... R>
void rows_dispatch(int r, int k, const float* ap, const float* b, const std::ptrdiff_t* boff, std::ptrdiff_t j0,
                   float* c, std::ptrdiff_t ldc, std::ptrdiff_t ncols, bool accumulate, std::integer_sequence<int, R...>) {
  ((r == R + 1 ? rows_tile<R + 1>(k, ap, b, boff, j0, c, ldc, ncols, accumulate) : void()), ...);
}

}  // namespace

std::size_t packed_size(int m, int k) {
  return static_cast<std::size_t>((m + rows_mr - 1) / rows_mr) * rows_mr * static_cast<std::size_t>(k);
}

void pack_a(const float* a, int m, int k, std::ptrdiff_t lda, std::ptrdiff_t ka, float* out) {
  for (int m0 = 0; m0 < m; m0 += rows_mr) {
    float* panel = out + static_cast<std::ptrdiff_t>(m0) * k;
    for (int kk = 0; kk < k; ++kk)
      for (int r = 0; r < rows_mr; ++r)
        panel[kk * rows_mr + r] = m0 + r < m ? a[(m0 + r) * lda + kk * ka] : 0.0f;
  }
}

void gemm_rows(int m, std::ptrdiff_t n, int k, const float* a_packed, const float* b, const std::ptrdiff_t* boff,
               float* c, std::ptrdiff_t ldc, bool accumulate) {
  // Column tiles outside: one tile's B panel (k rows × nr) serves every row block.
  for (std::ptrdiff_t j0 = 0; j0 < n; j0 += nr) {
    const std::ptrdiff_t ncols = std::min<std::ptrdiff_t>(nr, n - j0);
    for (int m0 = 0; m0 < m; m0 += rows_mr) {
      const int r = std::min(rows_mr, m - m0);
      rows_dispatch(r, k, a_packed + static_cast<std::ptrdiff_t>(m0) * k, b, boff, j0, c + m0 * ldc, ldc, ncols,
                    accumulate, std::make_integer_sequence<int, rows_mr>{});
    }
  }
}

void gemm_dot(int m, int k, std::ptrdiff_t n, int batch, const float* a, std::ptrdiff_t lda, std::ptrdiff_t a_batch,
              const float* b, std::ptrdiff_t b_batch, const std::ptrdiff_t* boff, float* c, std::ptrdiff_t ldc) {
  // Row blocks of B outside: their few rows stay in L1 while every block of
  // A (the smaller operand, m rows) streams past them.
  for (int k0 = 0; k0 < k; k0 += dot_mk) {
    const int rk = std::min(dot_mk, k - k0);
    for (int m0 = 0; m0 < m; m0 += dot_mo) {
      const int ro = std::min(dot_mo, m - m0);
      const dot_args d{n, batch, a + m0 * lda, lda, a_batch, b, b_batch, boff + k0, c + m0 * ldc + k0, ldc};
      dot_dispatch(ro, rk, d, std::make_integer_sequence<int, dot_mo>{});
    }
  }
}

}  // namespace trainer::kernels
