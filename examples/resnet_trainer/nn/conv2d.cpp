#include "nn/conv2d.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "nn/gemm_kernels.hpp"
#include "nn/parallel.hpp"

namespace trainer {

namespace {

using std::ptrdiff_t;

ptrdiff_t round_up(ptrdiff_t x, ptrdiff_t m) { return (x + m - 1) / m * m; }

struct geometry {
  int c, h, w, kh, kw, stride, pad, ho, wo;
  int p() const { return ho * wo; }
};

// Short copies (rows of 7–34 floats) as inline loops: a library call costs
// more than the work at these lengths.
inline void zero(float* p, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; ++i) p[i] = 0.0f;
}
inline void copy(const float* s, ptrdiff_t n, float* d) {
  for (ptrdiff_t i = 0; i < n; ++i) d[i] = s[i];
}
// Zeroes columns [j0, j1) of `rows` rows of stride ld. Column by column on
// purpose: compilers turn a contiguous zero loop into a memset call, which
// for the one or two floats of a row's border costs far more than the
// stores (5% of 28×28 training time went to such calls).
inline void zero_columns(float* p, int rows, ptrdiff_t ld, int j0, int j1) {
  for (int j = j0; j < j1; ++j)
    for (int r = 0; r < rows; ++r) p[r * ld + j] = 0.0f;
}

// Grows a buffer to at least n floats; new memory is zero, so the slack the
// kernels read past a row end is always finite.
float* reserve(float_buffer& b, std::size_t n) {
  if (b.size() < n) b.resize(n, 0.0f);
  return b.data();
}

// Copies `planes` planes of h × w into planes of (h + 2·ph) × (w + 2·pw) with a
// zero border.
void pad_planes(const float* x, int planes, int h, int w, int ph, int pw, float* out) {
  const int hp = h + 2 * ph, wp = w + 2 * pw;
  for (int c = 0; c < planes; ++c) {
    float* o = out + static_cast<ptrdiff_t>(c) * hp * wp;
    const float* src = x + static_cast<ptrdiff_t>(c) * h * w;
    zero(o, static_cast<ptrdiff_t>(ph) * wp);
    float* rows = o + static_cast<ptrdiff_t>(ph) * wp;
    for (int y = 0; y < h; ++y) copy(src + static_cast<ptrdiff_t>(y) * w, w, rows + static_cast<ptrdiff_t>(y) * wp + pw);
    zero_columns(rows, h, wp, 0, pw);
    zero_columns(rows, h, wp, pw + w, wp);
    zero(o + static_cast<ptrdiff_t>(h + ph) * wp, static_cast<ptrdiff_t>(ph) * wp);
  }
}

// Row offsets of the implicit im2col: row (c, ky, kx) is the window of plane
// c of a padded image (planes of hp × wp) starting at (ky, kx).
void shifted_offsets(int c, int kh, int kw, int hp, int wp, ptrdiff_t* off) {
  for (int ch = 0; ch < c; ++ch)
    for (int ky = 0; ky < kh; ++ky)
      for (int kx = 0; kx < kw; ++kx)
        *off++ = static_cast<ptrdiff_t>(ch) * hp * wp + static_cast<ptrdiff_t>(ky) * wp + kx;
}

// Output columns ox whose input column ox − pad + kx (stride 1) is inside
// [0, w): [lo, hi).
inline void valid_columns(const geometry& g, int kx, int& lo, int& hi) {
  lo = std::clamp(g.pad - kx, 0, g.wo);
  hi = std::clamp(g.w + g.pad - kx, lo, g.wo);
}

// col[(c·kh + ky)·kw + kx][oy·wo + ox] = x[c][oy·s − pad + ky][ox·s − pad + kx]
// (0 outside), read from xp, the input zero-padded by `pad` (planes of
// hp × wp), so no bounds checks. Row r is written at col + r·ld (P floats).
void im2col(const float* xp, const geometry& g, ptrdiff_t ld, float* col) {
  const int hp = g.h + 2 * g.pad, wp = g.w + 2 * g.pad;
  for (int c = 0; c < g.c; ++c) {
    const float* xc = xp + static_cast<ptrdiff_t>(c) * hp * wp;
    for (int ky = 0; ky < g.kh; ++ky) {
      for (int kx = 0; kx < g.kw; ++kx) {
        float* row = col + static_cast<ptrdiff_t>((c * g.kh + ky) * g.kw + kx) * ld;
        for (int oy = 0; oy < g.ho; ++oy) {
          const float* src = xc + static_cast<ptrdiff_t>(oy * g.stride + ky) * wp + kx;
          float* dst = row + oy * g.wo;
          if (g.stride == 1) {
            copy(src, g.wo, dst);
          } else {
            for (int ox = 0; ox < g.wo; ++ox) dst[ox] = src[ox * g.stride];
          }
        }
      }
    }
  }
}

// Adjoint of im2col: x[c][iy][ix] += col[...] for every tap that read it.
void col2im_add(const float* col, const geometry& g, ptrdiff_t ld, float* x) {
  for (int c = 0; c < g.c; ++c) {
    float* xc = x + static_cast<ptrdiff_t>(c) * g.h * g.w;
    for (int ky = 0; ky < g.kh; ++ky) {
      for (int kx = 0; kx < g.kw; ++kx) {
        const float* row = col + static_cast<ptrdiff_t>((c * g.kh + ky) * g.kw + kx) * ld;
        int lo = 0, hi = g.wo;
        if (g.stride == 1) valid_columns(g, kx, lo, hi);
        for (int oy = 0; oy < g.ho; ++oy) {
          const int iy = oy * g.stride - g.pad + ky;
          if (iy < 0 || iy >= g.h) continue;
          const float* src = row + oy * g.wo;
          float* dst = xc + static_cast<ptrdiff_t>(iy) * g.w;
          if (g.stride == 1) {
            float* d = dst - g.pad + kx;
            for (int ox = lo; ox < hi; ++ox) d[ox] += src[ox];
          } else {
            for (int ox = 0; ox < g.wo; ++ox) {
              const int ix = ox * g.stride - g.pad + kx;
              if (ix >= 0 && ix < g.w) dst[ix] += src[ox];
            }
          }
        }
      }
    }
  }
}

// Stride-1 convs whose output has the input's size ("same" padding, as in
// every 3×3 conv of a ResNet): row (c, ky, kx) of im2col is plane c shifted
// by d = (ky − pad)·w + (kx − pad), so it is one contiguous copy of P floats
// from the unpadded input, plus zeroing the columns that wrapped around from
// a neighbouring row. Far cheaper than P / wo copies of wo floats when the
// planes are narrow (7 wide), and no padded copy is needed.
bool same_size(const geometry& g) { return g.stride == 1 && g.ho == g.h && g.wo == g.w; }

inline ptrdiff_t shift_of(const geometry& g, int ky, int kx) {
  return static_cast<ptrdiff_t>(ky - g.pad) * g.w + (kx - g.pad);
}

// Zeroes, in every output row of an im2col row, the columns that read
// outside [0, w) for tap kx.
void zero_wrapped(const geometry& g, int kx, float* row) {
  int lo = 0, hi = 0;
  valid_columns(g, kx, lo, hi);
  zero_columns(row, g.ho, g.wo, 0, lo);
  zero_columns(row, g.ho, g.wo, hi, g.wo);
}

// im2col of a same-size conv, read from the unpadded input x (planes h × w).
void im2col_same(const float* x, const geometry& g, ptrdiff_t ld, float* col) {
  const ptrdiff_t p = g.p();
  for (int c = 0; c < g.c; ++c) {
    const float* xc = x + static_cast<ptrdiff_t>(c) * p;
    for (int ky = 0; ky < g.kh; ++ky) {
      for (int kx = 0; kx < g.kw; ++kx) {
        float* row = col + static_cast<ptrdiff_t>((c * g.kh + ky) * g.kw + kx) * ld;
        const ptrdiff_t d = shift_of(g, ky, kx);
        const ptrdiff_t lo = std::clamp<ptrdiff_t>(-d, 0, p), hi = std::clamp<ptrdiff_t>(p - d, lo, p);
        zero(row, lo);
        copy(xc + lo + d, hi - lo, row + lo);
        zero(row + hi, p - hi);
        zero_wrapped(g, kx, row);
      }
    }
  }
}

// Adjoint of im2col_same, adding into x. Overwrites the wrapped columns of
// col with zeros (col is scratch here), so each row is one contiguous add;
// every x element receives its taps in the same (c, ky, kx) order as
// col2im_add, so the sums are the same bit for bit.
void col2im_same_add(float* col, const geometry& g, ptrdiff_t ld, float* x) {
  const ptrdiff_t p = g.p();
  for (int c = 0; c < g.c; ++c) {
    float* xc = x + static_cast<ptrdiff_t>(c) * p;
    for (int ky = 0; ky < g.kh; ++ky) {
      for (int kx = 0; kx < g.kw; ++kx) {
        float* row = col + static_cast<ptrdiff_t>((c * g.kh + ky) * g.kw + kx) * ld;
        zero_wrapped(g, kx, row);
        const ptrdiff_t d = shift_of(g, ky, kx);
        const ptrdiff_t lo = std::clamp<ptrdiff_t>(-d, 0, p), hi = std::clamp<ptrdiff_t>(p - d, lo, p);
        float* dst = xc + d;
        for (ptrdiff_t i = lo; i < hi; ++i) dst[i] += row[i];
      }
    }
  }
}

// Copies planes of rows w wide into rows of stride ld (dropping or adding
// columns), optionally adding, optionally adding a per-plane bias.
void copy_rows(const float* src, ptrdiff_t src_ld, float* dst, ptrdiff_t dst_ld, int planes, int h, int w,
               ptrdiff_t src_plane, ptrdiff_t dst_plane, bool add, const float* bias) {
  for (int c = 0; c < planes; ++c) {
    const float b = bias != nullptr ? bias[c] : 0.0f;
    for (int y = 0; y < h; ++y) {
      const float* s = src + c * src_plane + y * src_ld;
      float* d = dst + c * dst_plane + y * dst_ld;
      if (add) {
        for (int x = 0; x < w; ++x) d[x] += s[x] + b;
      } else {
        for (int x = 0; x < w; ++x) d[x] = s[x] + b;
      }
    }
  }
}

// Images [begin, end) of thread t of nt (contiguous, balanced).
void thread_range(int n, int t, int nt, int& begin, int& end) {
  begin = static_cast<int>(static_cast<long>(n) * t / nt);
  end = static_cast<int>(static_cast<long>(n) * (t + 1) / nt);
}

// Explicit path: images are concatenated along the GEMM's column dimension,
// enough of them to give the kernels ≥ 512 columns.
int explicit_chunk(int p) { return std::clamp((512 + p - 1) / p, 1, 16); }

}  // namespace

