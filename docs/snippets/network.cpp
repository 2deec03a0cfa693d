// Describing models to psap (docs/integration.md, "Describing your model"):
// a conv with batch norm from raw pointers, a residual stream shared by
// several blocks, a concatenation, a depthwise-separable block, a cost-only layer. The MAC counts are
// checked against values computed by hand. Prints the cost table of the
// residual example with `network residual-table`.
#include <psap/psap.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) std::printf("FAIL: %s\n", what), ++failures;
}

/// Storage the user owns: one conv + BN, row-major weight (out, in, kh, kw).
struct conv_storage {
    int out, in, k;
    std::vector<float> w, gw, gamma, beta, mean, var, ggamma, gbeta, gate;
    conv_storage(int o, int i, int kk)
        : out(o), in(i), k(kk), w(std::size_t(o) * i * kk * kk, 0.01f), gw(w.size()), gamma(o, 1.f), beta(o), mean(o),
          var(o, 1.f), ggamma(o), gbeta(o), gate(o) {}
};

// [conv-bn]
/// A k x k conv producing out_hw x out_hw outputs, followed by batch norm.
psap::layer<float> conv_bn_layer(std::string name, conv_storage& s, psap::index out_hw) {
    const psap::index n = s.out, fan_in = psap::index(s.in) * s.k * s.k;
    return {.name = std::move(name),
            .out_channels = s.out,
            .in_channels = s.in,
            .kernel_area = s.k * s.k,
            .out_positions = out_hw * out_hw,
            .weight = psap::filters(s.w.data(), n, fan_in),  // n filters of in*k*k values
            .grad = psap::filters(s.gw.data(), n, fan_in),
            .bn = psap::batch_norm_views<float>{.gamma = psap::channels(s.gamma.data(), n),
                                                .beta = psap::channels(s.beta.data(), n),
                                                .running_mean = psap::channels(s.mean.data(), n),
                                                .running_var = psap::channels(s.var.data(), n),
                                                .grad_gamma = psap::channels(s.ggamma.data(), n),
                                                .grad_beta = psap::channels(s.gbeta.data(), n),
                                                .gate_grad = psap::channels(s.gate.data(), n)}};
}
// [conv-bn]

/// A stage of a CIFAR-style ResNet with identity shortcuts: stem, two basic
/// blocks, global pooling and a classifier, on 8x8 feature maps.
struct resnet_stage {
    conv_storage stem{16, 3, 3}, b1a{16, 16, 3}, b1b{16, 16, 3}, b2a{16, 16, 3}, b2b{16, 16, 3};
    std::vector<float> fc = std::vector<float>(10 * 16, 0.01f);
};

psap::network<float> describe(resnet_stage& m) {
    // [residual]
    psap::network<float> net;
    const auto stem = net.add_layer(conv_bn_layer("stem", m.stem, 8));
    const auto b1a = net.add_layer(conv_bn_layer("block1.conv_a", m.b1a, 8));
    const auto b1b = net.add_layer(conv_bn_layer("block1.conv_b", m.b1b, 8));
    const auto b2a = net.add_layer(conv_bn_layer("block2.conv_a", m.b2a, 8));
    const auto b2b = net.add_layer(conv_bn_layer("block2.conv_b", m.b2b, 8));
    const auto fc = net.add_layer({.name = "fc", .out_channels = 10, .in_channels = 16,
                                   .weight = psap::filters(m.fc.data(), 10, 16)});

    // Inside a block: conv_a's channels feed only conv_b.
    net.add_group("block1.inner", 16).member(b1a).consumer(b1b);
    net.add_group("block2.inner", 16).member(b2a).consumer(b2b);

    // The residual stream: channel i of the stem, of block1's sum and of
    // block2's sum is one channel (identity shortcuts add them), so the stem
    // and both conv_b are members of one group, and every layer that reads
    // the stream is a consumer. Removing channel i removes it everywhere.
    net.add_group("stream", 16)
        .member(stem).member(b1b).member(b2b)
        .consumer(b1a).consumer(b2a).consumer(fc);
    // [residual]
    return net;
}

}  // namespace

