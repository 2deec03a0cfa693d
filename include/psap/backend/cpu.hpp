#pragma once
/// \file cpu.hpp
/// The host backend: the arithmetic the policies ask for, on host views.
///
/// Reductions follow psap::reduce's canonical order (bitwise equal to the
/// CUDA backend). Every operation comes in two forms: on one view, and
/// batched over many views (`*_batch`), so that a policy asks once for the
/// whole network. A call runs in at most one OpenMP parallel region, with
/// the rows of all its views split statically by element count (or, on a
/// thread leading a cpu_detail::shared_work, in chunks shared with its
/// helpers); each row is computed by one thread in the canonical order, so
/// neither the split nor the number of threads can change a result.
/// Threading: see cpu_threading.

#include <psap/backend/reduce.hpp>
#include <psap/error.hpp>
#include <psap/tensor/view.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

/// PSAP_OMP(clauses) expands to `#pragma omp clauses` when the translation
/// unit is compiled with OpenMP and to nothing otherwise, so a build without
/// OpenMP runs single-threaded and stays free of -Wunknown-pragmas warnings.
#if defined(_OPENMP)
#define PSAP_OMP_PRAGMA(x) _Pragma(#x)
#define PSAP_OMP(clauses) PSAP_OMP_PRAGMA(omp clauses)
#else
#define PSAP_OMP(clauses)
#endif

namespace psap {

/// Process-wide threading of the CPU backend.
///
/// A backend call (one view or a batch) whose total work is below
/// `min_parallel_work` elements runs on the calling thread; above it, it opens
/// one parallel region of `max_threads` threads. max_threads = 0 (default)
/// means OpenMP's own team size, omp_get_max_threads(): OMP_NUM_THREADS or
/// omp_set_num_threads() of the calling thread. The environment variable
/// PSAP_NUM_THREADS, read once, sets max_threads for psap alone. Inside an
/// enclosing parallel region, and without OpenMP, calls run single-threaded.
/// Results never depend on these settings.
struct cpu_threading {
    int max_threads = 0;
    index min_parallel_work = index{1} << 16;

    static cpu_threading get() noexcept { return {slot_threads().load(std::memory_order_relaxed), slot_work().load(std::memory_order_relaxed)}; }
    static void set(cpu_threading t) noexcept {
        slot_threads().store(t.max_threads < 0 ? 0 : t.max_threads, std::memory_order_relaxed);
        slot_work().store(t.min_parallel_work < 0 ? 0 : t.min_parallel_work, std::memory_order_relaxed);
    }
    /// Threads a call with `work` elements uses now.
    static int team_for(index work) noexcept {
#if defined(_OPENMP)
        if (work < slot_work().load(std::memory_order_relaxed) || omp_in_parallel()) return 1;
        const int t = slot_threads().load(std::memory_order_relaxed);
        const int n = t > 0 ? t : omp_get_max_threads();
        return n < 1 ? 1 : n;
#else
        (void)work;
        return 1;
#endif
    }

private:
    static std::atomic<int>& slot_threads() noexcept {
        static std::atomic<int> s{[] {
            const char* e = std::getenv("PSAP_NUM_THREADS");
            const int v = e ? std::atoi(e) : 0;
            return v > 0 ? v : 0;
        }()};
        return s;
    }
    static std::atomic<index>& slot_work() noexcept {
        static std::atomic<index> s{index{1} << 16};
        return s;
    }
};

namespace cpu_detail {

/// Spin-wait hint: lets the sibling hyperthread run while a thread polls.
inline void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/// Work one leading thread shares with the other threads of its parallel
/// region while they run background chunks of their own: psap::pruner's
/// step, where the helpers scan the unscored layers for NaN/Inf while the
/// leader scores and decides, and join the leader's batched backend calls
/// (for_rows) instead of a nested region running them on the leader alone.
/// Lock-free. One ticket word holds the posted call's chunk count and how
/// many chunks were taken from each end, so taking a chunk and learning
/// that it exists are one atomic step: a helper cannot take a chunk of a
/// call already done. The leader takes chunks from the front, helpers from
/// the back: each thread works on about the same rows at every step, as
/// with a static split, and finds them in its own caches (the two vCPUs of
/// the project's machine are sometimes on different cores, where a row
/// read by the other thread costs a transfer).
class shared_work {
public:
    using chunk_fn = void (*)(const void* ctx, index chunk);

    /// Leader: runs chunks 0..count-1 of fn(ctx, chunk) with the helpers;
    /// returns when every chunk is done.
    void run(chunk_fn fn, const void* ctx, index count) {
        if (count <= 0) return;
        if (static_cast<std::uint64_t>(count) >= field) {  // more chunks than a ticket counts: do them here
            for (index c = 0; c < count; ++c) fn(ctx, c);
            return;
        }
        fn_ = fn, ctx_ = ctx;  // no helper reads them: the previous call's chunks are all done
        done_.store(0, std::memory_order_relaxed);
        ticket_.store(static_cast<std::uint64_t>(count) << count_shift, std::memory_order_release);
        while (take(front_one)) {}
        while (done_.load(std::memory_order_acquire) != count) relax();
    }

    /// Helper: posted chunks first, then one `background()` chunk at a time
    /// (it returns false when it has none left), until the leader retires.
    template <class Background>
    void help(Background&& background) {
        for (bool more = true;;) {
            if (take(back_one)) continue;
            if (more && (more = background())) continue;
            if (retired_.load(std::memory_order_acquire)) return;
            relax();
        }
    }

