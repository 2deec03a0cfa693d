#include "models/vgg.hpp"

#include <array>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "models/state_dict.hpp"
#include "nn/bias_map.hpp"
#include "nn/pooling.hpp"

namespace trainer {

namespace {

constexpr const char* arch_name = "vgg";
constexpr int num_convs = 13;
// Convs followed by a 2×2 max pool in cfg 64,64,M,128,128,M,256×3,M,512×3,M,512×3,M.
constexpr std::array<bool, num_convs> pool_after{false, true,  false, true,  false, false, true,
                                                 false, false, true,  false, false, true};
constexpr std::array<int, num_convs> default_widths{64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};

struct vgg_stage {
  int index;  // position in PyTorch's nn.Sequential "features"
  conv2d conv;
  batch_norm bn;
  max_pool2d pool{2, 2, true};
  bool pooled;
  std::unique_ptr<bias_map> map;  // optional constant added to the conv output (compacted networks)
  tensor c, z, y, p;  // conv out, pre-ReLU, ReLU out, pooled

  vgg_stage(int idx, int in, int out, bool pool_flag)
      : index(idx), conv(in, out, 3, 1, 1), bn(out), pooled(pool_flag) {}
  const tensor& output() const { return pooled ? p : y; }
};

class vgg final : public model {
 public:
  explicit vgg(const nlohmann::json& j)
      : in_channels_(detail::get_int(j, "in_channels", arch_name)),
        num_classes_(detail::get_int(j, "num_classes", arch_name)),
        widths_(detail::get_int_list(j, "widths", arch_name)),
        fc_(widths_.empty() ? 1 : widths_.back(), num_classes_ < 1 ? 1 : num_classes_) {
    const auto size = detail::get_int_list(j, "input_size", arch_name);
    if (size.size() != 2) throw std::invalid_argument("vgg config: \"input_size\" must be [height, width]");
    h_ = size[0];
    w_ = size[1];
    if (detail::get_int(j, "depth", arch_name) != 16) throw std::invalid_argument("vgg config: only depth 16 is supported");
    if (widths_.size() != num_convs)
      throw std::invalid_argument("vgg config: \"widths\" needs 13 conv widths, got " + std::to_string(widths_.size()));
    for (int w : widths_)
      if (w < 1) throw std::invalid_argument("vgg config: widths must be >= 1");
    if (in_channels_ < 1 || num_classes_ < 1 || h_ < 1 || w_ < 1)
      throw std::invalid_argument("vgg config: in_channels, num_classes and input_size must be >= 1");
    int in = in_channels_, idx = 0;
    for (int i = 0; i < num_convs; ++i) {
      const bool pool = pool_after[static_cast<std::size_t>(i)];
      stages_.push_back(std::make_unique<vgg_stage>(idx, in, widths_[static_cast<std::size_t>(i)], pool));
      idx += pool ? 4 : 3;  // conv, bn, relu (, maxpool)
      in = widths_[static_cast<std::size_t>(i)];
    }
    if (j.contains("bias_maps")) attach_bias_maps(j["bias_maps"]);
  }

  std::string name() const override { return "vgg16"; }

  nlohmann::json config() const override {
    nlohmann::json j;
    j["arch"] = arch_name;
    j["depth"] = 16;
    j["in_channels"] = in_channels_;
    j["num_classes"] = num_classes_;
    j["input_size"] = {h_, w_};
    j["widths"] = widths_;
    if (!bias_maps_.empty()) j["bias_maps"] = bias_maps_;
    return j;
  }

  std::vector<named_tensor> tensors() override {
    std::vector<named_tensor> t;
    for (auto& s : stages_) {
      detail::add_conv(t, "features." + std::to_string(s->index), s->conv);
      if (s->map)
        t.push_back({"features." + std::to_string(s->index) + ".bias_map",
                     {s->map->channels(), s->map->height(), s->map->width()},
                     dtype::f32,
                     s->map->data(),
                     nullptr,
                     false});
      detail::add_bn(t, "features." + std::to_string(s->index + 1), s->bn);
    }
    detail::add_linear(t, "classifier", fc_);
    return t;
  }

  std::vector<conv_ref> conv_layers() override {
    std::vector<conv_ref> out;
    int h = h_, w = w_;
    for (auto& s : stages_) {
      const int idx = static_cast<int>(out.size());
      out.push_back({"features." + std::to_string(s->index), &s->conv, idx, h, w, s->conv.out_h(h), s->conv.out_w(w)});
      h = s->conv.out_h(h);
      w = s->conv.out_w(w);
      if (s->pooled) {
        h = s->pool.out_size(h);
        w = s->pool.out_size(w);
      }
    }
    return out;
  }

  std::vector<bn_ref> bn_layers() override {
    std::vector<bn_ref> out;
    for (auto& s : stages_) {
      const int idx = static_cast<int>(out.size());
      out.push_back({"features." + std::to_string(s->index + 1), &s->bn, idx});
    }
    return out;
  }

  std::vector<channel_group> groups() override {
    std::vector<channel_group> out;
    for (int i = 0; i < num_convs; ++i) {
      channel_group g;
      g.name = "features." + std::to_string(stages_[static_cast<std::size_t>(i)]->index);
      g.channels = widths_[static_cast<std::size_t>(i)];
      g.producers = {i};
      g.bns = {i};
      if (i + 1 < num_convs) g.consumers = {i + 1};
      g.feeds_classifier = i + 1 == num_convs;
      out.push_back(std::move(g));
    }
    return out;
  }

