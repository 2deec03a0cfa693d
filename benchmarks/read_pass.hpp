#pragma once
// The reference every library benchmark is held against: a plain read pass
// that sums the same bytes once, on the same threads, in one parallel region.
// 64 independent float lanes per thread keep it bound by the memory system,
// not by the latency of one add chain.
#include "resnet56.hpp"

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace psap_bench {

/// Sum of every float in the spans, split evenly over `threads` threads by element count.
inline float read_pass(std::span<const byte_span> spans, int threads) {
    std::size_t total = 0;
    for (const auto& s : spans) total += s.count;
    std::vector<float> part(static_cast<std::size_t>(std::max(threads, 1)), 0.0f);
    auto run = [&](int t, int nt) {
        const std::size_t lo = total * static_cast<std::size_t>(t) / static_cast<std::size_t>(nt);
        const std::size_t hi = total * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(nt);
        constexpr int lanes = 64;
        alignas(64) float acc[lanes] = {};
        std::size_t base = 0;
        for (const auto& s : spans) {
            const std::size_t b = std::max(lo, base), e = std::min(hi, base + s.count);
            if (b < e) {
                const float* x = s.data + (b - base);
                const std::size_t n = e - b;
                std::size_t j = 0;
                for (; j + lanes <= n; j += lanes)
                    for (int l = 0; l < lanes; ++l) acc[l] += x[j + l];
                for (; j < n; ++j) acc[0] += x[j];
            }
            base += s.count;
            if (base >= hi) break;
        }
        float sum = 0;
        for (float a : acc) sum += a;
        part[static_cast<std::size_t>(t)] = sum;
    };
#if defined(_OPENMP)
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        run(omp_get_thread_num(), omp_get_num_threads());
    } else {
        run(0, 1);
    }
#else
    run(0, 1);
#endif
    float s = 0;
    for (float p : part) s += p;
    return s;
}

}  // namespace psap_bench