    /// Leader: no more run() calls; helpers return once their background is done.
    void retire() noexcept { retired_.store(true, std::memory_order_release); }

private:
    // ticket: chunks taken from the back (bits 0-20), from the front (21-41), chunk count (42-63)
    static constexpr int count_shift = 42;
    static constexpr std::uint64_t field = std::uint64_t{1} << 20;  // counts stay below 2^21 with the takes past the end
    static constexpr std::uint64_t back_one = 1, front_one = std::uint64_t{1} << 21, low = (std::uint64_t{1} << 21) - 1;
    /// Takes and runs one posted chunk from one end; false when none is left.
    bool take(std::uint64_t end) {
        if (!open(ticket_.load(std::memory_order_relaxed))) return false;
        const std::uint64_t t = ticket_.fetch_add(end, std::memory_order_acq_rel);
        if (!open(t)) return false;
        const std::uint64_t chunk = end == front_one ? (t >> 21 & low) : (t >> count_shift) - 1 - (t & low);
        fn_(ctx_, static_cast<index>(chunk));
        done_.fetch_add(1, std::memory_order_release);
        return true;
    }
    static bool open(std::uint64_t t) noexcept { return (t & low) + (t >> 21 & low) < (t >> count_shift); }

    std::atomic<std::uint64_t> ticket_{0};
    std::atomic<index> done_{0};
    std::atomic<bool> retired_{false};
    chunk_fn fn_ = nullptr;
    const void* ctx_ = nullptr;
};

/// One task that whichever thread comes first runs: a helper, as background
/// work, or the thread that needs its result, when no helper has begun it.
/// psap::pruner's step runs the schedule's prepare() this way.
class side_task {
public:
    /// Runs f() here unless another thread has begun it; false if one has.
    template <class F>
    bool try_run(F& f) noexcept {
        int free = 0;
        if (state_.load(std::memory_order_relaxed) != 0 || !state_.compare_exchange_strong(free, 1, std::memory_order_acquire))
            return false;
        try {
            f();
        } catch (...) {
            error_ = std::current_exception();
        }
        state_.store(2, std::memory_order_release);
        return true;
    }
    /// Runs f() here unless another thread has begun it, then waits until it
    /// is done; rethrows what f() threw, on whichever thread.
    template <class F>
    void run_or_wait(F& f) {
        if (!try_run(f))
            while (state_.load(std::memory_order_acquire) != 2) relax();
        if (error_) std::rethrow_exception(error_);
    }

private:
    std::atomic<int> state_{0};  // 0 free, 1 running, 2 done
    std::exception_ptr error_;
};

/// The shared_work this thread leads, if any (set by psap::pruner's step).
inline shared_work*& led_work() noexcept {
    static thread_local shared_work* w = nullptr;
    return w;
}

/// Sets led_work() for a scope.
class leading {
public:
    explicit leading(shared_work& w) noexcept : previous_(std::exchange(led_work(), &w)) {}
    ~leading() { led_work() = previous_; }
    leading(const leading&) = delete;
    leading& operator=(const leading&) = delete;

private:
    shared_work* previous_;
};

/// Calls body(k, i0, i1) for rows [i0, i1) of every view k < views, where view
/// k has rows_of(k) rows of cost_of(k) >= 1 elements each. Serial, or one
/// parallel region in which thread t takes the rows that start in the t-th
/// equal slice of the total cost (a static split: no row is shared), or, on
/// a thread leading a shared_work, ~16K-element slices that the leader takes
/// from the front and its helpers from the back.
template <class RowsOf, class CostOf, class Body>
void for_rows(std::size_t views, RowsOf rows_of, CostOf cost_of, Body body) {
    index total = 0;
    for (std::size_t k = 0; k < views; ++k) total += rows_of(k) * cost_of(k);
    // Slice t of nt: the rows whose first element's offset lies in the t-th equal share of the cost.
    const auto slice = [&](index t, index nt) {
        const index lo = total / nt * t + std::min<index>(t, total % nt);
        const index hi = lo + total / nt + (t < total % nt ? 1 : 0);
        index base = 0;
        for (std::size_t k = 0; k < views && base < hi; ++k) {
            const index r = rows_of(k), c = cost_of(k), size = r * c;
            if (base + size > lo && r > 0) {
                const index i0 = lo <= base ? 0 : (lo - base + c - 1) / c;
                const index i1 = hi >= base + size ? r : (hi - base + c - 1) / c;
                if (i0 < i1) body(k, i0, i1);
            }
            base += size;
        }
    };
    if (shared_work* w = led_work(); w && total >= cpu_threading::get().min_parallel_work) {
        // Chunks of ~16K elements: the leader takes them from the front, its helpers from the back.
        constexpr index chunk = index{1} << 14;
        const index n = std::min<index>((total + chunk - 1) / chunk, index{1} << 12);
        struct job {
            const decltype(slice)* run;
            index n;
        } j{&slice, n};
        w->run([](const void* c, index t) { const auto* jj = static_cast<const job*>(c); (*jj->run)(t, jj->n); }, &j, n);
        return;
    }
    const int team = cpu_threading::team_for(total);
    if (team <= 1) {
        for (std::size_t k = 0; k < views; ++k)
            if (rows_of(k) > 0) body(k, index{0}, rows_of(k));
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(team)
    slice(omp_get_thread_num(), omp_get_num_threads());
#endif
}

inline constexpr int lanes = reduce::lanes;

/// out[r] = psap::reduce::binary(x row r, y row r, op) for R row pairs with
/// contiguous columns: the rows' accumulators interleave (independent add
/// chains), each row's in the canonical order (element j to lane j % 8, the
/// same rounding, then combine). xs, ys: row strides; xs = 0 pairs the one
/// row x with every row of y.
template <int R, class T, class U, class Op>
inline void binary_rows(const T* x, index xs, const U* y, index ys, index n, Op op, double* out) {
    constexpr bool nr = reduce::narrow<T> && reduce::narrow<U>;
    double acc[R][lanes] = {};
    index j = 0;
    for (; j + lanes <= n; j += lanes)
        for (int r = 0; r < R; ++r)
            for (int l = 0; l < lanes; ++l) acc[r][l] = reduce::add<nr>(acc[r][l], double(x[r * xs + j + l]), double(y[r * ys + j + l]), op);
    const index rest = n - j;
    for (int r = 0; r < R; ++r)
        for (int l = 0; l < lanes; ++l)
            if (l < rest) acc[r][l] = reduce::add<nr>(acc[r][l], double(x[r * xs + j + l]), double(y[r * ys + j + l]), op);
    for (int r = 0; r < R; ++r) out[r] = reduce::combine(acc[r]);
}

#if defined(__AVX__) && (defined(__x86_64__) || defined(__i386__))
// x86 vector form of the canonical order, written with intrinsics: GCC
// lowers a generic float4 -> double4 conversion to two 128-bit converts and
// an insert, which made the norm pass 2.4x slower per byte than a read pass.
// Eight float values are widened at a time; lane l of the canonical order is
// element l of the 8-double accumulator (one AVX-512 register, or two AVX
// ones). Every value added is exact in double (a float, its absolute value, a
// product of two floats, a float difference squared), so fused and unfused
// multiply-adds give psap::reduce's sums bit for bit.
#define PSAP_CPU_SIMD 1
// PSAP_CPU_SIMD_WIDTH (512 or 256) picks the register width of the widening
// kernels when AVX-512 is there. Zen 4 splits a 512-bit float->double convert
// over its 256-bit units: the 256-bit form of the same order ran the norm
// pass in 24.5 us instead of 30.2 (ResNet-56's conv1s, docs/benchmarks.md).
// Elsewhere, and on Zen 5's full-width units, 512 bits: there the L1 norm
// pass ran 20-25% and FPGM's distances 35% faster than with 256. -march=native
// names the CPU the compiler knows: GCC 12 calls Zen 4 and Zen 5 znver3,
// GCC 13 calls Zen 5 znver4, and of these only Zen 5 has AVX512_VP2INTERSECT.
#if !defined(PSAP_CPU_SIMD_WIDTH)
#if defined(__AVX512F__) && (!(defined(__znver3__) || defined(__znver4__)) || defined(__AVX512VP2INTERSECT__))
#define PSAP_CPU_SIMD_WIDTH 512
#else
#define PSAP_CPU_SIMD_WIDTH 256
#endif
#endif
namespace simd {
#if defined(__AVX512F__) && PSAP_CPU_SIMD_WIDTH == 512
struct d8 {
    __m512d v;
};
inline d8 zero() { return {_mm512_setzero_pd()}; }
// The zero-masked convert: GCC 12's plain _mm512_cvtps_pd trips
// -Wmaybe-uninitialized on its undefined pass-through operand.
inline __m512d widen8(__m256 x) { return _mm512_maskz_cvtps_pd(__mmask8(0xff), x); }
inline d8 widen(const float* p) { return {widen8(_mm256_loadu_ps(p))}; }
inline d8 widen_difference(const float* p, const float* q) { return {widen8(_mm256_sub_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(q)))}; }
inline d8 multiply_add(d8 a, d8 b, d8 acc) { return {_mm512_fmadd_pd(a.v, b.v, acc.v)}; }
inline d8 add_absolute(d8 acc, d8 a) { return {_mm512_add_pd(acc.v, _mm512_abs_pd(a.v))}; }
inline void store(double* out, d8 a) { _mm512_storeu_pd(out, a.v); }
#else
struct d8 {
    __m256d lo, hi;
};
inline d8 zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
inline d8 widen(const float* p) { return {_mm256_cvtps_pd(_mm_loadu_ps(p)), _mm256_cvtps_pd(_mm_loadu_ps(p + 4))}; }
inline d8 widen_difference(const float* p, const float* q) {
    return {_mm256_cvtps_pd(_mm_sub_ps(_mm_loadu_ps(p), _mm_loadu_ps(q))),
            _mm256_cvtps_pd(_mm_sub_ps(_mm_loadu_ps(p + 4), _mm_loadu_ps(q + 4)))};
}
inline __m256d multiply_add(__m256d a, __m256d b, __m256d acc) {
#if defined(__FMA__)
    return _mm256_fmadd_pd(a, b, acc);
#else
    return _mm256_add_pd(_mm256_mul_pd(a, b), acc);
#endif
}
inline d8 multiply_add(d8 a, d8 b, d8 acc) { return {multiply_add(a.lo, b.lo, acc.lo), multiply_add(a.hi, b.hi, acc.hi)}; }
inline d8 add_absolute(d8 acc, d8 a) {
    const __m256d mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    return {_mm256_add_pd(acc.lo, _mm256_and_pd(a.lo, mask)), _mm256_add_pd(acc.hi, _mm256_and_pd(a.hi, mask))};
}
inline void store(double* out, d8 a) {
    _mm256_storeu_pd(out, a.lo);
    _mm256_storeu_pd(out + 4, a.hi);
}
#endif
}  // namespace simd

/// The vector form of each canonical op (absent: the scalar loop serves it):
/// acc + op(x[0..8), y[0..8)) per lane.
template <class Op>
struct simd_op;
template <>
struct simd_op<reduce::unary_as_binary<reduce::square>> {
    static simd::d8 step(simd::d8 acc, const float* x, const float*) {
        const simd::d8 a = simd::widen(x);
        return simd::multiply_add(a, a, acc);
    }
};
template <>
struct simd_op<reduce::unary_as_binary<reduce::absolute>> {
    // |x| clears the sign bit, also of -0; acc starts at +0 and +0 + -0 = +0,
    // so the sums equal reduce::absolute's (which keeps -0).
    static simd::d8 step(simd::d8 acc, const float* x, const float*) { return simd::add_absolute(acc, simd::widen(x)); }
};
template <>
struct simd_op<reduce::product> {
    static simd::d8 step(simd::d8 acc, const float* x, const float* y) {
        return simd::multiply_add(simd::widen(x), simd::widen(y), acc);
    }
};
template <>
struct simd_op<reduce::squared_difference> {
    static simd::d8 step(simd::d8 acc, const float* x, const float* y) {
        const simd::d8 d = simd::widen_difference(x, y);  // double(float(a) - float(b))
        return simd::multiply_add(d, d, acc);
    }
};
template <class T, class U, class Op>
inline constexpr bool has_simd = std::same_as<std::remove_const_t<T>, float> && std::same_as<std::remove_const_t<U>, float> &&
                                 requires { simd_op<Op>::step; };

/// binary_rows for float rows with a vector form of op: the same sums.
template <int R, class Op>
inline void simd_rows(const float* x, index xs, const float* y, index ys, index n, Op op, double* out) {
    simd::d8 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero();
    index j = 0;
    for (; j + lanes <= n; j += lanes)
        for (int r = 0; r < R; ++r) acc[r] = simd_op<Op>::step(acc[r], x + r * xs + j, y + r * ys + j);
    const index rest = n - j;
    for (int r = 0; r < R; ++r) {
        double a[lanes];
        simd::store(a, acc[r]);
        for (int l = 0; l < lanes; ++l)
            if (l < rest) a[l] = reduce::add<true>(a[l], double(x[r * xs + j + l]), double(y[r * ys + j + l]), op);
        out[r] = reduce::combine(a);
    }
}
#else
template <class T, class U, class Op>
inline constexpr bool has_simd = false;
#endif

/// R rows (row pairs) in the canonical order: the vector kernel where there is one.
template <int R, class T, class U, class Op>
inline void rows(const T* x, index xs, const U* y, index ys, index n, Op op, double* out) {
#if defined(PSAP_CPU_SIMD)
    if constexpr (has_simd<T, U, Op>) {
        simd_rows<R>(x, xs, y, ys, n, op, out);
        return;
    }
#endif
    binary_rows<R>(x, xs, y, ys, n, op, out);
}

/// `count` rows (row pairs) with contiguous columns, in blocks of four whose
/// accumulators interleave (independent multiply-add chains hide their
/// latency). Blocks of eight ran slower on the vector paths, in L1 and
/// from L3 alike: eight interleaved row streams are more than the hardware
/// prefetchers follow well, and with AVX2's 16 registers their 16
/// accumulators spill (docs/benchmarks.md).
template <class T, class U, class Op>
inline void blocked_rows(const T* x, index xs, const U* y, index ys, index count, index n, Op op, double* out) {
    index i = 0;
    for (; i + 4 <= count; i += 4) rows<4>(x + i * xs, xs, y + i * ys, ys, n, op, out + i);
    for (; i < count; ++i) rows<1>(x + i * xs, 0, y + i * ys, 0, n, op, out + i);
}

/// Rows [i0, i1) of a row reduction into out[i0 .. i1).
template <class T, class Op>
void reduce_rows(matrix_view<T> w, index i0, index i1, Op op, double* out) {
    const reduce::unary_as_binary<Op> u{op};
    if (w.col_stride() == 1) {
        blocked_rows(w.row_data(i0), w.row_stride(), w.row_data(i0), w.row_stride(), i1 - i0, w.cols(), u, out + i0);
    } else {
        for (index i = i0; i < i1; ++i) out[i] = reduce::unary(w.row_data(i), w.col_stride(), w.cols(), op);
    }
}

template <class T>
void dot_rows(matrix_view<T> a, matrix_view<T> b, index i0, index i1, double* out) {
    if (a.col_stride() == 1 && b.col_stride() == 1) {
        blocked_rows(a.row_data(i0), a.row_stride(), b.row_data(i0), b.row_stride(), i1 - i0, a.cols(), reduce::product{}, out + i0);
    } else {
        for (index i = i0; i < i1; ++i)
            out[i] = reduce::binary(a.row_data(i), a.col_stride(), b.row_data(i), b.col_stride(), a.cols(), reduce::product{});
    }
}

/// Row i of the n x n distance matrix, pairs (i, j > i), mirrored to (j, i); 0 on the diagonal.
template <class T>
void distance_row(matrix_view<T> w, index i, double* out) {
    const index n = w.rows();
    out[i * n + i] = 0.0;
    index j = i + 1;
    double d[4];
    if (w.col_stride() == 1) {
        for (; j + 4 <= n; j += 4) {
            rows<4>(w.row_data(i), 0, w.row_data(j), w.row_stride(), w.cols(), reduce::squared_difference{}, d);
            for (int r = 0; r < 4; ++r) out[i * n + j + r] = out[(j + r) * n + i] = d[r];
        }
    }
    for (; j < n; ++j) {
        const double v = reduce::binary(w.row_data(i), w.col_stride(), w.row_data(j), w.col_stride(), w.cols(), reduce::squared_difference{});
        out[i * n + j] = out[j * n + i] = v;
    }
}

/// x[i] = sqrt(x[i]). Vector square roots are correctly rounded, like
/// std::sqrt, so the values are the same bit for bit; compilers that honour
/// errno do not vectorise std::sqrt themselves, and the scalar root's
/// throughput was most of lp_norm::score.
inline void sqrt_each(std::span<double> x) {
    std::size_t i = 0;
#if defined(PSAP_CPU_SIMD)
    for (; i + 4 <= x.size(); i += 4) _mm256_storeu_pd(x.data() + i, _mm256_sqrt_pd(_mm256_loadu_pd(x.data() + i)));
#endif
    for (; i < x.size(); ++i) x[i] = std::sqrt(x[i]);
}

/// out[i] += |gamma[i]| * norm[i] / sqrt(max(var[i], 0) + eps), var = 1 when
/// `var` is empty: a filter norm scaled by the batch norm that follows it.
/// gamma and var are read where they lie (host views of floats or doubles,
/// any stride): a float widens to double exactly, so the values are those
/// of double copies. The same operations in the same order as the scalar
/// loop (IEEE: the same values); max(0, v) keeps std::max(v, 0.0)'s NaN and -0.
template <class T>
void add_bn_folded(std::span<double> out, vector_view<T> gamma, std::span<const double> norm, vector_view<T> var, double eps) {
    std::size_t i = 0;
#if defined(PSAP_CPU_SIMD)
    using V = std::remove_const_t<T>;
    if constexpr (std::same_as<V, float> || std::same_as<V, double>) {
        if (gamma.stride() == 1 && (var.empty() || var.stride() == 1)) {
            const auto load = [](const V* p) {
                if constexpr (std::same_as<V, float>)
                    return _mm256_cvtps_pd(_mm_loadu_ps(p));
                else
                    return _mm256_loadu_pd(p);
            };
            const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd(), e = _mm256_set1_pd(eps), one = _mm256_set1_pd(1.0);
            for (; i + 4 <= out.size(); i += 4) {
                const __m256d a = _mm256_andnot_pd(sign, load(gamma.data() + i));
                const __m256d w = var.empty() ? one : _mm256_max_pd(zero, load(var.data() + i));  // 0 > v ? 0 : v
                const __m256d t = _mm256_div_pd(_mm256_mul_pd(a, _mm256_loadu_pd(norm.data() + i)), _mm256_sqrt_pd(_mm256_add_pd(w, e)));
                _mm256_storeu_pd(out.data() + i, _mm256_add_pd(_mm256_loadu_pd(out.data() + i), t));
            }
        }
    }
#endif
    for (; i < out.size(); ++i) {
        const auto k = static_cast<index>(i);
        out[i] += std::abs(double(gamma[k])) * norm[i] / std::sqrt(std::max(var.empty() ? 1.0 : double(var[k]), 0.0) + eps);
    }
}
/// The same over double copies (device networks' batch norms, read to the host).
inline void add_bn_folded(std::span<double> out, std::span<const double> gamma, std::span<const double> norm,
                          std::span<const double> var, double eps) {
    const auto view = [](std::span<const double> x) { return vector_view<const double>(x.data(), static_cast<index>(x.size())); };
    add_bn_folded(out, view(gamma), norm, var.empty() ? vector_view<const double>() : view(var), eps);
}

/// True when every element of the row is finite: x * 0 is (+-)0 for a finite
/// x and NaN otherwise; lanes keep it free of one long dependency chain.
template <int L = 128, class T>
bool row_finite(const T* x, index stride, index n) {
    if (stride != 1) {
        for (index j = 0; j < n; ++j)
            if (!std::isfinite(static_cast<double>(x[j * stride]))) return false;
        return true;
    }
    using V = std::remove_const_t<T>;  // L: lanes, 128 = 8 vector registers of independent (fused) multiply-add chains
    V acc[L] = {};
    index j = 0;
    for (; j + L <= n; j += L)
        for (int l = 0; l < L; ++l) acc[l] += x[j + l] * V(0);
    // the tail (< L values, all of a short vector) one lane each: no add chain
    for (index l = 0; l < n - j; ++l) acc[l] += x[j + l] * V(0);
    if constexpr (std::same_as<V, float> || std::same_as<V, double>) {
        // Every lane is +0 or NaN: OR their bits (a vector reduction, where
        // comparing lane by lane cost ~60 ns a call, ~9% of the scan).
        using U = std::conditional_t<std::same_as<V, float>, std::uint32_t, std::uint64_t>;
        U bits = 0;
        for (int l = 0; l < L; ++l) bits |= std::bit_cast<U>(acc[l]) & (~U(0) >> 1);
        return bits == 0;
    } else {
        bool ok = true;
        for (int l = 0; l < L; ++l) ok = ok && acc[l] == V(0);
        return ok;
    }
}

/// True when every one of n contiguous values is finite, for short vectors
/// (BN parameters): the largest magnitude's bits against the exponent of
/// Inf, one max per value and no early exit, so the loads of a hundred
/// vectors overlap. A third of row_finite's time on ResNet-56's BN vectors.
template <class T>
bool short_finite(const T* x, index n) {
    using V = std::remove_const_t<T>;
    if constexpr (std::same_as<V, float> || std::same_as<V, double>) {
        using U = std::conditional_t<std::same_as<V, float>, std::uint32_t, std::uint64_t>;
        constexpr U magnitude = ~U(0) >> 1;
        constexpr U inf = std::bit_cast<U>(std::numeric_limits<V>::infinity());
        U m = 0;
        for (index j = 0; j < n; ++j) m = std::max(m, U(std::bit_cast<U>(x[j]) & magnitude));
        return m < inf;
    } else {
        return row_finite(x, 1, n);
    }
}

/// rows_of / cost_of for spans of matrix views.
template <class M>
auto rows_in(std::span<const M> ws) {
    return [ws](std::size_t k) { return ws[k].rows(); };
}
template <class M>
auto cols_in(std::span<const M> ws) {
    return [ws](std::size_t k) { return ws[k].cols() > 0 ? ws[k].cols() : index{1}; };
}

}  // namespace cpu_detail

struct cpu_backend {
    template <class T>
    using buffer = std::vector<T>;

