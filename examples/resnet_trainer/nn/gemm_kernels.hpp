#pragma once
/// The two register-blocked float kernels behind conv2d. B operands are given
/// as a base pointer plus one offset per row, so a row can be a shifted
/// window of a padded image plane (implicit im2col) as well as a row of an
/// explicit im2col buffer.

#include <cstddef>

namespace trainer::kernels {

/// Floats read past the end of a B row by the kernels: the caller keeps this
/// much readable, finite memory after every row's last element.
inline constexpr std::ptrdiff_t b_slack = 64;
/// Row length granularity of gemm_dot's operands.
inline constexpr std::ptrdiff_t dot_granule = 16;

/// Size of the packed form of an M × K matrix for gemm_rows.
std::size_t packed_size(int m, int k);
/// Packs the M × K matrix A (row m at a + m·lda, element k at a[k·ka]) into
/// panels of the kernel's row count, zero-filled to a whole panel.
void pack_a(const float* a, int m, int k, std::ptrdiff_t lda, std::ptrdiff_t ka, float* out);

/// C[m][j] = Σ_k A[m][k] · B_k[j] (or += with accumulate) for m < M, j < N.
/// A is packed by pack_a; B_k starts at b + boff[k]; row m of C starts at
/// c + m·ldc. Only j < N is written.
void gemm_rows(int m, std::ptrdiff_t n, int k, const float* a_packed, const float* b, const std::ptrdiff_t* boff,
               float* c, std::ptrdiff_t ldc, bool accumulate);

/// C[m][k] += Σ_i Σ_{j < N} A_im[j] · B_ik[j] over `batch` operand pairs,
/// with A_im = a + i·a_batch + m·lda and B_ik = b + i·b_batch + boff[k]. N
/// must be a multiple of dot_granule (pad A with zeros). Summing several
/// images inside one register tile amortises its horizontal reduction.
void gemm_dot(int m, int k, std::ptrdiff_t n, int batch, const float* a, std::ptrdiff_t lda, std::ptrdiff_t a_batch,
              const float* b, std::ptrdiff_t b_batch, const std::ptrdiff_t* boff, float* c, std::ptrdiff_t ldc);

}  // namespace trainer::kernels
