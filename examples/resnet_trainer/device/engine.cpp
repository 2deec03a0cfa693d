#include "device/engine.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "nn/batch_norm.hpp"
#include "nn/bias_map.hpp"
#include "nn/conv2d.hpp"
#include "nn/linear.hpp"
#include "nn/pooling.hpp"
#include "nn/shortcut.hpp"

namespace trainer::device {
namespace {

namespace k = kernels;
using i64 = std::int64_t;

i64 count_of(const shape4& s) { return static_cast<i64>(s.size()); }

/// Row-major C (M × N) = op(A)·op(B) + β·C through a column-major GEMM:
/// a row-major matrix is its transpose in column-major, so Cᵀ = op(B)ᵀ·op(A)ᵀ.
void gemm_rm(exec& x, bool ta, bool tb, int m, int n, int kk, const float* a, const float* b, float beta, float* c) {
  x.gemm(tb, ta, n, m, kk, 1.0f, b, tb ? kk : n, a, ta ? m : kk, beta, c, n);
}

std::string where(std::size_t index) {
  return "device engine, graph op " + std::to_string(index) + ": ";
}

}  // namespace

struct engine::impl {
  struct slot {
    float* host;
    std::size_t offset, count;
  };
  struct op_state {
    buffer<float> mean, invstd, shift, scale;
    buffer<int> ints;  // shortcut map or max-pool argmax
  };

  model& m;
  std::unique_ptr<exec> x;
  graph g;
  std::vector<slot> params, stats, grads;  // stats: the BN running statistics, at the end of the arena
  std::unordered_map<const float*, std::size_t> param_at, grad_at;
  std::size_t param_floats = 0, stats_begin = 0, grad_floats = 0;
  std::vector<float> staging;
  buffer<float> param_d, grad_d;

  std::vector<buffer<float>> act, grad;
  // Buffers whose gradient backward accumulates into (+=), zeroed before it;
  // the rest (the input, pre-ReLU buffers) never hold a gradient.
  std::vector<int> grad_targets;
  std::vector<shape4> shapes;
  std::vector<op_state> state;
  buffer<float> col, perm;
  buffer<k::sums3> sums, sums2;
  buffer<double> dmean;
  int trained_batch = 0;

  impl(model& model_, std::unique_ptr<exec> exec_) : m(model_), x(std::move(exec_)), g(m.forward_graph()) {
    if (g.ops.empty() || g.logits < 0)
      throw std::invalid_argument("device engine: model " + m.name() +
                                  " does not describe its forward pass (forward_graph() is empty); it can only run on the CPU");
    // Running statistics go last, so a train step brings them back in one copy.
    std::vector<const float*> running;
    for (const auto& op : g.ops)
      if (op.type == graph_op::kind::batch_norm) {
        running.push_back(op.bn->running_mean());
        running.push_back(op.bn->running_var());
      }
    auto is_running = [&](const float* p) {
      for (const float* r : running)
        if (r == p) return true;
      return false;
    };
    std::vector<named_tensor> stat_tensors;
    for (const auto& t : m.tensors()) {
      if (t.type != dtype::f32) continue;
      if (is_running(t.f32())) {
        stat_tensors.push_back(t);
        continue;
      }
      params.push_back({t.f32(), param_floats, t.numel()});
      param_at[t.f32()] = param_floats;
      param_floats += t.numel();
      if (t.trainable) {
        grads.push_back({t.grad, grad_floats, t.numel()});
        grad_at[t.grad] = grad_floats;
        grad_floats += t.numel();
      }
    }
    stats_begin = param_floats;
    for (const auto& t : stat_tensors) {
      stats.push_back({t.f32(), param_floats, t.numel()});
      param_at[t.f32()] = param_floats;
      param_floats += t.numel();
    }
    for (const auto& op : g.ops)
      if (op.type == graph_op::kind::batch_norm) {
        const auto c = static_cast<std::size_t>(op.bn->channels());
        grads.push_back({op.bn->gate_grad(), grad_floats, c});
        grad_at[op.bn->gate_grad()] = grad_floats;
        grad_floats += c;
      }
    param_d.ensure(*x, param_floats);
    grad_d.ensure(*x, grad_floats);
    staging.resize(std::max(param_floats, grad_floats));

