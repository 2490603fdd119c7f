// pybind11 glue for the kernels of topk.hpp, knn_int8.hpp, knn_int8_avx2.hpp, rows_times.hpp and
// assignment.hpp: checks shapes, dtypes and layout with clear messages (no silent
// copies: in-out arrays must be the caller's own buffers), then releases the GIL
// around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "assignment.hpp"
#include "knn_int8.hpp"
#include "knn_int8_avx2.hpp"
#include "rows_times.hpp"
#include "topk.hpp"

namespace py = pybind11;

namespace {

template <typename T>
void check_matrix(const py::array &a, const char *name, bool writeable) {
    if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().equal(py::dtype::of<T>())) {
        throw py::type_error(std::string(name) + ": expected dtype " +
                             std::string(py::str(py::dtype::of<T>())) + ", got " +
                             std::string(py::str(a.dtype())));
    }
    if (a.ndim() != 2) {
        throw py::value_error(std::string(name) + ": expected a 2-D array, got " +
                              std::to_string(a.ndim()) + "-D");
    }
    if (a.size() > 0 && a.shape(1) > 1 && a.strides(1) != static_cast<py::ssize_t>(sizeof(T))) {
        throw py::value_error(std::string(name) + ": rows must be contiguous (C order)");
    }
    if (writeable && !a.writeable()) {
        throw py::value_error(std::string(name) + ": array is read-only");
    }
}

void fold_tile(const py::array &tile, int64_t offset, py::array &scores, py::array &indices) {
    check_matrix<float>(tile, "tile", false);
    check_matrix<float>(scores, "scores", true);
    check_matrix<int64_t>(indices, "indices", true);
    const int64_t n_rows = tile.shape(0), n_cols = tile.shape(1), k = scores.shape(1);
    if (scores.shape(0) != n_rows || indices.shape(0) != n_rows || indices.shape(1) != k) {
        throw py::value_error("fold_tile: tile has " + std::to_string(n_rows) +
                              " rows but scores/indices have shapes (" +
                              std::to_string(scores.shape(0)) + ", " + std::to_string(k) + ") / (" +
                              std::to_string(indices.shape(0)) + ", " +
                              std::to_string(indices.shape(1)) + ")");
    }
    if (k < 1) throw py::value_error("fold_tile: k must be >= 1");
    if (scores.strides(0) != k * static_cast<int64_t>(sizeof(float)) ||
        indices.strides(0) != k * static_cast<int64_t>(sizeof(int64_t))) {
        throw py::value_error("fold_tile: scores and indices must be C-contiguous");
    }
    const int64_t ld = n_rows > 1 ? tile.strides(0) / static_cast<int64_t>(sizeof(float)) : n_cols;
    const float *t = static_cast<const float *>(tile.data());
    float *s = static_cast<float *>(scores.mutable_data());
    int64_t *ix = static_cast<int64_t *>(indices.mutable_data());
    py::gil_scoped_release release;
    mv2v::fold_tile_rows(t, ld, n_cols, offset, s, ix, k, 0, n_rows);
}

void sort_topk(py::array &scores, py::array &indices) {
    check_matrix<float>(scores, "scores", true);
    check_matrix<int64_t>(indices, "indices", true);
    const int64_t n_rows = scores.shape(0), k = scores.shape(1);
    if (indices.shape(0) != n_rows || indices.shape(1) != k) {
        throw py::value_error("sort_topk: scores and indices must have the same shape");
    }
    if (n_rows > 1 && (scores.strides(0) != k * 4 || indices.strides(0) != k * 8)) {
        throw py::value_error("sort_topk: scores and indices must be C-contiguous");
    }
    float *s = static_cast<float *>(scores.mutable_data());
    int64_t *ix = static_cast<int64_t *>(indices.mutable_data());
    py::gil_scoped_release release;
    mv2v::sort_rows(s, ix, n_rows, k);
}

