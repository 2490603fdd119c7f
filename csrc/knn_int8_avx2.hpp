// The int8-screened exact kNN of knn_int8.hpp for CPUs with AVX2 + FMA but no AVX-512 VNNI
// (AMD Zen 2/3, Intel before Ice Lake). Same packed database (codes in [-127, 127], the same
// layout, scales and bounds), same error bound, same exact float32 re-scoring and heaps: only
// the integer dot product and the query codes differ.
//
// AVX2 has no u8 x s8 -> s32 dot product. vpmaddubsw multiplies 32 unsigned by 32 signed bytes
// and adds adjacent pairs into *saturating* int16; vpmaddwd by ones then adds adjacent int16
// pairs into int32 (exactly). With database codes in [-127, 127] the queries are quantised to
// 6-bit codes in [-31, 31] and offset by 32 (unsigned 1..63), so a pair sum is at most
// 2 * 63 * 127 = 16002 in magnitude, and the vpmaddubsw results of TWO feature groups add in
// int16 (at most 32004 < 32767) before one vpmaddwd: 3 multiply uops per two groups and row
// instead of 4 (7-bit codes, which leave no headroom for that sum, measured ~10% slower on
// 10,000 x 60,000 x 384). Nothing saturates, and every int32 is the exact integer dot product
// sum (code_q + 32) code_x = q_codes . x_codes + 32 sum(x_codes), corrected by shift / 4 (the
// database's shift is 128 sum(x_codes)). The coarser query codes only enlarge the measured
// query error e_q, which the bound already carries:
//
//     |q.x - q'.x'| <= e_q |x| + |q'| e_x + (float32 rounding margin) |q| |x|
//
// The rounding margin (2d + 16) 2^-24 |q||x| covers the float32 exact score (d 2^-24 |q||x|) and
// the three float32 roundings of the approximate score s_q s_x (acc - shift/4), which are
// relative to |q'||x'| <= (1 + sqrt(d)/62)(1 + sqrt(d)/254) |q||x| (< d + 16 ulps for every d).
//
// Micro-kernel: MR = 4 query rows x 16 database rows (a quarter panel), 8 int32 accumulators.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "knn_int8.hpp"

#if defined(MV2V_X86) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace mv2v {
namespace int8 {

constexpr int64_t MR_AVX2 = 4;  // query rows per AVX2 micro-kernel call

// True when this CPU has AVX2 and FMA and the OS saves the YMM registers (XCR0 bits 1 and 2).
inline bool cpu_has_avx2() {
#if defined(MV2V_X86) && defined(__GNUC__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const bool osxsave = (ecx & (1u << 27)) != 0, fma = (ecx & (1u << 12)) != 0,
               avx = (ecx & (1u << 28)) != 0;
    if (!osxsave || !fma || !avx) return false;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6u) != 6u) return false;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1u << 5)) != 0;  // AVX2
#else
    return false;
#endif
}

#if defined(MV2V_X86) && defined(__GNUC__)
#define MV2V_AVX2 __attribute__((target("avx2,fma")))

