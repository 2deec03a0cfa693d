#pragma once
// Depthwise-separable blocks as a psap model: MobileNetV2's inverted residual
// (Sandler et al. 2018) on 8x8 feature maps. Stem conv3x3 3->C + BN; `blocks`
// blocks of expand (conv1x1 C->E + BN), depthwise conv3x3 (E filters of one
// input channel each: in_channels 1, kernel_area 9) + BN, project (conv1x1
// E->C + BN), added to the block's input; a linear head C->10 with bias.
//
// Groups: per block "b<i>.expanded" (E channels): the expand conv and the
// depthwise conv are both members, since filter c of the depthwise conv reads
// only channel c of the expansion and goes with it; the project conv is the
// consumer. Optionally "stream" (C channels): the stem and every project conv
// (their outputs are added), consumed by every expand conv and the head.
//
// Layer names: "stem", "b<i>.expand", "b<i>.dw", "b<i>.project", "head".
#include <support/model.hpp>

#include <string>

namespace psap_test {

struct mobilenet_options {
    int blocks = 2;
    index channels = 16;  ///< C, the residual stream's width
    index expanded = 64;  ///< E = t * C (t = 4 here)
    bool stream_group = true;
    bool gate_grad = false;
};

inline model_spec inverted_residual_net(const mobilenet_options& o) {
    model_spec s;
    auto conv = [&](std::string name, index out, index in, index kernel_area) {
        s.layers.push_back({.name = std::move(name), .out = out, .in = in, .kernel_area = kernel_area, .positions = 64,
                            .bn = true, .gate_grad = o.gate_grad});
    };
    conv("stem", o.channels, 3, 9);
    group_spec stream{.name = "stream", .size = o.channels, .members = {{"stem"}}, .consumers = {}};
    for (int b = 1; b <= o.blocks; ++b) {
        const std::string p = str("b", b, ".");
        conv(p + "expand", o.expanded, o.channels, 1);
        conv(p + "dw", o.expanded, 1, 9);  // depthwise: one input channel per filter
        conv(p + "project", o.channels, o.expanded, 1);
        s.groups.push_back({.name = p + "expanded", .size = o.expanded, .members = {{p + "expand"}, {p + "dw"}},
                            .consumers = {{p + "project"}}});
        stream.members.push_back({p + "project"});
        stream.consumers.push_back({p + "expand"});
    }
    s.layers.push_back({.name = "head", .out = 10, .in = o.channels, .bias = true});
    stream.consumers.push_back({"head"});
    if (o.stream_group) s.groups.push_back(stream);
    return s;
}

}  // namespace psap_test