py::tuple merge_topk(const py::array &scores_a, const py::array &indices_a,
                     const py::array &scores_b, const py::array &indices_b) {
    check_matrix<float>(scores_a, "scores_a", false);
    check_matrix<int64_t>(indices_a, "indices_a", false);
    check_matrix<float>(scores_b, "scores_b", false);
    check_matrix<int64_t>(indices_b, "indices_b", false);
    const int64_t n_rows = scores_a.shape(0), k = scores_a.shape(1);
    for (const py::array *a : {&indices_a, &scores_b, &indices_b}) {
        if (a->shape(0) != n_rows || a->shape(1) != k) {
            throw py::value_error("merge_topk: all four arrays must have the same shape (n_queries, k)");
        }
    }
    for (const py::array *a : {&scores_a, &indices_a, &scores_b, &indices_b}) {
        if (n_rows > 1 && a->strides(0) != k * static_cast<int64_t>(a->itemsize())) {
            throw py::value_error("merge_topk: arrays must be C-contiguous");
        }
    }
    py::array_t<float> out_s({n_rows, k});
    py::array_t<int64_t> out_i({n_rows, k});
    const float *sa = static_cast<const float *>(scores_a.data());
    const float *sb = static_cast<const float *>(scores_b.data());
    const int64_t *ia = static_cast<const int64_t *>(indices_a.data());
    const int64_t *ib = static_cast<const int64_t *>(indices_b.data());
    float *so = out_s.mutable_data();
    int64_t *io = out_i.mutable_data();
    {
        py::gil_scoped_release release;
        mv2v::merge_sorted_rows(sa, ia, sb, ib, so, io, n_rows, k);
    }
    return py::make_tuple(out_s, out_i);
}

void check_heaps(const py::array &scores, const py::array &indices, int64_t n_rows, const char *who) {
    check_matrix<float>(scores, "scores", true);
    check_matrix<int64_t>(indices, "indices", true);
    const int64_t k = scores.shape(1);
    if (scores.shape(0) != n_rows || indices.shape(0) != n_rows || indices.shape(1) != k) {
        throw py::value_error(std::string(who) + ": queries have " + std::to_string(n_rows) +
                              " rows but scores/indices have shapes (" +
                              std::to_string(scores.shape(0)) + ", " + std::to_string(k) + ") / (" +
                              std::to_string(indices.shape(0)) + ", " +
                              std::to_string(indices.shape(1)) + ")");
    }
    if (k < 1) throw py::value_error(std::string(who) + ": k must be >= 1");
    if ((n_rows > 1 && scores.strides(0) != k * static_cast<int64_t>(sizeof(float))) ||
        (n_rows > 1 && indices.strides(0) != k * static_cast<int64_t>(sizeof(int64_t)))) {
        throw py::value_error(std::string(who) + ": scores and indices must be C-contiguous");
    }
}

int64_t row_stride(const py::array &a) {
    return a.shape(0) > 1 ? a.strides(0) / static_cast<int64_t>(a.itemsize()) : a.shape(1);
}

// The int32 accumulators hold sums of d products of at most 255 x 127: exact for d <= 65536.
void check_int8_features(int64_t d) {
    if (d > mv2v::int8::MAX_FEATURES) {
        throw py::value_error("Int8Database: at most " + std::to_string(mv2v::int8::MAX_FEATURES) +
                              " features (int32 accumulators), got " + std::to_string(d) +
                              "; use the BLAS path");
    }
}