    // ------------------------------------------------------------ reductions

    /// out[i] = sum_j op(w(i, j)) for every row i.
    template <class T, class Op>
    static void row_reduce(matrix_view<T> w, std::span<double> out, Op op) {
        const std::span<double> outs[1] = {out};
        row_reduce_batch(std::span<const matrix_view<T>>(&w, 1), std::span<const std::span<double>>(outs), op);
    }
    /// row_reduce for every view k into outs[k]: one parallel region for the batch.
    template <class T, class Op>
    static void row_reduce_batch(std::span<const matrix_view<T>> ws, std::span<const std::span<double>> outs, Op op) {
        check_batch(ws.size(), outs.size(), "row_reduce_batch");
        for (std::size_t k = 0; k < ws.size(); ++k) check_rows(ws[k].rows(), outs[k].size(), "row_reduce");
        cpu_detail::for_rows(ws.size(), cpu_detail::rows_in(ws), cpu_detail::cols_in(ws),
                             [&](std::size_t k, index i0, index i1) { cpu_detail::reduce_rows(ws[k], i0, i1, op, outs[k].data()); });
    }

    template <class T>
    static void row_sq_norms(matrix_view<T> w, std::span<double> out) {
        row_reduce(w, out, reduce::square{});
    }
    template <class T>
    static void row_abs_sums(matrix_view<T> w, std::span<double> out) {
        row_reduce(w, out, reduce::absolute{});
    }
    template <class T>
    static void row_sq_norms_batch(std::span<const matrix_view<T>> ws, std::span<const std::span<double>> outs) {
        row_reduce_batch(ws, outs, reduce::square{});
    }
    template <class T>
    static void row_abs_sums_batch(std::span<const matrix_view<T>> ws, std::span<const std::span<double>> outs) {
        row_reduce_batch(ws, outs, reduce::absolute{});
    }

