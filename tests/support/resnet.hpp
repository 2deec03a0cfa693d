#pragma once
// CIFAR ResNet-(6n+2) with option-A shortcuts (He et al. 2016, §4.2) described
// as a psap model: stem conv 3->16 + BN; three stages of n blocks
// conv3x3-BN-ReLU-conv3x3-BN at 32x32/16x16/8x8 with 16/32/64 channels, stride
// 2 in the first conv of stages 2 and 3; FC 64->10 with bias; 32x32 input.
//
// Layer names: "stem", "s<stage>b<block>c<1|2>", "fc". Li et al.'s numbering
// (baselines.md §2): layer 1 is the stem, global block b (1..3n) has conv1 at
// layer 2b and conv2 at layer 2b+1.
//
// Groups: per block, the internal channels "s<stage>b<block>" (conv1 output and
// BN1, consumed by conv2), except blocks whose conv1 layer number is in
// `skip_layers`; optionally the residual stream in the SFP layout (stage-s
// channel c stays at index c in stage s+1): "stream1" (16 channels: stem and
// every conv2 at offset 0), "stream2" (16: stage-2/3 conv2 at offset 16),
// "stream3" (32: stage-3 conv2 at offset 32), each consumed by every conv1
// reading it and by the FC.
#include <support/model.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace psap_test {

struct resnet_options {
    int n = 9;  ///< blocks per stage: 3 -> ResNet-20, 9 -> ResNet-56
    bool internal_groups = true;
    std::vector<int> skip_layers{};  ///< Li numbering of conv1 layers left unpruned
    bool stream_groups = false;
    bool grads = false;
    bool gate_grad = false;
};

inline std::string block_conv(int stage, int block, int conv) { return str("s", stage, "b", block, "c", conv); }
inline std::string block_group(int stage, int block) { return str("s", stage, "b", block); }
/// Li et al.'s layer number of a block's conv1.
inline int li_conv1_layer(int n, int stage, int block) { return 2 * ((stage - 1) * n + block); }

inline model_spec cifar_resnet(const resnet_options& o) {
    model_spec s;
    auto conv = [&](std::string name, index out, index in, index positions) {
        layer_spec l;
        l.name = std::move(name);
        l.out = out;
        l.in = in;
        l.kernel_area = 9;
        l.positions = positions;
        l.bn = true;
        l.grads = o.grads;
        l.gate_grad = o.gate_grad;
        s.layers.push_back(l);
    };
    conv("stem", 16, 3, 32 * 32);
    for (int st = 1; st <= 3; ++st) {
        const index c = 16 << (st - 1), side = 32 >> (st - 1);
        for (int b = 1; b <= o.n; ++b) {
            conv(block_conv(st, b, 1), c, (st > 1 && b == 1) ? c / 2 : c, side * side);
            conv(block_conv(st, b, 2), c, c, side * side);
        }
    }
    layer_spec fc;
    fc.name = "fc";
    fc.out = 10;
    fc.in = 64;
    fc.bias = true;
    fc.grads = o.grads;
    s.layers.push_back(fc);

    if (o.internal_groups)
        for (int st = 1; st <= 3; ++st)
            for (int b = 1; b <= o.n; ++b) {
                if (std::find(o.skip_layers.begin(), o.skip_layers.end(), li_conv1_layer(o.n, st, b)) != o.skip_layers.end())
                    continue;
                s.groups.push_back(
                    {block_group(st, b), 16 << (st - 1), {{block_conv(st, b, 1), 0}}, {{block_conv(st, b, 2), 0}}});
            }
    if (o.stream_groups) {
        group_spec g1{"stream1", 16, {{"stem", 0}}, {}}, g2{"stream2", 16, {}, {}}, g3{"stream3", 32, {}, {}};
        for (int st = 1; st <= 3; ++st)
            for (int b = 1; b <= o.n; ++b) {
                g1.members.push_back({block_conv(st, b, 2), 0});
                g1.consumers.push_back({block_conv(st, b, 1), 0});
                if (st >= 2) {
                    g2.members.push_back({block_conv(st, b, 2), 16});
                    if (st == 3 || b > 1) g2.consumers.push_back({block_conv(st, b, 1), 16});
                }
                if (st == 3) {
                    g3.members.push_back({block_conv(st, b, 2), 32});
                    if (b > 1) g3.consumers.push_back({block_conv(st, b, 1), 32});
                }
            }
        g1.consumers.push_back({"fc", 0});
        g2.consumers.push_back({"fc", 16});
        g3.consumers.push_back({"fc", 32});
        s.groups.push_back(g1);
        s.groups.push_back(g2);
        s.groups.push_back(g3);
    }
    return s;
}

}  // namespace psap_test
