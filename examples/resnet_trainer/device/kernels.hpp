#pragma once
/// The device engine's kernels as plain functors: each computes one output
/// element (or one channel's partial sums) from its index. The CUDA executor
/// launches them as kernels (device/cuda_exec.cu); the host executor runs
/// the same bodies in loops (device/host_exec.cpp), so the index arithmetic
/// of every kernel is tested on machines without a GPU.
///
/// Layouts: activations NCHW; P = H·W of the plane in question. Convolutions
/// use an im2col matrix of K = C_in·kh·kw rows by N·P_out columns (column
/// n·P_out + p) and compute in "CNHW" (C_out rows of N·P_out), permuted to
/// NCHW afterwards. Every backward kernel *adds* into its input gradient:
/// the engine zeroes gradient buffers first, so branches sum.

#include <math.h>  // sqrt, sqrtf: the same names in host and device code

#include <cstdint>

#if defined(__CUDACC__)
#define TRAINER_HD __host__ __device__
#else
#define TRAINER_HD
#endif

namespace trainer::device::kernels {

using i64 = std::int64_t;

/// Up to three sums per channel, in double.
struct sums3 {
  double a = 0.0, b = 0.0, c = 0.0;
};

// ---------------------------------------------------------------- convolution

struct conv_geometry {
  int n, c, h, w;        // input
  int kh, kw, stride, pad;
  int oh, ow;            // output plane
  TRAINER_HD i64 k() const { return static_cast<i64>(c) * kh * kw; }
  TRAINER_HD i64 cols() const { return static_cast<i64>(n) * oh * ow; }
};

/// col[kk, n·P_out + p] = x[n, ci, oy·s − pad + ky, ox·s − pad + kx] (0 outside).
struct im2col {
  const float* x;
  float* col;
  conv_geometry g;
  TRAINER_HD void operator()(i64 i) const {
    const i64 cols = g.cols();
    const i64 kk = i / cols, j = i % cols;
    const int po = g.oh * g.ow;
    const int n = static_cast<int>(j / po), p = static_cast<int>(j % po);
    const int kx = static_cast<int>(kk % g.kw), ky = static_cast<int>((kk / g.kw) % g.kh);
    const int ci = static_cast<int>(kk / (static_cast<i64>(g.kw) * g.kh));
    const int iy = (p / g.ow) * g.stride - g.pad + ky, ix = (p % g.ow) * g.stride - g.pad + kx;
    col[i] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                 ? x[((static_cast<i64>(n) * g.c + ci) * g.h + iy) * g.w + ix]
                 : 0.0f;
  }
};

/// dx[n, ci, iy, ix] += Σ over the (ky, kx) whose window covers it of dcol.
/// A gather (one thread per input element), so no atomics and a fixed order.
struct col2im_add {
  const float* dcol;
  float* dx;
  conv_geometry g;
  TRAINER_HD void operator()(i64 i) const {
    const int ix = static_cast<int>(i % g.w), iy = static_cast<int>((i / g.w) % g.h);
    const i64 nc = i / (static_cast<i64>(g.w) * g.h);
    const int ci = static_cast<int>(nc % g.c), n = static_cast<int>(nc / g.c);
    const i64 cols = g.cols();
    const int po = g.oh * g.ow;
    float s = 0.0f;
    for (int ky = 0; ky < g.kh; ++ky) {
      const int ty = iy + g.pad - ky;
      if (ty < 0 || ty % g.stride != 0 || ty / g.stride >= g.oh) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const int tx = ix + g.pad - kx;
        if (tx < 0 || tx % g.stride != 0 || tx / g.stride >= g.ow) continue;
        const i64 kk = (static_cast<i64>(ci) * g.kh + ky) * g.kw + kx;
        s += dcol[kk * cols + static_cast<i64>(n) * po + (ty / g.stride) * g.ow + tx / g.stride];
      }
    }
    dx[i] += s;
  }
};