    /// out[i] = <a(i, :), b(i, :)>.
    template <class T>
    static void row_dots(matrix_view<T> a, matrix_view<T> b, std::span<double> out) {
        const std::span<double> outs[1] = {out};
        row_dots_batch(std::span<const matrix_view<T>>(&a, 1), std::span<const matrix_view<T>>(&b, 1), std::span<const std::span<double>>(outs));
    }
    /// row_dots(as[k], bs[k], outs[k]) for every k: one parallel region.
    template <class T>
    static void row_dots_batch(std::span<const matrix_view<T>> as, std::span<const matrix_view<T>> bs, std::span<const std::span<double>> outs) {
        check_batch(as.size(), bs.size(), "row_dots_batch");
        check_batch(as.size(), outs.size(), "row_dots_batch");
        for (std::size_t k = 0; k < as.size(); ++k) {
            if (as[k].rows() != bs[k].rows() || as[k].cols() != bs[k].cols())
                detail::fail("psap::cpu_backend::row_dots: shapes ", as[k].rows(), "x", as[k].cols(), " and ", bs[k].rows(), "x",
                             bs[k].cols(), " differ");
            check_rows(as[k].rows(), outs[k].size(), "row_dots");
        }
        cpu_detail::for_rows(as.size(), cpu_detail::rows_in(as), cpu_detail::cols_in(as),
                             [&](std::size_t k, index i0, index i1) { cpu_detail::dot_rows(as[k], bs[k], i0, i1, outs[k].data()); });
    }

