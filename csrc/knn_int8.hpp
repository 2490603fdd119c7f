// Exact k-nearest-neighbour search by inner product, screened with int8 dot products.
//
// Pure C++ (no Python), no policy. The database is quantised once, row by row, to int8 codes
// with one scale per row; each query block is quantised the same way when it is searched. An
// int8 dot product (AVX-512 VNNI: 64 multiply-adds per instruction, 4x the float32 FMA rate)
// gives an approximate score s~ for every (query, row) pair, and a rigorous bound B on its error:
//
//     |q.x - q'.x'| <= |(q - q').x| + |q'.(x - x')| <= e_q |x| + |q'| e_x
//
// where q' = s_q * codes_q, x' = s_x * codes_x are the dequantised vectors and e_q = |q - q'|,
// e_x = |x - x'| the quantisation errors, plus a margin for float32 rounding. A pair can enter
// the query's running top-k only if s~ + B >= the current k-th best exact score; those few
// candidates get their exact float32 score (one dot product of the original rows) and go through
// the same running heap as the BLAS path (topk.hpp). Every pair the screen drops is provably
// worse than k exact scores already held, so the result is the exact top-k: the same set and
// order (higher score first, the lower index on ties) whatever the tiles or threads.
//
// A database may carry one additive bias per row: the score of row j is then q.x_j + bias_j (the
// same bound holds, bias_j being exact, plus the float32 rounding of one more addition). With
// bias_j = -|c_j|^2 / 2 the best row is the nearest center in Euclidean distance (k-means
// assignment); with bias_j = -r(y_j) / 2 it is the CSLS choice.
//
// Layout of the packed database: panels of NR = 64 rows; within a panel, for every group of 4
// features, 64 rows x 4 int8 codes (256 bytes: one AVX-512 load per 16 rows). A micro-kernel
// multiplies MR = 6 query rows by one panel with 24 int32 accumulators held in registers, and
// screens the 6 x 64 approximate scores before they leave the registers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define MV2V_X86 1
#endif

#include "topk.hpp"

