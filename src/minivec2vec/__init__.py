"""minivec2vec: unsupervised alignment of two embedding spaces (mini-vec2vec) on CPUs.

Public API: :class:`MiniVec2Vec` (fit / transform / save / load; ``confidence_`` and
:class:`AlignmentWarning` say without pairs whether a fit is doubtful), :func:`evaluate`, and the
kernels :func:`knn`, :func:`merge_topk`, :func:`kmeans`, :func:`procrustes`.
"""
from ._mapfile import MapFileError
from .confidence import CONFIDENCE_THRESHOLD, AlignmentWarning
from .evaluation import evaluate
from .kmeans import kmeans
from .knn import knn, merge_topk
from .model import MiniVec2Vec, NotFittedError
from .procrustes import neighbour_cross_covariance, procrustes

__all__ = ["MiniVec2Vec", "NotFittedError", "MapFileError", "AlignmentWarning",
           "CONFIDENCE_THRESHOLD", "evaluate", "kmeans", "knn",
           "merge_topk", "procrustes", "neighbour_cross_covariance"]
__version__ = "0.1.0"
