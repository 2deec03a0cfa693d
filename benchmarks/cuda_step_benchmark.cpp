// One pruning step per preset, and observe() / after_update() per training
// iteration, on ResNet-56-shaped weights and gradients held on the GPU (the
// CUDA backend: psap/backend/cuda.hpp). Timed with CUDA events recorded on
// psap's stream around each call, and with the host clock (the calls return
// host results, so they include the copies back and the synchronisation).
//
// Work: a step reads every layer's filters at least once (the criterion reads
// the scored layers, the finiteness check the rest), so "GB/s" below is the weight bytes
// read once over the step time: a lower bound on the bandwidth used, to hold
// against the GPU's (H200: ~4.8 TB/s datasheet, ~4.3 TB/s copy measured).
// At ResNet-56 scale (0.86 M parameters, 3.4 MB) a step is latency-bound:
// hundreds of small launches and copies.
//
// Usage: psap_cuda_step_benchmark [--cpu] [steps (default 5)] [iterations between steps (default 50)]
//   --cpu  also runs the same steps on the host (CPU backend) for comparison;
//          without a GPU it runs only that (and checks the model's description).
// Without a GPU (and without --cpu) it prints "SKIPPED: no CUDA device (...)" and exits 77.
#include "resnet56.hpp"

#include <psap/backend/cuda.hpp>
#include <psap/presets.hpp>
#include <psap/tensor/device.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using psap::index;

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        const cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                                   \
            std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e_));                \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

/// Arrays in memory space M: std::vector on the host, device_buffer on the GPU.
template <class M>
using buffer = typename psap::backend_t<M>::template buffer<float>;

template <class M>
buffer<M> random_buffer(std::size_t n, double mean, double sd, std::mt19937_64& g) {
    std::normal_distribution<double> d(mean, sd);
    std::vector<float> h(n);
    for (auto& x : h) x = static_cast<float>(d(g));
    if constexpr (std::is_same_v<M, psap::host_memory>) {
        return h;
    } else {
        buffer<M> b(n);
        psap::cuda_backend::from_host(h.data(), b);
        return b;
    }
}

/// The arrays of one conv/linear layer.
template <class M>
struct model_layer {
    std::string name;
    index out = 0, in = 0, k = 1, positions = 1;
    bool bn = true, bias = false;
    buffer<M> w, gw, b, gb, gamma, beta, mean, var, ggamma, gbeta, gate;
};

/// CIFAR ResNet-56 (He et al. 2016, option-A shortcuts): stem 3->16, three
/// stages of 9 blocks (16/32/64 channels, two 3x3 convs + BN each), FC 64->10.
/// Groups: every block's internal channels, and the residual stream in SFP's
/// layout (stream1: 16 channels, stream2: 16, stream3: 32).
template <class M>
struct resnet56 {
    std::vector<model_layer<M>> layers;
    psap::network<float, M> net;
    std::size_t weight_bytes = 0;

    explicit resnet56(std::uint64_t seed) {
        std::mt19937_64 g(seed);
        auto conv = [&](std::string name, index out, index in, index side) {
            model_layer<M> l;
            l.name = std::move(name);
            l.out = out;
            l.in = in;
            l.k = 9;
            l.positions = side * side;
            layers.push_back(std::move(l));
        };
        psap_bench::for_each_resnet56_conv(conv);
        model_layer<M> fc;
        fc.name = "fc";
        fc.out = 10;
        fc.in = 64;
        fc.bn = false;
        fc.bias = true;
        layers.push_back(std::move(fc));

        for (auto& l : layers) {
            const auto n = static_cast<std::size_t>(l.out * l.in * l.k), o = static_cast<std::size_t>(l.out);
            l.w = random_buffer<M>(n, 0.0, std::sqrt(2.0 / static_cast<double>(l.in * l.k)), g);
            l.gw = random_buffer<M>(n, 0.0, 1e-3, g);
            weight_bytes += n * sizeof(float);
            if (l.bias) {
                l.b = random_buffer<M>(o, 0.0, 0.01, g);
                l.gb = random_buffer<M>(o, 0.0, 1e-3, g);
            }
            if (l.bn) {
                l.gamma = random_buffer<M>(o, 1.0, 0.3, g);
                l.beta = random_buffer<M>(o, 0.0, 0.1, g);
                l.mean = random_buffer<M>(o, 0.0, 0.1, g);
                l.var = random_buffer<M>(o, 1.0, 0.0, g);
                l.ggamma = random_buffer<M>(o, 0.0, 1e-3, g);
                l.gbeta = random_buffer<M>(o, 0.0, 1e-3, g);
                l.gate = random_buffer<M>(o, 0.0, 1e-3, g);
            }
            net.add_layer(psap_bench::describe_layer<M>(l));
        }
        psap_bench::add_resnet56_groups(net, true);
        net.validate();
    }
};

/// Times one host call by CUDA events on psap's stream and by the host clock (ms).
struct timer {
    cudaEvent_t start{}, stop{};
    explicit timer(bool on_device) : device(on_device) {
        if (!device) return;
        CUDA_OK(cudaEventCreate(&start));
        CUDA_OK(cudaEventCreate(&stop));
    }
    ~timer() {
        if (!device) return;
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
    }
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;
    bool device = true;
    template <class F>
    std::pair<double, double> operator()(F&& f) {
        if (!device) {
            const auto t0 = std::chrono::steady_clock::now();
            f();
            return {0.0, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()};
        }
        const cudaStream_t s = psap::cuda::current_stream();
        CUDA_OK(cudaStreamSynchronize(s));
        const auto t0 = std::chrono::steady_clock::now();
        CUDA_OK(cudaEventRecord(start, s));
        f();
        CUDA_OK(cudaEventRecord(stop, s));
        CUDA_OK(cudaEventSynchronize(stop));
        const auto t1 = std::chrono::steady_clock::now();
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
        return {static_cast<double>(ms), std::chrono::duration<double, std::milli>(t1 - t0).count()};
    }
};