int main(int argc, char** argv) {
    resnet_stage m;
    psap::network<float> net = describe(m);
    net.validate();  // the pruner validates on bind; calling it early reports mistakes early

    // Hand count: stem 16*3*9*64, four block convs 16*16*9*64 each, fc 10*16.
    const psap::cost_model costs(net);
    expect(costs.full().macs == 27648 + 4 * 147456 + 160, "full MACs");

    // Keep 12 stream channels and 8 inner channels per block (groups in the
    // order they were added: block1.inner, block2.inner, stream).
    const std::vector<psap::index> kept{8, 8, 12};
    // stem 12*3*576, conv_a 8*12*576 (x2), conv_b 12*8*576 (x2), fc 10*12.
    expect(costs.evaluate(kept).macs == 20736 + 4 * 55296 + 120, "MACs with kept channels");

    if (argc > 1 && std::strcmp(argv[1], "residual-table") == 0) {
        for (const auto& l : costs.widths(kept))
            std::printf("%-14s out %2lld -> %2lld   in %2lld -> %2lld   MACs %6lld -> %6lld\n", l.name.c_str(),
                        static_cast<long long>(l.out_before), static_cast<long long>(l.out_after),
                        static_cast<long long>(l.in_before), static_cast<long long>(l.in_after),
                        static_cast<long long>(l.macs_before), static_cast<long long>(l.macs_after));
        return failures ? 1 : 0;
    }

    {
        // [concat]
        // Two branches concatenated: y = concat(conv_a(x), conv_b(x)), 8 + 8
        // channels, read by conv_c. Each branch is its own group; the offset
        // says where its channels sit in conv_c's input.
        conv_storage a{8, 16, 3}, b{8, 16, 1}, c{32, 16, 3};
        psap::network<float> cat;
        const auto la = cat.add_layer(conv_bn_layer("branch_a", a, 8));
        const auto lb = cat.add_layer(conv_bn_layer("branch_b", b, 8));
        const auto lc = cat.add_layer(conv_bn_layer("merge", c, 8));
        cat.add_group("branch_a", 8).member(la).consumer(lc, /*offset=*/0);
        cat.add_group("branch_b", 8).member(lb).consumer(lc, /*offset=*/8);
        // [concat]
        cat.validate();
        const psap::cost_model cc(cat);
        // branch_a 8*16*9*64, branch_b 8*16*1*64, merge 32*16*9*64; keep 4 + 6.
        expect(cc.full().macs == 73728 + 8192 + 294912, "concat full MACs");
        const std::vector<psap::index> k{4, 6};
        expect(cc.evaluate(k).macs == 36864 + 6144 + 32 * 10 * 576, "concat MACs with kept channels");
    }
    {
        // [depthwise]
        // MobileNetV2's inverted residual: expand 1x1 (8 -> 32), depthwise 3x3
        // (32 filters of one input channel each), project 1x1 (32 -> 8).
        // Depthwise filter c reads only channel c of the expansion, so it is a
        // member of the expansion's group, not a consumer: removing channel c
        // removes that filter. The project conv is the consumer.
        conv_storage expand{32, 8, 1}, dw{32, 1, 3}, project{8, 32, 1};
        psap::network<float> mb;
        const auto le = mb.add_layer(conv_bn_layer("expand", expand, 8));
        const auto ld = mb.add_layer(conv_bn_layer("depthwise", dw, 8));  // in_channels 1, kernel_area 9
        const auto lp = mb.add_layer(conv_bn_layer("project", project, 8));
        mb.add_group("expanded", 32).member(le).member(ld).consumer(lp);
        // [depthwise]
        mb.validate();
        const psap::cost_model cm(mb);
        // expand 32*8*64, depthwise 32*1*9*64, project 8*32*64; keeping 20
        // channels costs 20*(8 + 9 + 8)*64.
        expect(cm.full().macs == 16384 + 18432 + 16384, "depthwise block full MACs");
        expect(cm.evaluate(std::vector<psap::index>{20}).macs == 20 * 25 * 64, "depthwise block MACs with 20 kept");
    }
    {
        // [cost-only]
        // A layer psap must price but never touch: no weight view. It can be a
        // consumer (its input shrinks with a group), never a member.
        psap::network<float> n2;
        conv_storage a{16, 3, 3};
        const auto conv = n2.add_layer(conv_bn_layer("conv", a, 8));
        const auto head = n2.add_layer({.name = "head", .out_channels = 10, .in_channels = 16, .kernel_area = 1, .out_positions = 1});
        n2.add_group("conv", 16).member(conv).consumer(head);
        // [cost-only]
        n2.validate();
        expect(psap::cost_model(n2).full().macs == 27648 + 160, "cost-only layer MACs");
    }
    std::printf(failures ? "network: %d check(s) failed\n" : "network: all checks passed\n", failures);
    return failures ? 1 : 0;
}