    /// out (n x n, row-major) = squared Euclidean distances between rows.
    template <class T>
    static void pairwise_sq_distances(matrix_view<T> w, std::span<double> out) {
        const std::span<double> outs[1] = {out};
        pairwise_sq_distances_batch(std::span<const matrix_view<T>>(&w, 1), std::span<const std::span<double>>(outs));
    }
    /// pairwise_sq_distances(ws[k], outs[k]) for every k: one parallel region
    /// over the rows of all views (row i computes the pairs (i, j > i)).
    template <class T>
    static void pairwise_sq_distances_batch(std::span<const matrix_view<T>> ws, std::span<const std::span<double>> outs) {
        check_batch(ws.size(), outs.size(), "pairwise_sq_distances_batch");
        for (std::size_t k = 0; k < ws.size(); ++k) {
            const index n = ws[k].rows();
            if (static_cast<index>(outs[k].size()) != n * n)
                detail::fail("psap::cpu_backend::pairwise_sq_distances: output holds ", outs[k].size(), " values, need ", n * n);
        }
        // Row i costs (n - 1 - i) * cols; the split uses the mean, (n - 1) / 2 * cols per row,
        // and pairs rows i and n - 1 - i so both halves of the triangle are shared.
        auto rows = [&](std::size_t k) { return ws[k].rows(); };
        auto cost = [&](std::size_t k) {
            const index c = (ws[k].rows() / 2) * (ws[k].cols() > 0 ? ws[k].cols() : 1);
            return c > 0 ? c : index{1};
        };
        cpu_detail::for_rows(ws.size(), rows, cost, [&](std::size_t k, index i0, index i1) {
            const index n = ws[k].rows();
            for (index i = i0; i < i1; ++i) {
                // rows are visited as 0, n-1, 1, n-2, ...: slot i -> row i/2 or n-1-i/2
                const index r = (i % 2 == 0) ? i / 2 : n - 1 - i / 2;
                cpu_detail::distance_row(ws[k], r, outs[k].data());
            }
        });
    }

