// The CUDA backend against the CPU backend, the oracle (docs/cuda.md):
//   suite "cuda_device": every operation on random inputs, bitwise equal
//     (reductions, copies, writes; strided and padded layouts, float and
//     double); whole pruner runs of every preset on the same network held on
//     the host and on the device: identical masks, decision logs (JSON),
//     weights and state() blobs; state() from a device run resumes a host run
//     and vice versa. Needs a CUDA device.
//   suite "cuda_host": what needs no device -- types and adapters, argument
//     errors found on the host before any CUDA call, the error a missing
//     device gives, the equivalence harness run host-vs-host, and (at
//     namespace scope) explicit instantiations of every preset's pruner over
//     network<float, device_memory>, compiled by the C++ compiler alone.
//
// Without a device the binary prints "SKIPPED: no CUDA device
// (cudaGetDeviceCount: ...)" and exits 77 (CTest SKIP_RETURN_CODE);
// --psap-host-only runs the suite "cuda_host" alone (CTest psap.cuda_backend.host).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <psap/backend/cpu.hpp>
#include <psap/backend/cuda.hpp>
#include <psap/presets.hpp>
#include <psap/tensor/concepts.hpp>
#include <psap/tensor/device.hpp>

#include <support/seed.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

using psap::device_memory;
using psap::host_memory;
using idx = psap::index;  // not `index`: <strings.h> declares ::index

// ====================================================================== compile-time checks
// Every preset's pruner over a device network, instantiated whole (all hooks,
// state(), load_state(), finalize()) by the host compiler: the policies and
// the pruner reach device memory only through backend_t<device_memory>.
using dnet = psap::network<float, device_memory>;
using dnet64 = psap::network<double, device_memory>;

template class psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::gradient_pulse, psap::protective, dnet>;  // psap
template class psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::no_protection, psap::protective, dnet>;   // static_gate
template class psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, psap::soft, dnet>;                   // sfp
template class psap::pruner<psap::asymptotic, psap::l2_norm, psap::no_protection, psap::soft, dnet>;                // asfp
template class psap::pruner<psap::uniform, psap::fpgm, psap::no_protection, psap::soft, dnet>;                      // fpgm_pruner
template class psap::pruner<psap::uniform, psap::l1_norm, psap::no_protection, psap::hard, dnet>;                   // l1
template class psap::pruner<psap::global_threshold, psap::bn_scale, psap::no_protection, psap::hard, dnet>;         // slimming
template class psap::pruner<psap::global_threshold, psap::taylor, psap::no_protection, psap::hard, dnet>;           // taylor_pruner
template class psap::pruner<psap::agp, psap::l2_norm, psap::no_protection, psap::hard, dnet>;                       // agp_pruner
template class psap::pruner<psap::uniform, psap::random_score, psap::no_protection, psap::soft, dnet>;              // random
template class psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, psap::decay, dnet>;                  // decay
template class psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::gradient_pulse, psap::protective, dnet64>;

namespace {
constexpr psap::budget compile_budget{};
}  // namespace
// The list above is the presets' list.
static_assert(std::is_same_v<decltype(psap::presets::psap<dnet>(compile_budget, 1)),
                             psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::gradient_pulse, psap::protective, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::static_gate<dnet>(compile_budget, 1)),
                             psap::pruner<psap::adaptive_sparsity, psap::l2_norm, psap::no_protection, psap::protective, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::sfp<dnet>(compile_budget, 1)),
                             psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, psap::soft, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::asfp<dnet>(compile_budget, 1)),
                             psap::pruner<psap::asymptotic, psap::l2_norm, psap::no_protection, psap::soft, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::fpgm_pruner<dnet>(compile_budget, 1)),
                             psap::pruner<psap::uniform, psap::fpgm, psap::no_protection, psap::soft, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::l1<dnet>(compile_budget, 1)),
                             psap::pruner<psap::uniform, psap::l1_norm, psap::no_protection, psap::hard, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::slimming<dnet>(compile_budget, 1)),
                             psap::pruner<psap::global_threshold, psap::bn_scale, psap::no_protection, psap::hard, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::taylor_pruner<dnet>(compile_budget, 1)),
                             psap::pruner<psap::global_threshold, psap::taylor, psap::no_protection, psap::hard, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::agp_pruner<dnet>(compile_budget, 1)),
                             psap::pruner<psap::agp, psap::l2_norm, psap::no_protection, psap::hard, dnet>>);
static_assert(std::is_same_v<decltype(psap::presets::random<dnet>(compile_budget, 1)),
                             psap::pruner<psap::uniform, psap::random_score, psap::no_protection, psap::soft, dnet>>);

