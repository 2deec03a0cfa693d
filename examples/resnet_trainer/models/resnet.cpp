#include "models/resnet.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "models/state_dict.hpp"
#include "nn/bias_map.hpp"
#include "nn/pooling.hpp"
#include "nn/relu.hpp"
#include "nn/shortcut.hpp"

namespace trainer {

namespace {

constexpr const char* arch_name = "resnet";

struct resnet_arch {
  int depth = 0;
  char shortcut = 'A';
  int in_channels = 3, num_classes = 10, h = 32, w = 32;
  std::vector<int> stage_widths;
  std::vector<std::vector<int>> block_widths;
  std::vector<std::vector<int>> maps;  // option A: one per stage, [] for stage 1
  std::vector<std::string> bias_maps;  // convs whose output gets a bias_map (compacted networks)

  int stages() const { return static_cast<int>(stage_widths.size()); }
};

std::string err_prefix() { return "resnet config: "; }

resnet_arch parse(const nlohmann::json& j) {
  resnet_arch a;
  a.depth = detail::get_int(j, "depth", arch_name);
  const std::string sc = j.value("shortcut", std::string("A"));
  if (sc != "A" && sc != "B") throw std::invalid_argument(err_prefix() + "\"shortcut\" must be \"A\" or \"B\", got \"" + sc + "\"");
  a.shortcut = sc[0];
  a.in_channels = detail::get_int(j, "in_channels", arch_name);
  a.num_classes = detail::get_int(j, "num_classes", arch_name);
  const auto size = detail::get_int_list(j, "input_size", arch_name);
  if (size.size() != 2) throw std::invalid_argument(err_prefix() + "\"input_size\" must be [height, width]");
  a.h = size[0];
  a.w = size[1];
  a.stage_widths = detail::get_int_list(j, "stage_widths", arch_name);
  if (!j.contains("block_widths") || !j["block_widths"].is_array())
    throw std::invalid_argument(err_prefix() + "missing \"block_widths\" (one list of widths per stage)");
  for (const auto& s : j["block_widths"]) a.block_widths.push_back(s.get<std::vector<int>>());
  if (a.stage_widths.empty() || a.block_widths.size() != a.stage_widths.size())
    throw std::invalid_argument(err_prefix() + "\"block_widths\" needs one list per entry of \"stage_widths\"");
  int blocks = 0;
  for (const auto& s : a.block_widths) {
    if (s.empty()) throw std::invalid_argument(err_prefix() + "every stage needs at least one block");
    blocks += static_cast<int>(s.size());
  }
  if (a.depth != 2 * blocks + 2)
    throw std::invalid_argument(err_prefix() + "depth " + std::to_string(a.depth) + " does not match " +
                                std::to_string(blocks) + " blocks (depth = 2·blocks + 2)");
  auto positive = [](const std::vector<int>& v) { return std::all_of(v.begin(), v.end(), [](int x) { return x >= 1; }); };
  if (!positive(a.stage_widths)) throw std::invalid_argument(err_prefix() + "stage widths must be >= 1");
  for (const auto& s : a.block_widths)
    if (!positive(s)) throw std::invalid_argument(err_prefix() + "block widths must be >= 1 (prune a block to width 1, not 0)");
  if (a.in_channels < 1 || a.num_classes < 1 || a.h < 1 || a.w < 1)
    throw std::invalid_argument(err_prefix() + "in_channels, num_classes and input_size must be >= 1");
  if (a.shortcut == 'A') {
    if (!j.contains("shortcut_maps") || !j["shortcut_maps"].is_array() ||
        j["shortcut_maps"].size() != a.stage_widths.size())
      throw std::invalid_argument(err_prefix() + "option A needs \"shortcut_maps\": one list per stage ([] for stage 1)");
    for (const auto& m : j["shortcut_maps"]) a.maps.push_back(m.get<std::vector<int>>());
    if (!a.maps[0].empty()) throw std::invalid_argument(err_prefix() + "stage 1 has an identity shortcut: its map must be []");
    for (int s = 1; s < a.stages(); ++s) {
      const auto& m = a.maps[static_cast<std::size_t>(s)];
      const int out = a.stage_widths[static_cast<std::size_t>(s)], in = a.stage_widths[static_cast<std::size_t>(s - 1)];
      if (static_cast<int>(m.size()) != out)
        throw std::invalid_argument(err_prefix() + "shortcut_maps[" + std::to_string(s) + "] has " +
                                    std::to_string(m.size()) + " entries, stage width is " + std::to_string(out));
      for (int v : m)
        if (v < -1 || v >= in)
          throw std::invalid_argument(err_prefix() + "shortcut_maps[" + std::to_string(s) + "] entry " +
                                      std::to_string(v) + " is outside [-1, " + std::to_string(in) + ")");
    }
  }
  if (j.contains("bias_maps")) {
    if (!j["bias_maps"].is_array())
      throw std::invalid_argument(err_prefix() + "\"bias_maps\" must be a list of conv names");
    for (const auto& n : j["bias_maps"]) {
      if (!n.is_string()) throw std::invalid_argument(err_prefix() + "\"bias_maps\" must hold conv names (strings)");
      a.bias_maps.push_back(n.get<std::string>());
    }
  }
  return a;
}

struct basic_block {
  std::string prefix;
  int input_stream;  // index of the stage whose stream feeds this block
  conv2d conv1;
  batch_norm bn1;
  conv2d conv2;
  batch_norm bn2;
  std::unique_ptr<shortcut_a> option_a;  // stage transitions, option A
  std::unique_ptr<conv2d> down_conv;     // stage transitions, option B
  std::unique_ptr<batch_norm> down_bn;
  // Optional constant maps added to conv outputs (owned by the resnet).
  bias_map* map1 = nullptr;
  bias_map* map2 = nullptr;
  bias_map* map_down = nullptr;
  // Activations of the last forward (z = pre-ReLU sums, kept for backward).
  tensor c1, z1, y1, c2, z2, out, shortcut, down;

