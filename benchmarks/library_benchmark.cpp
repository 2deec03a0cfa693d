// psap_benchmarks: the library's hot paths on ResNet-56-shaped weights and
// gradients (benchmarks/resnet56.hpp), each held against a plain read pass
// over the same bytes on the same threads (benchmarks/read_pass.hpp).
//
//   step/<preset>/<net>/threads:<t>          one pruner.step() at steady state
//   observe/<preset>/<net>/threads:<t>       one observe() (inside the protector's window)
//   after_update/<preset>/<net>/threads:<t>  one after_update()
//   split/psap/<net>/threads:<t>             PSAP's step, then its data passes alone
//   read/<what>/<net>/threads:<t>            the read pass alone
//   backend/<op>/<how>/threads:<t>           backend primitives over every member view
//
// <preset>: every preset in psap/presets.hpp, and psap_unchecked (PSAP with
// pruner_options::check_finite off: no NaN/Inf scans, the bytes it reads
// are the member layers' weights and BN gammas and variances).
// <net>: "internal" (27 groups: each block's conv1 + BN1, consumed by conv2)
// or "streams" (also the three residual-stream groups, 30 groups).
// <t>: OpenMP threads (omp_set_num_threads), 1 and 2.
//
// Steady state: the pruner is bound and stepped at epochs 0, 4, ..., 40 of
// 100 (observe() and after_update() between steps), so masks are established
// at mid-training progress 0.4 (inside PSAP's ramp, before its frozen final
// phase). Each timed step() is preceded by two untimed observe() calls, so the
// protector has statistics and the step does all of its work.
//
// Timing: manual (steady_clock around the call alone). Counters:
//   bytes      bytes the call touches (see touched_* below)
//   GB/s       bytes / median call time
//   read_us    median time of the read pass over the same bytes, measured
//              interleaved with the call (same cache state, same load)
//   x_read     median call time / read_us
//   med_us     median call time (the table's figure; the reported time is the mean)
//   allocs     heap allocations per call (operator new is counted in this binary)
//   passes_us  split/ only: median time of the step's two data passes alone
//   rest_us    split/ only: med_us - passes_us, the step's bookkeeping
#include "alloc_counter.hpp"
#include "read_pass.hpp"
#include "resnet56.hpp"

#include <psap/presets.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using psap_bench::byte_span;
using psap_bench::resnet56;
using clock_type = std::chrono::steady_clock;

constexpr double total_epochs = 100;
constexpr double steady_epoch = 40;

/// Sets the OpenMP team size for one benchmark and restores it after.
class thread_scope {
public:
    explicit thread_scope(int t) {
#if defined(_OPENMP)
        previous_ = omp_get_max_threads();
        omp_set_num_threads(t);
#else
        (void)t;
#endif
    }
    ~thread_scope() {
#if defined(_OPENMP)
        omp_set_num_threads(previous_);
#endif
    }
    thread_scope(const thread_scope&) = delete;
    thread_scope& operator=(const thread_scope&) = delete;

private:
    [[maybe_unused]] int previous_ = 1;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    const std::size_t h = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(h), v.end());
    return v[h];
}