conv2d::conv2d(int in_channels, int out_channels, int kernel, int stride, int padding, bool bias)
    : conv2d(in_channels, out_channels, kernel, kernel, stride, padding, bias) {}

conv2d::conv2d(int in_channels, int out_channels, int kernel_h, int kernel_w, int stride, int padding, bool bias)
    : in_c_(in_channels), out_c_(out_channels), kh_(kernel_h), kw_(kernel_w), stride_(stride), pad_(padding) {
  if (in_c_ < 1 || out_c_ < 1 || kh_ < 1 || kw_ < 1 || stride_ < 1 || pad_ < 0)
    throw std::invalid_argument("conv2d: need in/out channels, kernel and stride >= 1 and padding >= 0 (got in=" +
                                std::to_string(in_c_) + " out=" + std::to_string(out_c_) + " kernel=" +
                                std::to_string(kh_) + "x" + std::to_string(kw_) + " stride=" + std::to_string(stride_) +
                                " padding=" + std::to_string(pad_) + ")");
  const std::size_t n = static_cast<std::size_t>(out_c_) * static_cast<std::size_t>(fan_in());
  weight_.assign(n, 0.0f);
  weight_grad_.assign(n, 0.0f);
  if (bias) {
    bias_.assign(static_cast<std::size_t>(out_c_), 0.0f);
    bias_grad_.assign(static_cast<std::size_t>(out_c_), 0.0f);
  }
}