static_assert(std::is_same_v<psap::backend_t<device_memory>, psap::cuda_backend>);
static_assert(std::is_same_v<psap::backend_t<host_memory>, psap::cpu_backend>);
static_assert(std::is_same_v<psap::cuda_backend::buffer<float>, psap::cuda::device_buffer<float>>);
static_assert(std::is_same_v<psap::cuda::device_buffer<double>::value_type, double>);
static_assert(std::is_copy_constructible_v<psap::cuda::device_buffer<float>>);
static_assert(std::is_nothrow_move_constructible_v<psap::cuda::device_buffer<float>>);
static_assert(psap::filter_bank<psap::matrix_view<float, device_memory>>);

namespace {

// ====================================================================== helpers
bool have_device() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/// Index of the first element whose bits differ, or -1.
template <class T>
idx first_bit_difference(std::span<const T> a, std::span<const T> b) {
    if (a.size() != b.size()) return 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<idx>(i);
    return -1;
}
#define CHECK_BITS_EQUAL(a, b)                                                                                              \
    do {                                                                                                                    \
        const auto& a_ = (a);                                                                                               \
        const auto& b_ = (b);                                                                                               \
        using V_ = std::remove_cvref_t<decltype(a_[0])>;                                                                    \
        const idx d_ = first_bit_difference<V_>(std::span<const V_>(a_), std::span<const V_>(b_));                       \
        INFO("first difference at ", d_, " of ", a_.size(),                                                                 \
             (d_ >= 0 && static_cast<std::size_t>(d_) < a_.size() && static_cast<std::size_t>(d_) < b_.size()               \
                  ? " (" + std::to_string(a_[static_cast<std::size_t>(d_)]) + " vs " + std::to_string(b_[static_cast<std::size_t>(d_)]) + ")" \
                  : std::string()));                                                                                        \
        CHECK(d_ == -1);                                                                                                    \
    } while (0)

/// A device copy of a host array.
template <class T>
psap::cuda::device_buffer<T> upload(const std::vector<T>& h) {
    psap::cuda::device_buffer<T> d(h.size());
    psap::cuda_backend::from_host(h.data(), d);
    return d;
}
template <class T>
std::vector<T> download(const psap::cuda::device_buffer<T>& d) {
    std::vector<T> h(d.size());
    psap::cuda_backend::to_host(d, h.data());
    return h;
}

/// Random values with the awkward cases mixed in: signed zeros, float
/// subnormals, large and tiny magnitudes, repeated values (ties).
template <class T>
std::vector<T> random_values(std::size_t n, std::mt19937_64& g) {
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_int_distribution<int> pick(0, 15);
    std::vector<T> v(n);
    for (auto& x : v) {
        switch (pick(g)) {
            case 0: x = T(0); break;
            case 1: x = -T(0); break;
            case 2: x = static_cast<T>(1e-41 * normal(g)); break;  // a float subnormal
            case 3: x = static_cast<T>(1e4 * normal(g)); break;
            case 4: x = T(0.5); break;
            default: x = static_cast<T>(normal(g)); break;
        }
    }
    return v;
}

/// A strided layout: rows x cols, col_stride apart, rows padded by `pad`.
struct layout {
    idx rows, cols, col_stride, pad;
    idx row_stride() const { return cols * col_stride + pad; }
    std::size_t storage() const { return static_cast<std::size_t>(rows * row_stride()); }
};
const std::vector<layout> layouts = {
    {1, 1, 1, 0},   {7, 8, 1, 0},  {33, 9, 1, 3},  {64, 576, 1, 0}, {5, 17, 3, 2},  {100, 1, 1, 0},
    {3, 0, 1, 0},   {0, 5, 1, 0},  {40, 23, 2, 1}, {16, 4608, 1, 0}, {129, 15, 1, 1}, {1000, 3, 1, 1},  // > 256 listed rows: staged lists
};

template <class T, class M>
psap::matrix_view<T, M> view(T* p, const layout& l) {
    return psap::matrix_view<T, M>(p, l.rows, l.cols, l.row_stride(), l.col_stride);
}

// ====================================================================== equivalence harness
// A small network with every case the policies distinguish: batch norm and
// none, a bias, a residual group of two members, consumers, a padded weight.
enum field { W, GW, B, GB, GAMMA, BETA, MEAN, VAR, GGAMMA, GBETA, GATE, FIELDS };

struct spec {
    const char* name;
    idx out, in, k, hw;
    bool bn, bias;
    idx pad;  ///< extra floats at the end of every weight row
};

std::vector<spec> model_specs(bool all_bn) {
    return {{"stem", 16, 3, 3, 16, true, false, 0},   {"b1a", 16, 16, 3, 16, true, false, 0},
            {"b1b", 16, 16, 3, 16, true, false, 0},   {"b2a", 24, 16, 3, 8, all_bn, !all_bn, 5},
            {"b2b", 32, 24, 3, 8, true, false, 0},    {"fc", 10, 32, 1, 1, false, true, 0}};
}

/// Storage of the network's arrays in memory space M.
template <class M>
struct storage;
template <>
struct storage<host_memory> {
    using array = std::vector<float>;
    static void put(array& d, const std::vector<float>& h) { d = h; }
    static std::vector<float> get(const array& d) { return d; }
};
template <>
struct storage<device_memory> {
    using array = psap::cuda::device_buffer<float>;
    static void put(array& d, const std::vector<float>& h) {
        if (d.size() != h.size()) d = array(h.size());
        psap::cuda_backend::from_host(h.data(), d);
    }
    static std::vector<float> get(const array& d) { return download(d); }
};

/// The reference arrays on the host, and a twin in memory space M.
template <class M>
struct twin_model {
    std::vector<spec> specs;
    std::vector<std::array<std::vector<float>, FIELDS>> host;
    std::vector<std::array<typename storage<M>::array, FIELDS>> twin;
    std::mt19937_64 gen;

