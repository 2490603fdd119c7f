// Running top-k selection over tiles of a similarity matrix.
//
// Pure C++ (no Python): the kernels hold no policy. The caller computes a tile
// S[q, j] of similarities (BLAS GEMM), then folds it into a per-query running
// top-k. Between calls the running top-k of each query lives in the caller's
// arrays `scores[q, 0:k]` / `indices[q, 0:k]` as a binary min-heap whose root
// is the current k-th best entry, so a tile element that cannot enter the
// top-k costs one comparison.
//
// Order: a higher score is better; on equal scores the lower index is better.
// This total order makes the selected set independent of tile order, tile
// size and thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace mv2v {

// true when (sa, ia) ranks strictly after (sb, ib)
inline bool worse(float sa, int64_t ia, float sb, int64_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

// Restore the min-heap property (worst entry at the root) below position `pos`.
inline void sift_down(float *s, int64_t *ix, int64_t k, int64_t pos) {
    const float ps = s[pos];
    const int64_t pi = ix[pos];
    for (;;) {
        int64_t child = 2 * pos + 1;
        if (child >= k) break;
        if (child + 1 < k && worse(s[child + 1], ix[child + 1], s[child], ix[child])) ++child;
        if (!worse(s[child], ix[child], ps, pi)) break;
        s[pos] = s[child];
        ix[pos] = ix[child];
        pos = child;
    }
    s[pos] = ps;
    ix[pos] = pi;
}

// Replace the heap root by (score, index) when it ranks better than the root.
inline void heap_push(float *s, int64_t *ix, int64_t k, float score, int64_t index) {
    if (!worse(s[0], ix[0], score, index)) return;
    s[0] = score;
    ix[0] = index;
    sift_down(s, ix, k, 0);
}

// Fold rows [row_begin, row_end) of one tile into their running heaps.
//   tile     IN    (n_rows, n_cols) row-major, row stride `ld`
//   offset   IN    global index of tile column 0
//   scores   INOUT (n_rows, k) heaps, row stride k
//   indices  INOUT (n_rows, k) heaps, row stride k
inline void fold_tile_rows(const float *tile, int64_t ld, int64_t n_cols, int64_t offset,
                           float *scores, int64_t *indices, int64_t k,
                           int64_t row_begin, int64_t row_end) {
    constexpr int64_t LANES = 16;
    for (int64_t r = row_begin; r < row_end; ++r) {
        const float *row = tile + r * ld;
        float *s = scores + r * k;
        int64_t *ix = indices + r * k;
        float threshold = s[0];
        int64_t j = 0;
        // Blocks of 16: a branch-free count of candidates (vectorised by the
        // compiler at -O3 with the baseline ISA) skips blocks that cannot enter.
        for (; j + LANES <= n_cols; j += LANES) {
            int hits = 0;
            for (int64_t t = 0; t < LANES; ++t) hits += row[j + t] >= threshold;
            if (hits == 0) continue;
            for (int64_t t = 0; t < LANES; ++t) {
                const float v = row[j + t];
                if (v >= threshold) {
                    heap_push(s, ix, k, v, offset + j + t);
                    threshold = s[0];
                }
            }
        }
        for (; j < n_cols; ++j) {
            const float v = row[j];
            if (v >= threshold) {
                heap_push(s, ix, k, v, offset + j);
                threshold = s[0];
            }
        }
    }
}

// Sort every row's heap into best-first order.
inline void sort_rows(float *scores, int64_t *indices, int64_t n_rows, int64_t k) {
    std::vector<std::pair<float, int64_t>> buf(static_cast<size_t>(k));
    for (int64_t r = 0; r < n_rows; ++r) {
        float *s = scores + r * k;
        int64_t *ix = indices + r * k;
        for (int64_t t = 0; t < k; ++t) buf[t] = {s[t], ix[t]};
        std::sort(buf.begin(), buf.end(), [](const auto &a, const auto &b) {
            return worse(b.first, b.second, a.first, a.second);
        });
        for (int64_t t = 0; t < k; ++t) {
            s[t] = buf[t].first;
            ix[t] = buf[t].second;
        }
    }
}

// Merge two best-first sorted top-k lists per row into `out` (best-first).
inline void merge_sorted_rows(const float *sa, const int64_t *ia, const float *sb, const int64_t *ib,
                              float *so, int64_t *io, int64_t n_rows, int64_t k) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const float *a = sa + r * k, *b = sb + r * k;
        const int64_t *ai = ia + r * k, *bi = ib + r * k;
        float *o = so + r * k;
        int64_t *oi = io + r * k;
        int64_t p = 0, q = 0;
        for (int64_t t = 0; t < k; ++t) {
            // entries with index -1 are empty slots and rank last
            const bool a_ok = p < k && ai[p] >= 0, b_ok = q < k && bi[q] >= 0;
            bool take_a;
            if (!a_ok && !b_ok) { o[t] = -std::numeric_limits<float>::infinity(); oi[t] = -1; continue; }
            if (!b_ok) take_a = true;
            else if (!a_ok) take_a = false;
            else if (ai[p] == bi[q]) {  // same item seen in both lists: keep one
                ++q;
                --t;
                continue;
            } else take_a = !worse(a[p], ai[p], b[q], bi[q]);
            if (take_a) { o[t] = a[p]; oi[t] = ai[p]; ++p; }
            else { o[t] = b[q]; oi[t] = bi[q]; ++q; }
        }
    }
}

}  // namespace mv2v
