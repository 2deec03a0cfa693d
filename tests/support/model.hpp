#pragma once
// A test model with owned storage: layers described by a spec (geometry,
// bias, batch norm), groups by layer names, and a psap::network of views into
// the storage. Values are filled from counter-based random numbers keyed by
// (seed, layer name, iteration), so two models built from the same spec in
// different layer or group orders hold identical values layer by layer.
#include <psap/network/network.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <numeric>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace psap_test {

using psap::index;

// ------------------------------------------------------------------ random numbers
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
constexpr std::uint64_t hash_name(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
}

/// A small, portable generator (std:: distributions differ between standard libraries).
class rng {
public:
    explicit rng(std::uint64_t seed) : s_(mix64(seed)) {}
    std::uint64_t next() { return s_ = mix64(s_); }
    /// Uniform in [0, 1).
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    /// Integer in [lo, hi].
    index between(index lo, index hi) { return lo + static_cast<index>(next() % static_cast<std::uint64_t>(hi - lo + 1)); }
    bool coin(double p = 0.5) { return uniform() < p; }
    /// Standard normal (Box-Muller).
    double normal() {
        const double u1 = 1.0 - uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

private:
    std::uint64_t s_;
};

/// Concatenates streamable parts ("n" + std::to_string(k) trips GCC 12's -O3 -Wrestrict false positive).
template <class... P>
std::string str(const P&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}

/// Overwrites v element by element (never reallocates: psap views point into v).
template <class T>
void assign(std::vector<T>& v, std::initializer_list<double> x) {
    if (x.size() != v.size()) throw std::invalid_argument("psap_test::assign: size mismatch");
    std::size_t i = 0;
    for (double e : x) v[i++] = static_cast<T>(e);
}
template <class T>
void assign(std::vector<T>& v, const std::vector<T>& x) {
    if (x.size() != v.size()) throw std::invalid_argument("psap_test::assign: size mismatch");
    std::copy(x.begin(), x.end(), v.begin());
}

// ------------------------------------------------------------------ specs
struct layer_spec {
    std::string name{};
    index out = 1, in = 1, kernel_area = 1, positions = 1;
    bool bias = false;
    bool bn = false;
    bool gate_grad = false;  ///< give the BN a gate_grad view
    bool grads = true;       ///< give the layer gradient views
};

struct span_spec {
    std::string layer{};
    index offset = 0;
};

struct group_spec {
    std::string name{};
    index size = 1;
    std::vector<span_spec> members{}, consumers{};
};

struct model_spec {
    std::vector<layer_spec> layers{};
    std::vector<group_spec> groups{};
};

// ------------------------------------------------------------------ storage
template <class T>
struct owned_layer {
    layer_spec spec;
    std::vector<T> w, gw, b, gb, gamma, beta, mean, var, ggamma, gbeta, gate;

    explicit owned_layer(layer_spec s) : spec(std::move(s)) {
        const auto out = static_cast<std::size_t>(spec.out);
        const auto k = static_cast<std::size_t>(spec.in * spec.kernel_area);
        w.assign(out * k, T(0));
        if (spec.grads) gw.assign(out * k, T(0));
        if (spec.bias) {
            b.assign(out, T(0));
            if (spec.grads) gb.assign(out, T(0));
        }
        if (spec.bn) {
            gamma.assign(out, T(1));
            beta.assign(out, T(0));
            mean.assign(out, T(0));
            var.assign(out, T(1));
            if (spec.grads) {
                ggamma.assign(out, T(0));
                gbeta.assign(out, T(0));
            }
            if (spec.gate_grad) gate.assign(out, T(0));
        }
    }
    owned_layer(const owned_layer&) = delete;
    owned_layer& operator=(const owned_layer&) = delete;

    index fan_in() const { return spec.in * spec.kernel_area; }
    T& weight(index filter, index j) { return w[static_cast<std::size_t>(filter * fan_in() + j)]; }
    T& grad(index filter, index j) { return gw[static_cast<std::size_t>(filter * fan_in() + j)]; }

    static psap::vector_view<T> vec(std::vector<T>& v) {
        return v.empty() ? psap::vector_view<T>{} : psap::vector_view<T>(v.data(), static_cast<index>(v.size()));
    }

