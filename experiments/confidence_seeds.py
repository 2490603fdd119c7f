"""Does the unpaired confidence score separate good fits from failed ones?

Fits MiniVec2Vec on the protocol split of ../shared/data for many seeds, with the default
settings and with deliberately weakened settings that fail, on reduced training sizes
(``--rows`` per side) to fit a small CPU budget; prints top-1 (needs the pairs, used only to
judge) next to ``confidence_`` and ``restart_agreement_`` (need no pairs). One process, data
loaded once.

    python experiments/confidence_seeds.py --pair minilm:minilm --seeds 0-9 --rows 3000
    python experiments/confidence_seeds.py --pair wordllama:minilm --seeds 0-19 --rows 10000 \
        --set n_restarts=2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from minivec2vec import MiniVec2Vec
from minivec2vec.evaluation.protocol import evaluate_model, random_rotation, split

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WEAK = {"n_runs": 1, "n_clusters": 3, "qap_restarts": 1, "refine_iter": 0,
        "refine_clusters": 0, "mutual_iter": 0}
SETTINGS = {"default": {},
            "weak": WEAK,                                   # fails, unrefined
            "weak+mutual": {**WEAK, "mutual_iter": 12}}     # fails, then polished by refine-mutual


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="minilm:minilm")
    parser.add_argument("--seeds", default="0-9", help="first-last")
    parser.add_argument("--rows", type=int, default=3000, help="training rows per side")
    parser.add_argument("--n-threads", type=int, default=2)
    parser.add_argument("--settings", default="default,weak,weak+mutual")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a MiniVec2Vec parameter applied to every setting (JSON value)")
    parser.add_argument("--out", default=None, help="append JSON lines here")
    args = parser.parse_args(argv)
    common = {key: json.loads(value) for key, _, value in
              (item.partition("=") for item in args.set)}
    a, b = args.pair.split(":")
    first, _, last = args.seeds.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    X_a, X_b = np.load(DATA / f"{a}.npy"), np.load(DATA / f"{b}.npy")
    print(f"{'settings':<11} {'seed':>4} {'top-1':>6} {'rank':>8} {'conf':>6} {'agree':>6} "
          f"{'fit s':>6}")
    for name in args.settings.split(","):
        params = {**SETTINGS[name], **common}
        for seed in seeds:
            s = split(X_a, X_b, rotate_b=random_rotation(X_b.shape[1], 1000 + seed))
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = MiniVec2Vec(random_state=seed, n_threads=args.n_threads,
                                    fit_sample=args.rows, **params).fit(s.train_a, s.train_b)
            seconds = time.perf_counter() - t0
            got = evaluate_model(model, s)
            print(f"{name:<11} {seed:>4} {got['top1']:>6.3f} {got['mean_rank']:>8.1f} "
                  f"{model.confidence_:>6.3f} {model.restart_agreement_:>6.3f} "
                  f"{seconds:>6.1f}", flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps({"pair": args.pair, "settings": name, "seed": seed,
                                         "rows": args.rows, "top1": got["top1"],
                                         "mean_rank": got["mean_rank"],
                                         "confidence": model.confidence_,
                                         "restart_agreement": model.restart_agreement_,
                                         "params": params,
                                         "fit_seconds": seconds}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
