"""Fit and transform on Dask against one machine, at scale (target: 1,000,000 x 768
per side on a 2-worker local cluster, same W as one machine).

    # 1. an n x d pair as .npy shards (the project's generator)
    python experiments/dask_scale.py generate /work/dask-data --rows 1000000 --dim 768
    # 2. one machine: shards read into memory, MiniVec2Vec.fit, transform of every A row
    python experiments/dask_scale.py run /work/dask-data --engine local --out local.json
    # 3. the same on a LocalCluster (2 spawned worker processes, 1 thread each)
    python experiments/dask_scale.py run /work/dask-data --engine dask --out dask.json
    # 4. max |W_dask - W_local|, transform checksums, times side by side
    python experiments/dask_scale.py compare local.json dask.json

``--params '{"refine_iter": 20}'`` overrides estimator defaults (same on both engines). Each run
prints and writes one JSON record: the per-stage ``timings_`` of the fit, the transform time,
peak RSS of the client (and of each worker), and the map W (as a .npy beside the JSON).

The data come from the project's generator (``minivec2vec.evaluation.synthetic.generate_pair``, the same
as ``minivec2vec generate``): ``run`` reads DIR/a/part-*.npy and DIR/b/part-*.npy.

Measured (docs/distributed.md, with this benchmark's earlier private generator) with
``--params '{"n_runs": 6, "refine_iter": 20, "refine_clusters": 100, "mutual_iter": 3, "n_threads": 2}'``
on 1,000,000 x 768 float32 per side, 50,000-row shards.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------ generator
def generate(args):
    """The project's generator (minivec2vec generate): DIR/a, DIR/b shards, true_map.npy."""
    from minivec2vec.evaluation.synthetic import generate_pair
    generate_pair(args.directory, args.rows, args.dim, shard_rows=args.shard_rows,
                  dtype=args.dtype, seed=args.seed)


# ------------------------------------------------------------------------------ runs
def shard_paths(root, side):
    paths = sorted((Path(root) / side).glob("part-*.npy"))
    if not paths:
        raise SystemExit(f"no shards in {Path(root) / side}")
    return paths


def dask_from_shards(paths):
    """One lazy dask array over .npy shards: each worker memory-maps its own shards."""
    import dask
    import dask.array as da
    blocks = []
    for path in paths:
        head = np.load(path, mmap_mode="r")       # reads the header only
        load = dask.delayed(np.load)(str(path), mmap_mode="r")
        blocks.append(da.from_delayed(load, shape=head.shape, dtype=head.dtype))
    return da.concatenate(blocks, axis=0)


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run(args):
    from minivec2vec import MiniVec2Vec
    params = {"random_state": args.seed, **json.loads(args.params)}
    record = {"engine": args.engine, "params": params, "load_average_start": os.getloadavg()}
    t_total = time.perf_counter()
    paths_a, paths_b = shard_paths(args.directory, "a"), shard_paths(args.directory, "b")
    n_a = sum(np.load(p, mmap_mode="r").shape[0] for p in paths_a)
    probe_rows = np.linspace(0, n_a - 1, 7).astype(np.int64)   # a few mapped rows compared
    if args.engine == "local":
        t = time.perf_counter()
        X_a = np.concatenate([np.load(p) for p in paths_a])
        X_b = np.concatenate([np.load(p) for p in paths_b])
        record["load_s"] = time.perf_counter() - t
        model = MiniVec2Vec(**params).fit(X_a, X_b)
        t = time.perf_counter()
        mapped = model.transform(X_a)
        checksum = mapped.sum(axis=0, dtype=np.float64)
        record["transform_s"] = time.perf_counter() - t
        probe = mapped[probe_rows]
        record["peak_rss_client_gb"] = _peak_rss_gb()
    else:
        import dask
        from distributed import Client, LocalCluster
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            t = time.perf_counter()
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
            record["cluster_start_s"] = time.perf_counter() - t
        with cluster, client:
            X_a, X_b = dask_from_shards(paths_a), dask_from_shards(paths_b)
            model = MiniVec2Vec(**params).fit(X_a, X_b)
            t = time.perf_counter()
            lazy = model.transform(X_a)
            checksum, probe = dask.compute(lazy.sum(axis=0, dtype=np.float64),
                                           lazy[probe_rows])
            record["transform_s"] = time.perf_counter() - t
            record["peak_rss_client_gb"] = _peak_rss_gb()
            record["peak_rss_workers_gb"] = sorted(client.run(_peak_rss_gb).values())
    record["rows_per_side"] = [int(X_a.shape[0]), int(X_b.shape[0])]
    record["dim"] = [int(X_a.shape[1]), int(X_b.shape[1])]
    record["dtype"] = str(X_a.dtype)
    record["fit_timings_s"] = model.timings_
    record["total_s"] = time.perf_counter() - t_total
    record["load_average_end"] = os.getloadavg()
    truth = Path(args.directory) / "truth_Q.npy"
    if truth.exists():
        # A is the source frame, B = source @ Q: the map should be close to Q
        record["max_abs_W_minus_truth"] = float(np.abs(model.W_ - np.load(truth)).max())
    out = Path(args.out)
    np.save(out.with_suffix(".W.npy"), model.W_)
    np.save(out.with_suffix(".transform.npy"), np.vstack([checksum, probe.astype(np.float64)]))
    record["W_file"] = str(out.with_suffix(".W.npy"))
    out.write_text(json.dumps(record, indent=1, default=float))
    print(json.dumps(record, default=float))


SUMMARY_KEYS = ("total_s", "load_s", "cluster_start_s", "transform_s", "fit_timings_s")


def compare(args):
    first, second = (json.loads(Path(p).read_text()) for p in (args.first, args.second))
    W1, W2 = np.load(first["W_file"]), np.load(second["W_file"])
    T1 = np.load(Path(args.first).with_suffix(".transform.npy"))
    T2 = np.load(Path(args.second).with_suffix(".transform.npy"))
    print(json.dumps({
        "max_abs_W_difference": float(np.abs(W1 - W2).max()),
        "max_abs_transform_difference(checksum rows + probe rows)": float(np.abs(T1 - T2).max()),
        first["engine"]: {k: first.get(k) for k in SUMMARY_KEYS},
        second["engine"]: {k: second.get(k) for k in SUMMARY_KEYS},
    }, indent=1, default=float))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("directory")
    g.add_argument("--rows", type=int, default=1_000_000)
    g.add_argument("--dim", type=int, default=768)
    g.add_argument("--shard-rows", type=int, default=50_000)
    g.add_argument("--dtype", default="float32", choices=["float16", "float32"])
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("directory")
    r.add_argument("--engine", choices=["local", "dask"], required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--params", default="{}", help="JSON of MiniVec2Vec parameters")
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("first")
    c.add_argument("second")
    args = parser.parse_args(argv)
    {"generate": generate, "run": run, "compare": compare}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