    psap::layer<T> describe() {
        psap::layer<T> l;
        l.name = spec.name;
        l.out_channels = spec.out;
        l.in_channels = spec.in;
        l.kernel_area = spec.kernel_area;
        l.out_positions = spec.positions;
        l.weight = psap::matrix_view<T>(w.data(), spec.out, fan_in());
        if (!gw.empty()) l.grad = psap::matrix_view<T>(gw.data(), spec.out, fan_in());
        l.bias = vec(b);
        l.grad_bias = vec(gb);
        if (spec.bn) {
            psap::batch_norm_views<T> bn;
            bn.gamma = vec(gamma);
            bn.beta = vec(beta);
            bn.running_mean = vec(mean);
            bn.running_var = vec(var);
            bn.grad_gamma = vec(ggamma);
            bn.grad_beta = vec(gbeta);
            bn.gate_grad = vec(gate);
            l.bn = bn;
        }
        return l;
    }

    /// Every value vector, in a fixed order (for comparisons and copies).
    template <class F>
    void each_value(F&& f) {
        for (auto* v : {&w, &b, &gamma, &beta, &mean, &var}) f(*v);
    }
    template <class F>
    void each_grad(F&& f) {
        for (auto* v : {&gw, &gb, &ggamma, &gbeta, &gate}) f(*v);
    }
};

/// A model: owned layers plus the psap::network describing them.
template <class T = float>
class model {
public:
    using value_type = T;
    using net_type = psap::network<T>;

    /// Layers are added in `layer_order` (indices into spec.layers; default: as listed),
    /// groups in `group_order`; a group's members and consumers in reverse when `reverse_spans`.
    explicit model(const model_spec& spec, std::vector<std::size_t> layer_order = {}, std::vector<std::size_t> group_order = {},
                   bool reverse_spans = false)
        : spec_(spec) {
        if (layer_order.empty()) layer_order = iota(spec.layers.size());
        if (group_order.empty()) group_order = iota(spec.groups.size());
        for (std::size_t i : layer_order) {
            layers_.push_back(std::make_unique<owned_layer<T>>(spec.layers[i]));
            net_.add_layer(layers_.back()->describe());
        }
        for (std::size_t gi : group_order) {
            const auto& g = spec.groups[gi];
            auto ref = net_.add_group(g.name, g.size);
            auto members = g.members, consumers = g.consumers;
            if (reverse_spans) {
                std::reverse(members.begin(), members.end());
                std::reverse(consumers.begin(), consumers.end());
            }
            for (const auto& m : members) ref.member(net_.find_layer(m.layer), m.offset);
            for (const auto& c : consumers) ref.consumer(net_.find_layer(c.layer), c.offset);
        }
    }
    model(const model&) = delete;
    model& operator=(const model&) = delete;

    net_type& net() { return net_; }
    const net_type& net() const { return net_; }
    const model_spec& spec() const { return spec_; }

    owned_layer<T>& layer(std::string_view name) {
        for (auto& l : layers_)
            if (l->spec.name == name) return *l;
        throw std::invalid_argument("psap_test::model: no layer " + std::string(name));
    }
    std::vector<std::unique_ptr<owned_layer<T>>>& layers() { return layers_; }

    /// Weights ~ N(0, 1/fan_in) with a per-filter scale in [0.2, 1.8] (so norms differ),
    /// gamma in [0.2, 1.5], beta ~ 0.2 N(0,1), running var in [0.5, 2], bias ~ 0.1 N(0,1).
    void fill_random(std::uint64_t seed) {
        for (auto& lp : layers_) {
            auto& l = *lp;
            rng r(seed ^ hash_name(l.spec.name));
            const double sd = 1.0 / std::sqrt(static_cast<double>(l.fan_in()));
            for (index f = 0; f < l.spec.out; ++f) {
                const double scale = r.uniform(0.2, 1.8);
                for (index j = 0; j < l.fan_in(); ++j) l.weight(f, j) = static_cast<T>(scale * sd * r.normal());
            }
            for (auto& x : l.b) x = static_cast<T>(0.1 * r.normal());
            for (auto& x : l.gamma) x = static_cast<T>(r.uniform(0.2, 1.5));
            for (auto& x : l.beta) x = static_cast<T>(0.2 * r.normal());
            for (auto& x : l.mean) x = static_cast<T>(0.1 * r.normal());
            for (auto& x : l.var) x = static_cast<T>(r.uniform(0.5, 2.0));
        }
    }