// Lanes [0, min(left, 8)) of an 8-float step, as a maskload mask.
MV2V_AVX2 inline __m256i lanes_left8(int64_t left) {
    const int32_t l = left >= 8 ? 8 : static_cast<int32_t>(left);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

MV2V_AVX2 inline double sum4(__m256d v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// Quantise one row: codes[j] = round(x[j] / s) in [-levels, levels], s = max|x| / levels
// (float32). The bounds are measured on the codes and the scale actually used: the residual
// x - s c is formed in double (s c is exact there, one rounding of relative 2^-53), squares are
// summed in double, sum(c^2) in exact integers.
MV2V_AVX2 inline RowCode quantise_row_avx2(const float *x, int64_t d, int8_t *codes, int levels) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    __m256d norm2 = _mm256_setzero_pd();
    for (int64_t j = 0; j < d; j += 8) {
        const __m256 v = _mm256_maskload_ps(x + j, lanes_left8(d - j));
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        norm2 = _mm256_fmadd_pd(lo, lo, _mm256_fmadd_pd(hi, hi, norm2));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, amax);
    float max_abs = 0.0f;
    for (float v : lanes) max_abs = std::max(max_abs, v);
    RowCode rc{0.0, 0.0, 0.0, 0.0};
    if (max_abs == 0.0f) {
        std::memset(codes, 0, static_cast<size_t>(d));
        return rc;
    }
    const float scale = static_cast<float>(static_cast<double>(max_abs) / levels);
    const __m256 inverse = _mm256_set1_ps(static_cast<float>(levels / static_cast<double>(max_abs)));
    const __m256 top = _mm256_set1_ps(static_cast<float>(levels)),
                 bottom = _mm256_set1_ps(-static_cast<float>(levels));
    const __m256d s = _mm256_set1_pd(static_cast<double>(scale));
    __m256d err2 = _mm256_setzero_pd();
    __m256i code2 = _mm256_setzero_si256();
    int32_t ints[8];
    for (int64_t j = 0; j < d; j += 8) {
        const __m256 v = _mm256_maskload_ps(x + j, lanes_left8(d - j));
        __m256 c = _mm256_round_ps(_mm256_mul_ps(v, inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        c = _mm256_min_ps(top, _mm256_max_ps(bottom, c));
        const __m256d r_lo = _mm256_fnmadd_pd(s, _mm256_cvtps_pd(_mm256_castps256_ps128(c)),
                                              _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        const __m256d r_hi = _mm256_fnmadd_pd(s, _mm256_cvtps_pd(_mm256_extractf128_ps(c, 1)),
                                              _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        err2 = _mm256_fmadd_pd(r_lo, r_lo, _mm256_fmadd_pd(r_hi, r_hi, err2));
        const __m256i ci = _mm256_cvtps_epi32(c);
        code2 = _mm256_add_epi32(code2, _mm256_mullo_epi32(ci, ci));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(ints), ci);
        const int64_t count = std::min<int64_t>(8, d - j);
        for (int64_t t = 0; t < count; ++t) codes[j + t] = static_cast<int8_t>(ints[t]);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(ints), code2);
    int64_t code_sum = 0;
    for (int32_t v : ints) code_sum += v;
    rc.scale = static_cast<double>(scale);
    rc.norm = std::sqrt(sum4(norm2));
    rc.error = std::sqrt(sum4(err2));
    rc.code_norm = rc.scale * std::sqrt(static_cast<double>(code_sum));
    return rc;
}

// Exact float32 dot product with a fixed summation order (independent of the caller).
MV2V_AVX2 inline float dot_f32_avx2(const float *a, const float *b, int64_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= d; j += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 16), _mm256_loadu_ps(b + j + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 24), _mm256_loadu_ps(b + j + 24), s3);
    }
    for (; j < d; j += 8) {
        const __m256i m = lanes_left8(d - j);
        s0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + j, m), _mm256_maskload_ps(b + j, m), s0);
    }
    const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}

struct Avx2 {
    MV2V_AVX2 static RowCode quantise(const float *x, int64_t d, int8_t *codes, int levels) {
        return quantise_row_avx2(x, d, codes, levels);
    }
    MV2V_AVX2 static float dot(const float *a, const float *b, int64_t d) {
        return dot_f32_avx2(a, b, d);
    }
};

// Pack rows with the AVX2 quantiser: the same codes and layout as pack_database.
inline void pack_database_avx2(const float *rows, int64_t ld, int64_t n, int64_t d,
                               const float *bias, PackedDatabase &out) {
    pack_database_with<Avx2>(rows, ld, n, d, bias, out);
}

