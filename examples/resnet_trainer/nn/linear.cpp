#include "nn/eigen.hpp"  // first: see the note there
#include "nn/linear.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace trainer {

namespace {
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using matrix_map = Eigen::Map<matrix>;
using const_matrix_map = Eigen::Map<const matrix>;
using const_vector_map = Eigen::Map<const Eigen::VectorXf>;
using vector_map = Eigen::Map<Eigen::VectorXf>;
}  // namespace

linear::linear(int in_features, int out_features, bool bias) : in_(in_features), out_(out_features) {
  if (in_ < 1 || out_ < 1)
    throw std::invalid_argument("linear: need in/out features >= 1 (got " + std::to_string(in_) + ", " +
                                std::to_string(out_) + ")");
  const std::size_t n = static_cast<std::size_t>(in_) * static_cast<std::size_t>(out_);
  weight_.assign(n, 0.0f);
  weight_grad_.assign(n, 0.0f);
  if (bias) {
    bias_.assign(static_cast<std::size_t>(out_), 0.0f);
    bias_grad_.assign(static_cast<std::size_t>(out_), 0.0f);
  }
}

void linear::init_default(rng& g) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  for (auto& w : weight_) w = static_cast<float>(g.uniform(-bound, bound));
  for (auto& b : bias_) b = static_cast<float>(g.uniform(-bound, bound));
}

// Row-major [n, in] is column-major in × n, so every product below is a
// plain column-major Eigen expression.
void linear::forward(const tensor& x, tensor& y, bool train) {
  const int n = x.shape().n;
  if (x.shape().sample() != static_cast<std::size_t>(in_))
    throw std::invalid_argument("linear: input has " + std::to_string(x.shape().sample()) +
                                " features per sample, expected " + std::to_string(in_));
  y.resize({n, out_, 1, 1});
  const const_matrix_map xm(x.data(), in_, n);
  const const_matrix_map w(weight_.data(), in_, out_);  // Wᵀ
  matrix_map ym(y.data(), out_, n);
  ym.noalias() = w.transpose() * xm;
  if (has_bias()) ym.colwise() += const_vector_map(bias_.data(), out_);
  input_ = train ? &x : nullptr;
}

void linear::backward(const tensor& dy, tensor* dx) {
  if (input_ == nullptr) throw std::logic_error("linear::backward without a train-mode forward");
  const tensor& x = *input_;
  const int n = x.shape().n;
  if (dy.shape() != shape4{n, out_, 1, 1}) throw std::invalid_argument("linear::backward: gradient shape mismatch");
  const const_matrix_map xm(x.data(), in_, n);
  const const_matrix_map d(dy.data(), out_, n);
  matrix_map(weight_grad_.data(), in_, out_).noalias() = xm * d.transpose();
  if (has_bias()) vector_map(bias_grad_.data(), out_) = d.rowwise().sum();
  if (dx != nullptr) {
    dx->resize(x.shape());
    matrix_map(dx->data(), in_, n).noalias() = const_matrix_map(weight_.data(), in_, out_) * d;
  }
}

}  // namespace trainer