std::unique_ptr<mv2v::int8::PackedDatabase> pack_int8(const py::array &rows, const py::object &bias) {
    check_matrix<float>(rows, "rows", false);
    if (rows.shape(0) > 1 && rows.strides(0) % static_cast<int64_t>(sizeof(float)) != 0) {
        throw py::value_error("rows: row stride is not a multiple of 4 bytes");
    }
    const float *bias_data = nullptr;
    py::array bias_array;
    if (!bias.is_none()) {
        bias_array = py::reinterpret_borrow<py::array>(bias);
        if (!py::isinstance<py::array>(bias) || !bias_array.dtype().equal(py::dtype::of<float>())) {
            throw py::type_error("bias: expected a float32 array");
        }
        if (bias_array.ndim() != 1 || bias_array.shape(0) != rows.shape(0)) {
            throw py::value_error("bias: expected shape (" + std::to_string(rows.shape(0)) +
                                  ",), one value per row");
        }
        if (bias_array.shape(0) > 1 && bias_array.strides(0) != static_cast<py::ssize_t>(sizeof(float))) {
            throw py::value_error("bias: must be contiguous");
        }
        bias_data = static_cast<const float *>(bias_array.data());
    }
    auto packed = std::make_unique<mv2v::int8::PackedDatabase>();
#if defined(MV2V_X86) && defined(__GNUC__)
    const bool vnni = mv2v::int8::cpu_has_vnni();
    if (!vnni && !mv2v::int8::cpu_has_avx2()) {
        throw std::runtime_error("Int8Database: this CPU has neither AVX-512 VNNI nor AVX2; use "
                                 "the BLAS path");
    }
    const float *data = static_cast<const float *>(rows.data());
    const int64_t n = rows.shape(0), d = rows.shape(1), ld = row_stride(rows);
    check_int8_features(d);
    {
        py::gil_scoped_release release;
        // both quantisers give the same codes: the packed database serves either kernel
        if (vnni) {
            mv2v::int8::pack_database(data, ld, n, d, bias_data, *packed);
        } else {
            mv2v::int8::pack_database_avx2(data, ld, n, d, bias_data, *packed);
        }
    }
#else
    (void)bias_data;
    throw std::runtime_error("Int8Database: not built for this CPU; use the BLAS path");
#endif
    return packed;
}

void search_int8_with(bool avx2, const py::array &queries, const mv2v::int8::PackedDatabase &packed,
                      const py::array &rows, int64_t offset, py::array &scores, py::array &indices) {
#if defined(MV2V_X86) && defined(__GNUC__)
    if (!avx2 && !mv2v::int8::cpu_has_vnni()) {
        throw std::runtime_error("search_int8: this CPU has no AVX-512 VNNI; use the BLAS path");
    }
    if (avx2 && !mv2v::int8::cpu_has_avx2()) {
        throw std::runtime_error("search_int8_avx2: this CPU has no AVX2 + FMA; use the BLAS path");
    }
    check_matrix<float>(queries, "queries", false);
    check_matrix<float>(rows, "rows", false);
    if (rows.shape(0) != packed.n_rows || rows.shape(1) != packed.n_features) {
        throw py::value_error("search_int8: rows have shape (" + std::to_string(rows.shape(0)) + ", " +
                              std::to_string(rows.shape(1)) + ") but the packed database was built from (" +
                              std::to_string(packed.n_rows) + ", " + std::to_string(packed.n_features) + ")");
    }
    if (queries.shape(1) != packed.n_features) {
        throw py::value_error("search_int8: queries have " + std::to_string(queries.shape(1)) +
                              " features, the database " + std::to_string(packed.n_features));
    }
    const int64_t m = queries.shape(0);
    check_heaps(scores, indices, m, "search_int8");
    const float *q = static_cast<const float *>(queries.data());
    const float *r = static_cast<const float *>(rows.data());
    float *s = static_cast<float *>(scores.mutable_data());
    int64_t *ix = static_cast<int64_t *>(indices.mutable_data());
    const int64_t ldq = row_stride(queries), ldr = row_stride(rows), k = scores.shape(1);
    py::gil_scoped_release release;
    if (avx2) {
        mv2v::int8::search_block_avx2(q, ldq, m, packed, r, ldr, offset, s, ix, k);
    } else {
        mv2v::int8::search_block(q, ldq, m, packed, r, ldr, offset, s, ix, k);
    }
#else
    (void)avx2; (void)queries; (void)packed; (void)rows; (void)offset; (void)scores; (void)indices;
    throw std::runtime_error("search_int8: not built for this CPU; use the BLAS path");
#endif
}

void search_int8(const py::array &queries, const mv2v::int8::PackedDatabase &packed,
                 const py::array &rows, int64_t offset, py::array &scores, py::array &indices) {
    search_int8_with(false, queries, packed, rows, offset, scores, indices);
}

