"""evaluate_retrieval and ``minivec2vec evaluate``'s retrieval: a brute-force numpy oracle
(the full similarity matrix, built here on small ties-free data), judgements with several
relevant rows, the error contract, the CLI's inputs, and floors on the shipped sample."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from minivec2vec import (DimensionMismatchError, InputFileError, InvalidParameterError,
                         MiniVec2Vec, NonFiniteError, ParameterTypeError, ShapeError,
                         TooFewRowsError, evaluate, evaluate_retrieval, knn)
from minivec2vec.cli import main
from minivec2vec.evaluation.datasets import load_sample
from minivec2vec.evaluation.metrics import read_qrels

knn_module = importlib.import_module("minivec2vec.kernels.knn")   # the module, not the function


def unit64(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def oracle_top(queries, corpus, ks):
    """Top-max(ks) rows of every query by the full cosine matrix (float64), and the smallest
    gap between the k-th and (k+1)-th best scores over the ks: the sets of the k best must not
    hang on a near-tie that float32 could order either way."""
    S = unit64(queries) @ unit64(corpus).T
    order = np.argsort(-S, axis=1, kind="stable")
    best = np.take_along_axis(S, order, axis=1)
    gaps = [best[:, k - 1] - best[:, k] for k in ks if k < S.shape[1]]
    return order[:, :max(ks)], float(np.min(gaps)) if gaps else np.inf


def oracle(mapped, corpus, queries, relevant, ks):
    """recall@k (mapped, re-embedded), overlap@k by sets, per the definitions."""
    top_m, gap_m = oracle_top(queries, mapped, ks)
    top_b, gap_b = oracle_top(queries, corpus, ks)
    assert min(gap_m, gap_b) > 2e-6, "the test data has near-ties: pick another seed"
    judged = [q for q, rel in enumerate(relevant) if len(rel)]
    out = {}
    for k in ks:
        for name, top in (("", top_m), ("_b", top_b)):
            out[f"recall@{k}{name}"] = np.mean([len(set(top[q, :k]) & set(relevant[q]))
                                                / len(set(relevant[q])) for q in judged])
        out[f"overlap@{k}"] = np.mean([len(set(top_m[q, :k]) & set(top_b[q, :k])) / k
                                       for q in range(len(relevant))])
    return out


@pytest.fixture
def noisy_pairs():
    """200 noisy pairs and 120 noisy queries in 16-d. Seed 0 is ties-free at the cut-offs
    used here (every k-th and (k+1)-th best score at least 7e-6 apart; the oracle checks)."""
    gen = np.random.default_rng(0)
    corpus = gen.standard_normal((200, 16)).astype(np.float32)
    mapped = corpus + 0.7 * gen.standard_normal((200, 16)).astype(np.float32)
    queries = corpus[:120] + 0.9 * gen.standard_normal((120, 16)).astype(np.float32)
    return mapped, corpus, queries


def test_known_item_matches_the_oracle(noisy_pairs):
    mapped, corpus, _ = noisy_pairs
    ks = (1, 5, 10, 100)
    got = evaluate_retrieval(mapped, corpus, ks=ks)
    want = oracle(mapped, corpus, corpus, [[i] for i in range(200)], ks)
    assert got["mode"] == "known-item" and got["queries"] == got["corpus"] == got["judged"] == 200
    assert got["ks"] == list(ks)
    assert 0.5 < got["recall@1"] < 0.97 and got["overlap@10"] < 0.8   # a non-trivial case
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    for k in ks:
        # the re-embedded corpus holds every query itself (the docstring says so)
        assert got[f"recall@{k}_b"] == 1.0
        assert got[f"retention@{k}"] == pytest.approx(got[f"recall@{k}"])
    # the protocol's numbers are evaluate's own
    assert {k: got[k] for k in ("top1", "mean_rank", "mean_cos", "pool", "metric")} == \
        evaluate(mapped, corpus)


def test_judgements_with_several_relevant_rows_match_the_oracle(rng, noisy_pairs):
    mapped, corpus, queries = noisy_pairs
    # each query: its own text plus up to 4 random rows (several relevant rows per query)
    relevant = [np.unique(np.append(rng.choice(200, size=rng.integers(0, 5), replace=False), q))
                for q in range(120)]
    for q in (3, 77, 119):
        relevant[q] = []                                     # unjudged queries
    relevant[10] = [5, 5, 9]                                 # a duplicate counts once
    ks = (1, 10, 50)
    got = evaluate_retrieval(mapped, corpus, queries=queries, relevant=relevant, ks=ks)
    want = oracle(mapped, corpus, queries, [sorted(set(map(int, r))) for r in relevant], ks)
    assert got["mode"] == "qrels" and got["queries"] == 120 and got["judged"] == 117
    assert 0 < got["recall@10_b"] < 1                        # a meaningful retention
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    for k in ks:
        assert got[f"retention@{k}"] == pytest.approx(got[f"recall@{k}"] / got[f"recall@{k}_b"])


def test_separate_queries_without_judgements_are_known_item(noisy_pairs):
    mapped, corpus, queries = noisy_pairs
    got = evaluate_retrieval(mapped, corpus, queries=queries, ks=(1, 10, 50))
    want = oracle(mapped, corpus, queries, [[i] for i in range(120)], (1, 10, 50))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["recall@1_b"] < 1.0                          # the queries are not corpus rows


def test_a_retention_without_any_hit_is_nan():
    corpus = np.array([[1, 0], [0, 1], [-1, 0.1]], dtype=np.float32)
    # query 0's relevant row is the one farthest from it in B, nearest among the mapped rows
    mapped = np.array([[-1, 0.1], [0, 1], [1, 0]], dtype=np.float32)
    got = evaluate_retrieval(mapped, corpus, relevant=[[2], [], []], ks=(1,))
    assert got["recall@1"] == 1.0 and got["recall@1_b"] == 0.0
    assert np.isnan(got["retention@1"])


def test_blocks_and_thread_counts_do_not_change_the_result(rng, monkeypatch):
    import minivec2vec.evaluation.metrics as evaluation_module
    corpus = rng.standard_normal((700, 12)).astype(np.float32)
    mapped = corpus + rng.standard_normal((700, 12)).astype(np.float32)
    whole = evaluate_retrieval(mapped, corpus, n_threads=1)
    monkeypatch.setattr(evaluation_module, "RANK_BLOCK", 64)
    assert evaluate_retrieval(mapped, corpus, n_threads=2) == whole
    assert evaluate_retrieval(mapped, corpus, memory_limit="8MB", n_threads=2) == whole


# ------------------------------------------------------------------------------ refusals
@pytest.fixture
def spy_on_searches(monkeypatch):
    """Records every kNN and rank pass: a refusal must come before any of them."""
    import minivec2vec.evaluation.metrics as evaluation_module
    calls = []
    real_knn, real_ranks = knn_module._knn, evaluation_module._paired_ranks

    def knn_spy(*args, **kwargs):
        calls.append("knn")
        return real_knn(*args, **kwargs)

    def ranks_spy(*args, **kwargs):
        calls.append("ranks")
        return real_ranks(*args, **kwargs)

    monkeypatch.setattr(knn_module, "_knn", knn_spy)
    monkeypatch.setattr(evaluation_module, "_knn", knn_spy)
    monkeypatch.setattr(evaluation_module, "_paired_ranks", ranks_spy)
    return calls


def _refusals(X):
    nan = X.copy()
    nan[7, 3] = np.nan
    return {
        "unpaired rows": (dict(mapped=X, corpus=X[:29]), ShapeError, "rows must be paired"),
        "corpus dims": (dict(mapped=X, corpus=X[:, :5]), DimensionMismatchError,
                        "corpus: has 5 features, expected 8"),
        "query dims": (dict(mapped=X, corpus=X, queries=X[:, :3]), DimensionMismatchError,
                       "queries: has 3 features"),
        "NaN in the corpus": (dict(mapped=X, corpus=nan, ks=(1,)), NonFiniteError, "corpus: row 7"),
        "NaN in the queries": (dict(mapped=X, corpus=X, queries=nan, ks=(1,)),
                               NonFiniteError,
                               "queries: row 7"),
        "k larger than the corpus": (dict(mapped=X, corpus=X, ks=(1, 10, 100)),
                                     TooFewRowsError, "k=100 is larger than the corpus (30"),
        "k of 0": (dict(mapped=X, corpus=X, ks=(0, 1)), InvalidParameterError, "ks"),
        "no k": (dict(mapped=X, corpus=X, ks=()), InvalidParameterError, "at least one k"),
        "ks a string": (dict(mapped=X, corpus=X, ks="10"), ParameterTypeError, "ks"),
        "more queries than corpus rows": (dict(mapped=X[:10], corpus=X[:10], queries=X,
                                               ks=(1,)), ShapeError, "relevant"),
        "judgements of other length": (dict(mapped=X, corpus=X, relevant=[[1]] * 29, ks=(1,)),
                                       ShapeError, "29 entries but there are 30 queries"),
        "index out of range": (dict(mapped=X, corpus=X, relevant=[[1]] * 29 + [[30]], ks=(1,)),
                               InvalidParameterError, "relevant[29]: corpus index 30"),
        "float indices": (dict(mapped=X, corpus=X, relevant=[[1.5]] * 30, ks=(1,)),
                          ParameterTypeError, "relevant[0]"),
        "nothing judged": (dict(mapped=X, corpus=X, relevant=[[]] * 30, ks=(1,)),
                           InvalidParameterError, "no query has a relevant"),
        "bad pool": (dict(mapped=X, corpus=X, ks=(1,), pool=0), InvalidParameterError, "pool"),
    }


@pytest.mark.parametrize("case", list(_refusals(np.zeros((30, 8), np.float32))))
def test_refusals_come_before_any_search(rng, spy_on_searches, case):
    X = rng.standard_normal((30, 8)).astype(np.float32)
    kwargs, exc, pattern = _refusals(X)[case]
    with pytest.raises(exc, match=pattern.replace("(", r"\(").replace("[", r"\[")):
        evaluate_retrieval(**kwargs)
    assert spy_on_searches == []


# ------------------------------------------------------------------------------ qrels files
def test_read_qrels(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("# query\tcorpus\n0\t4\n\n2\t1\n0\t2\n2 7\n")
    got = read_qrels(path, n_queries=4, n_corpus=8)
    assert [list(r) for r in got] == [[4, 2], [], [1, 7], []]
    assert len(read_qrels(path)) == 3                          # up to the largest query


@pytest.mark.parametrize("text,pattern", [
    ("0\t1\n1\tx\n", "line 2: expected 'query_index<TAB>corpus_index'"),
    ("0\t1\t1\n", "line 1: expected"),
    ("0\t9\n", "line 1: corpus index 9 is outside"),
    ("5\t1\n", "line 1: query index 5 is outside"),
    ("# nothing\n", "holds no"),
])
def test_read_qrels_refuses_what_it_cannot_read(tmp_path, text, pattern):
    path = tmp_path / "q.tsv"
    path.write_text(text)
    with pytest.raises(InputFileError, match=pattern):
        read_qrels(path, n_queries=3, n_corpus=8)


# ------------------------------------------------------------------------------ the shipped sample
def _mapped_and_corpus(map_path, split):
    model = MiniVec2Vec.load(map_path)
    corpus = np.asarray(split.test_b, dtype=np.float32) - model.mean_b_.astype(np.float32)
    return model.transform(split.test_a), corpus


def test_real_sample_known_item_floor(rotation_map, rotation_split):
    """minilm -> rotated minilm (a map that works): B queries find their own text through the
    mapped corpus, and most of what B itself returns (measured 2026-12-03: recall@1 1.000,
    overlap@10 0.848, overlap@100 0.865)."""
    mapped, corpus = _mapped_and_corpus(rotation_map, rotation_split)
    got = evaluate_retrieval(mapped, corpus)
    assert got["queries"] == got["corpus"] == 1000
    assert got["recall@1"] >= 0.99 and got["recall@10"] >= 0.99
    assert got["overlap@10"] >= 0.75 and got["overlap@100"] >= 0.75
    assert got["top1"] >= 0.99


def test_real_sample_retention_with_judgements_of_a_third_model(rotation_map, rotation_split):
    """Held-out B queries (the first 100 test texts, out of the corpus) with relevance judged by
    an independent model (multilingual-e5-small's 10 nearest corpus texts): the mapped corpus
    keeps B's recall (measured 2026-12-03: recall@10 0.295 of 0.295, retention@100 1.005)."""
    mapped, corpus = _mapped_and_corpus(rotation_map, rotation_split)
    judge = load_sample("e5")[-1000:].astype(np.float32)
    judge -= judge.mean(axis=0)
    _, relevant = knn(judge[:100], judge[100:], 10, metric="cosine")
    got = evaluate_retrieval(mapped[100:], corpus[100:], queries=corpus[:100],
                             relevant=list(relevant))
    assert got["mode"] == "qrels" and got["judged"] == 100
    assert 0.1 < got["recall@10_b"] < 0.9                    # judged by another model
    assert got["retention@10"] >= 0.9 and got["retention@100"] >= 0.9
    assert got["overlap@10"] >= 0.75


# ------------------------------------------------------------------------------ the CLI
def test_cli_evaluate_prints_what_the_api_returns(rotation_map, rotation_split,
                                                  sample_test_files, capsys):
    d = sample_test_files
    assert main(["evaluate", str(rotation_map), str(d / "a.npy"), str(d / "b.npy"),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    mapped, corpus = _mapped_and_corpus(rotation_map, rotation_split)
    want = evaluate_retrieval(mapped, corpus)
    assert got == pytest.approx(want)
    assert main(["evaluate", str(rotation_map), str(d / "a.npy"), str(d / "b.npy"),
                 "--k", "1,10,100"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("top1: ") and "recall mapped" in text and "top-k overlap" in text
    assert "holds each query itself" in text


def test_cli_evaluate_queries_and_qrels(rotation_map, rotation_split, tmp_path, capsys):
    mapped, corpus = _mapped_and_corpus(rotation_map, rotation_split)
    np.save(tmp_path / "a.npy", rotation_split.test_a[100:])
    np.save(tmp_path / "b.npy", rotation_split.test_b[100:])
    np.save(tmp_path / "q.npy", rotation_split.test_b[:100])
    relevant = [np.arange(q, q + 3) for q in range(100)]
    (tmp_path / "qrels.tsv").write_text(
        "".join(f"{q}\t{c}\n" for q, rows in enumerate(relevant) for c in rows))
    assert main(["evaluate", str(rotation_map), str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                 "--queries", str(tmp_path / "q.npy"), "--qrels", str(tmp_path / "qrels.tsv"),
                 "--k", "5,50", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = evaluate_retrieval(mapped[100:], corpus[100:], queries=corpus[:100],
                              relevant=relevant, ks=(5, 50))
    assert got == pytest.approx(want) and got["mode"] == "qrels" and got["ks"] == [5, 50]


def test_cli_evaluate_reads_parquet_and_shard_directories(rotation_map, rotation_split,
                                                           sample_test_files, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    d = sample_test_files
    assert main(["evaluate", str(rotation_map), str(d / "a.npy"), str(d / "b.npy"),
                 "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    (tmp_path / "shards").mkdir()
    for i, start in enumerate(range(0, 1000, 300)):
        np.save(tmp_path / "shards" / f"part-{i}.npy", rotation_split.test_a[start:start + 300])
    b = np.asarray(rotation_split.test_b, dtype=np.float32)
    pq.write_table(pa.table({"id": np.arange(1000),
                             "emb": pa.FixedSizeListArray.from_arrays(b.ravel(), b.shape[1])}),
                   tmp_path / "b.parquet")
    assert main(["evaluate", str(rotation_map), str(tmp_path / "shards"),
                 str(tmp_path / "b.parquet"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(want)


def test_cli_evaluate_default_ks_follow_a_small_corpus(rotation_map, rotation_split, tmp_path,
                                                       capsys):
    np.save(tmp_path / "a.npy", rotation_split.test_a[:50])
    np.save(tmp_path / "b.npy", rotation_split.test_b[:50])
    assert main(["evaluate", str(rotation_map), str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ks"] == [1, 10]


@pytest.fixture
def bad_files(rotation_split, tmp_path):
    a, b = np.array(rotation_split.test_a[:200]), np.array(rotation_split.test_b[:200])
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "b_short.npy", b[:150])
    np.save(tmp_path / "b_narrow.npy", b[:, :100])
    b_nan = b.copy()
    b_nan[42, 0] = np.nan
    np.save(tmp_path / "b_nan.npy", b_nan)
    a_nan = a.copy()
    a_nan[17, 5] = np.inf
    np.save(tmp_path / "a_nan.npy", a_nan)
    (tmp_path / "qrels.tsv").write_text("0\t1\n1\t999\n")
    return tmp_path


@pytest.mark.parametrize("args,pattern", [
    (["a.npy", "b_short.npy"], "A_test has 200 rows but B_test has 150: rows must be paired"),
    (["a.npy", "b_narrow.npy"], "B_test: has 100 features, expected 384"),
    (["b_narrow.npy", "b_narrow.npy"], "A_test: has 100 features, expected 384"),
    (["a.npy", "b_nan.npy"], "B_test: row 42 contains NaN or Inf"),
    (["a_nan.npy", "b.npy"], "A_test: row 17 contains NaN or Inf"),
    (["a.npy", "b.npy", "--k", "1,500"], "--k: k=500 is larger than the corpus (200 rows)"),
    (["a.npy", "b.npy", "--qrels", "qrels.tsv"], "line 2: corpus index 999 is outside"),
    (["a.npy", "b.npy", "--queries", "none.npy"], "queries: no such file"),
])
def test_cli_evaluate_refuses_in_one_line_before_any_search(rotation_map, bad_files, capsys,
                                                            spy_on_searches, args, pattern):
    argv = ["evaluate", str(rotation_map)] + [str(bad_files / a) if a.endswith((".npy", ".tsv"))
                                               else a for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minivec2vec: error: ") and pattern in err, err
    assert spy_on_searches == []


@pytest.mark.parametrize("value", ["0", "1,x", "-3", ""])
def test_cli_evaluate_refuses_bad_k_while_parsing(rotation_map, bad_files, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(rotation_map), str(bad_files / "a.npy"), str(bad_files / "b.npy"),
              "--k", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minivec2vec: error: argument --k")


def test_cli_evaluate_passes_n_threads_to_the_retrieval_searches(rotation_map, bad_files,
                                                                  monkeypatch, capsys):
    seen = []
    real = knn_module._knn

    def spy(*args, **kwargs):
        seen.append(kwargs.get("n_threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(knn_module, "_knn", spy)
    assert main(["evaluate", str(rotation_map), str(bad_files / "a.npy"),
                 str(bad_files / "b.npy"), "--n-threads", "1", "--json"]) == 0
    assert seen == [1, 1]                                    # mapped corpus, re-embedded corpus
