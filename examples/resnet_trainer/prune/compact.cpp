#include "prune/compact.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "nn/tensor.hpp"
#include "prune/resnet_blocks.hpp"

namespace trainer::prune {
namespace {

using psap::index;

std::string list_text(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::vector<int> kept_indices(const std::vector<char>& removed) {
  std::vector<int> k;
  for (std::size_t i = 0; i < removed.size(); ++i)
    if (!removed[i]) k.push_back(static_cast<int>(i));
  return k;
}

float* find_tensor(model& m, const std::string& name) {
  for (const auto& t : m.tensors())
    if (t.name == name) return t.f32();
  return nullptr;
}

// What a member's pruned channel emits in eval mode.
enum class removed_kind { zero, constant };

struct layer_keep {
  std::vector<char> out_removed, in_removed;
  std::vector<int> out_keep, in_keep;
};

}  // namespace

compaction compact(model& masked, const network_description& d, const psap::pruning_result& result) {
  const auto& net = d.net;
  const auto& groups = net.groups();
  const auto& layers = net.layers();
  if (result.groups.size() != groups.size())
    throw compaction_error("compact: the result has " + std::to_string(result.groups.size()) + " groups, the network " +
                           std::to_string(groups.size()) + "; pass the keep-lists of a pruner bound to this description");

  std::vector<layer_keep> lk(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    lk[l].out_removed.assign(static_cast<std::size_t>(layers[l].out_channels), 0);
    lk[l].in_removed.assign(static_cast<std::size_t>(layers[l].in_channels), 0);
  }
  std::vector<std::vector<index>> pruned(groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto& keep = result.groups[g];
    if (keep.group != groups[g].name || keep.size != groups[g].size)
      throw compaction_error("compact: result group " + std::to_string(g) + " is '" + keep.group + "' of " +
                             std::to_string(keep.size) + " channels, the network's is '" + groups[g].name + "' of " +
                             std::to_string(groups[g].size));
    if (keep.kept.empty()) throw compaction_error("compact: group '" + keep.group + "' keeps no channel");
    std::vector<char> is_kept(static_cast<std::size_t>(keep.size), 0);
    for (std::size_t i = 0; i < keep.kept.size(); ++i) {
      const index c = keep.kept[i];
      if (c < 0 || c >= keep.size || (i > 0 && keep.kept[i - 1] >= c))
        throw compaction_error("compact: the keep-list of group '" + keep.group +
                               "' is not an ascending list of its channels");
      is_kept[static_cast<std::size_t>(c)] = 1;
    }
    for (index c = 0; c < keep.size; ++c)
      if (!is_kept[static_cast<std::size_t>(c)]) pruned[g].push_back(c);
    for (const auto& m : groups[g].members)
      for (index c : pruned[g]) lk[static_cast<std::size_t>(m.layer)].out_removed[static_cast<std::size_t>(m.offset + c)] = 1;
    for (const auto& m : groups[g].consumers)
      for (index c : pruned[g]) lk[static_cast<std::size_t>(m.layer)].in_removed[static_cast<std::size_t>(m.offset + c)] = 1;
  }
  for (auto& k : lk) {
    k.out_keep = kept_indices(k.out_removed);
    k.in_keep = kept_indices(k.in_removed);
  }

  auto convs = masked.conv_layers();
  auto bns = masked.bn_layers();
  compaction out;

  // What every removed channel emits; constants go to the consumers' inputs.
  std::vector<std::vector<float>> const_in(layers.size());
  std::vector<char> has_const(layers.size(), 0);
  for (std::size_t l = 0; l < layers.size(); ++l) const_in[l].assign(static_cast<std::size_t>(layers[l].in_channels), 0.0f);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto& grp = groups[g];
    for (index c : pruned[g]) {
      for (const auto& m : grp.members) {
        const int ci = d.conv_of_layer[static_cast<std::size_t>(m.layer)];
        const conv_ref& cr = convs[static_cast<std::size_t>(ci)];
        const auto ch = static_cast<std::size_t>(m.offset + c);
        batch_norm* bn = cr.bn >= 0 ? bns[static_cast<std::size_t>(cr.bn)].bn : nullptr;
        const std::size_t fan = static_cast<std::size_t>(cr.conv->fan_in());
        const float* row = cr.conv->weight() + ch * fan;
        const bool zero_filter = std::all_of(row, row + fan, [](float v) { return v == 0.0f; }) &&
                                 (!cr.conv->has_bias() || cr.conv->bias()[ch] == 0.0f);
        if (bn != nullptr && bn->gamma()[ch] == 0.0f && bn->beta()[ch] == 0.0f) {
          ++out.removed_zero;  // gated: BN outputs exactly 0
          continue;
        }
        if (!zero_filter)
          throw compaction_error("compact: channel " + std::to_string(c) + " of group '" + grp.name +
                                 "' is pruned, but in layer '" + cr.name +
                                 "' neither its batch norm is gated (gamma = beta = 0) nor its filter zero, so it "
                                 "does not output a constant and removing it would change the network (soft "
                                 "reconstruction lets pruned filters regrow while training continues after the last "
                                 "pruning step); compact right after the last step, or use a gating reconstruction "
                                 "(protective, hard, decay)");
        // A bias map from an earlier compaction is added to this conv's
        // output: the channel then emits that map, which varies over the
        // image, not the 0 the folding below assumes.
        if (const float* map = find_tensor(masked, cr.name + ".bias_map")) {
          const std::size_t plane = static_cast<std::size_t>(cr.h_out) * static_cast<std::size_t>(cr.w_out);
          const float* p = map + ch * plane;
          if (std::any_of(p, p + plane, [](float v) { return v != 0.0f; }))
            throw compaction_error("compact: channel " + std::to_string(c) + " of group '" + grp.name +
                                   "' is pruned, but layer '" + cr.name +
                                   "' adds a bias map from an earlier compaction to it, so its zeroed filter does "
                                   "not output a constant that can be folded; prune the network before compacting "
                                   "it, or re-prune with a gating reconstruction (protective, hard, decay)");
        }
        if (bn == nullptr) {
          ++out.removed_zero;  // zero filter and bias, no BN: exactly 0
          continue;
        }
        // Eval-mode BN of a zero input, as nn/batch_norm computes it.
        const float invstd = 1.0f / std::sqrt(bn->running_var()[ch] + bn->eps());
        const float scale = bn->gamma()[ch] * invstd;
        const float cval = (0.0f - bn->running_mean()[ch]) * scale + bn->beta()[ch];
        const float act = cval <= 0.0f ? 0.0f : cval;  // ReLU, NaN passed on as nn/relu
        if (act == 0.0f) {
          ++out.removed_zero;  // the ReLU closes it: exactly 0 downstream
          continue;
        }
        if (d.kinds[g] != group_kind::internal || grp.members.size() != 1)
          throw compaction_error("compact: channel " + std::to_string(c) + " of group '" + grp.name +
                                 "' is pruned, but its batch norm in layer '" + cr.name +
                                 "' still emits the constant " + std::to_string(cval) +
                                 " (filter zeroed, BN not gated); in a residual stream that constant cannot be "
                                 "folded exactly. Prune streams with a gating reconstruction (protective, hard, "
                                 "decay), not soft");
        ++out.removed_constant;
        for (const auto& cons : grp.consumers) {
          const_in[static_cast<std::size_t>(cons.layer)][static_cast<std::size_t>(cons.offset + c)] = act;
          has_const[static_cast<std::size_t>(cons.layer)] = 1;
        }
      }
    }
  }