void search_int8_avx2(const py::array &queries, const mv2v::int8::PackedDatabase &packed,
                      const py::array &rows, int64_t offset, py::array &scores, py::array &indices) {
    search_int8_with(true, queries, packed, rows, offset, scores, indices);
}


void rows_times(const py::array &X, const py::array &W, py::array &out, int64_t n_threads) {
    check_matrix<float>(X, "X", false);
    check_matrix<float>(W, "W", false);
    check_matrix<float>(out, "out", true);
    const int64_t n = X.shape(0), d_a = X.shape(1), d_b = W.shape(1);
    if (W.shape(0) != d_a) {
        throw py::value_error("rows_times: X has " + std::to_string(d_a) + " columns but W has " +
                              std::to_string(W.shape(0)) + " rows");
    }
    if (out.shape(0) != n || out.shape(1) != d_b) {
        throw py::value_error("rows_times: out must have shape (" + std::to_string(n) + ", " +
                              std::to_string(d_b) + "), got (" + std::to_string(out.shape(0)) +
                              ", " + std::to_string(out.shape(1)) + ")");
    }
    if (W.shape(0) > 1 && W.strides(0) != d_b * static_cast<int64_t>(sizeof(float))) {
        throw py::value_error("rows_times: W must be C-contiguous");
    }
    for (const py::array *a : {&X, static_cast<const py::array *>(&out)}) {
        if (a->shape(0) > 1 && (a->strides(0) < 0 ||
                                a->strides(0) % static_cast<int64_t>(sizeof(float)) != 0)) {
            throw py::value_error("rows_times: row stride must be a positive multiple of 4 bytes");
        }
    }
    if (n_threads < 1) throw py::value_error("rows_times: n_threads must be >= 1");
    if (n == 0 || d_b == 0) return;
    const float *x = static_cast<const float *>(X.data());
    const float *w = static_cast<const float *>(W.data());
    float *o = static_cast<float *>(out.mutable_data());
    const int64_t ldx = row_stride(X), ldo = row_stride(out);
    py::gil_scoped_release release;
    const std::vector<float> panels = mv2v::rows_times::pack_panels(w, d_a, d_b);
    const bool use_fma = mv2v::rows_times::cpu_has_fma();
    // Fixed row ranges per thread; a row's result does not depend on which range holds it.
    constexpr int64_t kMinRowsPerThread = 256;
    const int64_t workers = std::max<int64_t>(1, std::min(n_threads, n / kMinRowsPerThread));
    const int64_t per = (n + workers - 1) / workers;
    auto run = [&](int64_t t) {
        const int64_t begin = t * per, end = std::min(n, begin + per);
        if (begin < end)
            mv2v::rows_times::multiply(x, ldx, panels.data(), d_a, d_b, begin, end, o, ldo, use_fma);
    };
    std::vector<std::thread> threads;
    for (int64_t t = 1; t < workers; ++t) threads.emplace_back(run, t);
    run(0);
    for (auto &thread : threads) thread.join();
}


// raised by sparse_assignment when the candidate edges hold no perfect matching
struct NoPerfectMatching : std::runtime_error {
    using std::runtime_error::runtime_error;
};

