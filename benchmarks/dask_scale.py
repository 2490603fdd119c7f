"""Fit and transform on Dask against one machine, at scale (issue 5's target: 1,000,000 x 768
per side on a 2-worker local cluster, same W as one machine).

    # 1. an n x d pair as .npy shards (private generator of this benchmark; see below)
    python benchmarks/dask_scale.py generate /work/dask-data --rows 1000000 --dim 768
    # 2. one machine: shards read into memory, MiniVec2Vec.fit, transform of every A row
    python benchmarks/dask_scale.py run /work/dask-data --engine local --out local.json
    # 3. the same on a LocalCluster (2 spawned worker processes, 1 thread each)
    python benchmarks/dask_scale.py run /work/dask-data --engine dask --out dask.json
    # 4. max |W_dask - W_local|, transform checksums, times side by side
    python benchmarks/dask_scale.py compare local.json dask.json

``--params '{"refine_iter": 20}'`` overrides estimator defaults (same on both engines). Each run
prints and writes one JSON record: the per-stage ``timings_`` of the fit, the transform time,
peak RSS of the client (and of each worker), and the map W (as a .npy beside the JSON).

The data: side A and side B are disjoint draws of one source (a mixture of 64 anisotropic
Gaussian clusters around a common offset, spectrum decaying as 1/sqrt(j)); B's rows are mapped
by a random orthogonal Q (saved as truth_Q.npy) plus small noise. Shard s of side A is drawn
from seed (seed, 0, s), of side B from (seed, 1, s): any shard can be regenerated alone.
This data serves the equality and timing measurement only: the fit does not recover Q on it
(its 64 centres span 63 of the 768 dimensions; the rest is noise). The project's shared data
generator (issue 4) can replace ``generate``: ``run`` only needs a directory with A/part-*.npy
and B/part-*.npy.

Measured (docs/dask-readme.md) with
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

N_CLUSTERS = 64


# ------------------------------------------------------------------------------ generator
def _source(seed, dim):
    rng = np.random.default_rng([seed, 9])
    spectrum = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
    centres = rng.standard_normal((N_CLUSTERS, dim)).astype(np.float32) * spectrum
    offset = rng.standard_normal(dim).astype(np.float32) * 0.5 * spectrum
    Q = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    return spectrum, centres, offset, Q


def _shard(seed, side, index, rows, dim, source):
    spectrum, centres, offset, Q = source
    rng = np.random.default_rng([seed, side, index])
    labels = rng.integers(0, N_CLUSTERS, size=rows)
    X = rng.standard_normal((rows, dim), dtype=np.float32)
    X *= 0.6 * spectrum
    X += centres[labels]
    X += offset
    if side == 1:
        X = X @ Q.astype(np.float32)
        X += 0.01 * rng.standard_normal((rows, dim), dtype=np.float32)
    return X


def generate(args):
    root = Path(args.directory)
    source = _source(args.seed, args.dim)
    for side, name in ((0, "A"), (1, "B")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index, start in enumerate(range(0, args.rows, args.shard_rows)):
            rows = min(args.shard_rows, args.rows - start)
            X = _shard(args.seed, side, index, rows, args.dim, source).astype(args.dtype)
            path = root / name / f"part-{index:05d}.npy"
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, X)
            os.replace(tmp, path)
    np.save(root / "truth_Q.npy", source[3])
    print(json.dumps({"directory": str(root), "rows_per_side": args.rows, "dim": args.dim,
                      "dtype": args.dtype, "shard_rows": args.shard_rows}))


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
    paths_a, paths_b = shard_paths(args.directory, "A"), shard_paths(args.directory, "B")
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
