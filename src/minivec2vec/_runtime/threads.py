"""Thread policy: how many threads a call uses, and BLAS held to one thread inside parallel regions.

Numba's own pool and the BLAS pools are separate. Inside a region where our threads (Numba prange
or Python worker threads) each call BLAS, BLAS must run single-threaded or the machine is
oversubscribed; outside such regions BLAS keeps its own threads.
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings

import numba
from threadpoolctl import ThreadpoolController

from ..exceptions import InvalidParameterError, ParameterTypeError

# ---- The Numba threading layer: chosen here, once. --------------------------------------------
# The package imports this module before any kernel module, so this runs before any parallel
# kernel is compiled or launched. Our parallel kernels are launched from several Python threads
# at once (the anchor runs run side by side; users call transform/knn/kmeans from their own
# threads), so the layer must accept concurrent launches. Numba's layers:
#   tbb       - concurrent launches and forked children both safe (needs the `tbb` package);
#   omp       - concurrent launches safe; with GNU OpenMP a forked child that launches a kernel
#               after its parent did is aborted (use multiprocessing "spawn"/"forkserver");
#   workqueue - ABORTS THE PROCESS on concurrent launches ("Concurrent access has been detected").
# Order: tbb if it loads, else omp, else workqueue as a last resort (e.g. macOS wheels without
# libomp) -- and then every parallel region takes one process-wide lock, so concurrent calls
# are serialised instead of aborting. A NUMBA_THREADING_LAYER set by the user is respected (the
# lock still protects workqueue). The layer does not change results: kernels split work in
# fixed chunks whatever runs them.
PREFERRED_THREADING_LAYERS = ["tbb", "omp", "workqueue"]
if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER_PRIORITY = list(PREFERRED_THREADING_LAYERS)
    numba.config.THREADING_LAYER = "default"   # = the first of the priority list that loads

_layer_guard = None
_layer_guard_lock = threading.Lock()
_layer_pid = None            # the process that loaded the layer
_layer_fork_unsafe = False   # GNU OpenMP: kernels abort the process in a forked child


def threading_layer() -> str:
    """The Numba threading layer in use ('tbb', 'omp' or 'workqueue'), loading it if needed."""
    numba.get_num_threads()        # launches Numba's thread pool (the layer) on first use
    return numba.threading_layer()


def _kernel_guard():
    """A process-wide lock when the layer is workqueue (not thread-safe), else a no-op."""
    global _layer_guard, _layer_pid, _layer_fork_unsafe
    if _layer_guard is None:
        with _layer_guard_lock:
            if _layer_guard is None:
                layer = threading_layer()
                _layer_pid = os.getpid()
                if layer == "omp":
                    from numba.np.ufunc import omppool
                    _layer_fork_unsafe = getattr(omppool, "openmp_vendor", "GNU") == "GNU"
                _layer_guard = (threading.RLock() if layer == "workqueue"
                                else contextlib.nullcontext())
    return _layer_guard


def check_kernels_can_run():
    """Call before launching a Numba parallel kernel. In a child forked after GNU OpenMP
    started in the parent, the kernel would kill the process ("fork() called from a process
    already using GNU OpenMP, this is unsafe"): raise a clear error instead. The C++ kNN and
    transform do not use Numba and keep working in such children."""
    _kernel_guard()
    if _layer_fork_unsafe and os.getpid() != _layer_pid:
        raise RuntimeError(
            "minivec2vec: this process was forked after Numba's GNU OpenMP threading layer "
            "started in its parent, and OpenMP cannot run in such a child (it would abort the "
            "process). Start worker processes with multiprocessing's 'spawn' or 'forkserver' "
            "method, or install the `tbb` package (fork-safe layer, picked automatically).")


_controller = None
_controller_lock = threading.Lock()


def _get_controller() -> ThreadpoolController:
    global _controller
    # Numba's np.dot calls scipy's BLAS: load it first so the controller sees that library too.
    import scipy.linalg.cython_blas  # noqa: F401
    with _controller_lock:
        if _controller is None:
            _controller = ThreadpoolController()
        return _controller


def max_worker_threads() -> int:
    """The most threads any call may use here (Numba's pool size)."""
    return numba.config.NUMBA_NUM_THREADS


def resolve_n_threads(n_threads) -> int:
    """None -> every core Numba may use; otherwise clipped to [1, NUMBA_NUM_THREADS]."""
    available = numba.config.NUMBA_NUM_THREADS
    if n_threads is None:
        return max(1, min(available, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1))
    if isinstance(n_threads, bool) or not isinstance(n_threads, int):
        raise ParameterTypeError(f"n_threads: expected an int or None, got {n_threads!r}")
    if n_threads < 1:
        raise InvalidParameterError(f"n_threads: must be >= 1, got {n_threads}")
    return min(n_threads, available)


@contextlib.contextmanager
def parallel_region(n_threads: int):
    """Numba uses ``n_threads`` (per calling thread); BLAS held to one thread while any
    region runs (see :func:`single_threaded_blas`)."""
    with single_threaded_blas():
        with numba_threads(n_threads):
            yield


@contextlib.contextmanager
def numba_threads(n_threads: int):
    """Numba kernels launched inside use ``n_threads`` (Numba's count is per calling thread);
    under the workqueue layer the region also holds the process-wide kernel lock."""
    with _kernel_guard():
        previous = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


_blas_lock = threading.Lock()
_blas_holders = 0          # regions (from any Python thread) now holding BLAS at one thread
_blas_restore = None       # [(BLAS library controller, its count before the first region)]


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread: our own threads (Numba prange, kNN workers) carry the
    parallelism. Small LAPACK calls (d x d SVDs) with several BLAS threads were measured 40x
    slower on a loaded 2-core machine (3.2 s instead of 69 ms for a 384 x 384 SVD).

    BLAS's thread count is process-wide, and OpenBLAS's results depend on it (an sgemm of
    75 x 2048 x 64 differs by ~1e-5 between 1 and 2 threads). A per-call limit raced between
    Python threads: the first call to leave restored the user's count while another call was
    still inside, whose BLAS then ran multi-threaded (and the last to leave "restored" one
    thread for good). So the limit is shared: the first region to enter sets one thread, the
    last to leave restores the count found then, and no region ever runs BLAS with more."""
    global _blas_holders, _blas_restore
    with _blas_lock:
        if _blas_holders == 0:
            _blas_restore = _limit_blas_to_one_thread()
        _blas_holders += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                restore, _blas_restore = _blas_restore, None
                _restore_blas_threads(restore)


def _limit_blas_to_one_thread():
    """Set every BLAS library to one thread (checked as the restore is); return what to
    restore."""
    found = [(lib, lib.get_num_threads()) for lib in _get_controller().lib_controllers
             if lib.user_api == "blas"]
    _apply_counts([(lib, 1) for lib, _ in found], "hold BLAS to one thread in a parallel "
                  "region: its results may then depend on its thread count")
    return found


def _restore_blas_threads(counts):
    _apply_counts(counts, "give BLAS back its thread count after a parallel region: BLAS "
                  "stays slower, not wrong; threadpoolctl.threadpool_limits can set it")


def _apply_counts(counts, consequence):
    """Set each library's count, then let go of threadpoolctl's control of OpenBLAS.

    threadpoolctl (3.6 and later) lets only one Python thread change a pthreads OpenBLAS's
    count: the first to call set_num_threads, until it clears that control or exits; calls
    from any other thread silently do nothing. Our regions start and end in whichever thread
    calls, so each change here gives the control back at once. Before it did, a region
    entered from a new thread could not hold BLAS to one thread (read back: 2) and the last
    to leave could not restore the count (8 runs in 20 of the overlapping-regions test). A
    count that still did not take (another live thread of the user's holds the control) is
    reported, not ignored."""
    for lib, n in counts:
        lib.set_num_threads(n)
    for cls in {type(lib) for lib, _ in counts}:
        if hasattr(cls, "clear_controlling_thread"):
            cls.clear_controlling_thread()
    if not all(lib.get_num_threads() == n for lib, n in counts):
        warnings.warn(f"minivec2vec could not {consequence} (wanted {[n for _, n in counts]}, "
                      f"read {[lib.get_num_threads() for lib, _ in counts]}): another thread "
                      "holds threadpoolctl's control of BLAS", RuntimeWarning)


def _reset_blas_limit_after_fork():
    """A child forked while regions were open in other threads of its parent inherits their
    count and, maybe, a held lock, but none of those threads: no region runs in the child.
    Give it back the BLAS threads the parent had before its regions, and a fresh lock."""
    global _blas_lock, _blas_holders, _blas_restore
    restore, _blas_restore = _blas_restore, None
    _blas_holders = 0
    _blas_lock = threading.Lock()
    if restore is not None:
        _restore_blas_threads(restore)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_blas_limit_after_fork)