/// dst (NCHW) = src (CNHW) [+ map[c, p]] [+ bias[c]].
struct cnhw_to_nchw {
  const float* src;
  float* dst;
  const float* map;   // nullable: C × P
  const float* bias;  // nullable: C
  int n, c;
  i64 p;
  TRAINER_HD void operator()(i64 i) const {
    const i64 q = i % p;
    const i64 nc = i / p;
    const int ch = static_cast<int>(nc % c), s = static_cast<int>(nc / c);
    float v = src[(static_cast<i64>(ch) * n + s) * p + q];
    if (map) v += map[static_cast<i64>(ch) * p + q];
    if (bias) v += bias[ch];
    dst[i] = v;
  }
};

/// dst (CNHW) = src (NCHW).
struct nchw_to_cnhw {
  const float* src;
  float* dst;
  int n, c;
  i64 p;
  TRAINER_HD void operator()(i64 i) const {
    const i64 q = i % p;
    const i64 cn = i / p;
    const int s = static_cast<int>(cn % n), ch = static_cast<int>(cn / n);
    dst[i] = src[(static_cast<i64>(s) * c + ch) * p + q];
  }
};

// ---------------------------------------------------------------- batch norm

/// Channel sums: a = Σ x over (n, p).
struct bn_sum_x {
  const float* x;
  int c;
  i64 p;
  TRAINER_HD sums3 operator()(int ch, i64 i) const {
    sums3 s;
    s.a = x[((i / p) * c + ch) * p + i % p];
    return s;
  }
};

/// Channel sums: a = Σ (x − mean)², mean in double.
struct bn_sum_sq {
  const float* x;
  const double* mean;
  int c;
  i64 p;
  TRAINER_HD sums3 operator()(int ch, i64 i) const {
    const double d = static_cast<double>(x[((i / p) * c + ch) * p + i % p]) - mean[ch];
    sums3 s;
    s.a = d * d;
    return s;
  }
};

/// mean[c] = sums[c].a / count.
struct bn_mean {
  const sums3* sums;
  double* mean;
  double count;
  TRAINER_HD void operator()(i64 ch) const { mean[ch] = sums[ch].a / count; }
};

/// From the mean and Σ(x − mean)²: the batch statistics the forward pass
/// normalises with (biased variance), the running-statistics update with the
/// unbiased one, and the per-channel affine map y = (x − shift)·scale + β.
struct bn_finish {
  const sums3* sq;
  const double* mean;
  const float* gamma;
  float* running_mean;
  float* running_var;
  float* batch_mean;
  float* invstd;
  float* shift;
  float* scale;
  double count, factor, eps;
  TRAINER_HD void operator()(i64 ch) const {
    const double var = sq[ch].a / count;
    const float is = static_cast<float>(1.0 / sqrt(var + eps));
    batch_mean[ch] = static_cast<float>(mean[ch]);
    invstd[ch] = is;
    running_mean[ch] = static_cast<float>((1.0 - factor) * running_mean[ch] + factor * mean[ch]);
    running_var[ch] = static_cast<float>((1.0 - factor) * running_var[ch] + factor * (sq[ch].a / (count - 1.0)));
    shift[ch] = batch_mean[ch];
    scale[ch] = gamma[ch] * is;
  }
};

/// Eval mode: shift = running mean, scale = γ / √(running var + ε).
struct bn_eval_affine {
  const float* gamma;
  const float* running_mean;
  const float* running_var;
  float* shift;
  float* scale;
  float eps;
  TRAINER_HD void operator()(i64 ch) const {
    shift[ch] = running_mean[ch];
    scale[ch] = gamma[ch] * (1.0f / sqrtf(running_var[ch] + eps));
  }
};

/// v = (x − shift)·scale + β [+ residual]; z = v (train), y = relu ? max(v, 0) : v.
struct bn_apply {
  const float* x;
  const float* residual;  // nullable
  float* z;               // nullable
  float* y;
  const float* shift;
  const float* scale;
  const float* beta;
  int c;
  i64 p;
  bool relu;
  TRAINER_HD void operator()(i64 i) const {
    const int ch = static_cast<int>((i / p) % c);
    float v = (x[i] - shift[ch]) * scale[ch] + beta[ch];
    if (residual) v += residual[i];
    if (z) z[i] = v;
    y[i] = relu ? (v <= 0.0f ? 0.0f : v) : v;  // NaN passes, as nn/batch_norm
  }
};

