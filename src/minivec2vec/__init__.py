"""minivec2vec: unsupervised alignment of two embedding spaces (mini-vec2vec) on CPUs.

Public API: :class:`MiniVec2Vec` (fit / transform / save / load; ``return_agreement_``,
``restart_agreement_`` and :class:`AlignmentWarning` say without pairs whether a fit is
doubtful; ``fit(..., known_pairs=...)`` starts from a few paired items when the unpaired fit
cannot), :func:`evaluate` and :func:`evaluate_retrieval` (recall of B queries against a mapped
corpus; :func:`minivec2vec.evaluation.report.write_report` draws it as an HTML page), and the
kernels :func:`knn`, :func:`merge_topk`, :func:`kmeans`, :func:`procrustes`; the partial states
of the method (:mod:`minivec2vec.kernels.partials`) and their Dask drivers :func:`dask_knn`,
:func:`dask_procrustes` (``fit``/``transform`` accept dask arrays; extra ``minivec2vec[dask]``).
"""
# first: selects the Numba threading layer (see there)
from ._runtime import threads as _threads  # noqa: F401
from ._version import __version__
from .exceptions import (AlignmentWarning, DimensionMismatchError, DtypeError, InputError,
                         InputFileError, InvalidParameterError, MapFileError, MapFileVersionError,
                         MemoryLimitError, MiniVec2VecError, MissingDependencyError,
                         NonFiniteError, NotFittedError, OutputDirectoryNotFoundError,
                         OutputPathError, ParameterTypeError, PartialStateError, PathNotFoundError,
                         ShapeError, TooFewRowsError, ZeroRowError)
# former module paths that are also the names of functions bound below (minivec2vec.knn moved
# to minivec2vec.kernels.knn, ...): loaded before the functions are bound, so that a later
# ``import minivec2vec.knn`` leaves ``minivec2vec.knn`` the function, as it always was
from . import kmeans as _, knn as _, procrustes as _  # noqa: F401,F811,E402
del _
from .stages.confidence import (AGREEMENT_THRESHOLD, CONFIDENCE_THRESHOLD, KNOWN_PAIRS_THRESHOLD,
                                RETURN_THRESHOLD)
from .evaluation.metrics import evaluate, evaluate_retrieval
from .kernels.kmeans import kmeans
from .kernels.knn import knn, merge_topk
from .model import MIN_KNOWN_PAIRS, MiniVec2Vec
from .kernels.partials import (ProcrustesPartial, finalize_procrustes, merge_procrustes_partials,
                               partial_means, procrustes_partial, topk_partial)
from .kernels.procrustes import neighbour_cross_covariance, procrustes
from .distributed.dask import dask_knn, dask_procrustes

__all__ = ["__version__", "MiniVec2Vec", "NotFittedError", "MapFileError", "AlignmentWarning",
           "CONFIDENCE_THRESHOLD", "AGREEMENT_THRESHOLD", "KNOWN_PAIRS_THRESHOLD",
           "RETURN_THRESHOLD",
           "MIN_KNOWN_PAIRS", "evaluate", "evaluate_retrieval", "kmeans", "knn",
           "merge_topk", "procrustes", "neighbour_cross_covariance", "ProcrustesPartial",
           "procrustes_partial", "merge_procrustes_partials", "partial_means",
           "finalize_procrustes", "topk_partial", "dask_knn", "dask_procrustes",
           # minivec2vec.exceptions (its docstring draws the hierarchy)
           "MiniVec2VecError", "InputError", "NonFiniteError", "ZeroRowError", "ShapeError",
           "DimensionMismatchError", "TooFewRowsError", "DtypeError", "MapFileVersionError",
           "OutputPathError", "MemoryLimitError", "InputFileError", "PathNotFoundError",
           "OutputDirectoryNotFoundError", "PartialStateError", "InvalidParameterError",
           "ParameterTypeError", "MissingDependencyError"]
