#include "prune/describe.hpp"

#include "prune/resnet_blocks.hpp"

#include <psap/tensor/view.hpp>

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace trainer::prune {

namespace detail {

// Block structure of a ResNet read from conv names: "conv1" (stem) and
// "layer<S>.<B>.conv1|conv2|downsample.0".
std::vector<block_info> resnet_blocks(const std::vector<conv_ref>& convs) {
  std::vector<block_info> blocks;
  std::map<std::string, std::size_t> by_prefix;
  for (std::size_t i = 0; i < convs.size(); ++i) {
    const std::string& n = convs[i].name;
    if (n == "conv1") continue;
    std::string prefix, what;
    for (const char* suffix : {".conv1", ".conv2", ".downsample.0"}) {
      const std::string s = suffix;
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0) {
        prefix = n.substr(0, n.size() - s.size());
        what = s;
      }
    }
    if (prefix.rfind("layer", 0) != 0 || prefix.find('.') == std::string::npos)
      throw std::invalid_argument("describe: unexpected ResNet conv '" + n + "'");
    auto it = by_prefix.find(prefix);
    if (it == by_prefix.end()) {
      block_info b;
      b.prefix = prefix;
      const auto dot = prefix.find('.');
      b.stage = std::stoi(prefix.substr(5, dot - 5)) - 1;
      const int index_in_stage = std::stoi(prefix.substr(dot + 1));
      b.input_stream = b.stage > 0 && index_in_stage == 0 ? b.stage - 1 : b.stage;
      it = by_prefix.emplace(prefix, blocks.size()).first;
      blocks.push_back(b);
    }
    auto& b = blocks[it->second];
    const int ci = static_cast<int>(i);
    if (what == ".conv1") b.conv1 = ci;
    if (what == ".conv2") b.conv2 = ci;
    if (what == ".downsample.0") b.down = ci;
  }
  for (const auto& b : blocks)
    if (b.conv1 < 0 || b.conv2 < 0) throw std::invalid_argument("describe: block '" + b.prefix + "' lacks conv1 or conv2");
  return blocks;
}

int resnet_stem(const std::vector<conv_ref>& convs) {
  for (std::size_t i = 0; i < convs.size(); ++i)
    if (convs[i].name == "conv1") return static_cast<int>(i);
  throw std::invalid_argument("describe: ResNet without a stem conv 'conv1'");
}

}  // namespace detail