/// Channel sums for backward, through the ReLU the BN's output flows into:
/// g = g_a·[z > 0]; a = Σ g (∂L/∂β), b = Σ g·x̂ (∂L/∂γ), c = the one-sided
/// gate gradient Σ g_a·x̂·[z > 0 or (z = 0 and x̂ > 0)] (nn/batch_norm.hpp).
struct bn_backward_sums {
  const float* x;
  const float* ga;
  const float* z;
  const float* mean;
  const float* invstd;
  int c;
  i64 p;
  TRAINER_HD sums3 operator()(int ch, i64 i) const {
    const i64 at = ((i / p) * c + ch) * p + i % p;
    const float xh = (x[at] - mean[ch]) * invstd[ch];
    // `z <= 0 ? 0 : g`: a NaN z passes its gradient on (nn/batch_norm.cpp).
    const float g = z[at] <= 0.0f ? 0.0f : ga[at];
    sums3 s;
    s.a = g;
    s.b = static_cast<double>(g * xh);
    s.c = (z[at] < 0.0f || (z[at] == 0.0f && !(xh > 0.0f))) ? 0.0 : static_cast<double>(ga[at] * xh);
    return s;
  }
};

/// dx += γ/σ·(g − mean(g) − x̂·mean(g·x̂)); g_residual += g when not null.
struct bn_backward_apply {
  const float* x;
  const float* ga;
  const float* z;
  float* dx;
  float* g_residual;  // nullable
  const float* mean;
  const float* invstd;
  const float* gamma;
  const sums3* sums;
  float count;
  int c;
  i64 p;
  TRAINER_HD void operator()(i64 i) const {
    const int ch = static_cast<int>((i / p) % c);
    const float g = z[i] <= 0.0f ? 0.0f : ga[i];
    const float mg = static_cast<float>(sums[ch].a) / count, mgx = static_cast<float>(sums[ch].b) / count;
    dx[i] += gamma[ch] * invstd[ch] * (g - mg - (x[i] - mean[ch]) * invstd[ch] * mgx);
    if (g_residual) g_residual[i] += g;
  }
};

/// Per channel: a → out_a, b → out_b, c → out_c (each nullable), as float.
struct sums_to_float {
  const sums3* sums;
  float* out_a;
  float* out_b;
  float* out_c;
  TRAINER_HD void operator()(i64 ch) const {
    if (out_a) out_a[ch] = static_cast<float>(sums[ch].a);
    if (out_b) out_b[ch] = static_cast<float>(sums[ch].b);
    if (out_c) out_c[ch] = static_cast<float>(sums[ch].c);
  }
};

// ---------------------------------------------------------------- other layers

/// y[n, j] = x[n, map[j], ::s, ::s] or 0 when map[j] = −1 (option-A shortcut).
struct shortcut_forward {
  const float* x;
  float* y;
  const int* map;
  int cin, cout, h, w, oh, ow, stride;
  TRAINER_HD void operator()(i64 i) const {
    const int ox = static_cast<int>(i % ow), oy = static_cast<int>((i / ow) % oh);
    const i64 nj = i / (static_cast<i64>(ow) * oh);
    const int j = static_cast<int>(nj % cout), n = static_cast<int>(nj / cout);
    const int src = map[j];
    y[i] = src < 0 ? 0.0f : x[((static_cast<i64>(n) * cin + src) * h + oy * stride) * w + ox * stride];
  }
};

/// dx[n, c, iy, ix] += Σ_{j: map[j] = c} dy[n, j, iy/s, ix/s] on the subsampled grid.
struct shortcut_backward {
  const float* dy;
  float* dx;
  const int* map;
  int cin, cout, h, w, oh, ow, stride;
  TRAINER_HD void operator()(i64 i) const {
    const int ix = static_cast<int>(i % w), iy = static_cast<int>((i / w) % h);
    if (ix % stride != 0 || iy % stride != 0) return;
    const i64 nc = i / (static_cast<i64>(w) * h);
    const int ch = static_cast<int>(nc % cin), n = static_cast<int>(nc / cin);
    float s = 0.0f;
    for (int j = 0; j < cout; ++j)
      if (map[j] == ch) s += dy[((static_cast<i64>(n) * cout + j) * oh + iy / stride) * ow + ix / stride];
    dx[i] += s;
  }
};