  linear& classifier() override { return fc_; }
  int in_channels() const override { return in_channels_; }
  int input_h() const override { return h_; }
  int input_w() const override { return w_; }
  int num_classes() const override { return num_classes_; }

  void initialize(std::uint64_t seed) override {
    rng g(seed);
    for (auto& s : stages_) {
      s->conv.init_kaiming_fan_out(g);
      std::fill(s->bn.gamma(), s->bn.gamma() + s->bn.channels(), 1.0f);
      std::fill(s->bn.beta(), s->bn.beta() + s->bn.channels(), 0.0f);
      s->bn.reset_running_stats();
    }
    fc_.init_default(g);
  }

  void forward(const float* x, int n, float* logits, bool train) override {
    input_.resize({n, in_channels_, h_, w_});
    std::memcpy(input_.data(), x, sizeof(float) * input_.size());
    const tensor* cur = &input_;
    for (auto& s : stages_) {
      s->conv.forward(*cur, s->c, train);
      if (s->map) s->map->forward(s->c);
      s->bn.forward_relu(s->c, nullptr, s->z, s->y, train);
      if (s->pooled) s->pool.forward(s->y, s->p, train);
      cur = &s->output();
    }
    pool_.forward(*cur, pooled_);
    fc_.forward(pooled_, logits_, train);
    std::memcpy(logits, logits_.data(), sizeof(float) * logits_.size());
    trained_batch_ = train ? n : 0;
  }

  graph forward_graph() override {
    using k = graph_op::kind;
    graph g;
    int cur = 0;
    for (auto& s : stages_) {
      graph_op conv;
      conv.type = k::conv;
      conv.src = cur;
      conv.dst = g.buffer();
      conv.conv = &s->conv;
      conv.map = s->map.get();
      g.ops.push_back(conv);
      graph_op bn;
      bn.type = k::batch_norm;
      bn.src = conv.dst;
      bn.bn = &s->bn;
      bn.relu = true;
      bn.relu_z = g.buffer();
      bn.dst = bn.relu_out = g.buffer();
      g.ops.push_back(bn);
      cur = bn.dst;
      if (s->pooled) {
        graph_op pool;
        pool.type = k::max_pool;
        pool.src = cur;
        pool.dst = cur = g.buffer();
        pool.pool = &s->pool;
        g.ops.push_back(pool);
      }
    }
    g.add_head(cur, fc_);
    return g;
  }

  void backward(const float* dlogits) override {
    if (trained_batch_ == 0) throw std::logic_error("vgg::backward needs a train-mode forward first");
    dlogits_.resize({trained_batch_, num_classes_, 1, 1});
    std::memcpy(dlogits_.data(), dlogits, sizeof(float) * dlogits_.size());
    fc_.backward(dlogits_, &g_pooled_);
    pool_.backward(g_pooled_, grad_);
    for (std::size_t i = stages_.size(); i-- > 0;) {
      auto& s = *stages_[i];
      tensor* g_y = &grad_;
      if (s.pooled) {
        s.pool.backward(grad_, scratch_);
        g_y = &scratch_;
      }
      s.bn.backward_relu(*g_y, s.z, conv_grad_);
      s.conv.backward(conv_grad_, i > 0 ? &grad_ : nullptr);
    }
  }

 private:
  // A bias map "<conv>.bias_map" (C_out x H_out x W_out) for every conv named
  // in the config's "bias_maps"; a buffer, not a parameter.
  void attach_bias_maps(const nlohmann::json& names) {
    if (!names.is_array()) throw std::invalid_argument("vgg config: \"bias_maps\" must be a list of conv names");
    const auto convs = conv_layers();
    for (const auto& n : names) {
      if (!n.is_string()) throw std::invalid_argument("vgg config: \"bias_maps\" must hold conv names (strings)");
      const std::string name = n.get<std::string>();
      bool found = false;
      for (std::size_t i = 0; i < convs.size(); ++i) {
        if (convs[i].name != name) continue;
        auto& st = *stages_[i];
        if (st.map) throw std::invalid_argument("vgg config: \"bias_maps\" names '" + name + "' twice");
        st.map = std::make_unique<bias_map>(convs[i].c_out(), convs[i].h_out, convs[i].w_out);
        found = true;
      }
      if (!found) throw std::invalid_argument("vgg config: \"bias_maps\" names conv '" + name + "', which vgg16 does not have");
      bias_maps_.push_back(name);
    }
  }

  std::vector<std::string> bias_maps_;
  int in_channels_, num_classes_, h_ = 0, w_ = 0;
  std::vector<int> widths_;
  std::vector<std::unique_ptr<vgg_stage>> stages_;
  global_avg_pool pool_;
  linear fc_;
  int trained_batch_ = 0;
  tensor input_, pooled_, logits_, dlogits_, g_pooled_, grad_, scratch_, conv_grad_;
};

}  // namespace

nlohmann::json vgg_config(int num_classes, int in_channels, int input_h, int input_w) {
  nlohmann::json j;
  j["arch"] = arch_name;
  j["depth"] = 16;
  j["in_channels"] = in_channels;
  j["num_classes"] = num_classes;
  j["input_size"] = {input_h, input_w};
  j["widths"] = std::vector<int>(default_widths.begin(), default_widths.end());
  return j;
}

std::unique_ptr<model> make_vgg(const nlohmann::json& config, std::uint64_t seed) {
  auto m = std::make_unique<vgg>(config);
  m->initialize(seed);
  return m;
}

}  // namespace trainer