    /// Per-entry values of a channel vector, widened to double.
    template <class T>
    static void read(vector_view<T> v, std::span<double> out) {
        check_rows(v.size(), out.size(), "read");
        for (index i = 0; i < v.size(); ++i) out[i] = static_cast<double>(v[i]);
    }
    /// read(vs[k], outs[k]) for every k.
    template <class T>
    static void read_batch(std::span<const vector_view<T>> vs, std::span<const std::span<double>> outs) {
        check_batch(vs.size(), outs.size(), "read_batch");
        for (std::size_t k = 0; k < vs.size(); ++k) read(vs[k], outs[k]);
    }
    /// acc[i] += |v[i]| (or v[i] when signed) for every channel: one observe() call.
    template <class T>
    static void accumulate(vector_view<T> v, std::span<double> acc, bool absolute) {
        check_rows(v.size(), acc.size(), "accumulate");
        for (index i = 0; i < v.size(); ++i) {
            const double x = static_cast<double>(v[i]);
            acc[i] += absolute ? std::abs(x) : x;
        }
    }

    /// Number of elements with |w| < threshold in each row.
    template <class T>
    static void row_count_below(matrix_view<T> w, double threshold, std::span<double> out) {
        const std::span<double> outs[1] = {out};
        row_count_below_batch(std::span<const matrix_view<T>>(&w, 1), std::span<const double>(&threshold, 1),
                              std::span<const std::span<double>>(outs));
    }
    /// row_count_below(ws[k], thresholds[k], outs[k]) for every k: one parallel region.
    template <class T>
    static void row_count_below_batch(std::span<const matrix_view<T>> ws, std::span<const double> thresholds,
                                      std::span<const std::span<double>> outs) {
        check_batch(ws.size(), outs.size(), "row_count_below_batch");
        check_batch(ws.size(), thresholds.size(), "row_count_below_batch");
        for (std::size_t k = 0; k < ws.size(); ++k) check_rows(ws[k].rows(), outs[k].size(), "row_count_below");
        cpu_detail::for_rows(ws.size(), cpu_detail::rows_in(ws), cpu_detail::cols_in(ws), [&](std::size_t k, index i0, index i1) {
            const auto& w = ws[k];
            for (index i = i0; i < i1; ++i) {
                index c = 0;
                for (index j = 0; j < w.cols(); ++j) c += std::abs(static_cast<double>(w(i, j))) < thresholds[k];
                outs[k][static_cast<std::size_t>(i)] = static_cast<double>(c);
            }
        });
    }

