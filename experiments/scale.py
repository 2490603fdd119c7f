"""Scale measurements on a synthetic pair written by ``minivec2vec generate``.

    python experiments/scale.py fit DIR --memory-limit 2GB [--fit-sample N] [--in-memory-rows N]
        fit on the shard directories DIR/a, DIR/b (streamed), or with --in-memory-rows on the
        first N rows of each side loaded into memory; prints the stage timings and the error of
        the recovered map against DIR/true_map.npy, and top-1 on the paired test rows
    python experiments/scale.py quality DIR MAP
        the quality numbers of a saved map
    python experiments/scale.py matmul DIR MAP OUT
        the bound for apply: read DIR/a block by block, centre, normalise, one numpy matmul per
        block, write the rows to OUT (plain file writes); prints rows/s
Run each under ``/usr/bin/time -v`` for the peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from minivec2vec import MiniVec2Vec, evaluate
from minivec2vec.io.sources import open_source


def _quality(model, directory):
    R = np.load(os.path.join(directory, "true_map.npy"))
    ta = np.load(os.path.join(directory, "test_a.npy"))
    tb = np.load(os.path.join(directory, "test_b.npy"))
    mapped = model.transform(ta)
    result = evaluate(mapped, tb - model.mean_b_, pool=ta.shape[0])
    # the same test rows mapped by the true map: how far the learnt map is where the data are
    true_mapped = (mapped @ model.W_.T.astype(np.float32)) @ R.astype(np.float32)
    cos = np.einsum("ij,ij->i", mapped, true_mapped) / (
        np.linalg.norm(mapped, axis=1) * np.linalg.norm(true_mapped, axis=1))
    return {"map_relative_error": float(np.linalg.norm(model.W_ - R) / np.linalg.norm(R)),
            "data_relative_error": float(np.linalg.norm(mapped - true_mapped)
                                         / np.linalg.norm(true_mapped)),
            "cos_to_true_map": float(cos.mean()),
            "top1": result["top1"], "mean_rank": result["mean_rank"],
            "mean_cos": result["mean_cos"]}


def cmd_fit(args):
    a, b = os.path.join(args.directory, "a"), os.path.join(args.directory, "b")
    t0 = time.perf_counter()
    if args.in_memory_rows:
        a = open_source(a).read(0, args.in_memory_rows)
        b = open_source(b).read(0, args.in_memory_rows)
    t_load = time.perf_counter() - t0
    model = MiniVec2Vec(random_state=args.seed, memory_limit=args.memory_limit,
                        fit_sample=args.fit_sample)
    t0 = time.perf_counter()
    model.fit(a, b)
    seconds = time.perf_counter() - t0
    if args.save:
        model.save(args.save)
    print(json.dumps({"fit_seconds": round(seconds, 1), "load_seconds": round(t_load, 1),
                      "timings": {k: round(v, 1) for k, v in model.timings_.items()},
                      **_quality(model, args.directory)}))


def cmd_quality(args):
    print(json.dumps(_quality(MiniVec2Vec.load(args.map), args.directory)))


def cmd_matmul(args):
    model = MiniVec2Vec.load(args.map)
    source = open_source(os.path.join(args.directory, "a"))
    W = model.W_.astype(np.float32)
    mean = model.mean_a_.astype(np.float32)
    t0 = time.perf_counter()
    with open(args.output, "wb") as fh:
        for _, block in source.blocks(65536):
            x = block - mean
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            fh.write((x @ W).tobytes())
    seconds = time.perf_counter() - t0
    os.unlink(args.output)
    print(json.dumps({"rows": source.n_rows, "seconds": round(seconds, 1),
                      "rows_per_second": round(source.n_rows / seconds)}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit")
    fit.add_argument("directory")
    fit.add_argument("--memory-limit", default=None)
    fit.add_argument("--fit-sample", type=int, default=100_000)
    fit.add_argument("--in-memory-rows", type=int, default=0)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--save", default=None)
    mm = sub.add_parser("matmul")
    mm.add_argument("directory")
    mm.add_argument("map")
    mm.add_argument("output")
    q = sub.add_parser("quality")
    q.add_argument("directory")
    q.add_argument("map")
    args = parser.parse_args()
    {"fit": cmd_fit, "matmul": cmd_matmul, "quality": cmd_quality}[args.command](args)


if __name__ == "__main__":
    main()