// search_block (knn_int8.hpp) with vpmaddubsw / vpmaddwd: same arguments, same exact result.
MV2V_AVX2 inline void search_block_avx2(const float *queries, int64_t ldq, int64_t m,
                                        const PackedDatabase &db, const float *rows, int64_t ldr,
                                        int64_t offset, float *scores, int64_t *indices, int64_t k) {
    const int64_t d = db.n_features, n_groups = db.n_groups;
    const int64_t width = n_groups * 4;
    QueryCodes qc;   // 6-bit codes + 32: padding rows/features are 32 (code 0)
    quantise_queries<Avx2>(queries, ldq, m, d, width, MR_AVX2, 31, 32, qc);
    const int64_t m_pad = qc.m_pad;
    const int64_t panel_bytes = n_groups * NR * 4;
    const float inf = std::numeric_limits<float>::infinity();
    const bool has_bias = !db.bias.empty();
    const __m256i ones = _mm256_set1_epi16(1);

    for (int64_t p = 0; p < db.n_panels; ++p) {
        const int8_t *panel = db.codes.data() + p * panel_bytes;
        for (int64_t r0 = 0; r0 < m_pad; r0 += MR_AVX2) {
            float bound[MR_AVX2], threshold[MR_AVX2];
            for (int r = 0; r < MR_AVX2; ++r) {
                const int64_t i = r0 + r;
                if (i >= m) { bound[r] = 0.0f; threshold[r] = inf; continue; }
                bound[r] = pair_bound(qc, i, db, p);
                threshold[r] = screen_threshold(scores[i * k], bound[r]);
            }
            const uint8_t *a = qc.codes.data() + r0 * width;
            for (int c = 0; c < 4; ++c) {   // 16 of the panel's 64 rows at a time
                __m256i acc[MR_AVX2][2];
#pragma GCC unroll 4
                for (int r = 0; r < MR_AVX2; ++r) {
                    acc[r][0] = _mm256_setzero_si256();
                    acc[r][1] = _mm256_setzero_si256();
                }
                const int8_t *b = panel + 64 * c;
                int64_t g = 0;
                // two feature groups per step: their vpmaddubsw results (each at most
                // 2 * 63 * 127 = 16002 in magnitude) add in int16 without saturating, so one
                // vpmaddwd serves both
                for (; g + 2 <= n_groups; g += 2) {
                    const int8_t *bg = b + g * NR * 4;
                    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bg));
                    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bg + 32));
                    const __m256i b2 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bg + NR * 4));
                    const __m256i b3 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bg + NR * 4 + 32));
#pragma GCC unroll 4
                    for (int r = 0; r < MR_AVX2; ++r) {
                        int32_t words[2];
                        std::memcpy(words, a + r * width + g * 4, 8);
                        const __m256i av = _mm256_set1_epi32(words[0]);
                        const __m256i aw = _mm256_set1_epi32(words[1]);
                        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_add_epi16(
                            _mm256_maddubs_epi16(av, b0), _mm256_maddubs_epi16(aw, b2)), ones));
                        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_add_epi16(
                            _mm256_maddubs_epi16(av, b1), _mm256_maddubs_epi16(aw, b3)), ones));
                    }
                }
                for (; g < n_groups; ++g) {   // an odd last group
                    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b + g * NR * 4));
                    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b + g * NR * 4 + 32));
#pragma GCC unroll 4
                    for (int r = 0; r < MR_AVX2; ++r) {
                        int32_t word;
                        std::memcpy(&word, a + r * width + g * 4, 4);
                        const __m256i av = _mm256_set1_epi32(word);
                        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
                        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
                    }
                }
                const int64_t col = p * NR + 16 * c;
                __m256i shift[2];
                __m256 sx[2], bx[2];
                for (int h = 0; h < 2; ++h) {
                    shift[h] = _mm256_srai_epi32(_mm256_loadu_si256(
                        reinterpret_cast<const __m256i *>(db.shift.data() + col + 8 * h)), 2);
                    sx[h] = _mm256_loadu_ps(db.scale.data() + col + 8 * h);
                    bx[h] = has_bias ? _mm256_loadu_ps(db.bias.data() + col + 8 * h) : _mm256_setzero_ps();
                }
#pragma GCC unroll 4
                for (int r = 0; r < MR_AVX2; ++r) {
                    const __m256 sq = _mm256_set1_ps(qc.scale[r0 + r]);
                    const __m256 t = _mm256_set1_ps(threshold[r]);
                    uint32_t hits = 0;
                    for (int h = 0; h < 2; ++h) {
                        const __m256 approx = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(
                            _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][h], shift[h])), sx[h]), sq), bx[h]);
                        hits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(approx, t, _CMP_GE_OQ))) << (8 * h);
                    }
                    if (!hits) continue;
                    const int64_t i = r0 + r;
                    const float root = rescore_hits<Avx2>(hits, col, queries + i * ldq, db, rows,
                                                          ldr, offset, scores + i * k,
                                                          indices + i * k, k);
                    threshold[r] = screen_threshold(root, bound[r]);
                }
            }
        }
    }
}
#undef MV2V_AVX2
#endif

}  // namespace int8
}  // namespace mv2v
