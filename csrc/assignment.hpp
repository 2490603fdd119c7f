// Exact sparse linear assignment, and the per-row candidate selection that feeds it.
//
// Pure C++ (no Python), single-threaded, no policy: the caller decides what to do
// when a problem has no perfect matching.
//
// solve_sparse_assignment: n rows, n_cols >= n columns; row i may only take the
// columns columns[i, 0:k], with scores scores[i, 0:k]. It finds a perfect matching
// of the rows (every row one distinct column) of maximum total score, exactly: it is
// a shortest-augmenting-path method with dual potentials (Jonker-Volgenant style),
// on costs c = -score in double precision, so the optimum is the LP optimum up to
// double rounding. A column listed twice in a row counts with its best score.
//
//   1. Greedy start: row i (in order) takes the lowest free column among its best ones,
//      when one of them is free.
//   2. Augmenting row reduction (JV), two passes over the free rows: a free row takes
//      its best column j1 and lowers j1's potential by the gap to its second-best
//      column, displacing j1's owner, which is then processed in turn. Bounded work.
//   3. For every row still free, Dijkstra over the sparse rows with reduced costs
//      c_ij - u_i - v_j >= 0 (a binary heap, ties: lower column first) to the nearest
//      free column, then augmentation along the path and the potential update
//      v_j += d_j - d_sink for the columns scanned. Nothing that would leave the heap
//      after the best free column labelled so far is pushed. If the search runs out
//      of columns before reaching a free one, no perfect matching exists (Hall's
//      condition fails on the rows reached) and the solver reports it.
//
// Each row's edges are kept best score first (sorted on entry unless they already
// are, as select_top_columns writes them): since every v_j <= 0, a reduced cost
// c_ij - v_j is never below c_ij, so the scans of steps 1-3 stop at the first edge
// whose cost alone is past what they could use.
//
// Dual feasibility is kept throughout: every matched row's edge is a minimum of
// c_ij - v_j over its row, all v_j <= 0 and v_j == 0 on every unmatched column (a
// column's potential changes only as or while it is matched, and a matched column
// stays matched), which are the optimality conditions of the rectangular problem.
//
// Determinism: the result depends only on the input (every choice between equal
// values goes to the lower column index, and rows are taken in ascending order), not
// on the order of the k candidates within a row. Memory: 12 bytes per edge, about
// 40 per column, and a search heap of at most one 16-byte entry per edge.
//
// select_top_columns: the k best entries of every row of a float32 matrix, by the
// total order "higher score first, lower column first on equal scores" (NaN ranks
// below every number), written best-first. A strided sample of the row gives a
// threshold that about 2k entries pass (one branch-free pass over the row); the k
// best of those are found by nth_element and sorted, on integer keys. If fewer than
// k pass, the whole row is selected from instead, so the result is always exact.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