namespace mv2v {
namespace int8 {

constexpr int64_t NR = 64;  // database rows per panel
constexpr int64_t MR = 6;   // query rows per micro-kernel call
constexpr int64_t MAX_FEATURES = 65536;  // int32 accumulators stay exact (d * 255 * 127 < 2^31)

// True when this CPU (and OS) can run the VNNI kernel.
inline bool cpu_has_vnni() {
#if defined(MV2V_X86) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

// Relative margin for float32 rounding: the exact score is a float32 dot product of length d
// (error <= d * 2^-24 * |q| |x|), the approximate one a few float32 products of exact integers.
inline double rounding_margin(int64_t d) { return (2.0 * static_cast<double>(d) + 16.0) * 0x1p-24; }

// The packed, quantised database (owns its storage; keeps no pointer to the float rows).
struct PackedDatabase {
    int64_t n_rows = 0, n_features = 0, n_groups = 0, n_panels = 0;
    std::vector<int8_t> codes;        // n_panels x n_groups x NR x 4
    std::vector<float> scale;         // n_panels * NR (0 for padding rows)
    std::vector<int32_t> shift;       // 128 * sum of the row's codes (unsigned-query correction)
    std::vector<float> panel_norm;    // per panel: max |x| (rounded up)
    std::vector<float> panel_error;   // per panel: max |x - x'| (rounded up)
    std::vector<float> bias;          // n_panels * NR additive row scores, or empty (no bias)
    std::vector<float> panel_bias;    // per panel: rounding margin of the bias addition

    size_t bytes() const {
        return codes.size() + 4 * (scale.size() + shift.size() + panel_norm.size() +
                                   panel_error.size() + bias.size() + panel_bias.size());
    }
};

// ---------------------------------------------------------------- shared by every int8 kernel
// These parts hold no SIMD: each ISA's kernel passes its own row quantiser and dot product as a
// struct of static functions (Isa::quantise(x, d, codes, levels) -> RowCode, Isa::dot(a, b, d)),
// so the packing layout, the error bound and the exact re-scoring are written once.

// What quantising one row measured: the float32 scale s actually used, |x|, the quantisation
// error |x - s codes| and |s codes|, all in double.
struct RowCode {
    double scale, norm, error, code_norm;
};

// Pack rows [0, n) of a row-major float32 matrix (row stride ld floats), codes in [-127, 127].
//   rows  IN  n x d
//   bias  IN  n additive row scores, or nullptr
//   out   OUT the packed database (the same layout and codes for every kernel)
template <class Isa>
inline void pack_database_with(const float *rows, int64_t ld, int64_t n, int64_t d,
                               const float *bias, PackedDatabase &out) {
    out.n_rows = n;
    out.n_features = d;
    out.n_groups = (d + 3) / 4;
    out.n_panels = (n + NR - 1) / NR;
    const int64_t panel_bytes = out.n_groups * NR * 4;
    out.codes.assign(static_cast<size_t>(out.n_panels * panel_bytes), 0);
    out.scale.assign(static_cast<size_t>(out.n_panels * NR), 0.0f);
    out.shift.assign(static_cast<size_t>(out.n_panels * NR), 0);
    out.panel_norm.assign(static_cast<size_t>(out.n_panels), 0.0f);
    out.panel_error.assign(static_cast<size_t>(out.n_panels), 0.0f);
    out.bias.clear();
    out.panel_bias.clear();
    std::vector<int8_t> row_codes(static_cast<size_t>(out.n_groups * 4), 0);
    for (int64_t i = 0; i < n; ++i) {
        const RowCode rc = Isa::quantise(rows + i * ld, d, row_codes.data(), 127);
        const int64_t p = i / NR, lane = i % NR;
        int8_t *panel = out.codes.data() + p * panel_bytes;
        int32_t sum = 0;
        for (int64_t g = 0; g < out.n_groups; ++g) {
            for (int64_t t = 0; t < 4; ++t) {
                const int8_t c = row_codes[g * 4 + t];
                panel[(g * NR + lane) * 4 + t] = c;
                sum += c;
            }
        }
        out.scale[i] = static_cast<float>(rc.scale);
        out.shift[i] = 128 * sum;   // even: a kernel whose queries are offset by 64 uses shift / 2
        // bounds are rounded up so that float storage never makes them smaller
        out.panel_norm[p] = std::max(out.panel_norm[p], static_cast<float>(rc.norm * (1.0 + 1e-6)));
        out.panel_error[p] = std::max(out.panel_error[p], static_cast<float>(rc.error * (1.0 + 1e-6)));
    }
    if (bias != nullptr) {
        // float32 additions of the bias to the approximate and to the exact score: each rounds
        // by at most 2^-24 of a result below |bias| + |q||x|; the |q||x| part is already in the
        // rounding margin, so the bound gains 4 * 2^-24 * max |bias| per panel.
        out.bias.assign(static_cast<size_t>(out.n_panels * NR), 0.0f);
        out.panel_bias.assign(static_cast<size_t>(out.n_panels), 0.0f);
        for (int64_t i = 0; i < n; ++i) {
            out.bias[i] = bias[i];
            const int64_t p = i / NR;
            out.panel_bias[p] = std::max(out.panel_bias[p],
                                         static_cast<float>(std::fabs(static_cast<double>(bias[i])) * 0x1p-22 * (1.0 + 1e-6)));
        }
    }
}

// A block of queries quantised for one search: unsigned codes (code + offset; padding rows and
// features hold `offset`, i.e. code 0) and the per-query terms of the error bound.
struct QueryCodes {
    int64_t m = 0, m_pad = 0, width = 0;
    std::vector<uint8_t> codes;                          // m_pad x width
    std::vector<float> scale, error, code_norm, margin;  // m_pad each (0 for padding rows)
};

// Quantise m query rows to codes in [-levels, levels], stored as code + offset.
template <class Isa>
inline void quantise_queries(const float *queries, int64_t ldq, int64_t m, int64_t d,
                             int64_t width, int64_t mr, int levels, int offset, QueryCodes &out) {
    out.m = m;
    out.m_pad = (m + mr - 1) / mr * mr;
    out.width = width;
    const double margin = rounding_margin(d);
    out.codes.assign(static_cast<size_t>(out.m_pad * width), static_cast<uint8_t>(offset));
    out.scale.assign(static_cast<size_t>(out.m_pad), 0.0f);
    out.error = out.scale;
    out.code_norm = out.scale;
    out.margin = out.scale;
    std::vector<int8_t> row_codes(static_cast<size_t>(width), 0);
    for (int64_t i = 0; i < m; ++i) {
        const RowCode rc = Isa::quantise(queries + i * ldq, d, row_codes.data(), levels);
        for (int64_t j = 0; j < d; ++j) {
            out.codes[i * width + j] = static_cast<uint8_t>(row_codes[j] + offset);
        }
        out.scale[i] = static_cast<float>(rc.scale);
        out.error[i] = static_cast<float>(rc.error * (1.0 + 1e-6));
        out.code_norm[i] = static_cast<float>(rc.code_norm * (1.0 + 1e-6));
        out.margin[i] = static_cast<float>(rc.norm * margin);
    }
}

// The screening bound of query i against panel p:
//   e_q |x| + |q'| e_x + (float32 rounding margin) |q| |x| + (bias rounding),
// |x| and e_x being the panel's maxima. Every factor was rounded up when stored; their 1 + 1e-6
// factors also cover the float32 roundings of this sum (relative 2^-24 each).
inline float pair_bound(const QueryCodes &q, int64_t i, const PackedDatabase &db, int64_t p) {
    const float pn = db.panel_norm[p], pe = db.panel_error[p];
    const float pb = db.bias.empty() ? 0.0f : db.panel_bias[p];
    return q.error[i] * pn + q.code_norm[i] * pe + q.margin[i] * pn + pb;
}

// The screen threshold: a pair can enter the heap only if its approximate score is >= this.
// The float32 subtraction may itself round up by 2^-24 |root - bound|: the extra 2^-23 |root|
// (with the bound's own slack for 2^-24 bound) keeps the rounded result <= root - bound.
inline float screen_threshold(float root, float bound) {
    return root - (bound + std::fabs(root) * 0x1p-23f);
}

// Exact float32 scores of the candidate rows `hits` (bit b: row col + b, bits ascending) of one
// query, pushed into its heap; returns the heap's new root (the k-th best exact score).
template <class Isa>
__attribute__((noinline)) inline float rescore_hits(uint32_t hits, int64_t col, const float *q, const PackedDatabase &db,
                          const float *rows, int64_t ldr, int64_t offset, float *s, int64_t *ix,
                          int64_t k) {
    const int64_t n = db.n_rows, d = db.n_features;
    const bool has_bias = !db.bias.empty();
    while (hits) {
        const int bit = __builtin_ctz(hits);
        hits &= hits - 1;
        const int64_t j = col + bit;
        if (j >= n) break;  // padding rows of the last panel (bits ascend)
        float exact = Isa::dot(q, rows + j * ldr, d);
        if (has_bias) exact += db.bias[j];
        heap_push(s, ix, k, exact, offset + j);
    }
    return s[0];
}

#if defined(MV2V_X86) && defined(__GNUC__)
#define MV2V_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,fma")))

// Quantise one row: codes[j] = round(x[j] / s) in [-L, L] with s = max|x| / L (float32),
// L = levels <= 127.
//   x      IN   d floats
//   codes  OUT  d int8
//   returns {scale, |x|, |x - s codes|, |s codes|}
// AVX-512, 16 features a step. The bounds stay rigorous because they are measured on the codes
// and the float32 scale actually used: the residual x - s c is one fused multiply-add (a single
// rounding, relative 2^-24, covered by the callers' 1 + 1e-6 factor), squares are summed in
// double and sum(c^2) in exact integers.

// Mask of the first min(left, 16) lanes of a 16-float step.
inline __mmask16 lanes_left(int64_t left) {
    return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

MV2V_VNNI inline RowCode quantise_row(const float *x, int64_t d, int8_t *codes, int levels) {
    __m512 amax = _mm512_setzero_ps();
    __m512d norm2 = _mm512_setzero_pd();
    for (int64_t j = 0; j < d; j += 16) {
        const __mmask16 m = lanes_left(d - j);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        norm2 = _mm512_fmadd_pd(lo, lo, _mm512_fmadd_pd(hi, hi, norm2));
    }
    const float max_abs = _mm512_reduce_max_ps(amax);
    RowCode rc{0.0, 0.0, 0.0, 0.0};
    if (max_abs == 0.0f) {
        std::memset(codes, 0, static_cast<size_t>(d));
        return rc;
    }
    const float scale = static_cast<float>(static_cast<double>(max_abs) / levels);
    const __m512 inverse = _mm512_set1_ps(static_cast<float>(levels / static_cast<double>(max_abs)));
    const __m512 s = _mm512_set1_ps(scale), top = _mm512_set1_ps(static_cast<float>(levels)),
                 bottom = _mm512_set1_ps(-static_cast<float>(levels));
    __m512d err2 = _mm512_setzero_pd();
    __m512i code2 = _mm512_setzero_si512();
    for (int64_t j = 0; j < d; j += 16) {
        const __mmask16 m = lanes_left(d - j);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        __m512 c = _mm512_roundscale_ps(_mm512_mul_ps(v, inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        c = _mm512_min_ps(top, _mm512_max_ps(bottom, c));
        const __m512 r = _mm512_fnmadd_ps(s, c, v);  // v - s c, one rounding
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(r));
        const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r), 1)));
        err2 = _mm512_fmadd_pd(lo, lo, _mm512_fmadd_pd(hi, hi, err2));
        const __m512i ci = _mm512_cvtps_epi32(c);
        code2 = _mm512_add_epi32(code2, _mm512_mullo_epi32(ci, ci));
        _mm_mask_storeu_epi8(codes + j, m, _mm512_cvtsepi32_epi8(ci));
    }
    rc.scale = static_cast<double>(scale);
    rc.norm = std::sqrt(_mm512_reduce_add_pd(norm2));
    rc.error = std::sqrt(_mm512_reduce_add_pd(err2));
    rc.code_norm = rc.scale * std::sqrt(static_cast<double>(_mm512_reduce_add_epi32(code2)));
    return rc;
}

// Exact float32 dot product with a fixed summation order (independent of the caller).
MV2V_VNNI inline float dot_f32(const float *a, const float *b, int64_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= d; j += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
    }
    for (; j < d; j += 16) {
        const __mmask16 m = lanes_left(d - j);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

struct Vnni {
    MV2V_VNNI static RowCode quantise(const float *x, int64_t d, int8_t *codes, int levels) {
        return quantise_row(x, d, codes, levels);
    }
    MV2V_VNNI static float dot(const float *a, const float *b, int64_t d) { return dot_f32(a, b, d); }
};

// Pack rows with the AVX-512 quantiser (see pack_database_with).
inline void pack_database(const float *rows, int64_t ld, int64_t n, int64_t d, const float *bias,
                          PackedDatabase &out) {
    pack_database_with<Vnni>(rows, ld, n, d, bias, out);
}

// Search a block of queries against a packed database, folding into running top-k heaps.
//   queries   IN    m x d float32, row stride ldq (the rows the exact scores use)
//   db        IN    the packed database of `rows`
//   rows      IN    n x d float32, row stride ldr (the database's original rows)
//   offset    IN    global index of database row 0
//   scores    INOUT m x k min-heaps (root = k-th best), initialised to -inf
//   indices   INOUT m x k, initialised to -1
MV2V_VNNI inline void search_block(const float *queries, int64_t ldq, int64_t m,
                                   const PackedDatabase &db, const float *rows, int64_t ldr,
                                   int64_t offset, float *scores, int64_t *indices, int64_t k) {
    const int64_t d = db.n_features, n_groups = db.n_groups;
    const int64_t width = n_groups * 4;             // padded features

    // Quantise the queries as unsigned codes (code + 128); padding rows and features are 128,
    // i.e. zero, and padding rows are never screened in (their threshold is +inf).
    QueryCodes qc;
    quantise_queries<Vnni>(queries, ldq, m, d, width, MR, 127, 128, qc);
    const int64_t m_pad = qc.m_pad;
    const int64_t panel_bytes = n_groups * NR * 4;
    const float inf = std::numeric_limits<float>::infinity();
    const bool has_bias = !db.bias.empty();

    for (int64_t p = 0; p < db.n_panels; ++p) {
        const int8_t *panel = db.codes.data() + p * panel_bytes;
        for (int64_t r0 = 0; r0 < m_pad; r0 += MR) {
            // 6 x 64 int32 dot products of the unsigned query codes with the signed row codes
            __m512i acc[MR][4];
#pragma GCC unroll 6
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_si512();
            const uint8_t *a = qc.codes.data() + r0 * width;
            for (int64_t g = 0; g < n_groups; ++g) {
                const int8_t *b = panel + g * NR * 4;
                const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64),
                              b2 = _mm512_loadu_si512(b + 128), b3 = _mm512_loadu_si512(b + 192);
#pragma GCC unroll 6
                for (int r = 0; r < MR; ++r) {
                    int32_t word;
                    std::memcpy(&word, a + r * width + g * 4, 4);
                    const __m512i av = _mm512_set1_epi32(word);
                    acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
                    acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
                    acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], av, b2);
                    acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], av, b3);
                }
            }
            // Screen: approximate score s~ = s_q * s_x * (acc - shift) against the k-th best
            // exact score minus the error bound of this (query, panel).
            float bound[MR], threshold[MR];
            for (int r = 0; r < MR; ++r) {
                const int64_t i = r0 + r;
                if (i >= m) { threshold[r] = inf; continue; }
                bound[r] = pair_bound(qc, i, db, p);
                threshold[r] = screen_threshold(scores[i * k], bound[r]);   // root: k-th best
            }