    twin_model(bool all_bn, std::uint64_t seed) : specs(model_specs(all_bn)), host(specs.size()), twin(specs.size()), gen(seed) {
        std::normal_distribution<double> normal(0.0, 1.0);
        for (std::size_t l = 0; l < specs.size(); ++l) {
            const auto& s = specs[l];
            auto& a = host[l];
            const auto out = static_cast<std::size_t>(s.out);
            const auto w = out * static_cast<std::size_t>(s.in * s.k * s.k + s.pad);
            a[W].resize(w);
            a[GW].resize(w);
            for (std::size_t i = 0; i < w; ++i) {  // filter magnitudes spread over 0.02 .. 0.1
                const std::size_t row = i / static_cast<std::size_t>(s.in * s.k * s.k + s.pad);
                a[W][i] = static_cast<float>(0.1 * normal(gen) * (0.2 + 0.8 * static_cast<double>((row * 37) % 16) / 16.0));
            }
            if (s.bias) {
                a[B].resize(out);
                a[GB].resize(out);
                for (auto& x : a[B]) x = static_cast<float>(0.1 * normal(gen));
            }
            if (s.bn) {
                for (int f : {GAMMA, BETA, MEAN, VAR, GGAMMA, GBETA, GATE}) a[static_cast<std::size_t>(f)].resize(out);
                for (std::size_t c = 0; c < out; ++c) {
                    a[GAMMA][c] = static_cast<float>(c % 7 == 3 ? 0.01 : 0.2 + std::abs(normal(gen)));
                    a[BETA][c] = static_cast<float>(0.1 * normal(gen));
                    a[MEAN][c] = static_cast<float>(0.1 * normal(gen));
                    a[VAR][c] = static_cast<float>(0.5 + std::abs(normal(gen)));
                }
            }
        }
        upload_all();
    }

    /// The network over the host arrays or (use_twin) the twin's, tagged N.
    template <class N>
    psap::network<float, N> describe(bool use_twin) {
        psap::network<float, N> net;
        for (std::size_t l = 0; l < specs.size(); ++l) {
            const auto& s = specs[l];
            auto p = [&](field f) -> float* {
                if (use_twin) return twin[l][f].empty() ? nullptr : twin[l][f].data();
                return host[l][f].empty() ? nullptr : host[l][f].data();
            };
            auto vec = [&](field f) {
                return p(f) ? psap::vector_view<float, N>(p(f), s.out) : psap::vector_view<float, N>();
            };
            const idx k = s.in * s.k * s.k;
            psap::layer<float, N> L;
            L.name = s.name;
            L.out_channels = s.out;
            L.in_channels = s.in;
            L.kernel_area = s.k * s.k;
            L.out_positions = s.hw * s.hw;
            L.weight = psap::matrix_view<float, N>(p(W), s.out, k, k + s.pad, 1);
            L.grad = psap::matrix_view<float, N>(p(GW), s.out, k, k + s.pad, 1);
            L.bias = vec(B);
            L.grad_bias = vec(GB);
            if (s.bn)
                L.bn = psap::batch_norm_views<float, N>{vec(GAMMA), vec(BETA), vec(MEAN), vec(VAR), vec(GGAMMA), vec(GBETA), vec(GATE), 1e-5};
            net.add_layer(std::move(L));
        }
        net.add_group("res1", 16).member(0).member(2).consumer(1).consumer(3);
        net.add_group("b1a", 16).member(1).consumer(2);
        net.add_group("b2a", 24).member(3).consumer(4);
        net.add_group("b2b", 32).member(4).consumer(5);
        return net;
    }