    act.resize(static_cast<std::size_t>(g.buffers));
    grad.resize(static_cast<std::size_t>(g.buffers));
    shapes.resize(static_cast<std::size_t>(g.buffers));
    state.resize(g.ops.size());
    std::vector<char> target(static_cast<std::size_t>(g.buffers), 0);
    for (const auto& op : g.ops) {
      target[static_cast<std::size_t>(op.src)] = 1;
      if (op.type == graph_op::kind::batch_norm && op.relu && op.residual >= 0)
        target[static_cast<std::size_t>(op.residual)] = 1;
    }
    target[0] = 0;
    for (std::size_t i = 0; i < g.ops.size(); ++i) {
      const auto& op = g.ops[i];
      for (int id : {op.dst, op.relu_out})
        if (id >= 0 && id != g.logits && !target[static_cast<std::size_t>(id)])
          throw std::invalid_argument(where(i) + "writes buffer " + std::to_string(id) +
                                      ", which no later op reads; the graph must end in the logits");
    }
    for (int id = 0; id < g.buffers; ++id)
      if (target[static_cast<std::size_t>(id)]) grad_targets.push_back(id);
    for (std::size_t i = 0; i < g.ops.size(); ++i) {
      const auto& op = g.ops[i];
      auto need = [&](const float* p, const char* what) {
        if (p == nullptr || !param_at.count(p))
          throw std::invalid_argument(where(i) + what + " is not among the model's tensors()");
      };
      switch (op.type) {
        case graph_op::kind::conv:
          if (op.conv->has_bias())
            throw std::invalid_argument(where(i) + "convolutions with a bias are not supported on a device");
          need(op.conv->weight(), "a conv weight");
          if (op.map) need(op.map->data(), "a bias map");
          break;
        case graph_op::kind::batch_norm:
          need(op.bn->gamma(), "a BN weight");
          if (op.relu_z < 0 || op.relu_out < 0)
            throw std::invalid_argument(where(i) + "a batch norm needs the ReLU its output flows into");
          break;
        case graph_op::kind::shortcut_a: {
          const auto& map = op.shortcut->map();
          state[i].ints.ensure(*x, map.size());
          x->upload(state[i].ints.get(), map.data(), sizeof(int) * map.size());
          break;
        }
        case graph_op::kind::linear:
          need(op.fc->weight(), "a linear weight");
          break;
        default:
          break;
      }
    }
  }

  float* pd(const float* host) { return param_d.get() + param_at.at(host); }
  float* gd(const float* host) { return grad_d.get() + grad_at.at(host); }
  float* a(int id) { return act[static_cast<std::size_t>(id)].get(); }
  float* ga(int id) { return grad[static_cast<std::size_t>(id)].get(); }
  shape4& shape(int id) { return shapes[static_cast<std::size_t>(id)]; }
  void set_shape(int id, shape4 s) {
    shape(id) = s;
    act[static_cast<std::size_t>(id)].ensure(*x, s.size());
  }

  void upload_params() {
    for (const auto& s : params) std::memcpy(staging.data() + s.offset, s.host, sizeof(float) * s.count);
    for (const auto& s : stats) std::memcpy(staging.data() + s.offset, s.host, sizeof(float) * s.count);
    x->upload(param_d.get(), staging.data(), sizeof(float) * param_floats);
  }

  void forward(const float* input, int n, float* logits, bool train) {
    if (n < 1) throw std::invalid_argument("device engine: empty batch");
    upload_params();
    set_shape(0, {n, m.in_channels(), m.input_h(), m.input_w()});
    x->upload(a(0), input, sizeof(float) * shape(0).size());
    for (std::size_t i = 0; i < g.ops.size(); ++i) forward_op(i, train);
    const shape4& out = shape(g.logits);
    if (out.sample() != static_cast<std::size_t>(m.num_classes()))
      throw std::logic_error("device engine: the graph's logits have " + std::to_string(out.sample()) +
                             " values per sample, the model " + std::to_string(m.num_classes()) + " classes");
    x->download(logits, a(g.logits), sizeof(float) * out.size());
    if (train) {
      x->download(staging.data() + stats_begin, param_d.get() + stats_begin,
                  sizeof(float) * (param_floats - stats_begin));
      for (const auto& s : stats) std::memcpy(s.host, staging.data() + s.offset, sizeof(float) * s.count);
    }
    trained_batch = train ? n : 0;
  }

