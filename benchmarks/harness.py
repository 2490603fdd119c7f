"""What compare.py and notebook_baseline.py share: the machine record, data, timing and tables.

Every run first prints what decides its speed, so that no figure is read without its machine:
the CPU model and its SIMD flags, the kNN engine minivec2vec runs (and whether an environment
variable forced it), the SIMD level faiss runs, the BLAS/OpenMP pools threadpoolctl sees (with
OpenBLAS's kernel architecture, e.g. SkylakeX or Haswell), the environment variables that force
them, and the load average (other processes share the CPUs: compare ratios measured in the same
run, not absolute times).
"""
from __future__ import annotations

import gc
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
SEED = 0
# the environment variables that force an instruction set on a CPU that has a better one
FORCING_VARIABLES = ("MINIVEC2VEC_KNN_ENGINE", "OPENBLAS_CORETYPE", "FAISS_SIMD_LEVEL",
                     "FAISS_OPT_LEVEL", "OMP_NUM_THREADS", "NUMBA_THREADING_LAYER")
_SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni")


# ------------------------------------------------------------------------------------------
# the machine
# ------------------------------------------------------------------------------------------
def import_peers():
    """Load every library whose thread pools we limit (before limiting them)."""
    import scipy.linalg  # noqa: F401
    import sklearn.cluster  # noqa: F401
    try:
        import faiss  # noqa: F401
    except ImportError:
        pass
    import minivec2vec  # noqa: F401


def limit_threads(n_threads):
    """Every BLAS / OpenMP pool loaded so far (numpy, scipy, scikit-learn, faiss) to n_threads."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n_threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n_threads)


def cpu_model():
    return _cpuinfo("model name") or platform.processor() or "?"


def simd_flags():
    """The x86 SIMD flags of /proc/cpuinfo that decide the kernels (empty elsewhere)."""
    flags = (_cpuinfo("flags") or "").split()
    return [f for f in _SIMD_FLAGS if f in flags]


def _cpuinfo(key):
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def faiss_simd_level():
    """The SIMD level faiss runs (FAISS_SIMD_LEVEL lowers it), or why it is unknown."""
    try:
        import faiss
    except ImportError:
        return "faiss not installed"
    try:
        return faiss.SIMDConfig.get_level_name()
    except AttributeError:
        return f"? (compile options: {faiss.get_compile_options().strip()})"


def environment(n_threads):
    """A dict of everything that decides the speed of this run (see the module docstring)."""
    import numba
    import threadpoolctl
    from threadpoolctl import threadpool_info

    import minivec2vec
    from minivec2vec.kernels import knn as knn_module
    versions = {"minivec2vec": minivec2vec.__version__, "numpy": np.__version__,
                "numba": numba.__version__, "threadpoolctl": threadpoolctl.__version__,
                "python": platform.python_version()}
    for name in ("scipy", "sklearn", "faiss"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    # one tiny parallel kernel, so that Numba reports the threading layer it really uses
    minivec2vec.kmeans(np.eye(8, dtype=np.float32), 2, random_state=SEED, n_threads=n_threads)
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--", "src", "csrc") else ""
    return {
        "commit": commit + dirty, "package": os.path.dirname(minivec2vec.__file__),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": n_threads,
        "simd_flags": simd_flags(),
        "knn_engines": list(knn_module.available_engines()), "knn_engine": knn_module.ENGINE,
        "faiss_simd_level": faiss_simd_level(),
        "numba_threading_layer": numba.threading_layer(),
        "blas_pools": [{key: pool.get(key) for key in ("user_api", "internal_api", "version",
                                                        "num_threads", "threading_layer",
                                                        "architecture")}
                       | {"file": os.path.basename(pool.get("filepath", ""))}
                       for pool in threadpool_info()],
        "forced": {name: os.environ[name] for name in FORCING_VARIABLES if name in os.environ},
        "versions": versions, "load_average": loadavg(),
    }


def print_environment(n_threads):
    """Print :func:`environment` as a header; returns the dict."""
    env = environment(n_threads)
    print("=" * 100)
    print(f"minivec2vec {env['versions']['minivec2vec']} (commit {env['commit']}; imported from "
          f"{env['package']}), python {env['versions']['python']}, {env['platform']}")
    print(f"CPU: {env['cpu']}, {env['logical_cpus']} logical CPUs, threads used: {n_threads}")
    print(f"CPU SIMD flags: {' '.join(env['simd_flags']) or '?'}")
    forced = env["forced"].get("MINIVEC2VEC_KNN_ENGINE")
    print(f"kNN engine: {env['knn_engine']!r}"
          + (f" (forced by MINIVEC2VEC_KNN_ENGINE={forced})" if forced
             else " (the best this CPU runs)")
          + f"; engines this CPU runs: {', '.join(env['knn_engines'])}")
    print(f"faiss SIMD level: {env['faiss_simd_level']}")
    print("forcing variables: " + (", ".join(f"{k}={v}" for k, v in env["forced"].items())
                                   or "none (every library picks its best kernels)"))
    v = env["versions"]
    print(f"numpy {v['numpy']}, scipy {v['scipy']}, scikit-learn {v['sklearn']}, "
          f"faiss {v['faiss']}, numba {v['numba']} (threading layer "
          f"{env['numba_threading_layer']}), threadpoolctl {v['threadpoolctl']}")
    print("BLAS / OpenMP pools (threadpoolctl.threadpool_info()):")
    for pool in env["blas_pools"]:
        print(f"  {pool['user_api'] or '?':7s} {pool['internal_api'] or '?':9s} "
              f"v{pool['version']}  threads={pool['num_threads']}  "
              f"layer={pool['threading_layer'] or '-'}  arch={pool['architecture'] or '-'}  "
              f"{pool['file']}")
    print(f"load average at start (1, 5, 15 min): {env['load_average']}  "
          "(other processes share these CPUs: compare ratios, not absolute times)")
    print("=" * 100)
    sys.stdout.flush()
    return env


def _git(*cmd):
    try:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def loadavg():
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
class Data:
    """Row-aligned real embeddings: the shared data set, else the sample in the package."""

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.shared = all((self.folder / f"{m}.npy").is_file() for m in ("minilm", "wordllama"))

    def rows(self, model, start, stop):
        """float32 rows [start, stop) of ``model``; clipped to what exists."""
        if self.shared and (self.folder / f"{model}.npy").is_file():
            data = np.load(self.folder / f"{model}.npy", mmap_mode="r")
        else:
            from minivec2vec.evaluation import datasets
            data = datasets.load_sample(model)
        return np.asarray(data[start:stop], dtype=np.float32)

    def n_rows(self, model="minilm"):
        if self.shared:
            return np.load(self.folder / f"{model}.npy", mmap_mode="r").shape[0]
        return 5000

    def has(self, model):
        return self.shared and (self.folder / f"{model}.npy").is_file()

    def describe(self):
        if self.shared:
            return f"{self.folder} ({self.n_rows()} rows per model)"
        return ("FALLBACK: the 5000-row sample shipped in minivec2vec "
                f"({self.folder / 'minilm.npy'} not found), sizes reduced")


def centred_unit(X):
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(axis=0)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X, dtype=np.float32)


# ------------------------------------------------------------------------------------------
# timing and tables
# ------------------------------------------------------------------------------------------
def timed(fn, repeat):
    """(last result, list of wall times) of ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


