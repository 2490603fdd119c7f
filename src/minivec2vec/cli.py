"""Command line: ``minivec2vec fit | apply | evaluate | demo`` (also ``python -m minivec2vec``).

Every failure prints one line ``minivec2vec: error: ...`` on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np



def _tunable_defaults():
    """The estimator's own numeric defaults (one source of truth), each becoming a --flag."""
    from .model import MiniVec2Vec
    return {name: value for name, value in MiniVec2Vec().get_params().items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _load_npy(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{what}: {path!r} is not a readable .npy array ({exc})") from None


def _model_params(args):
    params = {name: getattr(args, name) for name in _tunable_defaults()}
    params.update(random_state=args.seed, n_threads=args.n_threads,
                  memory_limit=args.memory_limit, reproject=not args.no_reproject)
    return params


def _cmd_fit(args):
    from .confidence import CONFIDENCE_THRESHOLD
    from .model import MiniVec2Vec
    X_a = _load_npy(args.a, "A")
    X_b = _load_npy(args.b, "B")
    model = MiniVec2Vec(**_model_params(args))
    t0 = time.perf_counter()
    model.fit(X_a, X_b)
    seconds = time.perf_counter() - t0
    model.save(args.output)
    _emit(args, {"map": args.output, "rows_a": X_a.shape[0], "rows_b": X_b.shape[0],
                 "dim_a": X_a.shape[1], "dim_b": X_b.shape[1], "fit_seconds": round(seconds, 2),
                 "confidence": round(model.confidence_, 4),
                 "confidence_threshold": CONFIDENCE_THRESHOLD})


def _cmd_apply(args):
    from .model import MiniVec2Vec
    model = MiniVec2Vec.load(args.map)
    X = _load_npy(args.input, "input")
    out_path = args.output
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output: directory {directory!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".minivec2vec-", suffix=".npy.tmp", dir=directory)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(X.shape[0], model.n_features_b_))
        step = 65536
        for start in range(0, X.shape[0], step):
            out[start:start + step] = model.transform(X[start:start + step],
                                                      add_mean=args.add_mean)
        out.flush()
        del out
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _emit(args, {"output": out_path, "rows": X.shape[0], "dim": model.n_features_b_})


def _cmd_evaluate(args):
    from .evaluation import evaluate
    from .model import MiniVec2Vec
    model = MiniVec2Vec.load(args.map)
    A = _load_npy(args.a, "A")
    B = _load_npy(args.b, "B")
    targets = np.asarray(B, dtype=np.float32) - model.mean_b_.astype(np.float32)
    result = evaluate(model.transform(A), targets, pool=args.pool, csls=args.csls)
    _emit(args, result)


def _cmd_demo(args):
    from .datasets import load_sample_texts, sample_split
    from .model import MiniVec2Vec
    from .protocol import evaluate_model, supervised_ceiling
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
              f"{ceiling['mean_rank']:.2f}); fit {seconds:.1f} s on {s.train_a.shape[0]} + "
              f"{s.train_b.shape[0]} unpaired rows", flush=True)
        if a == b:
            texts = load_sample_texts()
            pool_start = len(texts) - got["pool"]
            mapped = model.transform(s.test_a[:3])
            targets = np.asarray(s.test_b, dtype=np.float32) - model.mean_b_.astype(np.float32)
            targets /= np.linalg.norm(targets, axis=1, keepdims=True)
            best = np.argmax(mapped @ targets.T, axis=1)
            for i, j in enumerate(best):
                print(f"    {texts[pool_start + i]!r} -> {texts[pool_start + int(j)]!r}")
    print("Different real models are far harder than a hidden rotation, and 2000 rows per side "
          "is small: see the README for the full-size results.")


def _emit(args, payload):
    if getattr(args, "json", False):
        print(json.dumps(payload))
    else:
        print(", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                        for k, v in payload.items()))


def build_parser():
    parser = argparse.ArgumentParser(prog="minivec2vec",
                                     description="Unsupervised alignment of two embedding spaces.")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="learn a map from unpaired A.npy and B.npy")
    fit.add_argument("a", help="embeddings of model A (.npy, n_a x d_a)")
    fit.add_argument("b", help="embeddings of model B (.npy, n_b x d_b), other texts")
    fit.add_argument("-o", "--output", required=True, help="map file to write")
    fit.add_argument("--seed", type=int, default=0)
    for name, value in _tunable_defaults().items():
        fit.add_argument("--" + name.replace("_", "-"), dest=name, type=type(value), default=value)
    fit.add_argument("--no-reproject", action="store_true",
                     help="the reference notebook's unprojected smoothing update")

    apply_ = sub.add_parser("apply", help="map X.npy (space A) into space B")
    apply_.add_argument("map")
    apply_.add_argument("input")
    apply_.add_argument("-o", "--output", required=True, help=".npy file to write (float32)")
    apply_.add_argument("--add-mean", action="store_true",
                        help="rescale and add B's training mean back (raw B-like vectors)")

    ev = sub.add_parser("evaluate", help="top-1 / mean rank of a map on paired test rows")
    ev.add_argument("map")
    ev.add_argument("a", help="A test rows (.npy)")
    ev.add_argument("b", help="B test rows of the same texts, row-aligned (.npy)")
    ev.add_argument("--pool", type=int, default=8192)
    ev.add_argument("--csls", action="store_true")

    demo = sub.add_parser("demo", help="fit and evaluate on the real sample shipped with the package")
    demo.add_argument("--seed", type=int, default=0)

    for p in (fit, apply_, ev, demo):
        p.add_argument("--n-threads", type=int, default=None)
    for p in (fit, apply_, ev):
        p.add_argument("--json", action="store_true", help="print the result as JSON")
    fit.add_argument("--memory-limit", default=None, help="e.g. 2GB")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    handlers = {"fit": _cmd_fit, "apply": _cmd_apply, "evaluate": _cmd_evaluate, "demo": _cmd_demo}
    try:
        handlers[args.command](args)
    except KeyboardInterrupt:
        print("minivec2vec: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, MemoryError, RuntimeError) as exc:
        print(f"minivec2vec: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