#pragma GCC unroll 4
            for (int c = 0; c < 4; ++c) {
                const int64_t col = p * NR + 16 * c;
                const __m512i shift = _mm512_loadu_si512(db.shift.data() + col);
                const __m512 sx = _mm512_loadu_ps(db.scale.data() + col);
                const __m512 bx = has_bias ? _mm512_loadu_ps(db.bias.data() + col) : _mm512_setzero_ps();
#pragma GCC unroll 6
                for (int r = 0; r < MR; ++r) {
                    const __m512 approx = _mm512_add_ps(_mm512_mul_ps(
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][c], shift)), sx),
                        _mm512_set1_ps(qc.scale[r0 + r])), bx);
                    const __mmask16 hits = _mm512_cmp_ps_mask(approx, _mm512_set1_ps(threshold[r]), _CMP_GE_OQ);
                    if (!hits) continue;
                    // rare path: exact scores of the candidates, into the running heap
                    const int64_t i = r0 + r;
                    const float root = rescore_hits<Vnni>(hits, col, queries + i * ldq, db, rows,
                                                          ldr, offset, scores + i * k,
                                                          indices + i * k, k);
                    threshold[r] = screen_threshold(root, bound[r]);
                }
            }
        }
    }
}
#undef MV2V_VNNI
#endif

}  // namespace int8
}  // namespace mv2v
