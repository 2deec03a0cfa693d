#pragma once
// The toy model of the integration guide (docs/integration.md): the user's own
// code, plain std::vector storage and hand-written forward/backward passes.
//
//   conv1 (1 -> 16, 3x3, pad 1) -> BN -> ReLU -> conv2 (16 -> 16, 3x3, pad 1)
//   -> BN -> ReLU -> global average pool -> fc (16 -> 4) -> softmax cross-entropy
//
// on 8x8 images of noisy stripes in four orientations (one class each). Only
// describe() at the end knows about psap.

#include <psap/psap.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace toy {

inline constexpr int side = 8, plane = side * side, classes = 4;

struct batch {
    int n = 0;
    std::vector<float> x;  // n x 1 x 8 x 8
    std::vector<int> y;    // labels
};

/// Batch `index` of the stream `seed`: deterministic, so a resumed run sees
/// exactly the batches the uninterrupted run saw.
inline batch make_batch(std::uint64_t seed, std::uint64_t index, int n) {
    std::mt19937_64 rng(seed * 1000003u + index);
    std::uniform_real_distribution<float> phase(0.f, 6.2831853f);
    std::normal_distribution<float> noise(0.f, 1.2f);
    std::uniform_int_distribution<int> label(0, classes - 1);
    static constexpr float dir[classes][2] = {{1, 0}, {0, 1}, {0.7071f, 0.7071f}, {0.7071f, -0.7071f}};
    batch b{n, std::vector<float>(static_cast<std::size_t>(n) * plane), std::vector<int>(static_cast<std::size_t>(n))};
    for (int i = 0; i < n; ++i) {
        const int k = label(rng);
        const float ph = phase(rng);
        b.y[i] = k;
        for (int r = 0; r < side; ++r)
            for (int c = 0; c < side; ++c)  // period of 4 pixels along the stripe normal
                b.x[i * plane + r * side + c] = std::sin(1.5707963f * (dir[k][0] * c + dir[k][1] * r) + ph) + noise(rng);
    }
    return b;
}

/// out(b, o) += sum_i w(o, i) * in(b, i), a 3x3 convolution with zero padding 1.
inline void conv3x3(const float* in, int n, int cin, const float* w, int cout, float* out) {
    std::fill(out, out + static_cast<std::size_t>(n) * cout * plane, 0.f);
    for (int b = 0; b < n; ++b)
        for (int o = 0; o < cout; ++o)
            for (int i = 0; i < cin; ++i) {
                const float* src = in + (b * cin + i) * plane;
                const float* k = w + (o * cin + i) * 9;
                float* dst = out + (b * cout + o) * plane;
                for (int ky = 0; ky < 3; ++ky)
                    for (int kx = 0; kx < 3; ++kx) {
                        const float wk = k[ky * 3 + kx];
                        const int c0 = std::max(0, 1 - kx), c1 = std::min(side, side + 1 - kx);
                        for (int r = std::max(0, 1 - ky); r < std::min(side, side + 1 - ky); ++r)
                            for (int c = c0; c < c1; ++c) dst[r * side + c] += wk * src[(r + ky - 1) * side + (c + kx - 1)];
                    }
            }
}

/// A conv followed by batch norm and ReLU, with its gradients and SGD momentum.
struct conv_bn_relu {
    int cin = 0, cout = 0;
    std::vector<float> w, gamma, beta, mean, var;  // parameters and running statistics
    std::vector<float> gw, ggamma, gbeta, gate;    // gradients; gate: the one-sided gate gradient
    std::vector<float> mw, mgamma, mbeta;          // momentum buffers
    std::vector<float> x, xhat, z, invstd;         // caches of the last train-mode forward
    static constexpr float eps = 1e-5f;

    conv_bn_relu() = default;
    conv_bn_relu(int ci, int co, std::mt19937& rng)
        : cin(ci), cout(co), w(static_cast<std::size_t>(co) * ci * 9), gamma(co, 1.f), beta(co, 0.f), mean(co, 0.f),
          var(co, 1.f), gw(w.size()), ggamma(co), gbeta(co), gate(co), mw(w.size()), mgamma(co), mbeta(co) {
        std::normal_distribution<float> he(0.f, std::sqrt(2.f / (9.f * ci)));
        for (auto& v : w) v = he(rng);
    }