  basic_block(std::string p, int stream, int in, int mid, int out_c, int stride)
      : prefix(std::move(p)),
        input_stream(stream),
        conv1(in, mid, 3, stride, 1),
        bn1(mid),
        conv2(mid, out_c, 3, 1, 1),
        bn2(out_c) {}

  void forward(const tensor& x, bool train) {
    conv1.forward(x, c1, train);
    if (map1) map1->forward(c1);
    bn1.forward_relu(c1, nullptr, z1, y1, train);
    conv2.forward(y1, c2, train);
    if (map2) map2->forward(c2);
    const tensor* residual = &x;
    if (option_a) {
      option_a->forward(x, shortcut);
      residual = &shortcut;
    } else if (down_conv) {
      down_conv->forward(x, down, train);
      if (map_down) map_down->forward(down);
      down_bn->forward(down, shortcut, train);
      residual = &shortcut;
    }
    bn2.forward_relu(c2, residual, z2, out, train);
  }

  // g_out = ∂L/∂out → g_in = ∂L/∂x; s1..s3 are scratch.
  void backward(const tensor& g_out, tensor& g_in, tensor& s1, tensor& s2, tensor& s3) {
    bn2.backward_relu(g_out, z2, s1, &s2);  // s1 = ∂L/∂c2, s2 = ∂L/∂z2 (the shortcut branch)
    conv2.backward(s1, &s3);                // s3 = ∂L/∂y1
    bn1.backward_relu(s3, z1, s1);          // s1 = ∂L/∂c1
    conv1.backward(s1, &g_in);
    if (option_a) {
      option_a->backward(s2, g_in);
    } else if (down_conv) {
      down_bn->backward_relu(g_out, z2, s1);  // its output also flows into z2
      down_conv->backward(s1, &g_in, true);
    } else {
      add_into(s2, g_in);
    }
  }
};

class resnet final : public model {
 public:
  explicit resnet(const nlohmann::json& config) : arch_(parse(config)), stem_conv_(arch_.in_channels, arch_.stage_widths[0], 3, 1, 1), stem_bn_(arch_.stage_widths[0]), fc_(arch_.stage_widths.back(), arch_.num_classes) {
    for (int s = 0; s < arch_.stages(); ++s) {
      const auto su = static_cast<std::size_t>(s);
      for (std::size_t b = 0; b < arch_.block_widths[su].size(); ++b) {
        const bool transition = s > 0 && b == 0;
        const int stream = transition ? s - 1 : s;
        const int in = arch_.stage_widths[static_cast<std::size_t>(stream)];
        const int out = arch_.stage_widths[su];
        const int stride = transition ? 2 : 1;
        auto blk = std::make_unique<basic_block>("layer" + std::to_string(s + 1) + "." + std::to_string(b), stream, in,
                                                 arch_.block_widths[su][b], out, stride);
        if (transition && arch_.shortcut == 'A') {
          blk->option_a = std::make_unique<shortcut_a>(in, arch_.maps[su], stride);
        } else if (transition) {
          blk->down_conv = std::make_unique<conv2d>(in, out, 1, stride, 0);
          blk->down_bn = std::make_unique<batch_norm>(out);
        }
        blocks_.push_back(std::move(blk));
      }
    }
    attach_bias_maps();
  }

