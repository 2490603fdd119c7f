"""minivec2vec: unsupervised alignment of two embedding spaces (mini-vec2vec) on CPUs."""
from .kmeans import kmeans
from .knn import knn, merge_topk

__all__ = ["kmeans", "knn", "merge_topk"]
__version__ = "0.1.0"