namespace {

using psap::index;
using detail::block_info;

psap::layer<float> conv_layer(const conv_ref& c, const bn_ref* bn) {
  psap::layer<float> l;
  l.name = c.name;
  l.out_channels = c.c_out();
  l.in_channels = c.c_in();
  l.kernel_area = c.kernel_area();
  l.out_positions = c.out_area();
  l.weight = psap::filters(c.conv->weight(), c.c_out(), c.conv->fan_in());
  l.grad = psap::filters(c.conv->weight_grad(), c.c_out(), c.conv->fan_in());
  if (c.conv->has_bias()) {
    l.bias = psap::channels(c.conv->bias(), c.c_out());
    l.grad_bias = psap::channels(c.conv->bias_grad(), c.c_out());
  }
  if (bn != nullptr) {
    batch_norm& b = *bn->bn;
    if (b.channels() != c.c_out())
      throw std::invalid_argument("describe: batch norm '" + bn->name + "' has " + std::to_string(b.channels()) +
                                  " channels, conv '" + c.name + "' has " + std::to_string(c.c_out()) + " filters");
    const index n = b.channels();
    l.bn = psap::batch_norm_views<float>{.gamma = psap::channels(b.gamma(), n),
                                         .beta = psap::channels(b.beta(), n),
                                         .running_mean = psap::channels(b.running_mean(), n),
                                         .running_var = psap::channels(b.running_var(), n),
                                         .grad_gamma = psap::channels(b.gamma_grad(), n),
                                         .grad_beta = psap::channels(b.beta_grad(), n),
                                         .gate_grad = psap::channels(b.gate_grad(), n),
                                         .eps = static_cast<double>(b.eps())};
  }
  return l;
}

// A channel lineage of an option-A ResNet: channel chan[s - birth] of the
// residual stream of every stage s in [birth, last].
struct lineage {
  int birth = 0, last = 0;
  std::vector<int> chan;
};

// Union of (stage, channel) nodes linked by the shortcut maps, as lineages.
std::vector<lineage> lineages(const std::vector<int>& widths, const std::vector<std::vector<int>>& maps) {
  const int stages = static_cast<int>(widths.size());
  std::vector<int> base(static_cast<std::size_t>(stages) + 1, 0);
  for (int s = 0; s < stages; ++s) base[static_cast<std::size_t>(s) + 1] = base[static_cast<std::size_t>(s)] + widths[static_cast<std::size_t>(s)];
  std::vector<int> parent(static_cast<std::size_t>(base.back()));
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int x) {
    while (parent[static_cast<std::size_t>(x)] != x) x = parent[static_cast<std::size_t>(x)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(x)])];
    return x;
  };
  for (int s = 1; s < stages; ++s)
    for (int j = 0; j < widths[static_cast<std::size_t>(s)]; ++j) {
      const int src = maps[static_cast<std::size_t>(s)][static_cast<std::size_t>(j)];
      if (src < 0) continue;
      const int a = find(base[static_cast<std::size_t>(s)] + j), b = find(base[static_cast<std::size_t>(s) - 1] + src);
      if (a != b) parent[static_cast<std::size_t>(std::max(a, b))] = std::min(a, b);
    }
  std::map<int, std::vector<std::pair<int, int>>> comps;  // root -> (stage, channel)
  for (int s = 0; s < stages; ++s)
    for (int c = 0; c < widths[static_cast<std::size_t>(s)]; ++c) comps[find(base[static_cast<std::size_t>(s)] + c)].push_back({s, c});
  std::vector<lineage> out;
  for (auto& [root, nodes] : comps) {
    std::sort(nodes.begin(), nodes.end());
    lineage l;
    l.birth = nodes.front().first;
    l.last = nodes.back().first;
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      if (nodes[k].first != l.birth + static_cast<int>(k))
        throw std::invalid_argument(
            "describe: the option-A shortcut maps copy channel " + std::to_string(nodes[k].second) + " of stage " +
            std::to_string(nodes[k].first) + " into several channels of the next stage; such a stream cannot be one "
            "psap group; use --groups internal");
      l.chan.push_back(nodes[k].second);
    }
    out.push_back(std::move(l));
  }
  std::sort(out.begin(), out.end(), [](const lineage& a, const lineage& b) {
    if (a.birth != b.birth) return a.birth < b.birth;
    if (a.last != b.last) return a.last < b.last;
    return a.chan < b.chan;
  });
  return out;
}

void describe_resnet(model& m, network_description& d, const std::vector<conv_ref>& convs) {
  const nlohmann::json cfg = m.config();
  const std::string sc = cfg.value("shortcut", std::string("A"));
  d.shortcut = sc.empty() ? 'A' : sc[0];
  const auto blocks = detail::resnet_blocks(convs);
  psap::network<float>& net = d.net;
  auto layer_of = [](int conv) { return static_cast<index>(conv); };  // layers are added in conv order

  for (const auto& b : blocks) {
    net.add_group(b.prefix, convs[static_cast<std::size_t>(b.conv1)].c_out()).member(layer_of(b.conv1)).consumer(layer_of(b.conv2));
    d.kinds.push_back(group_kind::internal);
  }
  if (d.mode != group_mode::internal_stream) return;

  const auto widths = cfg.at("stage_widths").get<std::vector<int>>();
  const int stages = static_cast<int>(widths.size());
  const int stem = detail::resnet_stem(convs);
  for (const auto& b : blocks)
    if (b.stage >= stages) throw std::invalid_argument("describe: block '" + b.prefix + "' is outside the configured stages");

  if (d.shortcut == 'B') {
    for (int s = 0; s < stages; ++s) {
      auto g = net.add_group(std::string("stream.") + std::to_string(s + 1), widths[static_cast<std::size_t>(s)]);
      if (s == 0) g.member(layer_of(stem));
      for (const auto& b : blocks) {
        if (b.stage == s && b.down >= 0) g.member(layer_of(b.down));
        if (b.stage == s) g.member(layer_of(b.conv2));
      }
      for (const auto& b : blocks)
        if (b.input_stream == s) {
          g.consumer(layer_of(b.conv1));
          if (b.down >= 0) g.consumer(layer_of(b.down));
        }
      if (s + 1 == stages) g.consumer(d.classifier_layer);
      d.kinds.push_back(group_kind::stream);
    }
    return;
  }

  // Option A: groups of channel lineages (see the header).
  const auto maps = cfg.at("shortcut_maps").get<std::vector<std::vector<int>>>();
  const auto lin = lineages(widths, maps);
  // Runs of lineages with the same span whose channels are consecutive in every stage.
  std::vector<std::pair<std::size_t, std::size_t>> runs;  // [first, end)
  for (std::size_t i = 0; i < lin.size();) {
    std::size_t j = i + 1;
    while (j < lin.size() && lin[j].birth == lin[i].birth && lin[j].last == lin[i].last) {
      bool next = true;
      for (std::size_t k = 0; k < lin[i].chan.size(); ++k) next = next && lin[j].chan[k] == lin[j - 1].chan[k] + 1;
      if (!next) break;
      ++j;
    }
    runs.push_back({i, j});
    i = j;
  }
  std::map<int, int> runs_per_birth, seen_per_birth;
  for (const auto& r : runs) ++runs_per_birth[lin[r.first].birth];
  for (const auto& r : runs) {
    const lineage& first = lin[r.first];
    std::string name = std::string("stream.") + std::to_string(first.birth + 1);
    if (runs_per_birth[first.birth] > 1) name += std::string(".") + std::to_string(++seen_per_birth[first.birth]);
    auto g = net.add_group(name, static_cast<index>(r.second - r.first));
    for (int s = first.birth; s <= first.last; ++s) {
      const index off = first.chan[static_cast<std::size_t>(s - first.birth)];
      if (s == 0) g.member(layer_of(stem), off);
      for (const auto& b : blocks)
        if (b.stage == s) g.member(layer_of(b.conv2), off);
      for (const auto& b : blocks)
        if (b.input_stream == s) g.consumer(layer_of(b.conv1), off);
      if (s + 1 == stages) g.consumer(d.classifier_layer, off);
    }
    d.kinds.push_back(group_kind::stream);
  }
}

