"""Command line: ``minivec2vec fit | apply | evaluate | report | demo | generate`` (also
``python -m minivec2vec``).

Every failure prints one line ``minivec2vec: error: ...`` on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from .exceptions import InputFileError, MiniVec2VecError, PathNotFoundError
from ._runtime.blocks import BLOCK_ROWS
from .evaluation.metrics import TEST_POOL   # the evaluation protocol's test pool


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's own error format: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"minivec2vec: error: {message} (see {self.prog} --help)\n")


def _counter(minimum):
    """An argparse ``type=``: an integer of at least ``minimum``, refused while parsing."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


_positive_int = _counter(1)
_count = _counter(0)


def _numeric_parameters():
    """The estimator's integer and float parameters (declared in _runtime/parameters.py), each
    of which ``fit`` takes as ``--name-with-dashes``."""
    from ._runtime.parameters import PARAMETERS
    return [p for p in PARAMETERS if p.kind in ("int", "float")]


def _load_npy(path, what):
    if not os.path.exists(path):
        raise PathNotFoundError(f"{what}: no such file {path!r}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputFileError(f"{what}: {path!r} is not a readable .npy array ({exc})") from None


def _model_params(args):
    params = {p.name: getattr(args, p.name) for p in _numeric_parameters()}
    params.update(random_state=args.seed, n_threads=args.n_threads,
                  memory_limit=args.memory_limit, reproject=not args.no_reproject)
    return params


def _cmd_fit(args):
    from ._runtime.validation import check_output_path
    from .stages.confidence import (AGREEMENT_THRESHOLD, CONFIDENCE_THRESHOLD, KNOWN_PAIRS_THRESHOLD,
                                    RETURN_THRESHOLD)
    from .model import MiniVec2Vec
    check_output_path(args.output, "output")   # before a fit of minutes, not after
    from .io.sources import open_source
    X_a = open_source(args.a, "A", column=args.column)
    X_b = open_source(args.b, "B", column=args.column)
    known_pairs = None
    if args.known_pairs:
        known_pairs = (_load_npy(args.known_pairs[0], "known pairs of A"),
                       _load_npy(args.known_pairs[1], "known pairs of B"))
    model = MiniVec2Vec(**_model_params(args), verbose=not args.quiet)
    t0 = time.perf_counter()
    model.fit(X_a, X_b, known_pairs=known_pairs)
    seconds = time.perf_counter() - t0
    model.save(args.output)
    _emit(args, {"map": args.output, "rows_a": X_a.n_rows, "rows_b": X_b.n_rows,
                 "dim_a": X_a.n_features, "dim_b": X_b.n_features,
                 "fit_seconds": round(seconds, 2), "confidence": round(model.confidence_, 4),
                 "confidence_threshold": CONFIDENCE_THRESHOLD,
                 "restart_agreement": (None if np.isnan(model.restart_agreement_)
                                       else round(model.restart_agreement_, 4)),
                 "agreement_threshold": AGREEMENT_THRESHOLD,
                 "return_agreement": (None if np.isnan(model.return_agreement_)
                                      else round(model.return_agreement_, 4)),
                 "return_threshold": RETURN_THRESHOLD,
                 # restarts run, the extra ones included (1: no check was possible)
                 "restarts": max(1, len(model.restart_confidences_)),
                 "known_pairs": 0 if known_pairs is None else int(known_pairs[0].shape[0]),
                 "known_pairs_top1": (None if np.isnan(model.known_pairs_top1_)
                                      else round(model.known_pairs_top1_, 4)),
                 "known_pairs_threshold": KNOWN_PAIRS_THRESHOLD})


def _cmd_apply(args):
    from ._runtime.validation import check_output_path
    from .io.etl import apply_map
    from .model import MiniVec2Vec
    from .io.stores import parse
    if parse(args.output) is None:     # a store's writer checks its own target
        check_output_path(args.output, "output")
    model = MiniVec2Vec.load(args.map)
    t0 = time.perf_counter()
    sidecar = apply_map(model, args.input, args.output, map_path=args.map,
                        add_mean=args.add_mean, memory_limit=args.memory_limit,
                        chunk_rows=args.chunk_rows, progress=not args.quiet,
                        column=args.column, n_threads=args.n_threads, inverse=args.inverse,
                        output_column=args.output_column)
    seconds = time.perf_counter() - t0
    _emit(args, {"output": args.output, "rows": sidecar["rows"], "dim": sidecar["dim"],
                 "sidecar": sidecar.get("sidecar_path", args.output + ".json"),
                 "seconds": round(seconds, 2),
                 "rows_per_second": round(sidecar["rows"] / max(seconds, 1e-9))})


def _cmd_generate(args):
    from .evaluation.synthetic import generate_pair
    t0 = time.perf_counter()
    paths = generate_pair(args.directory, args.rows, args.dim, n_rows_b=args.rows_b,
                          n_clusters=args.clusters, noise=args.noise,
                          shard_rows=args.shard_rows, n_test=args.test_rows, dtype=args.dtype,
                          seed=args.seed)
    _emit(args, dict(paths, seconds=round(time.perf_counter() - t0, 2)))


def _ks(text):
    """An argparse ``type=``: comma-separated cut-offs such as ``1,10,100``."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,10,100, "
                                         f"got {text!r}") from None
    if any(k < 1 for k in values):
        raise argparse.ArgumentTypeError(f"every k must be >= 1, got {text!r}")
    return tuple(values)


def _json_safe(payload):
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in payload.items()}


def _cmd_evaluate(args):
    from .evaluation.metrics import (check_retrieval_plan, evaluate_retrieval, open_test_sets,
                                     read_test_sets)
    from .model import MiniVec2Vec
    model = MiniVec2Vec.load(args.map)
    sources = open_test_sets(model, args.a, args.b, queries=args.queries, column=args.column)
    ks, relevant = check_retrieval_plan(sources, args.k, args.qrels, "--k")
    mapped, corpus, queries = read_test_sets(model, sources)
    result = evaluate_retrieval(mapped, corpus, queries, relevant, ks=ks, pool=args.pool,
                                csls=args.csls, n_threads=args.n_threads)
    if args.json:
        print(json.dumps(_json_safe(result)))
        return
    print(", ".join(f"{k}: {result[k]:.4f}" if isinstance(result[k], float) else
                    f"{k}: {result[k]}" for k in ("top1", "mean_rank", "mean_cos", "pool",
                                                  "metric")))
    print(_retrieval_table(result))


def _retrieval_table(result):
    """The retrieval part of an evaluation as a small text table."""
    what = ("known-item: query i's relevant row is corpus row i" if result["mode"] == "known-item"
            else f"qrels: {result['judged']} of {result['queries']} queries judged")
    lines = [f"retrieval of {result['queries']} B queries in a corpus of {result['corpus']} "
             f"rows ({what}):",
             f"  {'k':>5}  {'recall mapped':>13}  {'recall B':>8}  {'retention':>9}  "
             f"{'top-k overlap':>13}"]
    for k in result["ks"]:
        lines.append(f"  {k:>5}  {result[f'recall@{k}']:>13.4f}  {result[f'recall@{k}_b']:>8.4f}"
                     f"  {result[f'retention@{k}']:>9.4f}  {result[f'overlap@{k}']:>13.4f}")
    if result["mode"] == "known-item" and result["queries"] == result["corpus"]:
        lines.append("  (the re-embedded B corpus holds each query itself, so its recall is 1 "
                     "and the retention repeats the mapped recall; --qrels gives a meaningful "
                     "retention, the overlap is meaningful either way)")
    return "\n".join(lines)


def _cmd_report(args):
    from .evaluation.report import write_report
    result = write_report(args.map, args.a, args.b, args.output, force=args.force,
                          queries=args.queries, relevant=args.qrels, ks=args.k, pool=args.pool,
                          column=args.column, n_threads=args.n_threads)
    _emit(args, _json_safe({"report": args.output, "bytes": result["bytes"],
                            "images": result["images"], "seconds": round(result["seconds"], 2),
                            **{key: result["evaluation"][key] for key in
                               ("top1", "recall@10", "retention@10", "overlap@10")
                               if key in result["evaluation"]}}))


# known pairs of the demo's minilm -> e5 case (measured on the sample, seed 0: 50 pairs give
# top-1 0.38, 100 give 0.70, 200 give 0.85, against a ceiling of 0.98)
DEMO_KNOWN_PAIRS = 100


def _demo_retrieval(model, s, n_threads):
    """The demo's retrieval line: B test rows as queries against the mapped A test rows."""
    from .evaluation.metrics import evaluate_retrieval
    corpus = np.asarray(s.test_b, dtype=np.float32) - model.mean_b_.astype(np.float32)
    got = evaluate_retrieval(model.transform(s.test_a), corpus, ks=(1, 10), pool=None,
                             n_threads=n_threads)
    return (f"    retrieval of the {got['queries']} B test rows as queries against the mapped "
            f"A rows: recall@1 {got['recall@1']:.3f}, recall@10 {got['recall@10']:.3f}; "
            f"top-10 overlap with the re-embedded B rows {got['overlap@10']:.3f}")


def _cmd_demo(args):
    from .evaluation.datasets import load_sample_texts, sample_split
    from .model import MiniVec2Vec
    from .evaluation.protocol import evaluate_model, supervised_ceiling
    print("minivec2vec demo: the shipped sample of WordNet glosses (5000 rows), protocol split "
          "(last 1000 rows = paired test pool, disjoint halves of the rest train A and B), "
          "B's coordinates randomly rotated.", flush=True)
    rows = []
    for title, a, b in (("hidden rotation (minilm -> rotated minilm)", "minilm", "minilm"),
                        ("different models (minilm -> wordllama)", "minilm", "wordllama")):
        s = sample_split(a, b, rotate_seed=args.seed)
        t0 = time.perf_counter()
        model = MiniVec2Vec(random_state=args.seed, n_threads=args.n_threads).fit(s.train_a, s.train_b)
        seconds = time.perf_counter() - t0
        got = evaluate_model(model, s)
        ceiling = supervised_ceiling(s)
        rows.append((title, got, ceiling, seconds))
        print(f"  {title}: top-1 {got['top1']:.3f}, mean rank {got['mean_rank']:.2f} "
              f"(supervised ceiling: top-1 {ceiling['top1']:.3f}, mean rank "
              f"{ceiling['mean_rank']:.2f}); unpaired confidence {model.confidence_:.3f}, "
              f"restart agreement {model.restart_agreement_:.3f}"
              + ("" if np.isnan(model.return_agreement_)
                 else f", return agreement {model.return_agreement_:.3f}") + "; "
              f"fit {seconds:.1f} s on {s.train_a.shape[0]} + {s.train_b.shape[0]} unpaired "
              "rows", flush=True)
        print(_demo_retrieval(model, s, args.n_threads), flush=True)
        if a == b:
            texts = load_sample_texts()
            pool_start = len(texts) - got["pool"]
            mapped = model.transform(s.test_a[:3])
            targets = np.asarray(s.test_b, dtype=np.float32) - model.mean_b_.astype(np.float32)
            targets /= np.linalg.norm(targets, axis=1, keepdims=True)
            best = np.argmax(mapped @ targets.T, axis=1)
            for i, j in enumerate(best):
                print(f"    {texts[pool_start + i]!r} -> {texts[pool_start + int(j)]!r}")
    # two contextual encoders of different families: 2000 unpaired rows per side are far too
    # few (the unpaired fit needs more than 30,000 per side on this pair, README), so the demo
    # says so and starts the fit from a few items embedded by both models
    title, n_pairs = "contextual encoders (minilm -> multilingual-e5-small)", DEMO_KNOWN_PAIRS
    s = sample_split("minilm", "e5", rotate_seed=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MiniVec2Vec(random_state=args.seed, n_threads=args.n_threads).fit(
            s.train_a, s.train_b, known_pairs=(s.train_a[:n_pairs], s.paired_train_b[:n_pairs]))
    seconds = time.perf_counter() - t0
    got, ceiling = evaluate_model(model, s), supervised_ceiling(s)
    print(f"  {title}: unpaired, {s.train_a.shape[0]} rows per side are too few for this pair "
          f"(see the README); with {n_pairs} known pairs (texts embedded by both models): "
          f"top-1 {got['top1']:.3f}, mean rank {got['mean_rank']:.2f} (supervised ceiling: "
          f"top-1 {ceiling['top1']:.3f}); held-out check on the pairs {model.known_pairs_top1_:.2f}"
          f"{' (the fit warns)' if caught else ''}; fit {seconds:.1f} s", flush=True)
    print(_demo_retrieval(model, s, args.n_threads), flush=True)
    print("Different real models are far harder than a hidden rotation, and 2000 rows per side "
          "is small: see the README for the full-size results.")


def _emit(args, payload):
    if getattr(args, "json", False):
        print(json.dumps(payload))
    else:
        print(", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                        for k, v in payload.items()))


def build_parser():
    parser = _Parser(prog="minivec2vec",
                                     description="Unsupervised alignment of two embedding spaces.")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="learn a map from unpaired A.npy and B.npy")
    fit.add_argument("a", help="embeddings of model A (n_a x d_a): .npy, .parquet, or a "
                               "directory of .npy / .parquet shards")
    fit.add_argument("b", help="embeddings of model B (n_b x d_b), other texts; same forms")
    fit.add_argument("-o", "--output", required=True, help="map file to write")
    fit.add_argument("--seed", type=int, default=0)
    for p in _numeric_parameters():
        # integers are refused below their minimum while parsing (0 for the iteration counts
        # and the stages that 0 skips, else 1); alpha and the other floats are checked by the
        # estimator before any work
        kind = float if p.kind == "float" else _counter(p.minimum)
        fit.add_argument(p.cli_flag, dest=p.name, type=kind, default=p.default, help=p.doc)
    fit.add_argument("--quiet", action="store_true",
                     help="no stage-by-stage progress on stderr")
    fit.add_argument("--no-reproject", action="store_true",
                     help="the reference notebook's unprojected smoothing update")
    fit.add_argument("--known-pairs", nargs=2, metavar=("PAIRS_A", "PAIRS_B"),
                     help="two row-aligned .npy files: a few items (10 or more; 50 or more "
                          "recommended) embedded by both models, to start the fit from when the "
                          "unpaired fit warns")

    apply_ = sub.add_parser("apply", help="map X.npy (space A) into space B "
                            "(--inverse: space B into space A)")
    apply_.add_argument("map")
    apply_.add_argument("input", help=".npy, .parquet, or a directory of shards (space A; "
                                                 "space B with --inverse)")
    apply_.add_argument("-o", "--output", required=True,
                        help=".npy file to write (float32), or .parquet: a Parquet input's "
                             "other columns are carried through, in order")
    apply_.add_argument("--output-column", default=None, metavar="NAME",
                        help="with a .parquet output: write the mapped vectors as this new "
                             "column (default: replace the embedding column)")
    apply_.add_argument("--add-mean", action="store_true",
                        help="rescale and add B's training mean back (raw B-like vectors)")
    apply_.add_argument("--inverse", action="store_true",
                        help="the input is in space B: map it into space A with W^T (e.g. B "
                             "queries against an index of A vectors); --add-mean then uses A's "
                             "scale and mean")
    apply_.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    apply_.add_argument("--chunk-rows", type=_positive_int, default=None,
                        help="rows per chunk (default: planned from --memory-limit, at most "
                             f"{BLOCK_ROWS}); a rerun after a kill resumes after the last whole chunk")

    ev = sub.add_parser("evaluate", help="top-1 / mean rank of a map on paired test rows, and "
                        "retrieval of B queries against the mapped corpus")
    rep = sub.add_parser("report", help="a self-contained HTML report of a map on paired test "
                         "rows (needs the extra minivec2vec[report])")
    for p in (ev, rep):
        p.add_argument("map")
        p.add_argument("a", help="A test rows: .npy, .parquet, or a directory of shards")
        p.add_argument("b", help="B test rows of the same texts, row-aligned (same forms)")
        p.add_argument("--pool", type=_positive_int, default=TEST_POOL,
                       help="pairs ranked for top-1 / mean rank (the first POOL rows)")
        p.add_argument("--k", type=_ks, default=None, metavar="K1,K2,...",
                       help="recall cut-offs (default 1,10,100, those the corpus holds)")
        p.add_argument("--queries", default=None, metavar="Q",
                       help="B-space query rows that are not corpus texts (default: the B test "
                            "rows); without --qrels query i's relevant item is corpus row i")
        p.add_argument("--qrels", default=None, metavar="FILE",
                       help="relevance judgements: one 'query_index<TAB>corpus_index' line per "
                            "relevant pair, 0-based rows")
        p.add_argument("--column", default=None,
                       help="Parquet embedding column (default: the only fixed-size list column)")
    ev.add_argument("--csls", action="store_true", help="rank by CSLS for top-1 / mean rank")
    rep.add_argument("-o", "--output", required=True, help="the .html file to write")
    rep.add_argument("--force", action="store_true", help="overwrite an existing report")

    demo = sub.add_parser("demo", help="fit and evaluate on the real sample shipped with the package")
    demo.add_argument("--seed", type=int, default=0)

    gen = sub.add_parser("generate", help="write a synthetic pair with a known map as .npy shards")
    gen.add_argument("directory")
    gen.add_argument("--rows", type=_positive_int, required=True, help="rows of side A (and B)")
    gen.add_argument("--rows-b", type=_positive_int, default=None, help="rows of side B (default --rows)")
    gen.add_argument("--dim", type=_positive_int, required=True)
    gen.add_argument("--clusters", type=_positive_int, default=64)
    gen.add_argument("--noise", type=float, default=0.05)
    gen.add_argument("--shard-rows", type=_positive_int, default=100_000)
    gen.add_argument("--test-rows", type=_count, default=1000)
    gen.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    gen.add_argument("--seed", type=int, default=0)

    for p in (fit, apply_, ev, rep, demo):
        p.add_argument("--n-threads", type=_positive_int, default=None)
    for p in (fit, apply_, ev, rep, gen):
        p.add_argument("--json", action="store_true", help="print the result as JSON")
    for p in (fit, apply_):
        p.add_argument("--memory-limit", default=None, help="e.g. 2GB")
        p.add_argument("--column", default=None,
                       help="Parquet embedding column (default: the only fixed-size list column)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    handlers = {"fit": _cmd_fit, "apply": _cmd_apply, "evaluate": _cmd_evaluate,
                "report": _cmd_report, "demo": _cmd_demo, "generate": _cmd_generate}
    try:
        handlers[args.command](args)
    except KeyboardInterrupt:
        print("minivec2vec: interrupted", file=sys.stderr)
        return 130
    except (MiniVec2VecError, ValueError, TypeError, OSError, MemoryError, RuntimeError,
            ImportError) as exc:
        print(f"minivec2vec: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
