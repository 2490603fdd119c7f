"""Quality harness: the mini-vec2vec protocol on every pair of ../shared/data.

For each pair A -> B and seed: the last 8192 rows are the paired test pool, two disjoint halves
of the rest train A and B, B's coordinates are rotated by a random orthogonal matrix (so no
shared basis can help), the model is fitted UNSUPERVISED, and A's test rows rank all 8192 B test
rows by cosine. Printed next to the supervised ceiling (Procrustes on the true training pairs).
Each fit runs in a child process so its peak RSS is its own.

    python experiments/quality.py --pairs minilm:wordllama --seeds 0,1,2
    python experiments/quality.py --pairs all --variant paper='{"mutual_iter": 0}'
    python experiments/quality.py --pairs rotation      # each model against itself, rotated
    python experiments/quality.py --pairs all --seeds 0,1,2 --set fit_sample=10000 --set n_runs=5
    python experiments/quality.py --pairs minilm:minilm-static --known-pairs 50 --set n_threads=1
    python experiments/quality.py --pairs minilm:e5 --rows 10000     # fewer rows per side

``--known-pairs M`` gives the fit M true pairs (``fit(..., known_pairs=...)``): A's training rows
drawn with ``numpy.random.default_rng(seed)`` and their B partners; the ``pairs`` column is then
the held-out ``known_pairs_top1_`` (the restart agreement is not defined).

``--set key=value`` applies to every variant (value parsed as JSON, else kept as a string).
The ``conf`` column is the fitted model's unpaired ``confidence_`` (no pairs used).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODELS = ("minilm", "wordllama", "minilm-static", "e5")
CROSS = [(a, b) for a in MODELS for b in MODELS if a != b]


def run_one(a, b, seed, params, pool, known_pairs=0, rows=None):
    import numpy as np

    from minivec2vec import MiniVec2Vec
    from minivec2vec.evaluation.protocol import evaluate_model, random_rotation, split, supervised_ceiling

    X_a = np.load(DATA / f"{a}.npy")
    X_b = np.load(DATA / f"{b}.npy")
    s = split(X_a, X_b, pool=pool, rotate_b=random_rotation(X_b.shape[1], 1000 + seed))
    if rows:  # the first `rows` of each training side; the sides stay disjoint
        s.train_a, s.train_b, s.paired_train_b = (s.train_a[:rows], s.train_b[:rows],
                                                  s.paired_train_b[:rows])
    import warnings

    t0 = time.perf_counter()
    from minivec2vec import AlignmentWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # recorded: a doubtful fit is data here
        pairs = None
        if known_pairs:
            drawn = np.random.default_rng(seed).choice(s.train_a.shape[0], known_pairs,
                                                        replace=False)
            pairs = (s.train_a[drawn], s.paired_train_b[drawn])
        model = MiniVec2Vec(random_state=seed, **params).fit(s.train_a, s.train_b,
                                                             known_pairs=pairs)
    seconds = time.perf_counter() - t0
    warned = any(issubclass(w.category, AlignmentWarning) for w in caught)
    got = evaluate_model(model, s)
    ceiling = supervised_ceiling(s)
    return {"a": a, "b": b, "seed": seed, "top1": got["top1"], "mean_rank": got["mean_rank"],
            "mean_cos": got["mean_cos"], "confidence": model.confidence_,
            "restart_confidences": model.restart_confidences_.tolist(),
            "restart_agreement": model.restart_agreement_,
            "restart_returns": model.restart_returns_.tolist(),
            "return_agreement": model.return_agreement_, "warned": warned,
            "known_pairs": known_pairs,
            "known_pairs_top1": model.known_pairs_top1_, "ceiling_top1": ceiling["top1"],
            "ceiling_mean_rank": ceiling["mean_rank"], "fit_seconds": seconds,
            "stage_seconds": model.timings_,
            "rows_per_side": int(s.train_a.shape[0]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="all",
                        help="'all' (cross-model, both directions), 'rotation', or a:b,c:d")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variant", action="append", default=[],
                        help="name=JSON of MiniVec2Vec parameters (default: the defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a MiniVec2Vec parameter applied to every variant")
    parser.add_argument("--pool", type=int, default=8192)
    parser.add_argument("--known-pairs", type=int, default=0, metavar="M",
                        help="give each fit M true pairs drawn from A's training rows")
    parser.add_argument("--rows", type=int, default=None, metavar="N",
                        help="train on the first N rows of each side (default: all)")
    parser.add_argument("--out", default=None, help="append JSON lines here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:  # child process: one fit, JSON on stdout
        job = json.loads(args.one)
        print(json.dumps(run_one(job["a"], job["b"], job["seed"], job["params"], job["pool"],
                                 job["known_pairs"], job.get("rows"))))
        return 0
    if not DATA.is_dir():
        print(f"quality.py needs the real data in {DATA}", file=sys.stderr)
        return 2
    if args.pairs == "all":
        pairs = CROSS
    elif args.pairs == "rotation":
        pairs = [(m, m) for m in MODELS]
    else:
        pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    variants = [] if args.variant else [("default", {})]
    for v in args.variant:
        name, _, params = v.partition("=")
        variants.append((name, json.loads(params) if params else {}))
    seeds = [int(s) for s in args.seeds.split(",")]
    common = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            common[key] = json.loads(value)
        except json.JSONDecodeError:
            common[key] = value
    variants = [(name, {**common, **params}) for name, params in variants]

    print(f"{'variant':<12} {'A -> B':<28} {'seed':>4} {'top-1':>6} {'rank':>7} "
          f"{'ceiling':>7} {'ratio':>6} {'conf':>6} {'return':>6} {'agree':>6} {'pairs':>6} "
          f"{'warns':>5} {'fit s':>7} "
          f"{'peak MB':>8}",
          flush=True)
    for name, params in variants:
        for a, b in pairs:
            for seed in seeds:
                job = json.dumps({"a": a, "b": b, "seed": seed, "params": params, "pool": args.pool,
                                  "known_pairs": args.known_pairs, "rows": args.rows})
                proc = subprocess.run([sys.executable, __file__, "--one", job],
                                      capture_output=True, text=True, env=os.environ.copy())
                if proc.returncode != 0:
                    print(f"{name:<12} {a + ' -> ' + b:<28} {seed:>4} FAILED: "
                          f"{proc.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["variant"], r["params"] = name, params
                print(f"{name:<12} {a + ' -> ' + b:<28} {seed:>4} {r['top1']:>6.3f} "
                      f"{r['mean_rank']:>7.2f} {r['ceiling_top1']:>7.3f} "
                      f"{r['top1'] / r['ceiling_top1']:>6.3f} {r['confidence']:>6.3f} "
                      f"{r['return_agreement']:>6.3f} {r['restart_agreement']:>6.3f} "
                      f"{r['known_pairs_top1']:>6.3f} {'yes' if r['warned'] else 'no':>5} "
                      f"{r['fit_seconds']:>7.1f} "
                      f"{r['peak_rss_mb']:>8.0f}", flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