  std::string name() const override {
    return "resnet" + std::to_string(arch_.depth) + (arch_.shortcut == 'B' ? "-B" : "");
  }

  nlohmann::json config() const override {
    nlohmann::json j;
    j["arch"] = arch_name;
    j["depth"] = arch_.depth;
    j["shortcut"] = std::string(1, arch_.shortcut);
    j["in_channels"] = arch_.in_channels;
    j["num_classes"] = arch_.num_classes;
    j["input_size"] = {arch_.h, arch_.w};
    j["stage_widths"] = arch_.stage_widths;
    j["block_widths"] = arch_.block_widths;
    if (arch_.shortcut == 'A') j["shortcut_maps"] = arch_.maps;
    if (!arch_.bias_maps.empty()) j["bias_maps"] = arch_.bias_maps;
    return j;
  }

  std::vector<named_tensor> tensors() override {
    std::vector<named_tensor> t;
    detail::add_conv(t, "conv1", stem_conv_);
    add_bias_map(t, "conv1", stem_map_);
    detail::add_bn(t, "bn1", stem_bn_);
    for (auto& b : blocks_) {
      detail::add_conv(t, b->prefix + ".conv1", b->conv1);
      add_bias_map(t, b->prefix + ".conv1", b->map1);
      detail::add_bn(t, b->prefix + ".bn1", b->bn1);
      detail::add_conv(t, b->prefix + ".conv2", b->conv2);
      add_bias_map(t, b->prefix + ".conv2", b->map2);
      detail::add_bn(t, b->prefix + ".bn2", b->bn2);
      if (b->down_conv) {
        detail::add_conv(t, b->prefix + ".downsample.0", *b->down_conv);
        add_bias_map(t, b->prefix + ".downsample.0", b->map_down);
        detail::add_bn(t, b->prefix + ".downsample.1", *b->down_bn);
      }
    }
    detail::add_linear(t, "fc", fc_);
    return t;
  }

  // Convs and BNs are listed in the same order, so conv i is normalised by BN i.
  std::vector<conv_ref> conv_layers() override {
    std::vector<conv_ref> out;
    int h = arch_.h, w = arch_.w;
    auto add = [&](const std::string& name, conv2d& c, int hin, int win) {
      const int idx = static_cast<int>(out.size());
      out.push_back({name, &c, idx, hin, win, c.out_h(hin), c.out_w(win)});
    };
    add("conv1", stem_conv_, h, w);
    for (auto& b : blocks_) {
      add(b->prefix + ".conv1", b->conv1, h, w);
      const int ho = b->conv1.out_h(h), wo = b->conv1.out_w(w);
      add(b->prefix + ".conv2", b->conv2, ho, wo);
      if (b->down_conv) add(b->prefix + ".downsample.0", *b->down_conv, h, w);
      h = ho;
      w = wo;
    }
    return out;
  }

  std::vector<bn_ref> bn_layers() override {
    std::vector<bn_ref> out;
    auto add = [&](const std::string& name, batch_norm& bn) {
      const int idx = static_cast<int>(out.size());
      out.push_back({name, &bn, idx});
    };
    add("bn1", stem_bn_);
    for (auto& b : blocks_) {
      add(b->prefix + ".bn1", b->bn1);
      add(b->prefix + ".bn2", b->bn2);
      if (b->down_bn) add(b->prefix + ".downsample.1", *b->down_bn);
    }
    return out;
  }

  std::vector<channel_group> groups() override {
    std::vector<channel_group> streams(static_cast<std::size_t>(arch_.stages()));
    std::vector<channel_group> inner;
    for (int s = 0; s < arch_.stages(); ++s) {
      auto& g = streams[static_cast<std::size_t>(s)];
      g.name = "layer" + std::to_string(s + 1);
      g.channels = arch_.stage_widths[static_cast<std::size_t>(s)];
      g.feeds_classifier = s + 1 == arch_.stages();
      if (arch_.shortcut == 'A' && s + 1 < arch_.stages())
        g.shortcut_maps.push_back("shortcut_maps[" + std::to_string(s + 1) + "]");
    }
    streams[0].producers.push_back(0);
    streams[0].bns.push_back(0);
    int idx = 1;  // conv and BN indices coincide (see conv_layers)
    for (auto& b : blocks_) {
      const int stage = b->input_stream + (b->option_a || b->down_conv ? 1 : 0);
      auto& in_stream = streams[static_cast<std::size_t>(b->input_stream)];
      auto& out_stream = streams[static_cast<std::size_t>(stage)];
      const int c1 = idx, c2 = idx + 1;
      inner.push_back({b->prefix, b->conv1.out_channels(), {c1}, {c1}, {c2}, false, {}});
      in_stream.consumers.push_back(c1);
      out_stream.producers.push_back(c2);
      out_stream.bns.push_back(c2);
      idx += 2;
      if (b->down_conv) {
        in_stream.consumers.push_back(idx);
        out_stream.producers.push_back(idx);
        out_stream.bns.push_back(idx);
        ++idx;
      }
    }
    streams.insert(streams.end(), inner.begin(), inner.end());
    return streams;
  }