    void upload_all() {
        for (std::size_t l = 0; l < specs.size(); ++l)
            for (std::size_t f = 0; f < FIELDS; ++f) storage<M>::put(twin[l][f], host[l][f]);
    }
    /// Every array of the twin equals the host's, bit for bit.
    void check_same(const std::string& where) {
        for (std::size_t l = 0; l < specs.size(); ++l)
            for (std::size_t f = 0; f < FIELDS; ++f) {
                INFO(where, ": layer ", specs[l].name, ", field ", f);
                CHECK_BITS_EQUAL(storage<M>::get(twin[l][f]), host[l][f]);
            }
    }
    /// New gradients, on both sides: a few channels with strong gate gradients;
    /// strong weight gradients on filters that change with `epoch`, so zeroed
    /// filters regrow and soft masks churn.
    void new_gradients(int epoch) {
        std::normal_distribution<double> normal(0.0, 1.0);
        for (std::size_t l = 0; l < specs.size(); ++l) {
            auto& a = host[l];
            const auto row = static_cast<std::size_t>(specs[l].in * specs[l].k * specs[l].k + specs[l].pad);
            for (std::size_t i = 0; i < a[GW].size(); ++i)
                a[GW][i] = static_cast<float>(normal(gen) * ((i / row + static_cast<std::size_t>(epoch)) % 5 == 0 ? 1.0 : 0.05));
            for (auto& x : a[GB]) x = static_cast<float>(0.01 * normal(gen));
            for (int f : {GGAMMA, GBETA, GATE})
                for (std::size_t c = 0; c < a[static_cast<std::size_t>(f)].size(); ++c)
                    a[static_cast<std::size_t>(f)][c] = static_cast<float>(0.01 * normal(gen) * (c % 5 == 0 ? 30.0 : 1.0));
        }
        upload_all();
    }
    /// Plain SGD on the host arrays, then copied to the twin (both sides equal before it).
    void sgd() {
        const float lr = 0.05f;
        for (auto& a : host) {
            for (std::size_t i = 0; i < a[W].size(); ++i) a[W][i] -= lr * a[GW][i];
            for (std::size_t i = 0; i < a[B].size(); ++i) a[B][i] -= lr * a[GB][i];
            for (std::size_t i = 0; i < a[GAMMA].size(); ++i) a[GAMMA][i] -= lr * a[GGAMMA][i];
            for (std::size_t i = 0; i < a[BETA].size(); ++i) a[BETA][i] -= lr * a[GBETA][i];
        }
        upload_all();
    }
};

std::string log_json(const std::vector<psap::step_log>& log) { return nlohmann::json(log).dump(); }

template <class P, class Q>
void check_masks(const P& a, const Q& b, const std::string& where) {
    REQUIRE(a.groups().size() == b.groups().size());
    for (std::size_t g = 0; g < a.groups().size(); ++g) {
        INFO(where, ": group ", g);
        CHECK(a.groups()[g].pruned == b.groups()[g].pruned);
        CHECK(std::bit_cast<std::uint64_t>(a.groups()[g].ratio) == std::bit_cast<std::uint64_t>(b.groups()[g].ratio));
    }
}

/// Runs the preset made by `make` on the host network and on its twin in
/// memory space M in lockstep: observe / SGD / after_update for a few
/// iterations, then step, for every epoch; after each hook the twin's arrays
/// equal the host's bitwise, after each step the masks and the decision logs
/// are identical. Midway, each run is replaced by a pruner of the *other*
/// memory space loaded from its state(); the blobs of both runs are equal.
struct churn {
    idx restored = 0, released = 0;
};

template <class M, class Make>
churn run_lockstep(const char* preset, bool all_bn, Make make) {
    INFO("preset ", preset, all_bn ? " (all layers with batch norm)" : " (mixed layers)");
    twin_model<M> m(all_bn, psap_test::seed() ^ std::hash<std::string_view>{}(preset));
    auto hnet = m.template describe<host_memory>(false);
    auto tnet = m.template describe<M>(true);
    auto hp = make(std::type_identity<psap::network<float, host_memory>>{});
    auto tp = make(std::type_identity<psap::network<float, M>>{});
    const int epochs = 8, iterations = 3;
    for (int e = 0; e < epochs; ++e) {
        for (int it = 0; it < iterations; ++it) {
            m.new_gradients(e);
            hp.observe(hnet);
            tp.observe(tnet);
            m.check_same("observe, epoch " + std::to_string(e));
            m.sgd();
            hp.after_update(hnet);
            tp.after_update(tnet);
            m.check_same("after_update, epoch " + std::to_string(e));
        }
        hp.step(hnet, e + 1);
        tp.step(tnet, e + 1);
        m.check_same("step " + std::to_string(e));
        check_masks(hp, tp, "step " + std::to_string(e));
        CHECK(log_json(hp.log()) == log_json(tp.log()));
        if (e == epochs / 2) {
            // state() is a pure function of the run: equal blobs from both memory spaces.
            const auto hs = hp.state(), ts = tp.state();
            CHECK(hs == ts);
            // Cross-load: the host run continues from the twin's state and vice versa.
            auto hp2 = make(std::type_identity<psap::network<float, host_memory>>{});
            auto tp2 = make(std::type_identity<psap::network<float, M>>{});
            hp2.load_state(hnet, ts);
            tp2.load_state(tnet, hs);
            CHECK(hp2.state() == hs);
            CHECK(tp2.state() == ts);
            hp = std::move(hp2);
            tp = std::move(tp2);
            check_masks(hp, tp, "after cross-loading state");
        }
    }
    const auto hr = hp.finalize(hnet);
    const auto tr = tp.finalize(tnet);
    m.check_same("finalize");
    REQUIRE(hr.groups.size() == tr.groups.size());
    for (std::size_t g = 0; g < hr.groups.size(); ++g) CHECK(hr.groups[g].kept == tr.groups[g].kept);
    CHECK(log_json(hp.log()) == log_json(tp.log()));
    CHECK(hp.state() == tp.state());
    // The run did prune something (the harness exercises the reconstruction paths).
    idx pruned = 0;
    for (const auto& g : hp.groups()) pruned += g.pruned_count();
    CHECK(pruned > 0);
    churn c;
    for (const auto& s : hp.log())
        for (const auto& g : s.groups) c.restored += g.restored, c.released += g.released;
    return c;
}

/// Every preset (slimming needs batch norm on every group: all-BN model only).
template <class M>
void run_all_presets() {
    const psap::budget b{psap::budget_kind::flops, 0.4};
    const double epochs = 8;
    for (bool all_bn : {false, true}) {
        // The scenario exercises restores (PSAP) and releases (soft masks regrow).
        CHECK(run_lockstep<M>("psap", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::psap<N>(b, epochs); }).restored > 0);
        run_lockstep<M>("static_gate", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::static_gate<N>(b, epochs); });
        CHECK(run_lockstep<M>("sfp", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::sfp<N>(b, epochs); }).released > 0);
        run_lockstep<M>("asfp", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::asfp<N>(b, epochs); });
        run_lockstep<M>("fpgm", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::fpgm_pruner<N>(b, epochs); });
        run_lockstep<M>("l1", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::l1<N>(b, epochs); });
        if (all_bn)
            run_lockstep<M>("slimming", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::slimming<N>(b, epochs); });
        run_lockstep<M>("taylor", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::taylor_pruner<N>(b, epochs); });
        run_lockstep<M>("agp", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::agp_pruner<N>(b, epochs); });
        run_lockstep<M>("random", all_bn, [&]<class N>(std::type_identity<N>) { return psap::presets::random<N>(b, epochs, 7); });
        run_lockstep<M>("decay", all_bn, [&]<class N>(std::type_identity<N>) {
            return psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, psap::decay, N>({b, epochs});
        });
    }
}