  void backward(const float* dlogits) {
    if (trained_batch == 0) throw std::logic_error("device engine: backward needs a train-mode forward first");
    for (int id : grad_targets) {
      auto& gb = grad[static_cast<std::size_t>(id)];
      gb.ensure(*x, shape(id).size());
      x->zero(gb.get(), sizeof(float) * shape(id).size());
    }
    grad[static_cast<std::size_t>(g.logits)].ensure(*x, shape(g.logits).size());
    x->zero(grad_d.get(), sizeof(float) * grad_floats);
    x->upload(ga(g.logits), dlogits, sizeof(float) * shape(g.logits).size());
    for (std::size_t i = g.ops.size(); i-- > 0;) backward_op(i);
    x->download(staging.data(), grad_d.get(), sizeof(float) * grad_floats);
    for (const auto& s : grads) std::memcpy(s.host, staging.data() + s.offset, sizeof(float) * s.count);
  }

  k::conv_geometry geometry(const graph_op& op) {
    const shape4& s = shape(op.src);
    const conv2d& c = *op.conv;
    return {s.n, s.c, s.h, s.w, c.kernel_h(), c.kernel_w(), c.stride(), c.padding(), c.out_h(s.h), c.out_w(s.w)};
  }

  void forward_op(std::size_t i, bool train) {
    const graph_op& op = g.ops[i];
    const shape4 in = shape(op.src);
    switch (op.type) {
      case graph_op::kind::conv: {
        const conv2d& c = *op.conv;
        if (in.c != c.in_channels())
          throw std::invalid_argument(where(i) + "conv input has " + std::to_string(in.c) + " channels, expected " +
                                      std::to_string(c.in_channels()));
        const k::conv_geometry geo = geometry(op);
        const i64 kk = geo.k(), cols = geo.cols();
        set_shape(op.dst, {in.n, c.out_channels(), geo.oh, geo.ow});
        col.ensure(*x, static_cast<std::size_t>(kk * cols));
        perm.ensure(*x, static_cast<std::size_t>(c.out_channels() * cols));
        x->run(k::im2col{a(op.src), col.get(), geo}, kk * cols);
        gemm_rm(*x, false, false, c.out_channels(), static_cast<int>(cols), static_cast<int>(kk), pd(c.weight()),
                col.get(), 0.0f, perm.get());
        const i64 p = static_cast<i64>(geo.oh) * geo.ow;
        x->run(k::cnhw_to_nchw{perm.get(), a(op.dst), op.map ? pd(op.map->data()) : nullptr, nullptr, in.n,
                               c.out_channels(), p},
               count_of(shape(op.dst)));
        break;
      }
      case graph_op::kind::batch_norm: {
        batch_norm& bn = *op.bn;
        const int c = bn.channels();
        if (in.c != c)
          throw std::invalid_argument(where(i) + "batch norm input has " + std::to_string(in.c) +
                                      " channels, expected " + std::to_string(c));
        if (op.residual >= 0 && shape(op.residual) != in)
          throw std::invalid_argument(where(i) + "residual shape does not match the batch norm's input");
        auto& st = state[i];
        const auto cc = static_cast<std::size_t>(c);
        st.mean.ensure(*x, cc);
        st.invstd.ensure(*x, cc);
        st.shift.ensure(*x, cc);
        st.scale.ensure(*x, cc);
        const i64 p = static_cast<i64>(in.plane());
        const i64 per = static_cast<i64>(in.n) * p;
        if (train) {
          if (per < 2)
            throw std::invalid_argument(where(i) + "train mode needs more than one value per channel (batch " +
                                        std::to_string(in.n) + ", plane " + std::to_string(p) + ")");
          sums.ensure(*x, cc);
          sums2.ensure(*x, cc);
          dmean.ensure(*x, cc);
          x->sums(k::bn_sum_x{a(op.src), c, p}, c, per, sums.get());
          x->run(k::bn_mean{sums.get(), dmean.get(), static_cast<double>(per)}, c);
          x->sums(k::bn_sum_sq{a(op.src), dmean.get(), c, p}, c, per, sums2.get());
          ++bn.num_batches_tracked();
          const auto mom = bn.momentum();
          const double factor = mom ? static_cast<double>(*mom) : 1.0 / static_cast<double>(bn.num_batches_tracked());
          x->run(k::bn_finish{sums2.get(), dmean.get(), pd(bn.gamma()), pd(bn.running_mean()), pd(bn.running_var()),
                              st.mean.get(), st.invstd.get(), st.shift.get(), st.scale.get(),
                              static_cast<double>(per), factor, static_cast<double>(bn.eps())},
                 c);
        } else {
          x->run(k::bn_eval_affine{pd(bn.gamma()), pd(bn.running_mean()), pd(bn.running_var()), st.shift.get(),
                                   st.scale.get(), bn.eps()},
                 c);
        }
        set_shape(op.dst, in);
        float* z = nullptr;
        if (train && op.relu) {
          set_shape(op.relu_z, in);
          z = a(op.relu_z);
        }
        x->run(k::bn_apply{a(op.src), op.residual >= 0 ? a(op.residual) : nullptr, z, a(op.dst), st.shift.get(),
                           st.scale.get(), pd(bn.beta()), c, p, op.relu},
               count_of(in));
        break;
      }
      case graph_op::kind::shortcut_a: {
        const shortcut_a& sc = *op.shortcut;
        if (in.c != sc.in_channels()) throw std::invalid_argument(where(i) + "shortcut input channel count does not match");
        const int oh = (in.h - 1) / sc.stride() + 1, ow = (in.w - 1) / sc.stride() + 1;
        set_shape(op.dst, {in.n, sc.out_channels(), oh, ow});
        x->run(k::shortcut_forward{a(op.src), a(op.dst), state[i].ints.get(), in.c, sc.out_channels(), in.h, in.w, oh,
                                   ow, sc.stride()},
               count_of(shape(op.dst)));
        break;
      }
      case graph_op::kind::max_pool: {
        const max_pool2d& mp = *op.pool;
        const int oh = mp.out_size(in.h), ow = mp.out_size(in.w);
        if (oh < 1 || ow < 1) throw std::invalid_argument(where(i) + "input is too small for the max pooling");
        set_shape(op.dst, {in.n, in.c, oh, ow});
        int* argmax = nullptr;
        if (train) {
          state[i].ints.ensure(*x, shape(op.dst).size());
          argmax = state[i].ints.get();
        }
        x->run(k::max_pool_forward{a(op.src), a(op.dst), argmax, in.h, in.w, oh, ow, mp.kernel(), mp.stride()},
               count_of(shape(op.dst)));
        break;
      }
      case graph_op::kind::avg_pool:
        set_shape(op.dst, {in.n, in.c, 1, 1});
        x->run(k::avg_pool_forward{a(op.src), a(op.dst), static_cast<i64>(in.plane())}, static_cast<i64>(in.n) * in.c);
        break;
      case graph_op::kind::linear: {
        linear& fc = *op.fc;
        if (in.sample() != static_cast<std::size_t>(fc.in_features()))
          throw std::invalid_argument(where(i) + "linear input has " + std::to_string(in.sample()) +
                                      " features per sample, expected " + std::to_string(fc.in_features()));
        set_shape(op.dst, {in.n, fc.out_features(), 1, 1});
        gemm_rm(*x, false, true, in.n, fc.out_features(), fc.in_features(), a(op.src), pd(fc.weight()), 0.0f,
                a(op.dst));
        if (fc.has_bias())
          x->run(k::add_row_bias{a(op.dst), pd(fc.bias()), fc.out_features()}, count_of(shape(op.dst)));
        break;
      }
    }
  }