/// y[plane] = mean of the plane (global average pooling).
struct avg_pool_forward {
  const float* x;
  float* y;
  i64 p;
  TRAINER_HD void operator()(i64 i) const {
    float s = 0.0f;
    for (i64 q = 0; q < p; ++q) s += x[i * p + q];
    y[i] = s * (1.0f / static_cast<float>(p));
  }
};

struct avg_pool_backward {
  const float* dy;
  float* dx;
  i64 p;
  TRAINER_HD void operator()(i64 i) const { dx[i] += dy[i / p] * (1.0f / static_cast<float>(p)); }
};

/// Max over each window (ceil mode: windows clipped at the edge); ties to the
/// first maximum in scan order, a NaN to the last NaN (PyTorch's rule: the
/// window's output is NaN); argmax is the index in the plane.
struct max_pool_forward {
  const float* x;
  float* y;
  int* argmax;  // nullable (eval)
  int h, w, oh, ow, k, stride;
  TRAINER_HD void operator()(i64 i) const {
    const int ox = static_cast<int>(i % ow), oy = static_cast<int>((i / ow) % oh);
    const i64 plane = i / (static_cast<i64>(ow) * oh);
    const float* px = x + plane * h * w;
    const int y0 = oy * stride, x0 = ox * stride;
    const int y1 = y0 + k < h ? y0 + k : h, x1 = x0 + k < w ? x0 + k : w;
    int best = y0 * w + x0;
    for (int iy = y0; iy < y1; ++iy)
      for (int ix = x0; ix < x1; ++ix)
        if (const float v = px[iy * w + ix]; v > px[best] || v != v) best = iy * w + ix;
    y[i] = px[best];
    if (argmax) argmax[i] = best;
  }
};

/// dx[plane, q] += Σ over the windows whose argmax is q (gather).
struct max_pool_backward {
  const float* dy;
  const int* argmax;
  float* dx;
  int h, w, oh, ow, k, stride;
  TRAINER_HD void operator()(i64 i) const {
    const int q = static_cast<int>(i % (static_cast<i64>(h) * w));
    const i64 plane = i / (static_cast<i64>(h) * w);
    const int iy = q / w, ix = q % w;
    float s = 0.0f;
    for (int oy = iy / stride; oy >= 0 && oy * stride + k > iy; --oy) {
      if (oy >= oh) continue;
      for (int ox = ix / stride; ox >= 0 && ox * stride + k > ix; --ox) {
        if (ox >= ow) continue;
        const i64 o = plane * oh * ow + static_cast<i64>(oy) * ow + ox;
        if (argmax[o] == q) s += dy[o];
      }
    }
    dx[i] += s;
  }
};

/// y[n, j] += b[j] for a row-major N × out matrix.
struct add_row_bias {
  float* y;
  const float* bias;
  int out;
  TRAINER_HD void operator()(i64 i) const { y[i] += bias[i % out]; }
};

/// Channel sums: a = Σ_n dy[n, ch] of a row-major N × out matrix.
struct column_sums {
  const float* dy;
  int out;
  TRAINER_HD sums3 operator()(int ch, i64 n) const {
    sums3 s;
    s.a = dy[n * out + ch];
    return s;
  }
};

}  // namespace trainer::device::kernels

/// Every element kernel and every channel-sum kernel, for the executors'
/// overload sets (device/exec.hpp).
#define TRAINER_DEVICE_ELEMENT_KERNELS(X)                                                             \
  X(im2col) X(col2im_add) X(cnhw_to_nchw) X(nchw_to_cnhw) X(bn_mean) X(bn_finish) X(bn_eval_affine) \
  X(bn_apply) X(bn_backward_apply) X(sums_to_float) X(shortcut_forward) X(shortcut_backward)         \
  X(avg_pool_forward) X(avg_pool_backward) X(max_pool_forward) X(max_pool_backward) X(add_row_bias)
#define TRAINER_DEVICE_SUM_KERNELS(X) X(bn_sum_x) X(bn_sum_sq) X(bn_backward_sums) X(column_sums)