py::tuple sparse_assignment(const py::array &columns, const py::array &scores, int64_t n_cols) {
    check_matrix<int64_t>(columns, "columns", false);
    check_matrix<float>(scores, "scores", false);
    const int64_t n = columns.shape(0), k = columns.shape(1);
    if (scores.shape(0) != n || scores.shape(1) != k) {
        throw py::value_error("sparse_assignment: columns has shape (" + std::to_string(n) + ", " +
                              std::to_string(k) + ") but scores has (" +
                              std::to_string(scores.shape(0)) + ", " +
                              std::to_string(scores.shape(1)) + ")");
    }
    if (n > 1 && (columns.strides(0) != k * static_cast<int64_t>(sizeof(int64_t)) ||
                  scores.strides(0) != k * static_cast<int64_t>(sizeof(float)))) {
        throw py::value_error("sparse_assignment: columns and scores must be C-contiguous");
    }
    if (n_cols < 0 || n_cols > std::numeric_limits<int32_t>::max()) {
        throw py::value_error("sparse_assignment: n_cols must be in [0, 2**31), got " +
                              std::to_string(n_cols));
    }
    const int64_t *c = static_cast<const int64_t *>(columns.data());
    const float *s = static_cast<const float *>(scores.data());
    const int64_t edges = n * k;
    int64_t bad_column = -1, bad_score = -1;
    py::array_t<int64_t> out_rows(n), out_cols(n);
    int64_t *rows = out_rows.mutable_data(), *cols = out_cols.mutable_data();
    bool solved = false;
    {
        py::gil_scoped_release release;
        for (int64_t e = 0; e < edges && bad_column < 0; ++e) {
            if (c[e] < 0 || c[e] >= n_cols) bad_column = e;
        }
        for (int64_t e = 0; e < edges && bad_score < 0; ++e) {
            if (!std::isfinite(s[e])) bad_score = e;
        }
        if (bad_column < 0 && bad_score < 0) {
            solved = mv2v::lap::solve_sparse_assignment(c, s, n, k, n_cols, cols);
            for (int64_t i = 0; i < n; ++i) rows[i] = i;
        }
    }
    if (bad_column >= 0) {
        throw py::value_error("sparse_assignment: columns[" + std::to_string(bad_column / k) +
                              ", " + std::to_string(bad_column % k) + "] = " +
                              std::to_string(c[bad_column]) + " is outside [0, n_cols = " +
                              std::to_string(n_cols) + ")");
    }
    if (bad_score >= 0) {
        throw py::value_error("sparse_assignment: scores[" + std::to_string(bad_score / k) + ", " +
                              std::to_string(bad_score % k) + "] is NaN or infinite");
    }
    if (!solved) {
        throw NoPerfectMatching(
            "sparse_assignment: the candidate edges admit no perfect matching of the " +
            std::to_string(n) + " rows into " + std::to_string(n_cols) + " columns");
    }
    return py::make_tuple(out_rows, out_cols);
}

