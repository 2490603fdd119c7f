"""How much do independent restarts agree when they failed, and when they found the map?

Calibrates ``AGREEMENT_THRESHOLD`` (docs/reliability.md, 2026-11-27). For each seed,
fits MiniVec2Vec on the protocol split of ../shared/data (B's coordinates rotated, ``--rows``
training rows per side) with ``--restarts`` restarts and no extra ones, records every restart's
map after refine-1 (the maps the check compares), and prints each restart's top-1 on the test
pool (needs the pairs, used only to judge) and the agreement of every pair of restarts, as
``restart_agreement`` computes it. The first restarts are exactly those of a default fit and
its extra restart: the seeds are drawn in the same order. ``mutual_iter=0``: the stages after
the restarts do not change them.

    python experiments/restart_agreements.py --pair minilm:minilm-static --seeds 0-19 --rows 10000
    python experiments/restart_agreements.py --pair wordllama:minilm --seeds 0-19 --rows 10000

One process, single-threaded kernels by default. Each restart's map and the agreement of every
pair are the fitted attributes ``restart_maps_`` and ``restart_agreements_``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from minivec2vec import MiniVec2Vec
from minivec2vec.evaluation.metrics import evaluate
from minivec2vec.kernels.rows import centre_normalise
from minivec2vec.evaluation.protocol import random_rotation, split

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="wordllama:minilm")
    parser.add_argument("--seeds", default="0-19", help="first-last")
    parser.add_argument("--rows", type=int, default=10000, help="training rows per side")
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--n-threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="append JSON lines here")
    args = parser.parse_args(argv)
    if args.restarts < 2:
        parser.error("--restarts must be at least 2")
    a, b = args.pair.split(":")
    first, _, last = args.seeds.partition("-")
    X_a, X_b = np.load(DATA / f"{a}.npy"), np.load(DATA / f"{b}.npy")
    pairs = list(itertools.combinations(range(args.restarts), 2))
    print(f"{'seed':>4}  top-1 per restart{'':<{max(0, 7 * args.restarts - 17)}}  "
          + " ".join(f"{i}-{j}" for i, j in pairs), flush=True)
    for seed in range(int(first), int(last or first) + 1):
        s = split(X_a, X_b, rotate_b=random_rotation(X_b.shape[1], 1000 + seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MiniVec2Vec(random_state=seed, n_threads=args.n_threads,
                                fit_sample=args.rows, n_restarts=args.restarts,
                                extra_restarts=0, mutual_iter=0).fit(s.train_a, s.train_b)
        test_a = centre_normalise(s.test_a, model.mean_a_, "test_a")
        test_b = centre_normalise(s.test_b, model.mean_b_, "test_b")
        top1 = [evaluate(test_a @ W.astype(np.float32), test_b, n_threads=args.n_threads)["top1"]
                for W in model.restart_maps_]
        agreement = {f"{i}-{j}": float(model.restart_agreements_[i, j]) for i, j in pairs}
        print(f"{seed:>4}  " + " ".join(f"{t:6.3f}" for t in top1) + "  "
              + " ".join(f"{agreement[f'{i}-{j}']:.2f}" for i, j in pairs), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps({"pair": args.pair, "seed": seed, "rows": args.rows,
                                     "restart_top1": top1, "agreement": agreement,
                                     "restart_confidences": model.restart_confidences_.tolist()})
                         + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
