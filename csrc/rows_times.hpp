// out = X @ W for float32 rows, with a result per row that depends on nothing but that row.
//
// Why not BLAS: OpenBLAS's sgemm picks its micro-kernel by the position of a row in the call
// (edge rows of a block go through other kernels) and splits work by its thread count, and on
// AVX2 CPUs those choices change the rounding of the result (measured: 1 ulp on 23% of the
// elements of a 10,000 x 16 map between --chunk-rows 3000 and the default). A streamed, resumed
// or multi-threaded transform must write the same bytes as a one-shot one, so each output
// element here is summed over k in the order 0, 1, ..., d_a - 1 with one rounding per step:
//   out[i, j] = (...((x[i,0] w[0,j] + x[i,1] w[1,j]) + x[i,2] w[2,j]) ...)
// computed with fused multiply-adds on CPUs with FMA and with a multiply then an add elsewhere
// (one path per CPU, chosen at run time, so the bytes are the same on one machine whatever the
// block sizes and thread counts; two machines may differ in the last bit).
//
// Every row goes through the same code: rows are taken four at a time (a short last group is
// copied into a zero-padded buffer) and columns sixteen at a time (W is copied once per call
// into a zero-padded column panel), so no row or column has an edge path of its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define MV2V_X86 1
#endif

namespace mv2v {
namespace rows_times {

constexpr int64_t kRows = 4;     // rows per register group
constexpr int64_t kCols = 16;    // columns per panel (two AVX2 vectors)

// W (d_a, d_b) copied into panels: panel p holds columns [16p, 16p + 16) of every row k,
// contiguous (d_a x 16), zeros past d_b.
inline std::vector<float> pack_panels(const float *W, int64_t d_a, int64_t d_b) {
    const int64_t n_panels = (d_b + kCols - 1) / kCols;
    std::vector<float> panels(static_cast<size_t>(n_panels * d_a * kCols), 0.0f);
    for (int64_t p = 0; p < n_panels; ++p) {
        const int64_t j0 = p * kCols, width = std::min(kCols, d_b - j0);
        float *dst = panels.data() + p * d_a * kCols;
        for (int64_t k = 0; k < d_a; ++k)
            std::memcpy(dst + k * kCols, W + k * d_b + j0, static_cast<size_t>(width) * sizeof(float));
    }
    return panels;
}

#ifdef MV2V_X86
inline bool cpu_has_fma() {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// Four rows (x0..x3, each d_a long, leading dimension ldx) times one panel -> acc[4][16].
__attribute__((target("avx2,fma")))
inline void group_panel_fma(const float *x, int64_t ldx, const float *panel, int64_t d_a,
                            float *acc /* OUT 4 x 16 */) {
    __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps();
    __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
    __m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps();
    __m256 a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
    for (int64_t k = 0; k < d_a; ++k) {
        const __m256 w0 = _mm256_loadu_ps(panel + k * kCols);
        const __m256 w1 = _mm256_loadu_ps(panel + k * kCols + 8);
        __m256 b = _mm256_broadcast_ss(x0 + k);
        a00 = _mm256_fmadd_ps(b, w0, a00); a01 = _mm256_fmadd_ps(b, w1, a01);
        b = _mm256_broadcast_ss(x1 + k);
        a10 = _mm256_fmadd_ps(b, w0, a10); a11 = _mm256_fmadd_ps(b, w1, a11);
        b = _mm256_broadcast_ss(x2 + k);
        a20 = _mm256_fmadd_ps(b, w0, a20); a21 = _mm256_fmadd_ps(b, w1, a21);
        b = _mm256_broadcast_ss(x3 + k);
        a30 = _mm256_fmadd_ps(b, w0, a30); a31 = _mm256_fmadd_ps(b, w1, a31);
    }
    _mm256_storeu_ps(acc + 0, a00);  _mm256_storeu_ps(acc + 8, a01);
    _mm256_storeu_ps(acc + 16, a10); _mm256_storeu_ps(acc + 24, a11);
    _mm256_storeu_ps(acc + 32, a20); _mm256_storeu_ps(acc + 40, a21);
    _mm256_storeu_ps(acc + 48, a30); _mm256_storeu_ps(acc + 56, a31);
}
#else
inline bool cpu_has_fma() { return false; }
#endif

// The same sums with a rounded multiply then a rounded add (the build has -ffp-contract=off,
// so the compiler does not fuse them either).
inline void group_panel_plain(const float *x, int64_t ldx, const float *panel, int64_t d_a,
                              float *acc /* OUT 4 x 16 */) {
    for (int64_t i = 0; i < kRows * kCols; ++i) acc[i] = 0.0f;
    for (int64_t k = 0; k < d_a; ++k) {
        const float *w = panel + k * kCols;
        for (int64_t r = 0; r < kRows; ++r) {
            const float xk = x[r * ldx + k];
            float *a = acc + r * kCols;
            for (int64_t j = 0; j < kCols; ++j) {
                const float product = xk * w[j];
                a[j] = a[j] + product;
            }
        }
    }
}

// out[i, :] = X[i, :] @ W for rows [row_begin, row_end). X: (n, d_a) with leading dimension
// ldx; out: (n, d_b) with leading dimension ldo; panels from pack_panels(W).
inline void multiply(const float *X, int64_t ldx, const float *panels, int64_t d_a, int64_t d_b,
                     int64_t row_begin, int64_t row_end, float *out, int64_t ldo, bool use_fma) {
    const int64_t n_panels = (d_b + kCols - 1) / kCols;
    std::vector<float> padded(static_cast<size_t>(kRows * d_a), 0.0f);
    float acc[kRows * kCols];
    for (int64_t i0 = row_begin; i0 < row_end; i0 += kRows) {
        const int64_t rows = std::min(kRows, row_end - i0);
        const float *x = X + i0 * ldx;
        int64_t ld = ldx;
        if (rows < kRows) {   // a short last group: the same code on a zero-padded copy
            std::fill(padded.begin(), padded.end(), 0.0f);
            for (int64_t r = 0; r < rows; ++r)
                std::memcpy(padded.data() + r * d_a, x + r * ldx, static_cast<size_t>(d_a) * sizeof(float));
            x = padded.data();
            ld = d_a;
        }
        for (int64_t p = 0; p < n_panels; ++p) {
            const float *panel = panels + p * d_a * kCols;
#ifdef MV2V_X86
            if (use_fma) group_panel_fma(x, ld, panel, d_a, acc);
            else group_panel_plain(x, ld, panel, d_a, acc);
#else
            (void)use_fma;
            group_panel_plain(x, ld, panel, d_a, acc);
#endif
            const int64_t j0 = p * kCols, width = std::min(kCols, d_b - j0);
            for (int64_t r = 0; r < rows; ++r)
                std::memcpy(out + (i0 + r) * ldo + j0, acc + r * kCols,
                            static_cast<size_t>(width) * sizeof(float));
        }
    }
}

}  // namespace rows_times
}  // namespace mv2v
