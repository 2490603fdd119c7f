"""minivec2vec: unsupervised alignment of two embedding spaces (mini-vec2vec) on CPUs.

Public API: :class:`MiniVec2Vec` (fit / transform / save / load), :func:`evaluate`, and the
kernels :func:`knn`, :func:`merge_topk`, :func:`kmeans`, :func:`procrustes`.
"""
from . import _threads  # noqa: F401  (first: selects the Numba threading layer, see there)
from ._errors import (DimensionMismatchError, DtypeError, InputError, MapFileError,
                      MapFileVersionError, MemoryLimitError, MiniVec2VecError, NonFiniteError,
                      NotFittedError, OutputPathError, ShapeError, TooFewRowsError, ZeroRowError)
from .evaluation import evaluate
from .kmeans import kmeans
from .knn import knn, merge_topk
from .model import MiniVec2Vec
from .procrustes import neighbour_cross_covariance, procrustes

__all__ = ["MiniVec2Vec", "NotFittedError", "MapFileError", "evaluate", "kmeans", "knn",
           "merge_topk", "procrustes", "neighbour_cross_covariance",
           # exceptions (see _errors.py for the hierarchy)
           "MiniVec2VecError", "InputError", "NonFiniteError", "ZeroRowError", "ShapeError",
           "DimensionMismatchError", "TooFewRowsError", "DtypeError", "MapFileVersionError",
           "OutputPathError", "MemoryLimitError"]
__version__ = "0.1.0"