    /// Index of the first row holding a NaN or Inf, or -1.
    template <class T>
    static index first_nonfinite_row(matrix_view<T> w) {
        index r = -1;
        first_nonfinite_rows(std::span<const matrix_view<T>>(&w, 1), std::span<index>(&r, 1));
        return r;
    }
    /// out[k] = first_nonfinite_row(ws[k]) for every k: one parallel region.
    template <class T>
    static void first_nonfinite_rows(std::span<const matrix_view<T>> ws, std::span<index> out) {
        check_batch(ws.size(), out.size(), "first_nonfinite_rows");
        for (auto& r : out) r = -1;
        cpu_detail::for_rows(ws.size(), cpu_detail::rows_in(ws), cpu_detail::cols_in(ws), [&](std::size_t k, index i0, index i1) {
            const auto& w = ws[k];
            // Rows stored back to back are one run: scan it at once, and row
            // by row only when it holds a non-finite value.
            if (w.col_stride() == 1 && w.row_stride() == w.cols() && cpu_detail::row_finite(w.row_data(i0), 1, (i1 - i0) * w.cols()))
                return;
            for (index i = i0; i < i1; ++i)
                if (!cpu_detail::row_finite(w.row_data(i), w.col_stride(), w.cols())) {
                    // rare: the lowest row over the threads that found one
                    PSAP_OMP(critical(psap_first_nonfinite))
                    if (out[k] < 0 || i < out[k]) out[k] = i;
                    break;
                }
        });
    }
    template <class T>
    static index first_nonfinite(vector_view<T> v) {
        if (v.stride() == 1 ? cpu_detail::short_finite(v.data(), v.size()) : cpu_detail::row_finite(v.data(), v.stride(), v.size()))
            return -1;
        for (index i = 0; i < v.size(); ++i)
            if (!std::isfinite(static_cast<double>(v[i]))) return i;
        return -1;
    }
    /// out[k] = first_nonfinite(vs[k]) for every k.
    template <class T>
    static void first_nonfinite_batch(std::span<const vector_view<T>> vs, std::span<index> out) {
        check_batch(vs.size(), out.size(), "first_nonfinite_batch");
        for (std::size_t k = 0; k < vs.size(); ++k) out[k] = first_nonfinite(vs[k]);
    }

    // ------------------------------------------------------------ writes

