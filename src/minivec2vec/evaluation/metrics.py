"""Retrieval evaluation of an alignment.

Two settings, both on paired test rows (row i of each side embeds the same text):

* :func:`evaluate` — the protocol of mini-vec2vec. Every mapped row ranks all target rows of
  the pool by cosine (or CSLS); the true partner's 1-based rank gives top-1 accuracy and mean
  rank.
* :func:`evaluate_retrieval` — a migration. A team maps its A corpus into B and serves B
  queries: recall@k of the B queries against the mapped corpus, against the corpus re-embedded
  by B, their ratio (the retention) and how much the two top-k lists overlap.

Every search is an exact blocked kNN (:mod:`minivec2vec.kernels.knn`) or a blocked pass over the
targets: no n x n matrix is ever built.
"""
from __future__ import annotations

import os

import numpy as np

from ..exceptions import (InputFileError, InvalidParameterError, ParameterTypeError,
                          PathNotFoundError, ShapeError, TooFewRowsError)
from .._runtime.validation import check_embeddings, check_positive_int, check_rows
from ..kernels import knn as _knn_module   # the module: its _knn is looked up at each call
from ..kernels.knn import _knn, normalise_rows
DEFAULT_KS = (1, 10, 100)
# the protocol's test pool: how many paired rows each mapped row is ranked against (the last
# TEST_POOL rows of a split, :func:`minivec2vec.evaluation.protocol.split`). Not a block size.
# Defined here, the lowest module of the evaluation package, so that protocol can import it.
TEST_POOL = 8192
RANK_BLOCK = 1024        # query rows per block of the rank pass (a block x pool score tile)


def evaluate(mapped, targets, pool=TEST_POOL, csls=False, csls_k=10, n_threads=None):
    """Top-1 accuracy, mean rank and mean paired cosine of paired rows.

    Parameters
    ----------
    mapped : ndarray of shape (n, d)
    targets : ndarray of shape (n, d), row-aligned with ``mapped``
    pool : int or None
        The first ``pool`` pairs form the retrieval pool (all pairs if None or n < pool).
    csls : bool
        Rank by CSLS (2 cos - r_target - r_query, r = mean similarity to k nearest
        neighbours in the other set) instead of cosine, to counter hubness.

    Returns
    -------
    dict with ``top1``, ``mean_rank`` (1-based), ``mean_cos``, ``pool`` and ``metric``.
    """
    ranks, true_cos = _paired_ranks(mapped, targets, pool, csls, csls_k, n_threads)
    return {"top1": float(np.mean(ranks == 1)), "mean_rank": float(ranks.mean()),
            "mean_cos": float(true_cos.mean()), "pool": int(ranks.shape[0]),
            "metric": "csls" if csls else "cosine"}


def _paired_ranks(mapped, targets, pool=TEST_POOL, csls=False, csls_k=10, n_threads=None,
                  names=("mapped", "targets")):
    """The 1-based rank of each row's partner among the pool's targets, and the paired cosines
    (ties counted in the partner's favour). Scores one block of RANK_BLOCK rows at a time."""
    mapped = check_embeddings(mapped, names[0])
    targets = check_embeddings(targets, names[1], n_features=mapped.shape[1])
    if targets.shape[0] != mapped.shape[0]:
        raise ShapeError(f"{names[0]} has {mapped.shape[0]} rows but {names[1]} has "
                         f"{targets.shape[0]}: rows must be paired")
    n = mapped.shape[0] if pool is None else min(check_positive_int(pool, "pool"), mapped.shape[0])
    Q = normalise_rows(np.array(mapped[:n], dtype=np.float32))
    T = normalise_rows(np.array(targets[:n], dtype=np.float32))
    true_cos = np.einsum("ij,ij->i", Q, T)
    penalty = np.zeros(n, dtype=np.float32)
    if csls:
        k = min(check_positive_int(csls_k, "csls_k"), n)
        r_t, _ = _knn(T, Q, k, metric="ip", n_threads=n_threads)
        penalty = r_t.mean(axis=1).astype(np.float32)
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, RANK_BLOCK):
        stop = min(start + RANK_BLOCK, n)
        scores = Q[start:stop] @ T.T
        if csls:
            scores = 2.0 * scores - penalty[None, :]
        own = scores[np.arange(stop - start), np.arange(start, stop)]
        ranks[start:stop] = 1 + (scores > own[:, None]).sum(axis=1)
    return ranks, true_cos