    /// Gradients of "iteration" `it`: ~ scale * N(0,1), keyed by (seed, layer, it), with a
    /// per-channel magnitude so that a few channels carry much larger gradients.
    void fill_grads(std::uint64_t seed, index it, double scale = 0.01) {
        for (auto& lp : layers_) {
            auto& l = *lp;
            rng r(seed ^ hash_name(l.spec.name) ^ mix64(static_cast<std::uint64_t>(it) + 0x51ed));
            std::vector<double> chan(static_cast<std::size_t>(l.spec.out));
            for (auto& c : chan) c = scale * (r.coin(0.15) ? 20.0 : 1.0) * r.uniform(0.2, 1.0);
            if (!l.gw.empty())
                for (index f = 0; f < l.spec.out; ++f)
                    for (index j = 0; j < l.fan_in(); ++j)
                        l.grad(f, j) = static_cast<T>(chan[static_cast<std::size_t>(f)] * r.normal());
            auto fill = [&](std::vector<T>& v) {
                for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(chan[i] * r.normal());
            };
            fill(l.gb);
            fill(l.ggamma);
            fill(l.gbeta);
            fill(l.gate);
        }
    }

    /// A plain SGD step over every value that has a gradient.
    void sgd(double lr) {
        for (auto& lp : layers_) {
            auto& l = *lp;
            auto step = [lr](std::vector<T>& v, const std::vector<T>& g) {
                for (std::size_t i = 0; i < g.size(); ++i) v[i] = static_cast<T>(v[i] - lr * g[i]);
            };
            step(l.w, l.gw);
            step(l.b, l.gb);
            step(l.gamma, l.ggamma);
            step(l.beta, l.gbeta);
        }
    }

    /// Copies every value and gradient from a model of the same spec (matched by layer name).
    void copy_from(model& o) {
        for (auto& lp : layers_) {
            auto& src = o.layer(lp->spec.name);
            // element-wise: the network's views point into these vectors
            for (auto [d, s] : {std::pair{&lp->w, &src.w},
                                {&lp->gw, &src.gw},
                                {&lp->b, &src.b},
                                {&lp->gb, &src.gb},
                                {&lp->gamma, &src.gamma},
                                {&lp->beta, &src.beta},
                                {&lp->mean, &src.mean},
                                {&lp->var, &src.var},
                                {&lp->ggamma, &src.ggamma},
                                {&lp->gbeta, &src.gbeta},
                                {&lp->gate, &src.gate}})
                assign(*d, *s);
        }
    }

    /// True when every value (not gradients) is bitwise equal to o's, matched by layer name.
    bool same_values(model& o) {
        for (auto& lp : layers_) {
            auto& src = o.layer(lp->spec.name);
            std::vector<std::vector<T>*> a, b;
            lp->each_value([&](std::vector<T>& v) { a.push_back(&v); });
            src.each_value([&](std::vector<T>& v) { b.push_back(&v); });
            for (std::size_t i = 0; i < a.size(); ++i)
                if (a[i]->size() != b[i]->size() ||
                    (!a[i]->empty() && std::memcmp(a[i]->data(), b[i]->data(), a[i]->size() * sizeof(T)) != 0))
                    return false;
        }
        return true;
    }

private:
    static std::vector<std::size_t> iota(std::size_t n) {
        std::vector<std::size_t> v(n);
        std::iota(v.begin(), v.end(), std::size_t{0});
        return v;
    }

    model_spec spec_;
    std::vector<std::unique_ptr<owned_layer<T>>> layers_;
    net_type net_;
};

/// Masks of a pruner by group name.
template <class Pruner, class Net>
std::map<std::string, std::vector<std::uint8_t>> masks_by_name(const Pruner& p, const Net& net) {
    std::map<std::string, std::vector<std::uint8_t>> m;
    const auto gs = p.groups();
    for (std::size_t g = 0; g < gs.size(); ++g) m[net.groups()[g].name] = gs[g].pruned;
    return m;
}

/// A random permutation of 0..n-1.
inline std::vector<std::size_t> permutation(std::size_t n, rng& r) {
    std::vector<std::size_t> v(n);
    std::iota(v.begin(), v.end(), std::size_t{0});
    for (std::size_t i = n; i > 1; --i) std::swap(v[i - 1], v[static_cast<std::size_t>(r.next() % i)]);
    return v;
}

}  // namespace psap_test
