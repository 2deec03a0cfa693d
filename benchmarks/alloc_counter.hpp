#pragma once
// Counts the heap allocations of the benchmark binary: small per-step
// allocations were a measurable part of the pruner's bookkeeping, so each
// benchmark reports how many its call makes (docs/benchmarks.md).
namespace psap_bench {
/// operator new calls so far in this process (alloc_counter.cpp).
long long allocations() noexcept;
}  // namespace psap_bench