    /// a = ReLU(BN(conv(x))); train mode normalises with batch statistics.
    std::vector<float> forward(const std::vector<float>& in, int n, bool train) {
        std::vector<float> u(static_cast<std::size_t>(n) * cout * plane), a(u.size());
        conv3x3(in.data(), n, cin, w.data(), cout, u.data());
        if (train) x = in, xhat.resize(u.size()), z.resize(u.size()), invstd.resize(cout);
        const double count = double(n) * plane;
        for (int o = 0; o < cout; ++o) {
            double mu = mean[o], v = var[o];
            if (train) {
                double s = 0, ss = 0;
                for (int b = 0; b < n; ++b)
                    for (int p = 0; p < plane; ++p) s += u[(b * cout + o) * plane + p];
                mu = s / count;
                for (int b = 0; b < n; ++b)
                    for (int p = 0; p < plane; ++p) ss += std::pow(u[(b * cout + o) * plane + p] - mu, 2);
                v = ss / count;
                mean[o] = 0.9f * mean[o] + 0.1f * float(mu);
                var[o] = 0.9f * var[o] + 0.1f * float(ss / (count - 1));
            }
            const float is = 1.f / std::sqrt(float(v) + eps);
            if (train) invstd[o] = is;
            for (int b = 0; b < n; ++b)
                for (int p = 0; p < plane; ++p) {
                    const std::size_t k = std::size_t((b * cout + o) * plane + p);
                    const float xh = (u[k] - float(mu)) * is, zz = gamma[o] * xh + beta[o];
                    if (train) xhat[k] = xh, z[k] = zz;
                    a[k] = zz > 0.f ? zz : 0.f;
                }
        }
        return a;
    }

    // [gate-gradient]
    /// Per-channel sums of the BN + ReLU backward pass over every position k of
    /// the batch. z: BN output (the ReLU input); xhat: normalised conv output;
    /// ga: dL/d(ReLU output).
    struct bn_sums {
        double beta = 0, gamma = 0, gate = 0;
    };
    bn_sums sums(int o, const std::vector<float>& ga, int n) const {
        bn_sums s;
        for (int b = 0; b < n; ++b)
            for (int p = 0; p < plane; ++p) {
                const std::size_t k = std::size_t((b * cout + o) * plane + p);
                const float g = z[k] > 0.f ? ga[k] : 0.f;  // ReLU'(0) = 0, as autograd has it
                s.beta += g;                                 // dL/dbeta
                s.gamma += g * xhat[k];                      // dL/dgamma: exactly 0 when gated (z == 0)
                // The gate gradient: the derivative as gamma rises from 0. Where
                // z == 0 the ReLU opens iff xhat > 0; elsewhere it is dL/dgamma.
                if (z[k] > 0.f || (z[k] == 0.f && xhat[k] > 0.f)) s.gate += ga[k] * xhat[k];
            }
        return s;
    }
    // [gate-gradient]