py::tuple row_topk(const py::array &matrix, int64_t k) {
    check_matrix<float>(matrix, "matrix", false);
    const int64_t n = matrix.shape(0), n_cols = matrix.shape(1);
    if (k < 1 || k > n_cols) {
        throw py::value_error("row_topk: k must be in [1, n_cols = " + std::to_string(n_cols) +
                              "], got " + std::to_string(k));
    }
    if (n_cols > std::numeric_limits<int32_t>::max()) {
        throw py::value_error("row_topk: at most 2**31 - 1 columns");
    }
    if (n > 1 && (matrix.strides(0) <= 0 ||
                  matrix.strides(0) % static_cast<int64_t>(sizeof(float)) != 0)) {
        throw py::value_error("row_topk: row stride must be a positive multiple of 4 bytes");
    }
    py::array_t<float> out_s({n, k});
    py::array_t<int64_t> out_i({n, k});
    const float *x = static_cast<const float *>(matrix.data());
    float *s = out_s.mutable_data();
    int64_t *ix = out_i.mutable_data();
    const int64_t ld = row_stride(matrix);
    {
        py::gil_scoped_release release;
        mv2v::lap::select_top_columns(x, ld, n, n_cols, k, s, ix);
    }
    return py::make_tuple(out_s, out_i);
}
}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "minivec2vec compiled kernels: fused running top-k selection over similarity tiles, "
              "int8-screened search, fixed-order products, sparse linear assignment.";
    m.def("fold_tile", &fold_tile, py::arg("tile"), py::arg("offset"), py::arg("scores"),
          py::arg("indices"),
          R"doc(Fold a similarity tile into per-query running top-k heaps (in place).

tile: float32 (n_rows, n_cols), rows contiguous; offset: global index of column 0;
scores/indices: float32/int64 (n_rows, k) C-contiguous heaps, initialised to
-inf / -1. Releases the GIL.)doc");
    py::class_<mv2v::int8::PackedDatabase>(m, "Int8Database",
        "A float32 database quantised row by row to int8 codes, packed for search_int8.")
        .def(py::init(&pack_int8), py::arg("rows"), py::arg("bias") = py::none(),
             "Quantise and pack float32 rows (n, d), rows contiguous; optional float32 bias (n,):\n"
             "the score of row j becomes q . x_j + bias[j]. Releases the GIL.")
        .def_readonly("n_rows", &mv2v::int8::PackedDatabase::n_rows)
        .def_readonly("n_features", &mv2v::int8::PackedDatabase::n_features)
        .def_property_readonly("nbytes", &mv2v::int8::PackedDatabase::bytes);
    m.def("has_vnni", &mv2v::int8::cpu_has_vnni,
          "True when this CPU can run search_int8 (AVX-512 VNNI).");
    m.def("has_avx2", &mv2v::int8::cpu_has_avx2,
          "True when this CPU (and OS) can run search_int8_avx2 (AVX2 + FMA, YMM state saved).");
    m.def("search_int8_avx2", &search_int8_avx2, py::arg("queries"), py::arg("packed"),
          py::arg("rows"), py::arg("offset"), py::arg("scores"), py::arg("indices"),
          R"doc(search_int8 with an AVX2 kernel (vpmaddubsw / vpmaddwd, 6-bit query codes): the
same arguments and the same exact top-k. Releases the GIL.)doc");
    m.def("search_int8", &search_int8, py::arg("queries"), py::arg("packed"), py::arg("rows"),
          py::arg("offset"), py::arg("scores"), py::arg("indices"),
          R"doc(Exact top-k by inner product, screened with int8 dot products (in place).

queries: float32 (m, d) rows contiguous; packed: Int8Database of `rows`; rows: the float32
(n, d) database the exact scores are taken from; offset: global index of row 0;
scores/indices: running heaps as for fold_tile. Releases the GIL.)doc");
    m.def("rows_times", &rows_times, py::arg("X"), py::arg("W"), py::arg("out"),
          py::arg("n_threads"),
          R"doc(out = X @ W (float32), each element summed over k in order 0..d_a-1 with one
rounding per step, so a row's result depends on that row only: not on the block it is in,
its position there or the thread count (see rows_times.hpp). X: (n, d_a) rows contiguous;
W: (d_a, d_b) C-contiguous; out: (n, d_b) rows contiguous, writeable. Releases the GIL.)doc");
    m.def("has_fma", &mv2v::rows_times::cpu_has_fma,
          "True when rows_times uses fused multiply-adds (AVX2 + FMA) on this CPU.");
    py::register_exception<NoPerfectMatching>(m, "NoPerfectMatchingError", PyExc_ValueError);
    m.def("sparse_assignment", &sparse_assignment, py::arg("columns"), py::arg("scores"),
          py::arg("n_cols"),
          R"doc(Exact maximum-total-score perfect matching of n rows into n_cols >= n columns,
row i taking one of the columns columns[i, :k] (int64, (n, k) C-contiguous) with the scores
scores[i, :k] (float32, finite, same shape); a column listed twice in a row counts with its
best score. Shortest augmenting paths with potentials (Jonker-Volgenant style) in double
precision; deterministic, single-threaded. Returns (rows, cols), int64 (n,), rows ascending.
Raises NoPerfectMatchingError (a ValueError) when the edges admit no perfect matching.
Releases the GIL.)doc");
    m.def("row_topk", &row_topk, py::arg("matrix"), py::arg("k"),
          R"doc(The k best entries of every row of a float32 (n, n_cols) matrix (rows contiguous),
1 <= k <= n_cols: higher score first, the lower column first on equal scores, NaN below
every number. Returns new (scores float32 (n, k), columns int64 (n, k)), each row best-first
(the order sparse_assignment reads fastest). Single-threaded; releases the GIL.)doc");
    m.def("sort_topk", &sort_topk, py::arg("scores"), py::arg("indices"),
          "Sort running top-k heaps in place into best-first order (ties: lower index first).");
    m.def("merge_topk", &merge_topk, py::arg("scores_a"), py::arg("indices_a"), py::arg("scores_b"),
          py::arg("indices_b"),
          "Merge two best-first top-k lists per row; returns new (scores, indices).");
}