  // Folds: bias maps for convs (by running the masked conv on the constant
  // input, so the borders of the zero padding are exact), bias for the classifier.
  std::vector<std::vector<float>> new_map(layers.size());
  std::vector<float> classifier_add;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (!has_const[l]) continue;
    const int ci = d.conv_of_layer[l];
    if (ci < 0) {
      linear& fc = masked.classifier();
      classifier_add.assign(static_cast<std::size_t>(fc.out_features()), 0.0f);
      for (int j = 0; j < fc.out_features(); ++j) {
        double s = 0.0;
        for (int i = 0; i < fc.in_features(); ++i)
          s += static_cast<double>(fc.weight()[static_cast<std::size_t>(j) * static_cast<std::size_t>(fc.in_features()) +
                                               static_cast<std::size_t>(i)]) *
               static_cast<double>(const_in[l][static_cast<std::size_t>(i)]);
        classifier_add[static_cast<std::size_t>(j)] = static_cast<float>(s);
      }
      continue;
    }
    const conv_ref& cr = convs[static_cast<std::size_t>(ci)];
    tensor x({1, cr.c_in(), cr.h_in, cr.w_in});
    x.fill(0.0f);
    for (int i = 0; i < cr.c_in(); ++i) {
      const float v = const_in[l][static_cast<std::size_t>(i)];
      if (v != 0.0f) std::fill(x.plane(0, i), x.plane(0, i) + x.shape().plane(), v);
    }
    tensor y;
    cr.conv->forward(x, y, false);
    if (y.shape() != shape4{1, cr.c_out(), cr.h_out, cr.w_out})
      throw compaction_error("compact: conv '" + cr.name + "' produced an output of unexpected shape");
    new_map[l].assign(y.data(), y.data() + y.size());
  }