struct stats {
    std::vector<double> v;
    double mean() const {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? 0 : s / static_cast<double>(v.size());
    }
    double min() const { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }
};

/// A fresh network per preset (every run starts from the same weights).
template <class M, class Pruner>
void bench(const char* preset, Pruner p, int steps, int iterations) {
    resnet56<M> m(20261128);
    timer t(std::is_same_v<M, psap::device_memory>);
    stats step_ev, step_wall, obs_ev, obs_wall, upd_ev, upd_wall;
    p.bind(m.net);
    for (int e = 1; e <= steps; ++e) {
        for (int it = 0; it < iterations; ++it) {
            const auto o = t([&] { p.observe(m.net); });
            obs_ev.v.push_back(o.first);
            obs_wall.v.push_back(o.second);
            const auto u = t([&] { p.after_update(m.net); });
            upd_ev.v.push_back(u.first);
            upd_wall.v.push_back(u.second);
        }
        const auto s = t([&] { p.step(m.net, e); });
        step_ev.v.push_back(s.first);
        step_wall.v.push_back(s.second);
    }
    index pruned = 0, total = 0;
    for (const auto& g : p.groups()) pruned += g.pruned_count(), total += g.size();
    const double gbs = static_cast<double>(m.weight_bytes) / (step_wall.mean() * 1e-3) / 1e9;
    std::printf("%-12s %-6s %9.3f %9.3f %9.3f %8.2f %11.1f %11.1f %11.1f %11.1f   %lld/%lld\n", preset, M::name, step_ev.mean(), step_wall.mean(),
                step_wall.min(), gbs, 1e3 * obs_ev.mean(), 1e3 * obs_wall.mean(), 1e3 * upd_ev.mean(), 1e3 * upd_wall.mean(),
                static_cast<long long>(pruned), static_cast<long long>(total));
}

}  // namespace

template <class M>
void bench_all(int steps, int iterations) {
    const psap::budget b{psap::budget_kind::flops, 0.5};
    const double epochs = steps + 1;
    using N = psap::network<float, M>;
    bench<M>("psap", psap::presets::psap<N>(b, epochs), steps, iterations);
    bench<M>("static_gate", psap::presets::static_gate<N>(b, epochs), steps, iterations);
    bench<M>("sfp", psap::presets::sfp<N>(b, epochs), steps, iterations);
    bench<M>("asfp", psap::presets::asfp<N>(b, epochs), steps, iterations);
    bench<M>("fpgm", psap::presets::fpgm_pruner<N>(b, epochs), steps, iterations);
    bench<M>("l1", psap::presets::l1<N>(b, epochs), steps, iterations);
    bench<M>("slimming", psap::presets::slimming<N>(b, epochs), steps, iterations);
    bench<M>("taylor", psap::presets::taylor_pruner<N>(b, epochs), steps, iterations);
    bench<M>("agp", psap::presets::agp_pruner<N>(b, epochs), steps, iterations);
    bench<M>("random", psap::presets::random<N>(b, epochs), steps, iterations);
}

int main(int argc, char** argv) {
    bool cpu = false;
    std::vector<int> numbers;
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--cpu")
            cpu = true;
        else
            numbers.push_back(std::atoi(argv[i]));
    }
    const int steps = numbers.size() > 0 ? numbers[0] : 5;
    const int iterations = numbers.size() > 1 ? numbers[1] : 50;
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    const bool gpu = e == cudaSuccess && devices > 0;
    if (!gpu) {
        std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s)\n",
                    e != cudaSuccess ? (std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e)).c_str() : "0 devices");
        if (!cpu) return 77;
    } else {
        int dev = 0, driver = 0, runtime = 0;
        cudaDeviceProp prop{};
        CUDA_OK(cudaGetDevice(&dev));
        CUDA_OK(cudaGetDeviceProperties(&prop, dev));
        CUDA_OK(cudaDriverGetVersion(&driver));
        CUDA_OK(cudaRuntimeGetVersion(&runtime));
        std::printf("device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB, L2 %d MiB; driver %d, runtime %d\n", dev, prop.name,
                    prop.major, prop.minor, prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / (1 << 30),
                    prop.l2CacheSize >> 20, driver, runtime);
    }
    {
        const resnet56<psap::host_memory> m(20261128);
        std::printf("ResNet-56 (CIFAR, option A): %zu layers, %zu groups, %.2f MB of weights; %d steps, %d iterations between steps\n",
                    m.net.layers().size(), m.net.groups().size(), static_cast<double>(m.weight_bytes) / 1e6, steps, iterations);
    }
    std::printf("times in ms (step) and us (per iteration); ev = CUDA events on psap's stream, wall = host clock\n");
    std::printf("%-12s %-6s %9s %9s %9s %8s %11s %11s %11s %11s   %s\n", "preset", "memory", "step_ev", "step_wall", "step_min", "GB/s",
                "observe_ev", "observe_wall", "update_ev", "update_wall", "pruned");
    if (gpu) bench_all<psap::device_memory>(steps, iterations);
    if (cpu) bench_all<psap::host_memory>(steps, iterations);
    if (gpu) CUDA_OK(cudaDeviceSynchronize());
    return 0;
}