namespace mv2v {
namespace lap {

// An order-preserving unsigned key of a float score: a larger key is a better score;
// -0.0 and +0.0 get the same key, NaN gets 0 (below every number, -inf included).
inline uint32_t score_key(float s) {
    if (s != s) return 0;
    if (s == 0.0f) s = 0.0f;
    uint32_t bits;
    std::memcpy(&bits, &s, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// The key of entry (score, column) in the selection's total order: higher score first,
// then lower column; a larger key ranks first. Integer keys sort without branches on
// float comparisons.
inline uint64_t entry_key(float s, int64_t column) {
    return (static_cast<uint64_t>(score_key(s)) << 32) |
           static_cast<uint64_t>(0xFFFFFFFFu - static_cast<uint32_t>(column));
}

inline int64_t key_column(uint64_t key) { return 0xFFFFFFFFu - static_cast<uint32_t>(key); }

// The score of a key (a number's; -0.0 comes back as +0.0).
inline float key_score(uint64_t key) {
    const uint32_t u = static_cast<uint32_t>(key >> 32);
    const uint32_t bits = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
    float s;
    std::memcpy(&s, &bits, sizeof s);
    return s;
}

class SparseAssignment {
  public:
    // columns, scores: (n, k) row-major; every column index in [0, n_cols), n_cols < 2**31;
    // scores finite.
    SparseAssignment(const int64_t *columns, const float *scores, int64_t n, int64_t k,
                     int64_t n_cols)
        : n_(n), k_(k), m_(n_cols) {
        // each row's edges best score first (lower column on equal scores): the scans below
        // stop at the first edge that cannot beat what they hold (potentials are <= 0, so
        // a reduced cost c_ij - v_j is never below the cost c_ij)
        const size_t edges = static_cast<size_t>(n) * static_cast<size_t>(k);
        col_.resize(edges);
        cost_.resize(edges);
        std::vector<uint64_t> keys(static_cast<size_t>(k));
        for (int64_t i = 0; i < n; ++i) {
            const int64_t *c = columns + i * k;
            const float *s = scores + i * k;
            bool sorted = true;
            for (int64_t t = 0; t < k; ++t) {
                keys[t] = entry_key(s[t], c[t]);
                sorted = sorted && (t == 0 || keys[t] < keys[t - 1]);
            }
            if (!sorted) std::sort(keys.begin(), keys.end(), std::greater<uint64_t>());
            for (int64_t t = 0; t < k; ++t) {
                col_[i * k + t] = static_cast<int32_t>(key_column(keys[t]));
                cost_[i * k + t] = -static_cast<double>(key_score(keys[t]));
            }
        }
    }

    // Solve; true when a perfect matching exists, and then col_of_row(i) is row i's column.
    bool solve() {
        const double inf = std::numeric_limits<double>::infinity();
        v_.assign(static_cast<size_t>(m_), 0.0);
        row_of_col_.assign(static_cast<size_t>(m_), -1);
        col_of_row_.assign(static_cast<size_t>(n_), -1);
        row_cost_.assign(static_cast<size_t>(n_), 0.0);
        if (n_ == 0) return true;
        if (n_ > m_ || k_ == 0) return false;
        std::vector<int32_t> free_rows;
        greedy_start(free_rows);
        for (int pass = 0; pass < 2 && !free_rows.empty(); ++pass) row_reduction(free_rows);
        std::sort(free_rows.begin(), free_rows.end());
        dist_.assign(static_cast<size_t>(m_), inf);
        state_.assign(static_cast<size_t>(m_), 0);
        pred_.assign(static_cast<size_t>(m_), -1);
        label_cost_.assign(static_cast<size_t>(m_), 0.0);
        for (const int32_t row : free_rows) {
            if (!augment_from(row)) return false;
        }
        return true;
    }

    int64_t col_of_row(int64_t i) const { return col_of_row_[static_cast<size_t>(i)]; }

  private:
    using Entry = std::pair<double, int32_t>;  // (distance, column)

    const int32_t *row_cols(int64_t i) const { return col_.data() + i * k_; }
    const double *row_costs(int64_t i) const { return cost_.data() + i * k_; }

    void assign(int32_t i, int32_t j, double c) {
        col_of_row_[i] = j;
        row_cost_[i] = c;
        row_of_col_[j] = i;
    }

    // Best (u1, j1) and second-best distinct column (u2, j2) of c_ij - v_j over row i, with
    // the costs c1, c2 of those edges; ties go to the lower column. j2 = -1 when the row has
    // a single distinct column.
    void best_two(int32_t i, double &u1, int32_t &j1, double &c1, double &u2, int32_t &j2,
                  double &c2) const {
        const double inf = std::numeric_limits<double>::infinity();
        const int32_t *cols = row_cols(i);
        const double *costs = row_costs(i);
        u1 = u2 = inf;
        j1 = j2 = -1;
        c1 = c2 = 0.0;
        for (int64_t t = 0; t < k_; ++t) {
            if (costs[t] > u2) break;  // this edge and the rest reduce to more than u2
            const int32_t j = cols[t];
            const double r = costs[t] - v_[j];
            if (j == j1) {  // the best column listed again
                if (r < u1) {
                    u1 = r;
                    c1 = costs[t];
                }
            } else if (j1 < 0 || r < u1 || (r == u1 && j < j1)) {
                u2 = u1;  // the former best is now the best other column
                j2 = j1;
                c2 = c1;
                u1 = r;
                j1 = j;
                c1 = costs[t];
            } else if (j2 < 0 || r < u2 || (r == u2 && j < j2)) {
                u2 = r;
                j2 = j;
                c2 = costs[t];
            }
        }
    }

    // Row i (in order) takes the lowest free column among its best-scoring ones, if any.
    void greedy_start(std::vector<int32_t> &free_rows) {
        free_rows.clear();
        for (int32_t i = 0; i < static_cast<int32_t>(n_); ++i) {
            const int32_t *cols = row_cols(i);
            const double *costs = row_costs(i);
            // the best edges come first, lower columns first
            const double best = costs[0];
            int32_t best_free = -1;
            for (int64_t t = 0; t < k_ && costs[t] == best; ++t) {
                if (row_of_col_[cols[t]] < 0) {
                    best_free = cols[t];
                    break;
                }
            }
            if (best_free >= 0) assign(i, best_free, best);
            else free_rows.push_back(i);
        }
    }

    // One pass of augmenting row reduction over free_rows; leaves the rows still free.
    void row_reduction(std::vector<int32_t> &free_rows) {
        const size_t f = free_rows.size();
        size_t next = 0, kept = 0;
        // re-processing a displaced row at once is bounded, so that float ties or
        // tiny potential steps cannot make the pass long; Dijkstra finishes the rest
        int64_t budget = 8 * n_ + 64;
        while (next < f) {
            const int32_t i = free_rows[next++];
            double u1, u2, c1, c2;
            int32_t j1, j2;
            best_two(i, u1, j1, c1, u2, j2, c2);
            if (j2 < 0) {  // a single distinct column
                if (row_of_col_[j1] < 0) assign(i, j1, c1);
                else free_rows[kept++] = i;
                continue;
            }
            int32_t displaced = row_of_col_[j1];
            const bool gap = u1 < u2;
            if (gap) {
                v_[j1] -= u2 - u1;
            } else if (displaced >= 0) {
                // u1 == u2: take the equally good second column instead
                j1 = j2;
                c1 = c2;
                displaced = row_of_col_[j2];
            }
            if (displaced >= 0) col_of_row_[displaced] = -1;
            assign(i, j1, c1);
            if (displaced >= 0) {
                if (gap && budget-- > 0) free_rows[--next] = displaced;
                else free_rows[kept++] = displaced;
            }
        }
        free_rows.resize(kept);
    }

    static bool heap_after(const Entry &a, const Entry &b) {  // a pops after b
        return a.first > b.first || (a.first == b.first && a.second > b.second);
    }

    void label(int32_t j, double d, int32_t row, double c) {
        if (state_[j] == 0) {
            state_[j] = 1;
            touched_.push_back(j);
        }
        dist_[j] = d;
        pred_[j] = row;
        label_cost_[j] = c;
        heap_.emplace_back(d, j);
        std::push_heap(heap_.begin(), heap_.end(), heap_after);
    }

    // Dijkstra from the free row `source` to the nearest free column, then augment.
    bool augment_from(int32_t source) {
        touched_.clear();
        scanned_.clear();
        heap_.clear();
        // (bound, bound_col): the best labelled free column in the heap's order; an entry
        // that would pop after it is never pushed (it could not be scanned before the sink)
        double bound = std::numeric_limits<double>::infinity();
        int32_t bound_col = std::numeric_limits<int32_t>::max();
        auto relax = [&](int32_t c, double d, int32_t row, double cost) {
            if (d > bound || (d == bound && c > bound_col) || !(d < dist_[c])) return;
            label(c, d, row, cost);
            if (row_of_col_[c] < 0) {
                bound = d;
                bound_col = c;
            }
        };
        {
            const int32_t *cols = row_cols(source);
            const double *costs = row_costs(source);
            for (int64_t t = 0; t < k_ && !(costs[t] > bound); ++t) {
                const int32_t j = cols[t];
                relax(j, costs[t] - v_[j], source, costs[t]);
            }
        }
        int32_t sink = -1;
        double sink_dist = 0.0;
        while (!heap_.empty()) {
            std::pop_heap(heap_.begin(), heap_.end(), heap_after);
            const Entry top = heap_.back();
            heap_.pop_back();
            const int32_t j = top.second;
            if (state_[j] == 2 || top.first > dist_[j]) continue;  // stale entry
            state_[j] = 2;
            if (row_of_col_[j] < 0) {
                sink = j;
                sink_dist = top.first;
                break;
            }
            scanned_.push_back(j);
            const int32_t i = row_of_col_[j];
            // distances through row i: d_j + (c_ik - v_k) - (c_ij - v_j), where
            // (c_ik - v_k) - (c_ij - v_j) >= 0 by dual feasibility
            const double base = top.first - (row_cost_[i] - v_[j]);
            const int32_t *cols = row_cols(i);
            const double *costs = row_costs(i);
            for (int64_t t = 0; t < k_; ++t) {
                const double lower = base + costs[t];  // a lower bound of the distance
                if (lower > bound) break;               // (and of the rest of the row's)
                const int32_t c = cols[t];
                if (state_[c] == 2) continue;
                relax(c, lower - v_[c], i, costs[t]);
            }
        }
        bool found = sink >= 0;
        if (found) {
            // v_j += d_j - d_sink <= 0 (kept <= 0 exactly, whatever the rounding)
            for (const int32_t j : scanned_) v_[j] += std::min(0.0, dist_[j] - sink_dist);
            int32_t j = sink;
            for (;;) {
                const int32_t i = pred_[j];
                const int32_t previous = col_of_row_[i];
                assign(i, j, label_cost_[j]);
                if (i == source) break;
                j = previous;
            }
        }
        const double inf = std::numeric_limits<double>::infinity();
        for (const int32_t j : touched_) {
            dist_[j] = inf;
            state_[j] = 0;
        }
        return found;
    }

    int64_t n_, k_, m_;
    std::vector<int32_t> col_;
    std::vector<double> cost_;
    std::vector<double> v_;
    std::vector<int32_t> row_of_col_, col_of_row_;
    std::vector<double> row_cost_;
    std::vector<double> dist_, label_cost_;
    std::vector<int32_t> pred_, touched_, scanned_;
    std::vector<char> state_;
    std::vector<Entry> heap_;
};

// Solve and write row i's column to col_of_row[i]; false when no perfect matching exists
// (col_of_row is then left unspecified).
inline bool solve_sparse_assignment(const int64_t *columns, const float *scores, int64_t n,
                                    int64_t k, int64_t n_cols, int64_t *col_of_row) {
    SparseAssignment problem(columns, scores, n, k, n_cols);
    if (!problem.solve()) return false;
    for (int64_t i = 0; i < n; ++i) col_of_row[i] = problem.col_of_row(i);
    return true;
}

// ---- candidate selection ----------------------------------------------------------------

// The k best entries of rows [0, n_rows) of `matrix` (row stride ld, n_cols >= k
// columns, n_cols < 2**32), best-first, into out_scores / out_columns (n_rows, k)
// row-major.
inline void select_top_columns(const float *matrix, int64_t ld, int64_t n_rows, int64_t n_cols,
                               int64_t k, float *out_scores, int64_t *out_columns) {
    if (k <= 0) return;
    std::vector<int32_t> passing(static_cast<size_t>(n_cols));
    std::vector<uint64_t> pool;
    pool.reserve(static_cast<size_t>(n_cols));
    std::vector<float> sample;
    constexpr int64_t kSample = 128;
    const bool sampled = n_cols >= 8 * kSample && 8 * k <= n_cols;
    const int64_t stride = sampled ? n_cols / kSample : 1;
    // the threshold is the sample's rank-th best: about 1.5 k of the row's entries pass it
    const int64_t rank =
        sampled ? std::min<int64_t>(kSample - 1, (3 * k * kSample) / (2 * n_cols) + 4) : 0;
    for (int64_t r = 0; r < n_rows; ++r) {
        const float *row = matrix + r * ld;
        pool.clear();
        bool done = false;
        if (sampled) {
            sample.clear();
            for (int64_t t = 0; t < kSample; ++t) {
                const float x = row[t * stride];
                sample.push_back(x == x ? x : -std::numeric_limits<float>::infinity());
            }
            std::nth_element(sample.begin(), sample.begin() + rank, sample.end(),
                             std::greater<float>());
            const float threshold = sample[static_cast<size_t>(rank)];
            // branch-free compaction of the columns at or above the threshold (NaN never is)
            int64_t count = 0;
            for (int64_t j = 0; j < n_cols; ++j) {
                passing[static_cast<size_t>(count)] = static_cast<int32_t>(j);
                count += row[j] >= threshold;
            }
            if (count >= k) {
                for (int64_t t = 0; t < count; ++t) {
                    const int32_t j = passing[static_cast<size_t>(t)];
                    pool.push_back(entry_key(row[j], j));
                }
                done = true;
            }
        }
        if (!done) {  // too few passed (or a small row): select from the whole row
            pool.clear();
            for (int64_t j = 0; j < n_cols; ++j) pool.push_back(entry_key(row[j], j));
        }
        // the k best keys, best first
        if (static_cast<int64_t>(pool.size()) > k) {
            std::nth_element(pool.begin(), pool.begin() + (k - 1), pool.end(),
                             std::greater<uint64_t>());
        }
        std::sort(pool.begin(), pool.begin() + k, std::greater<uint64_t>());
        float *s = out_scores + r * k;
        int64_t *ix = out_columns + r * k;
        for (int64_t t = 0; t < k; ++t) {
            const int64_t j = key_column(pool[static_cast<size_t>(t)]);
            ix[t] = j;
            s[t] = row[j];
        }
    }
}

}  // namespace lap
}  // namespace mv2v