  // The compact configuration.
  nlohmann::json cfg = masked.config();
  auto keep_of_conv = [&](int ci) -> const layer_keep& { return lk[static_cast<std::size_t>(ci)]; };  // layer id == conv index
  const layer_keep& head = lk[static_cast<std::size_t>(d.classifier_layer)];
  auto mismatch = [](const std::string& what, const std::vector<int>& a, const std::vector<int>& b) {
    if (a != b)
      throw compaction_error("compact: inconsistent keep-lists: " + what + " (" + list_text(a) + " vs " + list_text(b) +
                             "); the groups do not describe the network's channel coupling");
  };
  if (d.arch == "resnet") {
    const auto blocks = detail::resnet_blocks(convs);
    const int stem = detail::resnet_stem(convs);
    auto widths = cfg.at("stage_widths").get<std::vector<int>>();
    auto bw = cfg.at("block_widths").get<std::vector<std::vector<int>>>();
    const int stages = static_cast<int>(widths.size());
    std::vector<std::vector<int>> stream(static_cast<std::size_t>(stages));
    std::vector<char> seen(static_cast<std::size_t>(stages), 0);
    auto set_stream = [&](int s, const std::vector<int>& k, const std::string& who) {
      auto& st = stream[static_cast<std::size_t>(s)];
      if (seen[static_cast<std::size_t>(s)])
        mismatch("output channels of '" + who + "' and the stage-" + std::to_string(s + 1) + " stream", k, st);
      st = k;
      seen[static_cast<std::size_t>(s)] = 1;
    };
    set_stream(0, keep_of_conv(stem).out_keep, convs[static_cast<std::size_t>(stem)].name);
    std::vector<int> index_in_stage(static_cast<std::size_t>(stages), 0);
    for (const auto& b : blocks) {
      if (b.down >= 0) set_stream(b.stage, keep_of_conv(b.down).out_keep, convs[static_cast<std::size_t>(b.down)].name);
      set_stream(b.stage, keep_of_conv(b.conv2).out_keep, convs[static_cast<std::size_t>(b.conv2)].name);
      bw[static_cast<std::size_t>(b.stage)][static_cast<std::size_t>(index_in_stage[static_cast<std::size_t>(b.stage)]++)] =
          static_cast<int>(keep_of_conv(b.conv1).out_keep.size());
    }
    for (const auto& b : blocks) {
      const auto& in_stream = stream[static_cast<std::size_t>(b.input_stream)];
      mismatch("input channels of '" + convs[static_cast<std::size_t>(b.conv1)].name + "'", keep_of_conv(b.conv1).in_keep, in_stream);
      if (b.down >= 0)
        mismatch("input channels of '" + convs[static_cast<std::size_t>(b.down)].name + "'", keep_of_conv(b.down).in_keep, in_stream);
      mismatch("input channels of '" + convs[static_cast<std::size_t>(b.conv2)].name + "'", keep_of_conv(b.conv2).in_keep,
               keep_of_conv(b.conv1).out_keep);
    }
    mismatch("input features of '" + d.classifier_name + "'", head.in_keep, stream.back());
    for (int s = 0; s < stages; ++s) widths[static_cast<std::size_t>(s)] = static_cast<int>(stream[static_cast<std::size_t>(s)].size());
    cfg["stage_widths"] = widths;
    cfg["block_widths"] = bw;
    if (d.shortcut == 'A') {
      auto maps = cfg.at("shortcut_maps").get<std::vector<std::vector<int>>>();
      for (int s = 1; s < stages; ++s) {
        const auto& old_map = maps[static_cast<std::size_t>(s)];
        const auto& prev = stream[static_cast<std::size_t>(s) - 1];
        std::vector<int> m;
        for (int j : stream[static_cast<std::size_t>(s)]) {
          const int src = old_map[static_cast<std::size_t>(j)];
          const auto it = std::find(prev.begin(), prev.end(), src);
          // A removed source channel output exactly 0 (streams are exact), as does -1.
          m.push_back(src < 0 || it == prev.end() ? -1 : static_cast<int>(it - prev.begin()));
        }
        maps[static_cast<std::size_t>(s)] = m;
      }
      cfg["shortcut_maps"] = maps;
    }
  } else {
    auto widths = cfg.at("widths").get<std::vector<int>>();
    for (std::size_t i = 0; i < convs.size(); ++i) {
      widths[i] = static_cast<int>(keep_of_conv(static_cast<int>(i)).out_keep.size());
      const auto& next_in = i + 1 < convs.size() ? keep_of_conv(static_cast<int>(i) + 1).in_keep : head.in_keep;
      mismatch("input channels after '" + convs[i].name + "'", next_in, keep_of_conv(static_cast<int>(i)).out_keep);
    }
    cfg["widths"] = widths;
  }
  // Bias maps: those the masked model has, plus the new folds.
  std::vector<std::string> map_names = cfg.value("bias_maps", std::vector<std::string>{});
  for (std::size_t l = 0; l < layers.size(); ++l)
    if (!new_map[l].empty()) {
      const std::string& n = convs[static_cast<std::size_t>(d.conv_of_layer[l])].name;
      out.bias_maps.push_back(n);
      if (std::find(map_names.begin(), map_names.end(), n) == map_names.end()) map_names.push_back(n);
    }
  if (!map_names.empty()) cfg["bias_maps"] = map_names;