void describe_vgg(network_description& d, const std::vector<conv_ref>& convs) {
  for (std::size_t i = 0; i < convs.size(); ++i) {
    auto g = d.net.add_group(convs[i].name, convs[i].c_out()).member(static_cast<index>(i));
    g.consumer(i + 1 < convs.size() ? static_cast<index>(i + 1) : d.classifier_layer);
    d.kinds.push_back(group_kind::internal);
  }
}

}  // namespace

group_mode parse_group_mode(const std::string& s) {
  if (s == "internal") return group_mode::internal;
  if (s == "internal+stream") return group_mode::internal_stream;
  throw std::invalid_argument("unknown group mode '" + s + "': use internal or internal+stream");
}

std::string to_string(group_mode m) { return m == group_mode::internal ? "internal" : "internal+stream"; }

std::string classifier_name(model& m) {
  const float* w = m.classifier().weight();
  for (const auto& t : m.tensors()) {
    const std::string suffix = ".weight";
    if (t.data == w && t.name.size() > suffix.size() && t.name.ends_with(suffix))
      return t.name.substr(0, t.name.size() - suffix.size());
  }
  throw std::invalid_argument("describe: the classifier's weight is not among the model's tensors");
}

network_description describe(model& m, group_mode mode) {
  network_description d;
  d.mode = mode;
  const nlohmann::json cfg = m.config();
  d.arch = cfg.value("arch", std::string());
  if (d.arch != "resnet" && d.arch != "vgg")
    throw std::invalid_argument("describe: unknown architecture '" + d.arch + "' (expected resnet or vgg)");
  const auto convs = m.conv_layers();
  auto bns = m.bn_layers();
  for (const auto& c : convs) {
    const bn_ref* bn = c.bn >= 0 ? &bns.at(static_cast<std::size_t>(c.bn)) : nullptr;
    d.net.add_layer(conv_layer(c, bn));
    d.conv_of_layer.push_back(static_cast<int>(d.conv_of_layer.size()));
  }
  linear& fc = m.classifier();
  d.classifier_name = classifier_name(m);
  psap::layer<float> head;
  head.name = d.classifier_name;
  head.out_channels = fc.out_features();
  head.in_channels = fc.in_features();
  head.weight = psap::filters(fc.weight(), fc.out_features(), fc.in_features());
  head.grad = psap::filters(fc.weight_grad(), fc.out_features(), fc.in_features());
  if (fc.has_bias()) {
    head.bias = psap::channels(fc.bias(), fc.out_features());
    head.grad_bias = psap::channels(fc.bias_grad(), fc.out_features());
  }
  head.counts_as_filters = false;  // classes, never pruned
  d.classifier_layer = d.net.add_layer(std::move(head));
  d.conv_of_layer.push_back(-1);

  if (d.arch == "resnet")
    describe_resnet(m, d, convs);
  else
    describe_vgg(d, convs);
  d.net.validate();
  return d;
}

}  // namespace trainer::prune