  linear& classifier() override { return fc_; }
  int in_channels() const override { return arch_.in_channels; }
  int input_h() const override { return arch_.h; }
  int input_w() const override { return arch_.w; }
  int num_classes() const override { return arch_.num_classes; }

  void initialize(std::uint64_t seed) override {
    rng g(seed);
    stem_conv_.init_kaiming_fan_out(g);
    reset_bn(stem_bn_);
    for (auto& b : blocks_) {
      b->conv1.init_kaiming_fan_out(g);
      reset_bn(b->bn1);
      b->conv2.init_kaiming_fan_out(g);
      reset_bn(b->bn2);
      if (b->down_conv) {
        b->down_conv->init_kaiming_fan_out(g);
        reset_bn(*b->down_bn);
      }
    }
    fc_.init_default(g);
  }

  void forward(const float* x, int n, float* logits, bool train) override {
    input_.resize({n, arch_.in_channels, arch_.h, arch_.w});
    std::memcpy(input_.data(), x, sizeof(float) * input_.size());
    stem_conv_.forward(input_, stem_c_, train);
    if (stem_map_) stem_map_->forward(stem_c_);
    stem_bn_.forward_relu(stem_c_, nullptr, stem_z_, stem_y_, train);
    const tensor* cur = &stem_y_;
    for (auto& b : blocks_) {
      b->forward(*cur, train);
      cur = &b->out;
    }
    pool_.forward(*cur, pooled_);
    fc_.forward(pooled_, logits_, train);
    std::memcpy(logits, logits_.data(), sizeof(float) * logits_.size());
    trained_batch_ = train ? n : 0;
  }

  graph forward_graph() override {
    using k = graph_op::kind;
    graph g;
    auto conv = [&g](int src, const conv2d& c, const bias_map* m) {
      graph_op op;
      op.type = k::conv;
      op.src = src;
      op.dst = g.buffer();
      op.conv = &c;
      op.map = m;
      g.ops.push_back(op);
      return op.dst;
    };
    // BN + optional residual + ReLU; returns the output buffer.
    auto bn_relu = [&g](int src, batch_norm& bn, int residual, int z, int out) {
      graph_op op;
      op.type = k::batch_norm;
      op.src = src;
      op.dst = out;
      op.bn = &bn;
      op.relu = true;
      op.residual = residual;
      op.relu_z = z;
      op.relu_out = out;
      g.ops.push_back(op);
      return out;
    };
    int cur = conv(0, stem_conv_, stem_map_);
    cur = bn_relu(cur, stem_bn_, -1, g.buffer(), g.buffer());
    for (auto& b : blocks_) {
      const int c1 = conv(cur, b->conv1, b->map1);
      const int y1 = bn_relu(c1, b->bn1, -1, g.buffer(), g.buffer());
      const int c2 = conv(y1, b->conv2, b->map2);
      const int z2 = g.buffer(), out = g.buffer();
      int residual = cur;
      if (b->option_a) {
        graph_op op;
        op.type = k::shortcut_a;
        op.src = cur;
        op.dst = residual = g.buffer();
        op.shortcut = b->option_a.get();
        g.ops.push_back(op);
      } else if (b->down_conv) {
        graph_op op;
        op.type = k::batch_norm;
        op.src = conv(cur, *b->down_conv, b->map_down);
        op.dst = residual = g.buffer();
        op.bn = b->down_bn.get();
        op.relu_z = z2;  // its output joins the block's sum before the ReLU
        op.relu_out = out;
        g.ops.push_back(op);
      }
      cur = bn_relu(c2, b->bn2, residual, z2, out);
    }
    g.add_head(cur, fc_);
    return g;
  }