# ------------------------------------------------------------------------------ retrieval
def evaluate_retrieval(mapped, corpus, queries=None, relevant=None, ks=DEFAULT_KS, pool=TEST_POOL,
                       csls=False, csls_k=10, n_threads=None, memory_limit=None):
    """Retrieval of B queries against a corpus mapped from A, and against the same corpus
    re-embedded by B.

    Row i of ``mapped`` (A rows mapped into B, e.g. ``model.transform(A_test)``) and row i of
    ``corpus`` (the same texts embedded by B, in the same frame: ``B_test - model.mean_b_``)
    are the same document. Queries rank each corpus by cosine with an exact kNN.

    Parameters
    ----------
    mapped, corpus : ndarray of shape (n, d), row-aligned
    queries : ndarray of shape (m, d), optional
        B-space query rows that are not corpus texts (same frame as ``corpus``). Default: the
        rows of ``corpus`` themselves.
    relevant : sequence of m index lists, optional
        ``relevant[q]``: the corpus rows relevant to query q (e.g. from :func:`read_qrels`). A
        query with none is left out of the recalls (``judged`` counts the others). Default:
        known-item retrieval, query i's only relevant row is corpus row i (needs m <= n).
    ks : sequence of int
        The cut-offs, each at most n.
    pool, csls, csls_k
        As :func:`evaluate`, for ``top1``, ``mean_rank`` and ``mean_cos`` of the paired rows
        (mapped row i ranking the corpus rows; unchanged by ``queries`` and ``relevant``).

    Returns
    -------
    dict with, for every k of ``ks``:

    * ``recall@k``: mean over judged queries of |top-k ∩ relevant| / |relevant| against the
      mapped corpus (known-item: the fraction of queries whose own row is in their top k);
    * ``recall@k_b``: the same against the re-embedded corpus;
    * ``retention@k``: ``recall@k / recall@k_b`` (NaN when ``recall@k_b`` is 0);
    * ``overlap@k``: mean over all queries of |top-k mapped ∩ top-k re-embedded| / k;

    and ``top1``, ``mean_rank``, ``mean_cos``, ``pool``, ``metric`` (of :func:`evaluate`),
    ``mode`` ("known-item" or "qrels"), ``queries``, ``corpus``, ``judged``, ``ks``.

    In the default known-item mode with the corpus rows as queries, the re-embedded corpus
    holds each query itself: its recall is 1.0 (but for exact duplicate texts) and the
    retention just repeats the mapped recall. Real relevance judgements (``relevant``, with
    ``queries`` that are not corpus rows) give a meaningful retention; the top-k overlap
    says how much of what B itself would return the mapped corpus returns, in both modes.

    Errors (before any search): rows not paired or queries > n rows without ``relevant``
    (ShapeError), other feature counts (DimensionMismatchError), NaN/Inf (NonFiniteError), a
    k larger than the corpus (TooFewRowsError), bad ``ks`` or ``relevant``
    (InvalidParameterError / ParameterTypeError).
    """
    summary, _ = _retrieval_details(mapped, corpus, queries, relevant, ks, pool=pool, csls=csls,
                                    csls_k=csls_k, n_threads=n_threads,
                                    memory_limit=memory_limit)
    return summary


