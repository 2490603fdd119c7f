"""Distributed inputs: the partial states of :mod:`minivec2vec.kernels.partials` driven over
the blocks of dask arrays (:mod:`.dask`, optional extra ``minivec2vec[dask]``)."""
import sys


def is_dask_array(X):
    """True for a dask.array.Array (without importing dask: none exists if it is not loaded)."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(X, dask_array.Array)