void conv2d::init_kaiming_fan_out(rng& g) {
  const double std = std::sqrt(2.0 / static_cast<double>(out_c_ * kh_ * kw_));
  for (auto& w : weight_) w = static_cast<float>(std * g.normal());
  std::fill(bias_.begin(), bias_.end(), 0.0f);
}

void conv2d::init_default(rng& g) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in()));
  for (auto& w : weight_) w = static_cast<float>(g.uniform(-bound, bound));
  for (auto& b : bias_) b = static_cast<float>(g.uniform(-bound, bound));
}

// The shifted path computes out_w + 2·pad columns per row, the padding
// columns wasted: 14% extra GEMM work at 14 wide (3×3, pad 1), less than the
// explicit im2col and col2im copies cost (the 14-wide stage of a 28×28
// input: +11% median 1-thread training throughput, docs/benchmarks.md); at 8 or
// 7 wide (25–29%) the explicit buffer wins.
bool conv2d::use_shifted(int out_w) const {
  return stride_ == 1 && out_w >= 14 && pad_ <= kh_ - 1 && pad_ <= kw_ - 1;
}

void conv2d::forward(const tensor& x, tensor& y, bool train) {
  const shape4 xs = x.shape();
  if (xs.c != in_c_)
    throw std::invalid_argument("conv2d::forward: input has " + std::to_string(xs.c) + " channels, the layer expects " +
                                std::to_string(in_c_));
  const geometry g{in_c_, xs.h, xs.w, kh_, kw_, stride_, pad_, out_h(xs.h), out_w(xs.w)};
  if (g.ho < 1 || g.wo < 1)
    throw std::invalid_argument("conv2d::forward: input " + std::to_string(xs.h) + "x" + std::to_string(xs.w) +
                                " is smaller than the kernel");
  y.resize({xs.n, out_c_, g.ho, g.wo});
  const int k = fan_in();
  packed_.resize(kernels::packed_size(out_c_, k));
  kernels::pack_a(weight_.data(), out_c_, k, k, 1, packed_.data());
  ws_.resize(static_cast<std::size_t>(max_threads()));
  const bool shifted = use_shifted(g.wo), same = same_size(g);
  const int hp = xs.h + 2 * pad_, wp = xs.w + 2 * pad_, p = g.p();
  const int chunk = shifted ? 1 : explicit_chunk(p);
  const ptrdiff_t ld = round_up(static_cast<ptrdiff_t>(chunk) * p, kernels::dot_granule);
  std::vector<ptrdiff_t> boff(static_cast<std::size_t>(k));
  if (shifted) {
    shifted_offsets(in_c_, kh_, kw_, hp, wp, boff.data());
  } else {
    for (int i = 0; i < k; ++i) boff[static_cast<std::size_t>(i)] = i * ld;
  }
  const float* bias = has_bias() ? bias_.data() : nullptr;
#pragma omp parallel
  {
    workspace& w = ws_[static_cast<std::size_t>(thread_id())];
    int begin = 0, end = 0;
    thread_range(xs.n, thread_id(), team_size(), begin, end);
    for (int n0 = begin; n0 < end; n0 += chunk) {
      const int cn = std::min(chunk, end - n0);
      if (shifted) {
        // Output computed on the padded-width grid (ho × wp); the wp − wo
        // extra columns per row are dropped when copying out.
        float* xp = reserve(w.in, static_cast<std::size_t>(in_c_) * hp * wp + kernels::b_slack + kw_);
        pad_planes(x.sample(n0), in_c_, xs.h, xs.w, pad_, pad_, xp);
        const ptrdiff_t nn = static_cast<ptrdiff_t>(g.ho) * wp;
        float* out = reserve(w.out, static_cast<std::size_t>(out_c_ * nn));
        kernels::gemm_rows(out_c_, nn, k, packed_.data(), xp, boff.data(), out, nn, false);
        copy_rows(out, wp, y.sample(n0), g.wo, out_c_, g.ho, g.wo, nn, p, false, bias);
        continue;
      }
      float* col = reserve(w.in, static_cast<std::size_t>(k * ld + kernels::b_slack));
      for (int i = 0; i < cn; ++i) {
        if (same) {
          im2col_same(x.sample(n0 + i), g, ld, col + i * p);
          continue;
        }
        float* xp = reserve(w.grad, static_cast<std::size_t>(in_c_) * hp * wp);
        pad_planes(x.sample(n0 + i), in_c_, xs.h, xs.w, pad_, pad_, xp);
        im2col(xp, g, ld, col + i * p);
      }
      float* out = reserve(w.out, static_cast<std::size_t>(out_c_ * ld));
      kernels::gemm_rows(out_c_, cn * p, k, packed_.data(), col, boff.data(), out, ld, false);
      for (int i = 0; i < cn; ++i) copy_rows(out + i * p, p, y.sample(n0 + i), p, out_c_, 1, p, ld, p, false, bias);
    }
  }
  input_ = train ? &x : nullptr;
}