    /// From ga = dL/da: the parameter gradients, the gate gradient and dL/dx.
    std::vector<float> backward(const std::vector<float>& ga, int n) {
        std::vector<float> gu(ga.size()), gx(x.size(), 0.f);
        const float count = float(n) * plane;
        for (int o = 0; o < cout; ++o) {
            const bn_sums s = sums(o, ga, n);
            gbeta[o] = float(s.beta);
            ggamma[o] = float(s.gamma);
            gate[o] = float(s.gate);
            const float scale = gamma[o] * invstd[o], mg = float(s.beta) / count, mgx = float(s.gamma) / count;
            for (int b = 0; b < n; ++b)
                for (int p = 0; p < plane; ++p) {
                    const std::size_t k = std::size_t((b * cout + o) * plane + p);
                    const float g = z[k] > 0.f ? ga[k] : 0.f;
                    gu[k] = scale * (g - mg - xhat[k] * mgx);
                }
        }
        std::fill(gw.begin(), gw.end(), 0.f);
        for (int b = 0; b < n; ++b)
            for (int o = 0; o < cout; ++o)
                for (int i = 0; i < cin; ++i) {
                    const float* src = x.data() + (b * cin + i) * plane;
                    const float* g = gu.data() + (b * cout + o) * plane;
                    float* dsrc = gx.data() + (b * cin + i) * plane;
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx) {
                            const int c0 = std::max(0, 1 - kx), c1 = std::min(side, side + 1 - kx);
                            const float wk = w[std::size_t((o * cin + i) * 9 + ky * 3 + kx)];
                            float acc = 0.f;
                            for (int r = std::max(0, 1 - ky); r < std::min(side, side + 1 - ky); ++r)
                                for (int c = c0; c < c1; ++c) {
                                    const int s = (r + ky - 1) * side + (c + kx - 1);
                                    acc += g[r * side + c] * src[s];
                                    dsrc[s] += wk * g[r * side + c];
                                }
                            gw[std::size_t((o * cin + i) * 9 + ky * 3 + kx)] += acc;
                        }
                }
        return gx;
    }
};

inline void sgd_update(std::vector<float>& w, const std::vector<float>& g, std::vector<float>& m, float lr, float mom, float wd) {
    for (std::size_t i = 0; i < w.size(); ++i) {
        m[i] = mom * m[i] + g[i] + wd * w[i];
        w[i] -= lr * m[i];
    }
}

struct model {
    conv_bn_relu c1, c2;
    int fin = 0;
    std::vector<float> fw, fb, gfw, gfb, mfw, mfb;  // fc: classes x fin, bias
    std::vector<float> pooled;                      // cache: n x fin

    model(int width1, int width2, std::uint64_t seed) {
        std::mt19937 rng(static_cast<unsigned>(seed));
        c1 = conv_bn_relu(1, width1, rng);
        c2 = conv_bn_relu(width1, width2, rng);
        fin = width2;
        fw.resize(static_cast<std::size_t>(classes) * fin);
        std::normal_distribution<float> init(0.f, std::sqrt(1.f / float(fin)));
        for (auto& v : fw) v = init(rng);
        fb.assign(classes, 0.f);
        gfw.assign(fw.size(), 0.f), gfb.assign(classes, 0.f), mfw.assign(fw.size(), 0.f), mfb.assign(classes, 0.f);
    }

    /// Logits, n x classes.
    std::vector<float> forward(const batch& b, bool train) {
        const auto a1 = c1.forward(b.x, b.n, train);
        const auto a2 = c2.forward(a1, b.n, train);
        pooled.assign(static_cast<std::size_t>(b.n) * fin, 0.f);
        for (int i = 0; i < b.n; ++i)
            for (int c = 0; c < fin; ++c) {
                float s = 0;
                for (int p = 0; p < plane; ++p) s += a2[(i * fin + c) * plane + p];
                pooled[i * fin + c] = s / plane;
            }
        std::vector<float> logits(static_cast<std::size_t>(b.n) * classes);
        for (int i = 0; i < b.n; ++i)
            for (int k = 0; k < classes; ++k) {
                float s = fb[k];
                for (int c = 0; c < fin; ++c) s += fw[k * fin + c] * pooled[i * fin + c];
                logits[i * classes + k] = s;
            }
        return logits;
    }