    template <class T>
    static void set_entries(vector_view<T> v, std::span<const index> which, T value) {
        // Only entries that differ (bit for bit) are written: gating writes
        // the same zeros at every step, and a write to a line another core
        // has read costs a transfer where a compare costs nothing.
        for (index i : which)
            if (std::memcmp(&v[i], &value, sizeof(T)) != 0) v[i] = value;
    }
    template <class T>
    static void scale_entries(vector_view<T> v, std::span<const index> which, T factor) {
        for (index i : which) v[i] *= factor;
    }

    /// grad[i] += lambda * sign(value[i]): the L1 subgradient (Network Slimming).
    template <class T>
    static void add_scaled_sign(vector_view<T> grad, vector_view<T> value, T lambda) {
        for (index i = 0; i < grad.size(); ++i) grad[i] += lambda * static_cast<T>((value[i] > 0) - (value[i] < 0));
    }

    /// Row operations used by the reconstruction policies.
    template <class T>
    static void scale_rows(matrix_view<T> w, std::span<const index> rows, T factor) {
        for (index r : rows) {
            T* x = w.row_data(r);
            for (index j = 0; j < w.cols(); ++j) x[j * w.col_stride()] *= factor;
        }
    }
    template <class T>
    static void zero_rows(matrix_view<T> w, std::span<const index> rows) {
        const std::span<const index> lists[1] = {rows};
        zero_rows_batch(std::span<const matrix_view<T>>(&w, 1), std::span<const std::span<const index>>(lists));
    }
    /// zero_rows(ws[k], rows[k]) for every k: one parallel region over the listed rows.
    template <class T>
    static void zero_rows_batch(std::span<const matrix_view<T>> ws, std::span<const std::span<const index>> rows) {
        check_batch(ws.size(), rows.size(), "zero_rows_batch");
        for (std::size_t k = 0; k < ws.size(); ++k) check_list(rows[k], ws[k].rows(), "zero_rows");
        cpu_detail::for_rows(
            ws.size(), [&](std::size_t k) { return static_cast<index>(rows[k].size()); }, cpu_detail::cols_in(ws),
            [&](std::size_t k, index i0, index i1) {
                const auto& w = ws[k];
                for (index i = i0; i < i1; ++i) {
                    T* x = w.row_data(rows[k][static_cast<std::size_t>(i)]);
                    for (index j = 0; j < w.cols(); ++j) x[j * w.col_stride()] = T(0);
                }
            });
    }
    /// dst(r, :) = src(r, :) for the listed rows (snapshots and restores).
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_rows(matrix_view<S> src, matrix_view<T> dst, std::span<const index> rows) {
        const std::span<const index> lists[1] = {rows};
        copy_rows_batch(std::span<const matrix_view<S>>(&src, 1), std::span<const matrix_view<T>>(&dst, 1),
                        std::span<const std::span<const index>>(lists));
    }
    /// copy_rows(src[k], dst[k], rows[k]) for every k: one parallel region over the listed rows.
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_rows_batch(std::span<const matrix_view<S>> src, std::span<const matrix_view<T>> dst,
                                std::span<const std::span<const index>> rows) {
        check_batch(src.size(), dst.size(), "copy_rows_batch");
        check_batch(src.size(), rows.size(), "copy_rows_batch");
        for (std::size_t k = 0; k < src.size(); ++k) {
            if (src[k].rows() != dst[k].rows() || src[k].cols() != dst[k].cols())
                detail::fail("psap::cpu_backend::copy_rows: shapes ", src[k].rows(), "x", src[k].cols(), " and ", dst[k].rows(), "x",
                             dst[k].cols(), " differ");
            check_list(rows[k], src[k].rows(), "copy_rows");
        }
        cpu_detail::for_rows(
            src.size(), [&](std::size_t k) { return static_cast<index>(rows[k].size()); }, cpu_detail::cols_in(src),
            [&](std::size_t k, index i0, index i1) {
                const auto& s = src[k];
                const auto& d = dst[k];
                for (index i = i0; i < i1; ++i) {
                    const index r = rows[k][static_cast<std::size_t>(i)];
                    const S* x = s.row_data(r);
                    T* y = d.row_data(r);
                    if (s.col_stride() == 1 && d.col_stride() == 1) {
                        for (index j = 0; j < s.cols(); ++j) y[j] = x[j];
                    } else {
                        for (index j = 0; j < s.cols(); ++j) y[j * d.col_stride()] = x[j * s.col_stride()];
                    }
                }
            });
    }
    /// dst[i] = src[i] for the listed entries.
    template <class S, class T>
        requires std::same_as<std::remove_const_t<S>, T>
    static void copy_entries(vector_view<S> src, vector_view<T> dst, std::span<const index> which) {
        for (index i : which) dst[i] = src[i];
    }

private:
    static void check_rows(index rows, std::size_t out, const char* what) {
        if (static_cast<index>(out) != rows)
            detail::fail("psap::cpu_backend::", what, ": output holds ", out, " values for ", rows, " rows");
    }
    static void check_batch(std::size_t a, std::size_t b, const char* what) {
        if (a != b) detail::fail("psap::cpu_backend::", what, ": ", a, " views but ", b, " outputs or lists");
    }
    static void check_list(std::span<const index> rows, index bound, const char* what) {
        for (index r : rows)
            if (r < 0 || r >= bound) detail::fail("psap::cpu_backend::", what, ": row ", r, " is outside [0, ", bound, ")");
    }
};

/// The backend that serves views tagged with memory space M.
template <memory_space M>
struct backend_for;
template <>
struct backend_for<host_memory> {
    using type = cpu_backend;
};
template <memory_space M>
using backend_t = typename backend_for<M>::type;

}  // namespace psap