void conv2d::backward(const tensor& dy, tensor* dx, bool accumulate_dx) {
  if (input_ == nullptr) throw std::logic_error("conv2d::backward without a train-mode forward");
  const tensor& x = *input_;
  const shape4 xs = x.shape();
  const geometry g{in_c_, xs.h, xs.w, kh_, kw_, stride_, pad_, out_h(xs.h), out_w(xs.w)};
  if (dy.shape() != shape4{xs.n, out_c_, g.ho, g.wo})
    throw std::invalid_argument("conv2d::backward: gradient shape does not match the forward output");
  const int k = fan_in(), threads = max_threads();
  const std::size_t wsize = weight_.size();
  ws_.resize(static_cast<std::size_t>(threads));
  dw_.resize(static_cast<std::size_t>(threads));
  for (auto& d : dw_) d.assign(wsize, 0.0f);
  if (dx != nullptr) dx->resize(xs);

  const bool shifted = use_shifted(g.wo), same = same_size(g);
  // Forward operand layout (for the weight gradient).
  const int hp = xs.h + 2 * pad_, wp = xs.w + 2 * pad_, p = g.p();
  const int chunk = shifted ? 1 : explicit_chunk(p);
  // Shifted: the weight gradient reads output-gradient rows on the
  // padded-width grid (zero in the extra columns). Explicit: rows of `chunk`
  // images side by side, zero after the last.
  const ptrdiff_t ld = shifted ? round_up(static_cast<ptrdiff_t>(g.ho) * wp, kernels::dot_granule)
                               : round_up(static_cast<ptrdiff_t>(chunk) * p, kernels::dot_granule);
  std::vector<ptrdiff_t> boff(static_cast<std::size_t>(k));
  if (shifted) {
    shifted_offsets(in_c_, kh_, kw_, hp, wp, boff.data());
  } else {
    for (int i = 0; i < k; ++i) boff[static_cast<std::size_t>(i)] = i * ld;
  }
  // Input gradient. Shifted: a stride-1 conv of the output gradient padded by
  // (k − 1 − pad) with the flipped, transposed kernel. Explicit: dcol = Wᵀ·dY,
  // then col2im.
  const int kd = out_c_ * kh_ * kw_;
  const int ph = kh_ - 1 - pad_, pw = kw_ - 1 - pad_;
  const int hp2 = g.ho + 2 * ph, wp2 = g.wo + 2 * pw;
  std::vector<ptrdiff_t> boff2;
  if (dx != nullptr) {
    if (shifted) {
      flipped_.resize(static_cast<std::size_t>(in_c_) * static_cast<std::size_t>(kd));
      for (int o = 0; o < out_c_; ++o)
        for (int c = 0; c < in_c_; ++c)
          for (int ky = 0; ky < kh_; ++ky)
            for (int kx = 0; kx < kw_; ++kx)
              flipped_[static_cast<std::size_t>(c * kd + (o * kh_ + ky) * kw_ + kx)] =
                  weight_[static_cast<std::size_t>(((o * in_c_ + c) * kh_ + (kh_ - 1 - ky)) * kw_ + (kw_ - 1 - kx))];
      packed_.resize(kernels::packed_size(in_c_, kd));
      kernels::pack_a(flipped_.data(), in_c_, kd, kd, 1, packed_.data());
      boff2.resize(static_cast<std::size_t>(kd));
      shifted_offsets(out_c_, kh_, kw_, hp2, wp2, boff2.data());
    } else {
      packed_.resize(kernels::packed_size(k, out_c_));
      kernels::pack_a(weight_.data(), k, out_c_, 1, k, packed_.data());  // Wᵀ: k × out
      boff2.resize(static_cast<std::size_t>(out_c_));
      for (int o = 0; o < out_c_; ++o) boff2[static_cast<std::size_t>(o)] = o * ld;
    }
  }

#pragma omp parallel
  {
    const int t = thread_id();
    workspace& w = ws_[static_cast<std::size_t>(t)];
    float* dwt = dw_[static_cast<std::size_t>(t)].data();
    int begin = 0, end = 0;
    thread_range(xs.n, t, team_size(), begin, end);
    for (int n0 = begin; n0 < end; n0 += chunk) {
      const int cn = std::min(chunk, end - n0);
      if (shifted) {
        float* xp = reserve(w.in, static_cast<std::size_t>(in_c_) * hp * wp + kernels::b_slack + kw_);
        pad_planes(x.sample(n0), in_c_, xs.h, xs.w, pad_, pad_, xp);
        float* a = reserve(w.grad, static_cast<std::size_t>(out_c_ * ld));
        for (int o = 0; o < out_c_; ++o) {
          float* row = a + o * ld;
          const float* src = dy.plane(n0, o);
          for (int yy = 0; yy < g.ho; ++yy) copy(src + yy * g.wo, g.wo, row + yy * wp);
          zero_columns(row, g.ho, wp, g.wo, wp);
          zero(row + g.ho * wp, ld - g.ho * wp);
        }
        kernels::gemm_dot(out_c_, k, ld, 1, a, ld, 0, xp, 0, boff.data(), dwt, k);
        if (dx != nullptr) {
          float* dyp = reserve(w.in, static_cast<std::size_t>(out_c_) * hp2 * wp2 + kernels::b_slack + kw_);
          pad_planes(dy.sample(n0), out_c_, g.ho, g.wo, ph, pw, dyp);
          const ptrdiff_t nn = static_cast<ptrdiff_t>(xs.h) * wp2;
          float* out = reserve(w.out, static_cast<std::size_t>(in_c_ * nn));
          kernels::gemm_rows(in_c_, nn, kd, packed_.data(), dyp, boff2.data(), out, nn, false);
          copy_rows(out, wp2, dx->sample(n0), xs.w, in_c_, xs.h, xs.w, nn, static_cast<ptrdiff_t>(xs.plane()),
                    accumulate_dx, nullptr);
        }
        continue;
      }
      float* col = reserve(w.in, static_cast<std::size_t>(k * ld + kernels::b_slack));
      float* a = reserve(w.grad, static_cast<std::size_t>(out_c_ * ld + kernels::b_slack));
      const ptrdiff_t used = static_cast<ptrdiff_t>(cn) * p;
      for (int i = 0; i < cn; ++i) {
        if (same) {
          im2col_same(x.sample(n0 + i), g, ld, col + i * p);
        } else {
          float* xp = reserve(w.out, static_cast<std::size_t>(in_c_) * hp * wp);
          pad_planes(x.sample(n0 + i), in_c_, xs.h, xs.w, pad_, pad_, xp);
          im2col(xp, g, ld, col + i * p);
        }
        for (int o = 0; o < out_c_; ++o) copy(dy.plane(n0 + i, o), p, a + o * ld + i * p);
      }
      for (int r = 0; r < k; ++r) zero(col + r * ld + used, ld - used);
      for (int o = 0; o < out_c_; ++o) zero(a + o * ld + used, ld - used);
      kernels::gemm_dot(out_c_, k, ld, 1, a, ld, 0, col, 0, boff.data(), dwt, k);
      if (dx == nullptr) continue;
      // dcol overwrites the im2col buffer, no longer needed.
      kernels::gemm_rows(k, used, out_c_, packed_.data(), a, boff2.data(), col, ld, false);
      for (int i = 0; i < cn; ++i) {
        float* dxn = dx->sample(n0 + i);
        if (!accumulate_dx) zero(dxn, static_cast<ptrdiff_t>(xs.sample()));
        if (same) {
          col2im_same_add(col + i * p, g, ld, dxn);
        } else {
          col2im_add(col + i * p, g, ld, dxn);
        }
      }
    }
  }
  for (std::size_t i = 0; i < wsize; ++i) {
    float s = 0.0f;
    for (int t = 0; t < threads; ++t) s += dw_[static_cast<std::size_t>(t)][i];
    weight_grad_[i] = s;
  }
  if (has_bias()) {
    for (int o = 0; o < out_c_; ++o) {
      double s = 0.0;
      for (int n = 0; n < xs.n; ++n) {
        const float* p = dy.plane(n, o);
        float ps = 0.0f;
#pragma omp simd reduction(+ : ps)
        for (int i = 0; i < g.p(); ++i) ps += p[i];
        s += ps;
      }
      bias_grad_[static_cast<std::size_t>(o)] = static_cast<float>(s);
    }
  }
}

}  // namespace trainer