    /// Mean cross-entropy of the batch; fills every gradient (and the gate gradients).
    float forward_backward(const batch& b) {
        const auto logits = forward(b, true);
        std::vector<float> gl(logits.size()), gp(pooled.size(), 0.f);
        float loss = 0;
        for (int i = 0; i < b.n; ++i) {
            const float* l = &logits[i * classes];
            const float mx = *std::max_element(l, l + classes);
            float se = 0;
            for (int k = 0; k < classes; ++k) se += std::exp(l[k] - mx);
            loss += std::log(se) + mx - l[b.y[i]];
            for (int k = 0; k < classes; ++k) gl[i * classes + k] = (std::exp(l[k] - mx) / se - (k == b.y[i])) / float(b.n);
        }
        std::fill(gfw.begin(), gfw.end(), 0.f);
        std::fill(gfb.begin(), gfb.end(), 0.f);
        for (int i = 0; i < b.n; ++i)
            for (int k = 0; k < classes; ++k) {
                const float g = gl[i * classes + k];
                gfb[k] += g;
                for (int c = 0; c < fin; ++c) {
                    gfw[k * fin + c] += g * pooled[i * fin + c];
                    gp[i * fin + c] += g * fw[k * fin + c];
                }
            }
        std::vector<float> ga2(static_cast<std::size_t>(b.n) * fin * plane);
        for (int i = 0; i < b.n; ++i)
            for (int c = 0; c < fin; ++c)
                for (int p = 0; p < plane; ++p) ga2[(i * fin + c) * plane + p] = gp[i * fin + c] / plane;
        c1.backward(c2.backward(ga2, b.n), b.n);
        return loss / float(b.n);
    }

    /// SGD with momentum and weight decay on every parameter.
    void sgd(float lr, float mom, float wd) {
        for (auto* c : {&c1, &c2}) {
            sgd_update(c->w, c->gw, c->mw, lr, mom, wd);
            sgd_update(c->gamma, c->ggamma, c->mgamma, lr, mom, wd);
            sgd_update(c->beta, c->gbeta, c->mbeta, lr, mom, wd);
        }
        sgd_update(fw, gfw, mfw, lr, mom, wd);
        sgd_update(fb, gfb, mfb, lr, mom, wd);
    }

    /// Fraction of a batch classified correctly (eval mode: running statistics).
    double accuracy(const batch& b) {
        const auto logits = forward(b, false);
        int ok = 0;
        for (int i = 0; i < b.n; ++i) {
            const float* l = &logits[i * classes];
            ok += int(std::max_element(l, l + classes) - l) == b.y[i];
        }
        return double(ok) / b.n;
    }
};

// [describe-model]
/// psap's description of the model: views into its storage, no copies. The
/// views stay valid while `m` lives and its vectors are not resized.
inline psap::network<float> describe(model& m) {
    auto conv = [](const char* name, conv_bn_relu& c) {
        return psap::layer<float>{
            .name = name,
            .out_channels = c.cout,
            .in_channels = c.cin,
            .kernel_area = 9,              // 3x3
            .out_positions = plane,        // 8x8 outputs: MACs = out * in * 9 * 64
            .weight = psap::filters(c.w.data(), c.cout, c.cin * 9),  // row o = filter o
            .grad = psap::filters(c.gw.data(), c.cout, c.cin * 9),
            .bn = psap::batch_norm_views<float>{.gamma = psap::channels(c.gamma.data(), c.cout),
                                                .beta = psap::channels(c.beta.data(), c.cout),
                                                .running_mean = psap::channels(c.mean.data(), c.cout),
                                                .running_var = psap::channels(c.var.data(), c.cout),
                                                .grad_gamma = psap::channels(c.ggamma.data(), c.cout),
                                                .grad_beta = psap::channels(c.gbeta.data(), c.cout),
                                                .gate_grad = psap::channels(c.gate.data(), c.cout),
                                                .eps = conv_bn_relu::eps}};
    };
    psap::network<float> net;
    const auto conv1 = net.add_layer(conv("conv1", m.c1));
    const auto conv2 = net.add_layer(conv("conv2", m.c2));
    const auto fc = net.add_layer({.name = "fc",
                                   .out_channels = classes,
                                   .in_channels = m.fin,
                                   .weight = psap::filters(m.fw.data(), classes, m.fin),
                                   .grad = psap::filters(m.gfw.data(), classes, m.fin),
                                   .bias = psap::channels(m.fb.data(), classes),
                                   .grad_bias = psap::channels(m.gfb.data(), classes)});
    // A group per prunable channel set: its members' output channels go, and so
    // do the matching input channels of its consumers.
    net.add_group("conv1", m.c1.cout).member(conv1).consumer(conv2);
    net.add_group("conv2", m.c2.cout).member(conv2).consumer(fc);
    return net;
}
// [describe-model]

}  // namespace toy