  try {
    out.net = make_model(cfg, 0);
  } catch (const std::invalid_argument& e) {
    throw compaction_error(std::string("compact: cannot build the compact model: ") + e.what());
  }
  out.config = cfg;

  // Copy the surviving weights.
  auto cconvs = out.net->conv_layers();
  auto cbns = out.net->bn_layers();
  if (cconvs.size() != convs.size()) throw compaction_error("compact: the compact model has a different number of convs");
  for (std::size_t i = 0; i < convs.size(); ++i) {
    const conv_ref& a = convs[i];
    const conv_ref& b = cconvs[i];
    const layer_keep& k = lk[i];
    if (a.name != b.name || b.c_out() != static_cast<int>(k.out_keep.size()) || b.c_in() != static_cast<int>(k.in_keep.size()) ||
        a.kernel_area() != b.kernel_area())
      throw compaction_error("compact: conv '" + b.name + "' of the compact model is " + std::to_string(b.c_out()) + "x" +
                             std::to_string(b.c_in()) + ", the keep-lists of '" + a.name + "' give " +
                             std::to_string(k.out_keep.size()) + "x" + std::to_string(k.in_keep.size()));
    const std::size_t ka = static_cast<std::size_t>(a.kernel_area());
    const std::size_t cin_a = static_cast<std::size_t>(a.c_in()), cin_b = static_cast<std::size_t>(b.c_in());
    for (std::size_t o = 0; o < k.out_keep.size(); ++o)
      for (std::size_t ii = 0; ii < k.in_keep.size(); ++ii)
        std::memcpy(b.conv->weight() + (o * cin_b + ii) * ka,
                    a.conv->weight() + (static_cast<std::size_t>(k.out_keep[o]) * cin_a + static_cast<std::size_t>(k.in_keep[ii])) * ka,
                    ka * sizeof(float));
    if (a.conv->has_bias())
      for (std::size_t o = 0; o < k.out_keep.size(); ++o) b.conv->bias()[o] = a.conv->bias()[k.out_keep[o]];
    if (a.bn >= 0) {
      batch_norm& x = *bns[static_cast<std::size_t>(a.bn)].bn;
      batch_norm& y = *cbns[static_cast<std::size_t>(b.bn)].bn;
      for (std::size_t o = 0; o < k.out_keep.size(); ++o) {
        const auto src = static_cast<std::size_t>(k.out_keep[o]);
        y.gamma()[o] = x.gamma()[src];
        y.beta()[o] = x.beta()[src];
        y.running_mean()[o] = x.running_mean()[src];
        y.running_var()[o] = x.running_var()[src];
      }
      y.num_batches_tracked() = x.num_batches_tracked();
    }
    // Bias map: the masked model's own (its kept rows) plus the new fold.
    const float* old_map = find_tensor(masked, a.name + ".bias_map");
    const std::vector<float>& fold = new_map[i];
    if (old_map != nullptr || !fold.empty()) {
      float* dst = find_tensor(*out.net, b.name + ".bias_map");
      if (dst == nullptr) throw compaction_error("compact: the compact model lacks the bias map of '" + b.name + "'");
      const std::size_t plane = static_cast<std::size_t>(b.out_area());
      for (std::size_t o = 0; o < k.out_keep.size(); ++o)
        for (std::size_t p = 0; p < plane; ++p) {
          const std::size_t src = static_cast<std::size_t>(k.out_keep[o]) * plane + p;
          dst[o * plane + p] = (old_map ? old_map[src] : 0.0f) + (fold.empty() ? 0.0f : fold[src]);
        }
    }
  }
  linear& fa = masked.classifier();
  linear& fb = out.net->classifier();
  if (fb.in_features() != static_cast<int>(head.in_keep.size()) || fb.out_features() != fa.out_features())
    throw compaction_error("compact: the compact classifier has the wrong shape");
  for (int j = 0; j < fb.out_features(); ++j) {
    for (std::size_t i = 0; i < head.in_keep.size(); ++i)
      fb.weight()[static_cast<std::size_t>(j) * head.in_keep.size() + i] =
          fa.weight()[static_cast<std::size_t>(j) * static_cast<std::size_t>(fa.in_features()) + static_cast<std::size_t>(head.in_keep[i])];
    if (fb.has_bias())
      fb.bias()[j] = fa.bias()[j] + (classifier_add.empty() ? 0.0f : classifier_add[static_cast<std::size_t>(j)]);
  }
  if (!classifier_add.empty() && !fb.has_bias())
    throw compaction_error("compact: a constant must be folded into the classifier, which has no bias");
  if (!classifier_add.empty()) out.bias_maps.push_back(d.classifier_name + ".bias");
  return out;
}

logit_comparison compare_logits(model& a, model& b, const float* x, int n) {
  if (a.num_classes() != b.num_classes()) throw std::invalid_argument("compare_logits: the models differ in classes");
  std::vector<float> la(static_cast<std::size_t>(n) * static_cast<std::size_t>(a.num_classes()));
  std::vector<float> lb(la.size());
  a.forward(x, n, la.data(), false);
  b.forward(x, n, lb.data(), false);
  logit_comparison r;
  for (std::size_t i = 0; i < la.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(la[i]) - static_cast<double>(lb[i]));
    if (std::isnan(diff)) return {diff, std::fabs(static_cast<double>(la[i]))};
    r.max_abs_diff = std::max(r.max_abs_diff, diff);
    r.max_abs_logit = std::max(r.max_abs_logit, std::fabs(static_cast<double>(la[i])));
  }
  return r;
}

double max_abs_logit_diff(model& a, model& b, const float* x, int n) { return compare_logits(a, b, x, n).max_abs_diff; }

}  // namespace trainer::prune
