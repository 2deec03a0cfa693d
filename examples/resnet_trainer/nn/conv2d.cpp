#include "nn/eigen.hpp"  // first: see the note there
#include "nn/conv2d.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "nn/parallel.hpp"

namespace trainer {

namespace {

using matrix_map = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>, Eigen::Unaligned>;
using const_matrix_map =
    Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>, Eigen::Unaligned>;

struct geometry {
  int c, h, w, kh, kw, stride, pad, ho, wo;
  int p() const { return ho * wo; }
};

// Range of output columns ox whose input column ox·1 − pad + kx lies in [0, w).
inline void valid_range(const geometry& g, int kx, int& lo, int& hi) {
  lo = std::clamp(g.pad - kx, 0, g.wo);
  hi = std::clamp(g.w + g.pad - kx, lo, g.wo);
}

// col[(c·kh + ky)·kw + kx][oy·wo + ox] = x[c][oy·s − pad + ky][ox·s − pad + kx] (0 outside).
void im2col(const float* x, const geometry& g, float* col) {
  const int p = g.p();
  for (int c = 0; c < g.c; ++c) {
    const float* xc = x + static_cast<std::size_t>(c) * g.h * g.w;
    for (int ky = 0; ky < g.kh; ++ky) {
      for (int kx = 0; kx < g.kw; ++kx) {
        float* row = col + static_cast<std::size_t>((c * g.kh + ky) * g.kw + kx) * p;
        int lo = 0, hi = g.wo;
        if (g.stride == 1) valid_range(g, kx, lo, hi);
        for (int oy = 0; oy < g.ho; ++oy) {
          float* dst = row + oy * g.wo;
          const int iy = oy * g.stride - g.pad + ky;
          if (iy < 0 || iy >= g.h) {
            std::fill(dst, dst + g.wo, 0.0f);
            continue;
          }
          const float* src = xc + static_cast<std::size_t>(iy) * g.w;
          if (g.stride == 1) {
            std::fill(dst, dst + lo, 0.0f);
            std::memcpy(dst + lo, src + lo - g.pad + kx, sizeof(float) * static_cast<std::size_t>(hi - lo));
            std::fill(dst + hi, dst + g.wo, 0.0f);
          } else {
            for (int ox = 0; ox < g.wo; ++ox) {
              const int ix = ox * g.stride - g.pad + kx;
              dst[ox] = (ix >= 0 && ix < g.w) ? src[ix] : 0.0f;
            }
          }
        }
      }
    }
  }
}

// Adjoint of im2col: x[c][iy][ix] += col[...] for every tap that read it.
void col2im_add(const float* col, const geometry& g, float* x) {
  const int p = g.p();
  for (int c = 0; c < g.c; ++c) {
    float* xc = x + static_cast<std::size_t>(c) * g.h * g.w;
    for (int ky = 0; ky < g.kh; ++ky) {
      for (int kx = 0; kx < g.kw; ++kx) {
        const float* row = col + static_cast<std::size_t>((c * g.kh + ky) * g.kw + kx) * p;
        int lo = 0, hi = g.wo;
        if (g.stride == 1) valid_range(g, kx, lo, hi);
        for (int oy = 0; oy < g.ho; ++oy) {
          const int iy = oy * g.stride - g.pad + ky;
          if (iy < 0 || iy >= g.h) continue;
          const float* src = row + oy * g.wo;
          float* dst = xc + static_cast<std::size_t>(iy) * g.w;
          if (g.stride == 1) {
            float* d = dst - g.pad + kx;
#pragma omp simd
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

bool conv2d::is_pointwise() const { return kh_ == 1 && kw_ == 1 && stride_ == 1 && pad_ == 0; }

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
  const int p = g.p(), k = fan_in();
  const bool direct = is_pointwise();
  const int threads = max_threads();
  if (!direct) {
    col_.resize(static_cast<std::size_t>(threads));
    for (auto& c : col_) c.resize(static_cast<std::size_t>(k) * static_cast<std::size_t>(p));
  }
  const const_matrix_map wt(weight_.data(), k, out_c_);  // Wᵀ: fan_in × out (OIHW row-major)
#pragma omp parallel for schedule(static)
  for (int n = 0; n < xs.n; ++n) {
    const float* cp = x.sample(n);
    if (!direct) {
      float* col = col_[static_cast<std::size_t>(thread_id())].data();
      im2col(x.sample(n), g, col);
      cp = col;
    }
    // Yᵀ[p, o] = colᵀ[p, k] · Wᵀ[k, o]: the long pixel dimension is the GEMM's M.
    matrix_map yt(y.sample(n), p, out_c_);
    yt.noalias() = const_matrix_map(cp, p, k) * wt;
    if (has_bias())
      for (int o = 0; o < out_c_; ++o) yt.col(o).array() += bias_[static_cast<std::size_t>(o)];
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
  const int p = g.p(), k = fan_in();
  const bool direct = is_pointwise();
  const int threads = max_threads();
  const std::size_t wsize = weight_.size();
  col_.resize(static_cast<std::size_t>(threads));
  dw_.resize(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    if (!direct) col_[static_cast<std::size_t>(t)].resize(static_cast<std::size_t>(k) * static_cast<std::size_t>(p));
    dw_[static_cast<std::size_t>(t)].assign(wsize + bias_.size(), 0.0f);
  }
  if (dx != nullptr) {
    dx->resize(xs);
    if (!accumulate_dx) std::fill(dx->data(), dx->data() + dx->size(), 0.0f);
  }
  const const_matrix_map wt(weight_.data(), k, out_c_);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < xs.n; ++n) {
    const std::size_t t = static_cast<std::size_t>(thread_id());
    float* col = direct ? nullptr : col_[t].data();
    const const_matrix_map d(dy.sample(n), p, out_c_);  // dYᵀ: p × out
    matrix_map dwt(dw_[t].data(), k, out_c_);            // dWᵀ, i.e. dW in OIHW
    if (direct) {
      dwt.noalias() += const_matrix_map(x.sample(n), p, k).transpose() * d;
    } else {
      im2col(x.sample(n), g, col);
      dwt.noalias() += const_matrix_map(col, p, k).transpose() * d;
    }
    if (has_bias())
      for (int o = 0; o < out_c_; ++o) dw_[t][wsize + static_cast<std::size_t>(o)] += d.col(o).sum();
    if (dx != nullptr) {
      if (direct) {
        matrix_map dxn(dx->sample(n), p, k);
        dxn.noalias() += d * wt.transpose();
      } else {
        matrix_map dcol(col, p, k);
        dcol.noalias() = d * wt.transpose();
        col2im_add(col, g, dx->sample(n));
      }
    }
  }
  for (std::size_t i = 0; i < wsize; ++i) {
    float s = 0.0f;
    for (int t = 0; t < threads; ++t) s += dw_[static_cast<std::size_t>(t)][i];
    weight_grad_[i] = s;
  }
  for (std::size_t o = 0; o < bias_.size(); ++o) {
    float s = 0.0f;
    for (int t = 0; t < threads; ++t) s += dw_[static_cast<std::size_t>(t)][wsize + o];
    bias_grad_[o] = s;
  }
}

}  // namespace trainer