class Table:
    """Rows of (implementation, times, notes); ratios against the reference row's MEDIAN time
    (on a shared machine the best of a few runs rewards the luckiest one)."""

    def __init__(self, title):
        self.title = title
        self.rows = []
        self.reference = None

    def add(self, name, times, notes="", reference=False):
        """Add a row; returns its median time."""
        median = float(np.median(times))
        if reference or self.reference is None:
            self.reference = median
        self.rows.append((name, min(times), median, len(times), notes, reference))
        return median

    def show(self):
        print()
        print(self.title)
        print(f"  {'implementation':56s} {'best s':>9s} {'median s':>9s} {'runs':>4s} "
              f"{'ratio':>7s}  notes")
        for name, best, median, runs, notes, reference in self.rows:
            ratio = "1.00" if reference else f"{median / self.reference:.2f}"
            print(f"  {name:56s} {best:9.3f} {median:9.3f} {runs:4d} {ratio:>7s}  {notes}")
        print(f"  (ratio = median time / median time of the reference minivec2vec row, > 1: "
              f"minivec2vec is faster; load average now: {loadavg()})")
        sys.stdout.flush()


def start_run(args, quick_note):
    """What every comparison does first: import the peers, hold every library to
    ``args.threads`` threads, print the environment, load the data (``args.data``) and say
    whether this is a ``--quick`` run. Returns the :class:`Data`."""
    import_peers()
    limit_threads(args.threads)
    print_environment(args.threads)
    data = Data(args.data)
    print(f"data: {data.describe()}")
    if args.quick:
        print(f"QUICK mode: {quick_note}; numbers only check the script")
    return data
