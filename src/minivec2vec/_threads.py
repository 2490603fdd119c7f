"""Thread policy: how many threads a call uses, and BLAS held to one thread inside parallel regions.

Numba's own pool and the BLAS pools are separate. Inside a region where our threads (Numba prange
or Python worker threads) each call BLAS, BLAS must run single-threaded or the machine is
oversubscribed; outside such regions BLAS keeps its own threads.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numba
from threadpoolctl import ThreadpoolController

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
        raise TypeError(f"n_threads: expected an int or None, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads: must be >= 1, got {n_threads}")
    return min(n_threads, available)


@contextlib.contextmanager
def parallel_region(n_threads: int):
    """Numba uses ``n_threads``; BLAS is limited to one thread; both restored on exit."""
    with _get_controller().limit(limits=1, user_api="blas"):
        with numba_threads(n_threads):
            yield


@contextlib.contextmanager
def numba_threads(n_threads: int):
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread: our own threads (Numba prange, kNN workers) carry the
    parallelism. Small LAPACK calls (d x d SVDs) with several BLAS threads were measured 40x
    slower on a loaded 2-core machine (3.2 s instead of 69 ms for a 384 x 384 SVD)."""
    with _get_controller().limit(limits=1, user_api="blas"):
        yield