  void backward(const float* dlogits) override {
    if (trained_batch_ == 0) throw std::logic_error("resnet::backward needs a train-mode forward first");
    dlogits_.resize({trained_batch_, arch_.num_classes, 1, 1});
    std::memcpy(dlogits_.data(), dlogits, sizeof(float) * dlogits_.size());
    fc_.backward(dlogits_, &g_pooled_);
    tensor* g = &grad_a_;
    tensor* g_next = &grad_b_;
    pool_.backward(g_pooled_, *g);
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      (*it)->backward(*g, *g_next, scratch_[0], scratch_[1], scratch_[2]);
      std::swap(g, g_next);
    }
    stem_bn_.backward_relu(*g, stem_z_, scratch_[0]);
    stem_conv_.backward(scratch_[0], nullptr);
  }

 private:
  // A bias map "<conv>.bias_map" (C_out x H_out x W_out) for every conv named
  // in the config's "bias_maps"; the map is a buffer, not a parameter.
  void attach_bias_maps() {
    for (const auto& name : arch_.bias_maps) {
      bias_map** slot = nullptr;
      if (name == "conv1") slot = &stem_map_;
      for (auto& b : blocks_) {
        if (name == b->prefix + ".conv1") slot = &b->map1;
        if (name == b->prefix + ".conv2") slot = &b->map2;
        if (b->down_conv && name == b->prefix + ".downsample.0") slot = &b->map_down;
      }
      if (slot == nullptr)
        throw std::invalid_argument(err_prefix() + "\"bias_maps\" names conv '" + name + "', which " + name_of_arch() +
                                    " does not have");
      if (*slot != nullptr) throw std::invalid_argument(err_prefix() + "\"bias_maps\" names '" + name + "' twice");
      for (const auto& c : conv_layers())
        if (c.name == name) owned_maps_.push_back(std::make_unique<bias_map>(c.c_out(), c.h_out, c.w_out));
      *slot = owned_maps_.back().get();
    }
  }
  std::string name_of_arch() const { return "resnet" + std::to_string(arch_.depth); }
  static void add_bias_map(std::vector<named_tensor>& t, const std::string& conv, bias_map* m) {
    if (m == nullptr) return;
    t.push_back({conv + ".bias_map", {m->channels(), m->height(), m->width()}, dtype::f32, m->data(), nullptr, false});
  }

  static void reset_bn(batch_norm& bn) {
    std::fill(bn.gamma(), bn.gamma() + bn.channels(), 1.0f);
    std::fill(bn.beta(), bn.beta() + bn.channels(), 0.0f);
    bn.reset_running_stats();
  }

  resnet_arch arch_;
  conv2d stem_conv_;
  batch_norm stem_bn_;
  std::vector<std::unique_ptr<basic_block>> blocks_;
  bias_map* stem_map_ = nullptr;
  std::vector<std::unique_ptr<bias_map>> owned_maps_;
  global_avg_pool pool_;
  linear fc_;
  int trained_batch_ = 0;
  tensor input_, stem_c_, stem_z_, stem_y_, pooled_, logits_;
  tensor dlogits_, g_pooled_, grad_a_, grad_b_;
  tensor scratch_[3];
};

}  // namespace

nlohmann::json resnet_config(int depth, int num_classes, int in_channels, int input_h, int input_w, char shortcut) {
  if (depth < 8 || (depth - 2) % 6 != 0)
    throw std::invalid_argument("resnet_config: depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got " +
                                std::to_string(depth));
  if (shortcut != 'A' && shortcut != 'B')
    throw std::invalid_argument(std::string("resnet_config: shortcut must be 'A' or 'B', got '") + shortcut + "'");
  const int n = (depth - 2) / 6;
  const std::vector<int> widths{16, 32, 64};
  nlohmann::json j;
  j["arch"] = arch_name;
  j["depth"] = depth;
  j["shortcut"] = std::string(1, shortcut);
  j["in_channels"] = in_channels;
  j["num_classes"] = num_classes;
  j["input_size"] = {input_h, input_w};
  j["stage_widths"] = widths;
  std::vector<std::vector<int>> blocks, maps;
  for (std::size_t s = 0; s < widths.size(); ++s) {
    blocks.emplace_back(static_cast<std::size_t>(n), widths[s]);
    maps.push_back(s == 0 ? std::vector<int>{} : shortcut_a::default_map(widths[s - 1], widths[s]));
  }
  j["block_widths"] = blocks;
  if (shortcut == 'A') j["shortcut_maps"] = maps;
  return j;
}

std::unique_ptr<model> make_resnet(const nlohmann::json& config, std::uint64_t seed) {
  auto m = std::make_unique<resnet>(config);
  m->initialize(seed);
  return m;
}

}  // namespace trainer
