#pragma once
/// Eigen for the trainer's GEMMs. Include this first in a .cpp, before
/// anything that pulls in <immintrin.h>.

// GCC 12 reports a false -Wmaybe-uninitialized inside avx512fintrin.h when
// Eigen's AVX-512 kernels are inlined (GCC PR 105593, fixed in GCC 13). The
// pragma must precede the intrinsics headers to cover their lines.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <Eigen/Core>
