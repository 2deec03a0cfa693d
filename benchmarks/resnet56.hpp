#pragma once
// CIFAR ResNet-56 with option-A shortcuts (He et al. 2016, §4.2) as a psap
// network over owned host storage, for the library benchmarks: stem conv
// 3->16 + BN; three stages of 9 blocks conv3x3-BN-ReLU-conv3x3-BN at
// 32x32/16x16/8x8 with 16/32/64 channels (stride 2 in the first conv of
// stages 2 and 3); FC 64->10 with bias. 0.85 M parameters, 3.4 MB of float
// weights. Weights, gradients, BN parameters, running statistics, BN
// gradients and gate gradients are seeded normal values.
//
// Groups: every block's internal channels (conv1 + BN1, consumed by conv2: 27
// groups); with `streams`, also the residual stream in SFP's layout
// ("stream1": stem and every conv2 at offset 0; "stream2": 16 channels at
// offset 16 of the stage-2/3 conv2; "stream3": 32 at offset 32 of stage 3).
#include <psap/network/network.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace psap_bench {

using psap::index;

/// The arrays of one conv or linear layer.
struct model_layer {
    std::string name;
    index out = 0, in = 0, k = 9, positions = 1;
    bool bn = true, bias = false;
    std::vector<float> w, gw, b, gb, gamma, beta, mean, var, ggamma, gbeta, gate;
};

/// A byte range the benchmarks read (the reference "read pass" sums over these).
struct byte_span {
    const float* data = nullptr;
    std::size_t count = 0;  ///< floats
};

/// Block names "s<stage>b<block>" and layer names "stem", "s<stage>b<block>c<conv>",
/// "fc". Appended piece by piece: GCC 12 warns (-Wrestrict, falsely) on
/// chains of std::string operator+ once they are inlined into templates.
inline std::string block_name(int st, int b) {
    std::string s = "s";
    s += std::to_string(st);
    s += 'b';
    s += std::to_string(b);
    return s;
}
inline std::string layer_name(int st, int b, int c) {
    std::string s = block_name(st, b);
    s += 'c';
    s += std::to_string(c);
    return s;
}

/// Calls conv(name, out, in, side) for every conv of ResNet-56 in order (stem,
/// then each block's conv1 and conv2; the fc layer is the caller's).
template <class Conv>
void for_each_resnet56_conv(Conv conv) {
    conv("stem", 16, 3, 32);
    for (int st = 1; st <= 3; ++st) {
        const index c = 16 << (st - 1), side = 32 >> (st - 1);
        for (int b = 1; b <= 9; ++b) {
            conv(layer_name(st, b, 1), c, (st > 1 && b == 1) ? c / 2 : c, side);
            conv(layer_name(st, b, 2), c, c, side);
        }
    }
}

/// The psap descriptor of one layer whose arrays (host vectors or device
/// buffers of memory space M) have .data(): w, gw, b, gb and the BN vectors.
template <class M, class Layer>
psap::layer<float, M> describe_layer(Layer& l) {
    psap::layer<float, M> d;
    d.name = l.name;
    d.out_channels = l.out;
    d.in_channels = l.in;
    d.kernel_area = l.k;
    d.out_positions = l.positions;
    d.weight = psap::matrix_view<float, M>(l.w.data(), l.out, l.in * l.k);
    d.grad = psap::matrix_view<float, M>(l.gw.data(), l.out, l.in * l.k);
    auto v = [&](auto& x) { return psap::vector_view<float, M>(x.data(), l.out); };
    if (l.bias) {
        d.bias = v(l.b);
        d.grad_bias = v(l.gb);
    }
    if (l.bn) d.bn = psap::batch_norm_views<float, M>{v(l.gamma), v(l.beta), v(l.mean), v(l.var), v(l.ggamma), v(l.gbeta), v(l.gate), 1e-5};
    return d;
}

/// ResNet-56's groups over layers named as above: every block's internal
/// channels, and with `streams` the residual stream in SFP's layout.
template <class Net>
void add_resnet56_groups(Net& net, bool streams) {
    for (int st = 1; st <= 3; ++st)
        for (int b = 1; b <= 9; ++b)
            net.add_group(block_name(st, b), 16 << (st - 1))
                .member(net.find_layer(layer_name(st, b, 1)))
                .consumer(net.find_layer(layer_name(st, b, 2)));
    if (!streams) return;
    auto s1 = net.add_group("stream1", 16);
    auto s2 = net.add_group("stream2", 16);
    auto s3 = net.add_group("stream3", 32);
    s1.member(net.find_layer("stem"));
    for (int st = 1; st <= 3; ++st)
        for (int b = 1; b <= 9; ++b) {
            const index c1 = net.find_layer(layer_name(st, b, 1)), c2 = net.find_layer(layer_name(st, b, 2));
            s1.member(c2, 0).consumer(c1, 0);
            if (st >= 2) {
                s2.member(c2, 16);
                if (st == 3 || b > 1) s2.consumer(c1, 16);
            }
            if (st == 3) {
                s3.member(c2, 32);
                if (b > 1) s3.consumer(c1, 32);
            }
        }
    const index fc_id = net.find_layer("fc");
    s1.consumer(fc_id, 0);
    s2.consumer(fc_id, 16);
    s3.consumer(fc_id, 32);
}