  void backward_op(std::size_t i) {
    const graph_op& op = g.ops[i];
    const shape4 in = shape(op.src);
    switch (op.type) {
      case graph_op::kind::conv: {
        const conv2d& c = *op.conv;
        const k::conv_geometry geo = geometry(op);
        const i64 kk = geo.k(), cols = geo.cols();
        const i64 p = static_cast<i64>(geo.oh) * geo.ow;
        x->run(k::nchw_to_cnhw{ga(op.dst), perm.get(), in.n, c.out_channels(), p}, count_of(shape(op.dst)));
        x->run(k::im2col{a(op.src), col.get(), geo}, kk * cols);
        gemm_rm(*x, false, true, c.out_channels(), static_cast<int>(kk), static_cast<int>(cols), perm.get(), col.get(),
                0.0f, gd(c.weight_grad()));
        if (op.src != 0) {  // the network input needs no gradient
          gemm_rm(*x, true, false, static_cast<int>(kk), static_cast<int>(cols), c.out_channels(), pd(c.weight()),
                  perm.get(), 0.0f, col.get());
          x->run(k::col2im_add{col.get(), ga(op.src), geo}, count_of(in));
        }
        break;
      }
      case graph_op::kind::batch_norm: {
        batch_norm& bn = *op.bn;
        const int c = bn.channels();
        const auto& st = state[i];
        const i64 p = static_cast<i64>(in.plane());
        const i64 per = static_cast<i64>(in.n) * p;
        const float* g_a = ga(op.relu_out);
        const float* z = a(op.relu_z);
        x->sums(k::bn_backward_sums{a(op.src), g_a, z, st.mean.get(), st.invstd.get(), c, p}, c, per, sums.get());
        x->run(k::sums_to_float{sums.get(), gd(bn.beta_grad()), gd(bn.gamma_grad()), gd(bn.gate_grad())}, c);
        float* g_res = op.relu && op.residual >= 0 ? ga(op.residual) : nullptr;
        x->run(k::bn_backward_apply{a(op.src), g_a, z, ga(op.src), g_res, st.mean.get(), st.invstd.get(),
                                    pd(bn.gamma()), sums.get(), static_cast<float>(in.n) * static_cast<float>(p), c, p},
               count_of(in));
        break;
      }
      case graph_op::kind::shortcut_a: {
        const shortcut_a& sc = *op.shortcut;
        const shape4& out = shape(op.dst);
        x->run(k::shortcut_backward{ga(op.dst), ga(op.src), state[i].ints.get(), in.c, sc.out_channels(), in.h, in.w,
                                    out.h, out.w, sc.stride()},
               count_of(in));
        break;
      }
      case graph_op::kind::max_pool: {
        const max_pool2d& mp = *op.pool;
        const shape4& out = shape(op.dst);
        x->run(k::max_pool_backward{ga(op.dst), state[i].ints.get(), ga(op.src), in.h, in.w, out.h, out.w, mp.kernel(),
                                    mp.stride()},
               count_of(in));
        break;
      }
      case graph_op::kind::avg_pool:
        x->run(k::avg_pool_backward{ga(op.dst), ga(op.src), static_cast<i64>(in.plane())}, count_of(in));
        break;
      case graph_op::kind::linear: {
        linear& fc = *op.fc;
        const int n = in.n, out = fc.out_features(), fin = fc.in_features();
        gemm_rm(*x, true, false, out, fin, n, ga(op.dst), a(op.src), 0.0f, gd(fc.weight_grad()));
        if (fc.has_bias()) {
          sums.ensure(*x, static_cast<std::size_t>(out));
          x->sums(k::column_sums{ga(op.dst), out}, out, n, sums.get());
          x->run(k::sums_to_float{sums.get(), gd(fc.bias_grad()), nullptr, nullptr}, out);
        }
        if (op.src != 0) gemm_rm(*x, false, false, n, fin, out, ga(op.dst), pd(fc.weight()), 1.0f, ga(op.src));
        break;
      }
    }
  }
};

engine::engine(model& m, std::unique_ptr<exec> x) : p_(std::make_unique<impl>(m, std::move(x))) {}
engine::~engine() = default;
exec& engine::executor() { return *p_->x; }
void engine::forward(const float* x, int n, float* logits, bool train) { p_->forward(x, n, logits, train); }
void engine::backward(const float* dlogits) { p_->backward(dlogits); }

}  // namespace trainer::device