/// A host array standing in for device memory in checks that fail on the
/// host before any CUDA call: it is never dereferenced.
float fake_device_storage[64];

}  // namespace

// ====================================================================== suite: cuda_host
TEST_SUITE("cuda_host") {
    TEST_CASE("device adapters build device-tagged views") {
        float* p = fake_device_storage;
        const auto w = psap::device_filters(p, 4, 6);
        static_assert(std::is_same_v<decltype(w), const psap::matrix_view<float, device_memory>>);
        CHECK(w.rows() == 4);
        CHECK(w.cols() == 6);
        CHECK(w.row_stride() == 6);
        CHECK(w.col_stride() == 1);
        const auto s = psap::device_filters(p, 3, 5, 16, 2);
        CHECK(s.row_stride() == 16);
        CHECK(s.col_stride() == 2);
        const auto v = psap::device_channels(p, 7);
        static_assert(std::is_same_v<decltype(v), const psap::vector_view<float, device_memory>>);
        CHECK(v.size() == 7);
        CHECK(v.stride() == 1);
        CHECK(psap::device_channels(p, 3, 4).stride() == 4);
    }

    TEST_CASE("the default stream is the per-thread stream; stream_guard restores it") {
        CHECK(psap::cuda::current_stream() == cudaStreamPerThread);
        const auto other = reinterpret_cast<cudaStream_t>(std::uintptr_t{0x1234});
        {
            psap::cuda::stream_guard guard(other);
            CHECK(psap::cuda_backend::stream() == other);
        }
        CHECK(psap::cuda::current_stream() == cudaStreamPerThread);
    }

    TEST_CASE("an empty device_buffer needs no device") {
        psap::cuda::device_buffer<float> a;
        CHECK(a.size() == 0);
        CHECK(a.data() == nullptr);
        auto b = a;  // copying an empty buffer makes no CUDA call
        CHECK(b.empty());
        psap::cuda::device_buffer<float> c(0);
        CHECK(c.data() == nullptr);
        std::vector<std::uint8_t> none;
        psap::cuda_backend::to_host(c, none.data());
        psap::cuda_backend::from_host(none.data(), c);
    }

    TEST_CASE("argument errors are found on the host and name the operation") {
        using B = psap::cuda_backend;
        float* p = fake_device_storage;
        const auto w = psap::device_filters(p, 4, 8);
        const auto v = psap::device_channels(p, 8);
        std::vector<double> out3(3), out4(4);
        const std::vector<idx> bad{1, 4}, twice{2, 2}, neg{-1};

        CHECK_THROWS_WITH_AS(B::row_sq_norms(w, out3), doctest::Contains("row_reduce: output holds 3 values for 4 rows"), psap::error);
        CHECK_THROWS_WITH_AS(B::row_dots(w, psap::device_filters(p, 4, 7), out4), doctest::Contains("row_dots: shapes 4x8 and 4x7 differ"),
                             psap::error);
        CHECK_THROWS_WITH_AS(B::pairwise_sq_distances(w, out4), doctest::Contains("pairwise_sq_distances: output holds 4 values, need 16"),
                             psap::error);
        CHECK_THROWS_WITH_AS(B::read(v, out3), doctest::Contains("read: output holds 3 values for 8 rows"), psap::error);
        CHECK_THROWS_WITH_AS(B::zero_rows(w, bad), doctest::Contains("zero_rows: row 4 (entry 1 of the list) is outside [0, 4)"),
                             psap::error);
        CHECK_THROWS_WITH_AS(B::zero_rows(w, neg), doctest::Contains("outside [0, 4)"), psap::error);
        CHECK_THROWS_WITH_AS(B::scale_rows(w, twice, 0.5f), doctest::Contains("scale_rows: row 2 is listed twice"), psap::error);
        CHECK_THROWS_WITH_AS(B::scale_entries(v, twice, 0.5f), doctest::Contains("scale_entries: entry 2 is listed twice"), psap::error);
        CHECK_THROWS_WITH_AS(B::set_entries(v, std::vector<idx>{8}, 0.f), doctest::Contains("set_entries: entry 8"), psap::error);
        CHECK_THROWS_WITH_AS(B::copy_rows(w, psap::device_filters(p, 5, 8), std::vector<idx>{0}),
                             doctest::Contains("copy_rows: shapes 4x8 and 5x8 differ"), psap::error);
        CHECK_THROWS_WITH_AS(B::copy_entries(v, psap::device_channels(p, 7), std::vector<idx>{0}),
                             doctest::Contains("copy_entries: sizes 8 and 7 differ"), psap::error);
        CHECK_THROWS_WITH_AS(B::add_scaled_sign(v, psap::device_channels(p, 7), 1.f), doctest::Contains("add_scaled_sign: sizes 8 and 7 differ"),
                             psap::error);
        // Launchers report the same as values.
        const auto st = psap::cuda::zero_rows<float>(w, bad.data(), 2, cudaStreamPerThread);
        CHECK_FALSE(st.ok());
        CHECK(st.code == cudaErrorInvalidValue);
        CHECK(st.message.find("psap::cuda::zero_rows") == 0);
        // Empty work makes no CUDA call.
        B::zero_rows(w, std::span<const idx>{});
        std::vector<double> none;
        B::row_sq_norms(psap::device_filters(p, 0, 8), none);
    }

    TEST_CASE("without a device, operations throw psap::error naming the operation and the CUDA error") {
        if (have_device()) {
            MESSAGE("a CUDA device is present: the no-device behaviour is not observable here");
            return;
        }
        using B = psap::cuda_backend;
        float* p = fake_device_storage;
        std::vector<double> out(4);
        CHECK_THROWS_WITH_AS(B::row_sq_norms(psap::device_filters(p, 4, 8), out), doctest::Contains("psap::cuda::row_sq_norms"), psap::error);
        CHECK_THROWS_WITH_AS(B::zero_rows(psap::device_filters(p, 4, 8), std::vector<idx>{1}), doctest::Contains("zero_rows"), psap::error);
        CHECK_THROWS_WITH_AS(psap::cuda::device_buffer<float>(16), doctest::Contains("device_buffer: allocation of 16 elements failed"),
                             psap::error);
        // A pruner over a device network fails cleanly at bind (its snapshots are device buffers).
        twin_model<host_memory> m(true, 1);
        const auto dn = m.describe<device_memory>(false);  // host arrays tagged device: never dereferenced
        auto pr = psap::presets::sfp<psap::network<float, device_memory>>({}, 4);
        CHECK_THROWS_AS(pr.bind(dn), psap::error);
    }

    TEST_CASE("equivalence harness, host against host (checks the harness itself)") {
        run_all_presets<host_memory>();
    }
}