class resnet56 {
public:
    explicit resnet56(bool streams, std::uint64_t seed = 20261128) {
        std::mt19937_64 g(seed);
        auto conv = [&](std::string name, index out, index in, index side) {
            model_layer l;
            l.name = std::move(name);
            l.out = out;
            l.in = in;
            l.positions = side * side;
            layers_.push_back(std::move(l));
        };
        for_each_resnet56_conv(conv);
        model_layer fc;
        fc.name = "fc";
        fc.out = 10;
        fc.in = 64;
        fc.k = 1;
        fc.bn = false;
        fc.bias = true;
        layers_.push_back(std::move(fc));

        auto fill = [&](std::vector<float>& v, std::size_t n, double mean, double sd) {
            std::normal_distribution<double> d(mean, sd);
            v.resize(n);
            for (auto& x : v) x = static_cast<float>(d(g));
        };
        for (auto& l : layers_) {
            const auto n = static_cast<std::size_t>(l.out * l.in * l.k), o = static_cast<std::size_t>(l.out);
            fill(l.w, n, 0.0, std::sqrt(2.0 / static_cast<double>(l.in * l.k)));
            fill(l.gw, n, 0.0, 1e-3);
            if (l.bias) {
                fill(l.b, o, 0.0, 0.01);
                fill(l.gb, o, 0.0, 1e-3);
            }
            if (l.bn) {
                fill(l.gamma, o, 1.0, 0.3);
                fill(l.beta, o, 0.0, 0.1);
                fill(l.mean, o, 0.0, 0.1);
                fill(l.var, o, 1.0, 0.2);
                for (auto& v : l.var) v = std::abs(v) + 0.05f;
                fill(l.ggamma, o, 0.0, 1e-3);
                fill(l.gbeta, o, 0.0, 1e-3);
                fill(l.gate, o, 0.0, 1e-3);
            }
            net_.add_layer(describe_layer<psap::host_memory>(l));
        }
        add_resnet56_groups(net_, streams);
        net_.validate();
    }
    resnet56(const resnet56&) = delete;  // the network holds views into this object's storage
    resnet56& operator=(const resnet56&) = delete;

    const psap::network<float>& net() const noexcept { return net_; }
    std::vector<model_layer>& layers() noexcept { return layers_; }

    /// Every layer's weights: what a step reads at least once.
    std::vector<byte_span> weight_spans() const {
        std::vector<byte_span> r;
        for (const auto& l : layers_) r.push_back({l.w.data(), l.w.size()});
        return r;
    }
    /// The BN vectors named by `pick` (e.g. &model_layer::gamma) of every BN layer.
    std::vector<byte_span> bn_spans(std::initializer_list<std::vector<float> model_layer::*> pick) const {
        std::vector<byte_span> r;
        for (const auto& l : layers_)
            if (l.bn)
                for (auto p : pick) r.push_back({(l.*p).data(), (l.*p).size()});
        return r;
    }
    /// The same vectors of the layers that are members of a group.
    std::vector<byte_span> member_bn_spans(std::initializer_list<std::vector<float> model_layer::*> pick) const {
        std::vector<byte_span> r;
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            if (!layers_[i].bn || !is_member(static_cast<index>(i))) continue;
            for (auto p : pick) r.push_back({(layers_[i].*p).data(), (layers_[i].*p).size()});
        }
        return r;
    }
    /// Member weight rows of every group (a view per member).
    std::vector<psap::matrix_view<const float>> member_weights() const {
        std::vector<psap::matrix_view<const float>> r;
        for (std::size_t g = 0; g < net_.groups().size(); ++g)
            for (std::size_t m = 0; m < net_.groups()[g].members.size(); ++m) r.push_back(psap::member_of(net_, static_cast<index>(g), m).weight);
        return r;
    }
    bool is_member(index layer) const {
        for (const auto& g : net_.groups())
            for (const auto& m : g.members)
                if (m.layer == layer) return true;
        return false;
    }

private:
    std::vector<model_layer> layers_;
    psap::network<float> net_;
};

inline std::size_t bytes_of(std::span<const byte_span> s) {
    std::size_t n = 0;
    for (const auto& b : s) n += b.count * sizeof(float);
    return n;
}

}  // namespace psap_bench