def check_ks(ks, n_corpus, what="ks"):
    """``ks`` as a sorted tuple of distinct positive ints, each at most ``n_corpus``."""
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise ParameterTypeError(f"{what}: expected a sequence of integers, got {ks!r}")
    values = [check_positive_int(k, what) for k in ks]
    if not values:
        raise InvalidParameterError(f"{what}: give at least one k")
    too_large = [k for k in values if k > n_corpus]
    if too_large:
        raise TooFewRowsError(f"{what}: k={max(too_large)} is larger than the corpus "
                              f"({n_corpus} rows)")
    return tuple(sorted(set(values)))


def _check_relevant(relevant, n_queries, n_corpus):
    """The judgements as sorted unique codes ``q * n_corpus + c`` and per-query counts."""
    if isinstance(relevant, (str, bytes)):
        raise ParameterTypeError("relevant: expected one list of corpus indices per query, got "
                                 f"{type(relevant).__name__}")
    try:
        n_given = len(relevant)
    except TypeError:
        raise ParameterTypeError("relevant: expected one list of corpus indices per query, got "
                                 f"{type(relevant).__name__}") from None
    if n_given != n_queries:
        raise ShapeError(f"relevant: has {n_given} entries but there are {n_queries} queries "
                         "(one list of corpus indices per query)")
    codes = []
    for q, items in enumerate(relevant):
        items = np.asarray([] if items is None else items)
        if items.size == 0:
            continue
        if items.dtype.kind not in "iu" or items.ndim > 1:
            raise ParameterTypeError(f"relevant[{q}]: expected a list of corpus row indices "
                                     f"(integers), got {items.dtype} of shape {items.shape}")
        items = items.astype(np.int64).ravel()
        bad = items[(items < 0) | (items >= n_corpus)]
        if bad.size:
            raise InvalidParameterError(f"relevant[{q}]: corpus index {int(bad[0])} is outside "
                                        f"[0, {n_corpus})")
        codes.append(q * n_corpus + items)
    if not codes:
        raise InvalidParameterError("relevant: no query has a relevant corpus row")
    codes = np.unique(np.concatenate(codes))
    counts = np.bincount(codes // n_corpus, minlength=n_queries)
    return codes, counts


def read_qrels(path, n_queries=None, n_corpus=None):
    """Relevance judgements from a text file: one ``query_index<TAB>corpus_index`` pair per
    line (0-based rows of the queries and of the corpus; spaces work as well; blank lines and
    lines starting with ``#`` are skipped). Returns a list with, for each query, the array of
    its relevant corpus rows (``n_queries`` long when given, else up to the largest query).
    Raises InputFileError naming the line of anything else, an index out of range included."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PathNotFoundError(f"qrels: no such file {path!r}")
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            try:
                if len(fields) != 2:
                    raise ValueError
                q, c = int(fields[0]), int(fields[1])
            except ValueError:
                raise InputFileError(f"qrels: {path!r} line {number}: expected "
                                     f"'query_index<TAB>corpus_index', got {text[:60]!r}") from None
            if q < 0 or (n_queries is not None and q >= n_queries):
                raise InputFileError(f"qrels: {path!r} line {number}: query index {q} is "
                                     f"outside [0, {n_queries})")
            if c < 0 or (n_corpus is not None and c >= n_corpus):
                raise InputFileError(f"qrels: {path!r} line {number}: corpus index {c} is "
                                     f"outside [0, {n_corpus})")
            pairs.append((q, c))
    if not pairs:
        raise InputFileError(f"qrels: {path!r} holds no 'query_index<TAB>corpus_index' line")
    pairs = np.asarray(pairs, dtype=np.int64)
    size = n_queries if n_queries is not None else int(pairs[:, 0].max()) + 1
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs = pairs[order]
    bounds = np.searchsorted(pairs[:, 0], np.arange(size + 1))
    return [pairs[bounds[q]:bounds[q + 1], 1] for q in range(size)]


def _retrieval_details(mapped, corpus, queries=None, relevant=None, ks=DEFAULT_KS,
                       curve_k=0, pool=TEST_POOL, csls=False, csls_k=10, n_threads=None,
                       memory_limit=None):
    """:func:`evaluate_retrieval`'s summary, and its curves for k = 1 .. max(ks, curve_k):
    ``recall``, ``recall_b``, ``overlap`` (arrays, index k - 1)."""
    # shapes and parameters first, then one pass over the values, then the searches
    mapped = check_embeddings(mapped, "mapped", check_finite=False)
    corpus = check_embeddings(corpus, "corpus", n_features=mapped.shape[1], check_finite=False)
    n = corpus.shape[0]
    if mapped.shape[0] != n:
        raise ShapeError(f"mapped has {mapped.shape[0]} rows but corpus has {n}: rows must be "
                         "paired (row i of each is the same text)")
    if queries is None:
        Q = corpus
    else:
        Q = check_embeddings(queries, "queries", n_features=mapped.shape[1], check_finite=False)
    m = Q.shape[0]
    ks = check_ks(ks, n)
    k_max = max(ks[-1], min(int(curve_k), n))
    if relevant is None:
        if m > n:
            raise ShapeError(f"queries has {m} rows but the corpus only {n}: without "
                             "relevant=, query i's relevant item is corpus row i")
        codes, counts = None, np.ones(m, dtype=np.int64)
    else:
        codes, counts = _check_relevant(relevant, m, n)
    if pool is not None:
        check_positive_int(pool, "pool")
    if csls:
        check_positive_int(csls_k, "csls_k")
    for rows, name in ((mapped, "mapped"), (corpus, "corpus"), (queries, "queries")):
        if rows is not None:
            check_rows(rows, name)

    paired = evaluate(mapped, corpus, pool=pool, csls=csls, csls_k=csls_k, n_threads=n_threads)
    top_mapped = _top_k(Q, mapped, k_max, n_threads, memory_limit)
    top_b = _top_k(Q, corpus, k_max, n_threads, memory_limit)
    judged = counts > 0
    recall = _recall_curve(top_mapped, codes, counts, n)[judged].mean(axis=0)
    recall_b = _recall_curve(top_b, codes, counts, n)[judged].mean(axis=0)
    overlap = _overlap_curve(top_mapped, top_b, n)

    summary = dict(paired)
    summary.update(mode="known-item" if relevant is None else "qrels", queries=int(m),
                   corpus=int(n), judged=int(judged.sum()), ks=list(ks))
    for k in ks:
        r, r_b = float(recall[k - 1]), float(recall_b[k - 1])
        summary[f"recall@{k}"] = r
        summary[f"recall@{k}_b"] = r_b
        summary[f"retention@{k}"] = r / r_b if r_b > 0 else float("nan")
        summary[f"overlap@{k}"] = float(overlap[k - 1])
    return summary, {"recall": recall, "recall_b": recall_b, "overlap": overlap}


def _top_k(queries, database, k, n_threads, memory_limit):
    """Indices (m, k) of each query's k nearest database rows by cosine, best first (exact;
    ties to the lower row)."""
    return _knn_module._knn(queries, database, k, metric="cosine", n_threads=n_threads,
                            memory_limit=memory_limit)[1]


def _recall_curve(top, codes, counts, n_corpus):
    """(m, k) array: per query, |top[:, :k] ∩ relevant| / |relevant| for k = 1 .. top.shape[1]
    (0 for a query without relevant rows). ``codes`` None: query i's relevant row is row i."""
    m = top.shape[0]
    if codes is None:
        hits = top == np.arange(m)[:, None]
    else:
        hits = np.isin(np.arange(m)[:, None] * n_corpus + top, codes)
    found = np.cumsum(hits, axis=1, dtype=np.float64)
    return found / np.maximum(counts, 1)[:, None]