template <class F>
double seconds(F&& f) {
    const auto t0 = clock_type::now();
    f();
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Call and reference times of one benchmark, turned into its counters.
struct samples {
    std::vector<double> call, read;
    long long allocs = 0;  // during the timed calls
    /// Times one call and counts its allocations.
    template <class F>
    double time(F&& f) {
        const long long a0 = psap_bench::allocations();
        const double c = seconds(std::forward<F>(f));
        allocs += psap_bench::allocations() - a0;
        call.push_back(c);
        return c;
    }
    void report(benchmark::State& state, double bytes) const {
        const double c = median(call), r = median(read);
        state.counters["bytes"] = bytes;
        state.counters["allocs"] = call.empty() ? 0.0 : static_cast<double>(allocs) / static_cast<double>(call.size());
        state.counters["GB/s"] = c > 0 ? bytes / c / 1e9 : 0;
        state.counters["med_us"] = c * 1e6;
        state.counters["read_us"] = r * 1e6;
        state.counters["x_read"] = r > 0 ? c / r : 0;
    }
};

/// What a step reads at least once: every layer's weights (the criterion the
/// scored layers, the finiteness check the others), every BN gamma/beta (the
/// finiteness check), and the members' running variances (BN folding).
std::vector<byte_span> touched_by_step(const resnet56& m) {
    auto s = m.weight_spans();
    for (const auto& b : m.bn_spans({&psap_bench::model_layer::gamma, &psap_bench::model_layer::beta})) s.push_back(b);
    for (const auto& b : m.member_bn_spans({&psap_bench::model_layer::var})) s.push_back(b);
    return s;
}
/// What a step with check_finite off reads: the member layers' weights (the
/// criterion's norms) and their BN gammas and running variances (the fold).
std::vector<byte_span> touched_by_unchecked_step(const resnet56& m) {
    std::vector<byte_span> s;
    const auto w = m.weight_spans();
    for (std::size_t i = 0; i < w.size(); ++i)
        if (m.is_member(static_cast<psap::index>(i))) s.push_back(w[i]);
    for (const auto& b : m.member_bn_spans({&psap_bench::model_layer::gamma, &psap_bench::model_layer::var})) s.push_back(b);
    return s;
}
/// What observe() reads: the members' BN gradients, gate gradients and parameters.
std::vector<byte_span> touched_by_observe(const resnet56& m) {
    using L = psap_bench::model_layer;
    return m.member_bn_spans({&L::gamma, &L::beta, &L::ggamma, &L::gbeta, &L::gate});
}
/// The pruned rows of every member's weights (after_update's filter traffic).
std::vector<byte_span> pruned_rows(const resnet56& m, std::span<const psap::group_state> groups) {
    std::vector<byte_span> s;
    const auto& net = m.net();
    for (std::size_t g = 0; g < groups.size(); ++g)
        for (std::size_t k = 0; k < net.groups()[g].members.size(); ++k) {
            const auto w = psap::member_of(net, static_cast<psap::index>(g), k).weight;
            for (std::size_t c = 0; c < groups[g].pruned.size(); ++c)
                if (groups[g].pruned[c]) s.push_back({w.row_data(static_cast<psap::index>(c)), static_cast<std::size_t>(w.cols())});
        }
    return s;
}

/// Untimed, after each timed step: a run of 10^4 steps would otherwise hold
/// 10^4 log entries, and each step would first-touch fresh pages for its
/// entry (~2.5 us of the PSAP step at 1 thread on the project's EPYC), a
/// cost of the harness's length that no real run of ~10^2 steps pays. A
/// long run streams its log the same way (pruner::take_log).
template <class Pruner>
void drain_log(Pruner& p) {
    benchmark::DoNotOptimize(p.take_log().size());
}

/// A pruner of one preset over one ResNet-56, stepped to the steady state.
template <class Pruner>
struct steady {
    resnet56 model;
    Pruner pruner;
    steady(bool streams, Pruner p) : model(streams), pruner(std::move(p)) {
        const auto& net = model.net();
        pruner.bind(net);
        for (double e = 0; e <= steady_epoch; e += 4) {
            for (int k = 0; k < 3; ++k) {
                pruner.observe(net);
                pruner.after_update(net);
            }
            pruner.step(net, e);
        }
    }
};

template <class Make>
void bench_step(benchmark::State& state, Make make, bool streams, int threads) {
    thread_scope ts(threads);
    steady s(streams, make());
    const auto& net = s.model.net();
    const auto spans = s.pruner.options().check_finite ? touched_by_step(s.model) : touched_by_unchecked_step(s.model);
    samples t;
    for (auto _ : state) {
        s.pruner.observe(net);
        s.pruner.observe(net);
        const double c = t.time([&] { s.pruner.step(net, steady_epoch); });
        state.SetIterationTime(c);
        drain_log(s.pruner);
        t.read.push_back(seconds([&] { benchmark::DoNotOptimize(psap_bench::read_pass(spans, threads)); }));
    }
    t.report(state, static_cast<double>(psap_bench::bytes_of(spans)));
}

/// The PSAP step split in two, in one process: the whole step, then its two
/// batched data passes alone (the L2 row norms of every member view; the
/// finiteness scan of the unscored layers' weights and of every BN gamma and
/// beta), so rest_us = med_us - passes_us is the step's bookkeeping (what
/// neither threads nor bandwidth shrink).
void bench_split(benchmark::State& state, bool streams, int threads) {
    using B = psap::cpu_backend;
    using W = psap::matrix_view<const float>;
    using V = psap::vector_view<const float>;
    thread_scope ts(threads);
    steady s(streams, psap::presets::psap(psap::budget{psap::budget_kind::flops, 0.5}, total_epochs));
    const auto& net = s.model.net();
    const auto members = s.model.member_weights();
    std::vector<W> others;
    std::vector<V> bn;
    std::vector<std::size_t> rows;
    for (const auto& w : members) rows.push_back(static_cast<std::size_t>(w.rows()));
    for (std::size_t i = 0; i < net.layers().size(); ++i) {
        const auto& l = net.layers()[i];
        if (l.has_weight() && !s.model.is_member(static_cast<psap::index>(i))) others.push_back(l.weight);
        if (l.bn) bn.push_back(l.bn->gamma), bn.push_back(l.bn->beta);
    }
    psap::measure::slices norms(rows);
    std::vector<psap::index> first_w(others.size()), first_v(bn.size());
    const auto spans = touched_by_step(s.model);
    samples t;
    std::vector<double> passes;
    for (auto _ : state) {
        s.pruner.observe(net);
        s.pruner.observe(net);
        const double c = t.time([&] { s.pruner.step(net, steady_epoch); });
        state.SetIterationTime(c);
        drain_log(s.pruner);
        passes.push_back(seconds([&] {
            B::row_sq_norms_batch(std::span<const W>(members), norms.all());
            B::first_nonfinite_rows(std::span<const W>(others), std::span<psap::index>(first_w));
            B::first_nonfinite_batch(std::span<const V>(bn), std::span<psap::index>(first_v));
        }));
        benchmark::DoNotOptimize(norms.data.data());
        t.read.push_back(seconds([&] { benchmark::DoNotOptimize(psap_bench::read_pass(spans, threads)); }));
    }
    t.report(state, static_cast<double>(psap_bench::bytes_of(spans)));
    const double p = median(passes);
    state.counters["passes_us"] = p * 1e6;
    state.counters["rest_us"] = (median(t.call) - p) * 1e6;
}

template <class Make>
void bench_observe(benchmark::State& state, Make make, bool streams, int threads) {
    thread_scope ts(threads);
    steady s(streams, make());
    const auto& net = s.model.net();
    const auto spans = touched_by_observe(s.model);
    samples t;
    int since = 0;
    for (auto _ : state) {
        if (since == 20) {  // gradient_pulse observes the first 20 iterations after a step
            s.pruner.step(net, steady_epoch);
            since = 0;
        }
        const double c = t.time([&] { s.pruner.observe(net); });
        ++since;
        state.SetIterationTime(c);
        t.read.push_back(seconds([&] { benchmark::DoNotOptimize(psap_bench::read_pass(spans, threads)); }));
    }
    t.report(state, static_cast<double>(psap_bench::bytes_of(spans)));
}

/// Bytes moved per pruned row by after_update(): protective copies the filter
/// back from its snapshot (read + write), hard zeroes it (write), soft and
/// decay-free policies leave filters alone.
template <class Pruner>
double row_traffic() {
    using R = typename Pruner::reconstructor_type;
    if constexpr (std::is_same_v<R, psap::protective>) return 2;
    else if constexpr (std::is_same_v<R, psap::hard>) return 1;
    else return 0;
}

template <class Make>
void bench_after_update(benchmark::State& state, Make make, bool streams, int threads) {
    thread_scope ts(threads);
    steady s(streams, make());
    const auto& net = s.model.net();
    const auto spans = pruned_rows(s.model, s.pruner.groups());
    samples t;
    for (auto _ : state) {
        const double c = t.time([&] { s.pruner.after_update(net); });
        state.SetIterationTime(c);
        t.read.push_back(seconds([&] { benchmark::DoNotOptimize(psap_bench::read_pass(spans, threads)); }));
    }
    t.report(state, row_traffic<decltype(make())>() * static_cast<double>(psap_bench::bytes_of(spans)));
}

void bench_read(benchmark::State& state, bool streams, int threads, bool observe_bytes) {
    thread_scope ts(threads);
    const resnet56 m(streams);
    const auto spans = observe_bytes ? touched_by_observe(m) : touched_by_step(m);
    samples t;
    for (auto _ : state) {
        const double r = seconds([&] { benchmark::DoNotOptimize(psap_bench::read_pass(spans, threads)); });
        state.SetIterationTime(r);
        t.call.push_back(r);
        t.read.push_back(r);
    }
    t.report(state, static_cast<double>(psap_bench::bytes_of(spans)));
}

/// Backend primitives over every member view of the "streams" network (all
/// 55 convs' filters), one view at a time or as one batch.
///   op: row_sq_norms (2 flop/element), row_abs_sums (1), row_dots (weights .
///   gradients, 2), pairwise (FPGM's distances: 3 flop per element per pair),
///   first_nonfinite_rows (the step's finiteness scan, every layer's weights).
void bench_backend(benchmark::State& state, const std::string& op, bool batched, int threads) {
    using B = psap::cpu_backend;
    using W = psap::matrix_view<float>;
    thread_scope ts(threads);
    const resnet56 m(true);
    std::vector<W> ws, gs;
    const auto& net = m.net();
    if (op == "first_nonfinite_rows") {
        for (const auto& l : net.layers()) ws.push_back(l.weight);
    } else {
        for (std::size_t g = 0; g < net.groups().size(); ++g)
            for (std::size_t k = 0; k < net.groups()[g].members.size(); ++k) {
                const auto mv = psap::member_of(net, static_cast<psap::index>(g), k);
                ws.push_back(mv.weight);
                gs.push_back(mv.grad);
            }
    }
    double elements = 0, flops = 0;
    std::vector<std::size_t> sizes;
    std::vector<byte_span> spans;
    for (std::size_t k = 0; k < ws.size(); ++k) {
        const double e = static_cast<double>(ws[k].rows() * ws[k].cols());
        const double n = static_cast<double>(ws[k].rows());
        elements += op == "row_dots" ? 2 * e : e;
        flops += op == "row_sq_norms" || op == "row_dots" ? 2 * e : op == "row_abs_sums" ? e : op == "pairwise" ? 3 * e * (n - 1) / 2 : 0;
        sizes.push_back(static_cast<std::size_t>(op == "pairwise" ? n * n : n));
        for (psap::index i = 0; i < ws[k].rows(); ++i) {
            spans.push_back({ws[k].row_data(i), static_cast<std::size_t>(ws[k].cols())});
            if (op == "row_dots") spans.push_back({gs[k].row_data(i), static_cast<std::size_t>(gs[k].cols())});
        }
    }
    psap::measure::slices out(sizes);
    std::vector<psap::index> first(ws.size());
    auto call = [&] {
        if (op == "first_nonfinite_rows") {
            if (batched)
                B::first_nonfinite_rows(std::span<const W>(ws), std::span<psap::index>(first));
            else
                for (std::size_t k = 0; k < ws.size(); ++k) first[k] = B::first_nonfinite_row(ws[k]);
        } else if (batched) {
            if (op == "row_sq_norms") B::row_sq_norms_batch(std::span<const W>(ws), out.all());
            if (op == "row_abs_sums") B::row_abs_sums_batch(std::span<const W>(ws), out.all());
            if (op == "row_dots") B::row_dots_batch(std::span<const W>(ws), std::span<const W>(gs), out.all());
            if (op == "pairwise") B::pairwise_sq_distances_batch(std::span<const W>(ws), out.all());
        } else {
            for (std::size_t k = 0; k < ws.size(); ++k) {
                if (op == "row_sq_norms") B::row_sq_norms(ws[k], out[k]);
                if (op == "row_abs_sums") B::row_abs_sums(ws[k], out[k]);
                if (op == "row_dots") B::row_dots(ws[k], gs[k], out[k]);
                if (op == "pairwise") B::pairwise_sq_distances(ws[k], out[k]);
            }
        }
    };
    samples t;
    for (auto _ : state) {
        const double c = t.time(call);
        state.SetIterationTime(c);
        t.read.push_back(seconds([&] { benchmark::DoNotOptimize(psap_bench::read_pass(spans, threads)); }));
        benchmark::DoNotOptimize(out.data.data());
    }
    t.report(state, elements * sizeof(float));
    const double c = median(t.call);
    state.counters["GFLOP/s"] = c > 0 ? flops / c / 1e9 : 0;
}

const psap::budget target{psap::budget_kind::flops, 0.5};

template <class Make>
void register_preset(const std::string& name, Make make) {
    for (bool streams : {false, true})
        for (int threads : {1, 2}) {
            const std::string tail = std::string("/") + (streams ? "streams" : "internal") + "/threads:" + std::to_string(threads);
            benchmark::RegisterBenchmark(("step/" + name + tail).c_str(),
                                         [=](benchmark::State& st) { bench_step(st, make, streams, threads); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("observe/" + name + tail).c_str(),
                                         [=](benchmark::State& st) { bench_observe(st, make, streams, threads); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("after_update/" + name + tail).c_str(),
                                         [=](benchmark::State& st) { bench_after_update(st, make, streams, threads); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
        }
}

void register_all() {
    namespace P = psap::presets;
    for (bool streams : {false, true})
        for (int threads : {1, 2}) {
            const std::string tail = std::string("/") + (streams ? "streams" : "internal") + "/threads:" + std::to_string(threads);
            benchmark::RegisterBenchmark(("read/step_bytes" + tail).c_str(),
                                         [=](benchmark::State& st) { bench_read(st, streams, threads, false); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("read/observe_bytes" + tail).c_str(),
                                         [=](benchmark::State& st) { bench_read(st, streams, threads, true); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("split/psap" + tail).c_str(), [=](benchmark::State& st) { bench_split(st, streams, threads); })
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
        }
    for (const char* op : {"row_sq_norms", "row_abs_sums", "row_dots", "pairwise", "first_nonfinite_rows"})
        for (bool batched : {false, true})
            for (int threads : {1, 2})
                benchmark::RegisterBenchmark(
                    (std::string("backend/") + op + (batched ? "/batch" : "/per_view") + "/threads:" + std::to_string(threads)).c_str(),
                    [=](benchmark::State& st) { bench_backend(st, op, batched, threads); })
                    ->UseManualTime()
                    ->Unit(benchmark::kMicrosecond);
    register_preset("psap", [] { return P::psap(target, total_epochs); });
    // PSAP without the finiteness checks (pruner_options::check_finite off):
    // the work of PyTorch's SFP step, which checks nothing, and what the
    // checks cost (docs/benchmarks.md).
    register_preset("psap_unchecked", [] {
        auto p = P::psap(target, total_epochs);
        auto o = p.options();
        o.check_finite = false;
        return decltype(p)(o, p.schedule(), p.criterion(), p.protector(), p.reconstructor());
    });
    register_preset("static_gate", [] { return P::static_gate(target, total_epochs); });
    register_preset("sfp", [] { return P::sfp(target, total_epochs); });
    register_preset("asfp", [] { return P::asfp(target, total_epochs); });
    register_preset("fpgm", [] { return P::fpgm_pruner(target, total_epochs); });
    register_preset("l1", [] { return P::l1(target, total_epochs); });
    register_preset("slimming", [] { return P::slimming(target, total_epochs); });
    register_preset("taylor", [] { return P::taylor_pruner(target, total_epochs); });
    register_preset("agp", [] { return P::agp_pruner(target, total_epochs); });
    register_preset("random", [] { return P::random(target, total_epochs); });
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
