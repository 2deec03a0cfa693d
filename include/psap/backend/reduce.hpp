#pragma once
/// \file reduce.hpp
/// The one summation order every backend uses for per-filter reductions, so
/// that CPU and GPU scores are bitwise identical and decisions never depend
/// on hardware order.
///
/// Values are widened to double before any arithmetic: the product of two
/// floats is exact in double, so fused and unfused multiply-adds round the
/// same way. Products of wider inputs (double) are not exact, so whether a
/// compiler fuses them into the add would change the sum: for those the
/// multiply-add is fused explicitly (fma), on every backend. Element j goes to
/// lane j % 8; lanes are combined in a fixed tree.
/// Host and device code include this header (no Eigen, no std containers).

#if defined(__CUDACC__)
#define PSAP_HOST_DEVICE __host__ __device__
#else
#define PSAP_HOST_DEVICE
#endif

#include <cmath>

namespace psap::reduce {

inline constexpr int lanes = 8;

PSAP_HOST_DEVICE inline double combine(const double* a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/// a * b + c rounded once.
PSAP_HOST_DEVICE inline double fused(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
    return fma(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

/// True when every value of T is exactly a float (products of two are exact in double).
template <class T>
inline constexpr bool narrow = sizeof(T) <= sizeof(float);

/// acc + op(a, b) in the canonical rounding: ops whose value is a product of
/// inputs wider than float (they declare `fma(acc, a, b)`) fuse it into the add.
template <bool Narrow, class Op>
PSAP_HOST_DEVICE inline double add(double acc, double a, double b, Op op) {
    if constexpr (!Narrow && requires { op.fma(acc, a, b); })
        return op.fma(acc, a, b);
    else
        return acc + op(a, b);
}

/// Sum of op(x[j*sx], y[j*sy]) over j < n in the canonical order.
template <class T, class U, class Op>
PSAP_HOST_DEVICE inline double binary(const T* x, long sx, const U* y, long sy, long n, Op op) {
    constexpr bool nr = narrow<T> && narrow<U>;
    double acc[lanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    long j = 0;
    if (sx == 1 && sy == 1) {
        for (; j + lanes <= n; j += lanes)
            for (int l = 0; l < lanes; ++l) acc[l] = add<nr>(acc[l], double(x[j + l]), double(y[j + l]), op);
    } else {
        for (; j + lanes <= n; j += lanes)
            for (int l = 0; l < lanes; ++l) acc[l] = add<nr>(acc[l], double(x[(j + l) * sx]), double(y[(j + l) * sy]), op);
    }
    // The tail (< 8 elements) continues lane by lane; written with a bounded
    // lane index so that no compiler can see acc[] overrun when n is a constant.
    const long rest = n - j;
    for (int l = 0; l < lanes; ++l)
        if (l < rest) acc[l] = add<nr>(acc[l], double(x[(j + l) * sx]), double(y[(j + l) * sy]), op);
    return combine(acc);
}

/// A unary op seen as a binary one (the second argument is ignored).
template <class Op>
struct unary_as_binary {
    Op op;
    PSAP_HOST_DEVICE double operator()(double a, double) const { return op(a); }
    PSAP_HOST_DEVICE double fma(double acc, double a, double) const
        requires requires(const Op& o, double v) { o.fma(v, v); }
    {
        return op.fma(acc, a);
    }
};

template <class T, class Op>
PSAP_HOST_DEVICE inline double unary(const T* x, long sx, long n, Op op) {
    return binary(x, sx, x, sx, n, unary_as_binary<Op>{op});
}

struct square {
    PSAP_HOST_DEVICE double operator()(double a) const { return a * a; }
    PSAP_HOST_DEVICE double fma(double acc, double a) const { return fused(a, a, acc); }
};
struct absolute {
    PSAP_HOST_DEVICE double operator()(double a) const { return a < 0 ? -a : a; }
};
struct product {
    PSAP_HOST_DEVICE double operator()(double a, double b) const { return a * b; }
    PSAP_HOST_DEVICE double fma(double acc, double a, double b) const { return fused(a, b, acc); }
};
/// Float inputs: the difference is rounded to float, as float arithmetic
/// would, so its square is exact in double and fusing cannot change the sum.
/// Double inputs: the difference in double (rounding it to float would merge
/// filters closer than float resolution), its square fused into the add.
struct squared_difference {
    PSAP_HOST_DEVICE double operator()(double a, double b) const {
        const double d = double(float(a) - float(b));
        return d * d;
    }
    PSAP_HOST_DEVICE double fma(double acc, double a, double b) const {
        const double d = a - b;
        return fused(d, d, acc);
    }
};

}  // namespace psap::reduce