def _overlap_curve(top_a, top_b, n_corpus):
    """Mean over queries of |top_a[:, :k] ∩ top_b[:, :k]| / k for k = 1 .. K. A row shared by
    both lists at positions i and j counts from k = max(i, j) + 1 on."""
    m, K = top_a.shape
    rows = np.arange(m, dtype=np.int64)[:, None] * n_corpus
    code_b = (rows + top_b).ravel()
    order = np.argsort(code_b, kind="stable")
    sorted_b = code_b[order]
    code_a = (rows + top_a).ravel()
    at = np.minimum(np.searchsorted(sorted_b, code_a), sorted_b.shape[0] - 1)
    shared = sorted_b[at] == code_a
    position_b = order[at] % K
    position_a = np.tile(np.arange(K), m)
    first_k = np.maximum(position_a, position_b)[shared]          # 0-based
    counts = np.cumsum(np.bincount(first_k, minlength=K)[:K])
    return counts / (m * np.arange(1, K + 1, dtype=np.float64))


# ------------------------------------------------------------------------------ a map's test sets
def open_test_sets(model, a_test, b_test, queries=None, column=None):
    """Open the paired test sets of a fitted map (anything :func:`minivec2vec.io.sources.open_source`
    accepts: arrays, ``.npy``, ``.parquet``, shard directories, stores) and check what needs no
    data: the feature counts against the map and the pairing. Returns the three sources
    (``queries`` None when not given)."""
    from ..exceptions import DimensionMismatchError
    from ..io.sources import open_source
    model._check_fitted()
    d_a, d_b = model.W_.shape
    sources = [open_source(a_test, "A_test", column=column),
               open_source(b_test, "B_test", column=column),
               None if queries is None else open_source(queries, "queries", column=column)]
    for source, d, side in zip(sources, (d_a, d_b, d_b), "ABB"):
        if source is not None and source.n_features != d:
            raise DimensionMismatchError(f"{source.name}: has {source.n_features} features, "
                                         f"expected {d} (the map's {side} side)")
    if sources[0].n_rows != sources[1].n_rows:
        raise ShapeError(f"A_test has {sources[0].n_rows} rows but B_test has "
                         f"{sources[1].n_rows}: rows must be paired (row i of each is the same "
                         "text)")
    return tuple(sources)