// ====================================================================== suite: cuda_device
TEST_SUITE("cuda_device") {
    TEST_CASE_TEMPLATE("row reductions equal the CPU backend's bit for bit", T, float, double) {
        using C = psap::cpu_backend;
        using G = psap::cuda_backend;
        std::mt19937_64 gen(psap_test::seed());
        for (const auto& l : layouts) {
            INFO("layout ", l.rows, "x", l.cols, " col_stride ", l.col_stride, " pad ", l.pad);
            const auto ha = random_values<T>(l.storage(), gen), hb = random_values<T>(l.storage(), gen);
            auto da = upload(ha), db = upload(hb);
            const auto a = view<const T, host_memory>(ha.data(), l), b = view<const T, host_memory>(hb.data(), l);
            const auto x = view<const T, device_memory>(da.data(), l), y = view<const T, device_memory>(db.data(), l);
            const auto n = static_cast<std::size_t>(l.rows);
            std::vector<double> c(n), g(n);

            C::row_sq_norms(a, c), G::row_sq_norms(x, g);
            CHECK_BITS_EQUAL(g, c);
            C::row_abs_sums(a, c), G::row_abs_sums(x, g);
            CHECK_BITS_EQUAL(g, c);
            C::row_reduce(a, c, psap::reduce::square{}), G::row_reduce(x, g, psap::reduce::square{});
            CHECK_BITS_EQUAL(g, c);
            C::row_dots(a, b, c), G::row_dots(x, y, g);
            CHECK_BITS_EQUAL(g, c);
            for (double t : {0.0, 1e-30, 0.5, 1.0, 1e5}) {
                C::row_count_below(a, t, c), G::row_count_below(x, t, g);
                CHECK_BITS_EQUAL(g, c);
            }
            if (l.rows <= 200) {
                std::vector<double> cd(n * n), gd(n * n, -1.0);
                C::pairwise_sq_distances(a, cd), G::pairwise_sq_distances(x, gd);
                CHECK_BITS_EQUAL(gd, cd);
            }
            CHECK(G::first_nonfinite_row(x) == C::first_nonfinite_row(a));
            if (l.rows > 0 && l.cols > 0) {  // a row as a strided vector
                const auto hv = a.row(l.rows - 1);
                const psap::vector_view<const T, device_memory> dv(x.row_data(l.rows - 1), l.cols, l.col_stride);
                std::vector<double> cv(static_cast<std::size_t>(l.cols)), gv(cv.size());
                C::read(hv, cv), G::read(dv, gv);
                CHECK_BITS_EQUAL(gv, cv);
                for (bool absolute : {false, true}) {
                    std::vector<double> ca(cv.size(), 0.25), ga(cv.size(), 0.25);
                    C::accumulate(hv, ca, absolute), G::accumulate(dv, ga, absolute);
                    CHECK_BITS_EQUAL(ga, ca);
                }
                CHECK(G::first_nonfinite(dv) == C::first_nonfinite(hv));
            }
        }
    }

    TEST_CASE("the lane order matters: a sum that depends on it still matches") {
        // 1e16 + 1 + ... : a sequential sum loses the ones, the 8-lane tree keeps some.
        std::vector<float> h(64, 1.0f);
        h[0] = 1e16f;
        h[1] = -1e16f;
        auto d = upload(h);
        std::vector<double> c(1), g(1);
        psap::cpu_backend::row_abs_sums(psap::matrix_view<const float>(h.data(), 1, 64), c);
        psap::cuda_backend::row_abs_sums(psap::device_filters<const float>(d.data(), 1, 64), g);
        CHECK_BITS_EQUAL(g, c);
    }

    TEST_CASE("non-finite values are found at the first row / entry") {
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
            std::vector<float> h(20 * 33, 1.0f);
            h[9 * 33 + 30] = bad;
            h[5 * 33 + 2] = bad;
            auto d = upload(h);
            CHECK(psap::cuda_backend::first_nonfinite_row(psap::device_filters<const float>(d.data(), 20, 33)) == 5);
            CHECK(psap::cuda_backend::first_nonfinite_row(psap::device_filters<const float>(d.data(), 5, 33)) == -1);
            CHECK(psap::cuda_backend::first_nonfinite(psap::device_channels<const float>(d.data(), 20 * 33)) == 5 * 33 + 2);
            CHECK(psap::cuda_backend::first_nonfinite(psap::device_channels<const float>(d.data() + 5 * 33 + 3, 100)) == -1);
        }
    }

    TEST_CASE_TEMPLATE("writes equal the CPU backend's bit for bit, padding untouched", T, float, double) {
        using C = psap::cpu_backend;
        using G = psap::cuda_backend;
        std::mt19937_64 gen(psap_test::seed() + 1);
        for (const auto& l : layouts) {
            if (l.rows == 0) continue;
            INFO("layout ", l.rows, "x", l.cols, " col_stride ", l.col_stride, " pad ", l.pad);
            auto h = random_values<T>(l.storage(), gen);
            auto d = upload(h);
            const auto a = view<T, host_memory>(h.data(), l);
            const auto x = view<T, device_memory>(d.data(), l);
            std::vector<idx> rows;
            for (idx r = 0; r < l.rows; ++r)
                if (gen() % 3 == 0) rows.push_back(r);
            std::shuffle(rows.begin(), rows.end(), gen);

            C::scale_rows(a, rows, T(0.3)), G::scale_rows(x, rows, T(0.3));
            CHECK_BITS_EQUAL(download(d), h);
            C::zero_rows(a, rows), G::zero_rows(x, rows);
            CHECK_BITS_EQUAL(download(d), h);

            // copy_rows between different layouts of the same shape
            const layout packed{l.rows, l.cols, 1, 0};
            auto hs = random_values<T>(packed.storage(), gen);
            auto ds = upload(hs);
            C::copy_rows(view<const T, host_memory>(hs.data(), packed), a, rows);
            G::copy_rows(view<const T, device_memory>(ds.data(), packed), x, rows);
            CHECK_BITS_EQUAL(download(d), h);
            C::copy_rows(a, view<T, host_memory>(hs.data(), packed), rows);
            G::copy_rows(x, view<T, device_memory>(ds.data(), packed), rows);
            CHECK_BITS_EQUAL(download(ds), hs);

            // entry operations on a strided vector (every col_stride-th element of the storage)
            const idx n = static_cast<idx>(l.storage()) / 2;
            const psap::vector_view<T, host_memory> hv(h.data(), n, 2);
            const psap::vector_view<T, device_memory> dv(d.data(), n, 2);
            std::vector<idx> which;
            for (idx i = 0; i < n; ++i)
                if (gen() % 4 == 0) which.push_back(i);
            C::scale_entries(hv, which, T(-1.5)), G::scale_entries(dv, which, T(-1.5));
            CHECK_BITS_EQUAL(download(d), h);
            C::set_entries(hv, which, T(0)), G::set_entries(dv, which, T(0));
            CHECK_BITS_EQUAL(download(d), h);
            auto hw = random_values<T>(static_cast<std::size_t>(n), gen);
            auto dw = upload(hw);
            C::copy_entries(psap::vector_view<const T, host_memory>(hw.data(), n), hv, which);
            G::copy_entries(psap::device_channels<const T>(dw.data(), n), dv, which);
            CHECK_BITS_EQUAL(download(d), h);
            C::add_scaled_sign(psap::vector_view<T, host_memory>(hw.data(), n), hv, T(1e-3));
            G::add_scaled_sign(psap::device_channels(dw.data(), n), dv, T(1e-3));
            CHECK_BITS_EQUAL(download(dw), hw);
        }
    }

    TEST_CASE("device_buffer: zeroed, deep copies, host round trip") {
        psap::cuda::device_buffer<double> a(1000);
        CHECK(a.size() == 1000);
        CHECK(a.bytes() == 8000);
        const auto zeros = download(a);
        CHECK(std::all_of(zeros.begin(), zeros.end(), [](double x) { return std::bit_cast<std::uint64_t>(x) == 0; }));
        std::vector<double> h(1000);
        for (std::size_t i = 0; i < h.size(); ++i) h[i] = 0.5 * static_cast<double>(i) - 7;
        psap::cuda_backend::from_host(h.data(), a);
        auto b = a;  // deep copy
        CHECK(b.data() != a.data());
        std::vector<double> other(1000, 3.0);
        psap::cuda_backend::from_host(other.data(), a);
        CHECK(download(b) == h);
        CHECK(download(a) == other);
        auto c = std::move(b);
        CHECK(b.empty());
        CHECK(download(c) == h);
        c = a;
        CHECK(download(c) == other);
    }

    TEST_CASE("a user stream: results are the same under stream_guard") {
        cudaStream_t s = nullptr;
        REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
        {
            psap::cuda::stream_guard guard(s);
            std::mt19937_64 gen(psap_test::seed() + 2);
            const auto h = random_values<float>(64 * 100, gen);
            auto d = upload(h);
            std::vector<double> c(64), g(64);
            psap::cpu_backend::row_sq_norms(psap::matrix_view<const float>(h.data(), 64, 100), c);
            psap::cuda_backend::row_sq_norms(psap::device_filters<const float>(d.data(), 64, 100), g);
            CHECK_BITS_EQUAL(g, c);
            psap::cuda_backend::synchronize();
        }
        CHECK(cudaStreamDestroy(s) == cudaSuccess);
    }

    TEST_CASE("every preset decides identically on host and device networks") {
        run_all_presets<device_memory>();
    }
}

// ====================================================================== main
int main(int argc, char** argv) {
    bool host_only = false;
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--psap-host-only") host_only = true;
    std::printf("psap CUDA backend tests: seed %llu (set PSAP_TEST_SEED to change)\n", static_cast<unsigned long long>(psap_test::seed()));
    doctest::Context ctx(argc, argv);
    if (host_only) {
        ctx.addFilter("test-suite", "cuda_host");
        return ctx.run();
    }
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
        const std::string why = e != cudaSuccess ? std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e) : "0 devices";
        std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s)\n", why.c_str());
        return 77;
    }
    int dev = 0;
    cudaDeviceProp prop{};
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        std::printf("device %d: %s (compute capability %d.%d, %d SMs)\n", dev, prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    return ctx.run();
}