def read_test_sets(model, sources):
    """The arrays :func:`evaluate_retrieval` takes from :func:`open_test_sets`' sources:
    (mapped A rows, B rows and B queries centred with B's training mean), float32. Every row
    is checked for NaN/Inf, naming its input and row."""
    arrays = []
    for source in sources:
        if source is None:
            arrays.append(None)
            continue
        rows = np.asarray(source.read(0, source.n_rows))
        check_rows(rows, source.name)
        arrays.append(rows)
    a_rows, b_rows, q_rows = arrays
    mean_b = model.mean_b_.astype(np.float32)
    mapped = model.transform(a_rows)
    corpus = np.asarray(b_rows, dtype=np.float32) - mean_b
    queries = None if q_rows is None else np.asarray(q_rows, dtype=np.float32) - mean_b
    return mapped, corpus, queries


def check_retrieval_plan(sources, ks=None, relevant=None, what="ks"):
    """The cut-offs and judgements for :func:`open_test_sets`' sources, checked against their
    sizes before any row is read. ``ks`` None: those of DEFAULT_KS the corpus holds (a given
    k larger than the corpus is an error). ``relevant``: None (known-item), one list of
    corpus rows per query, or the path of a qrels file (:func:`read_qrels`)."""
    n = sources[1].n_rows
    m = n if sources[2] is None else sources[2].n_rows
    ks = tuple(k for k in DEFAULT_KS if k <= n) if ks is None else check_ks(ks, n, what)
    if relevant is None:
        if m > n:
            raise ShapeError(f"queries has {m} rows but the corpus only {n}: give relevance "
                             "judgements (without them, query i's relevant item is corpus "
                             "row i)")
        return ks, None
    if isinstance(relevant, (str, os.PathLike)):
        return ks, read_qrels(relevant, m, n)
    _check_relevant(relevant, m, n)
    return ks, relevant
