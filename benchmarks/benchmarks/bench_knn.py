"""Exact blocked kNN (minivec2vec.knn): time, peak memory and recall against brute force."""
import numpy as np

import minivec2vec
from minivec2vec import _core

from .common import KNN_DATASETS, knn_data


def brute_force_topk(queries, database, k, metric="ip"):
    """Indices of the k best database rows per query, float64 dense products (reference)."""
    Q = np.asarray(queries, dtype=np.float64)
    D = np.asarray(database, dtype=np.float64)
    if metric == "cosine":
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        D = D / np.linalg.norm(D, axis=1, keepdims=True)
    out = np.empty((Q.shape[0], k), dtype=np.int64)
    for start in range(0, Q.shape[0], 512):
        scores = Q[start:start + 512] @ D.T
        out[start:start + 512] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return out


def recall(found, truth):
    """Mean fraction of the true k neighbours present in ``found`` (order ignored)."""
    k = truth.shape[1]
    hits = sum(np.intersect1d(f, t, assume_unique=True).size for f, t in zip(found, truth))
    return hits / (truth.shape[0] * k)


class KNN:
    """One inner-product search of every query against the whole database."""

    params = [KNN_DATASETS]
    param_names = ["dataset"]
    timeout = 300
    k = 50

    def setup(self, dataset):
        self.queries, self.database = knn_data(dataset)

    def time_knn(self, dataset):
        minivec2vec.knn(self.queries, self.database, self.k)

    def peakmem_knn(self, dataset):
        minivec2vec.knn(self.queries, self.database, self.k)

    def track_recall(self, dataset):
        """Recall@50 of the first 256 queries against float64 brute force (1.0 up to ties)."""
        queries = self.queries[:256]
        _, found = minivec2vec.knn(queries, self.database, self.k)
        return recall(found, brute_force_topk(queries, self.database, self.k))

    track_recall.unit = "recall"


class KNNVariants:
    """k = 50 searches off the default path: cosine metric, a float16 database (converted tile
    by tile) within an 8 MB working-memory budget, one thread."""

    params = [KNN_DATASETS, ["cosine", "float16-8MB", "1-thread"]]
    param_names = ["dataset", "variant"]
    timeout = 300

    def setup(self, dataset, variant):
        self.queries, database = knn_data(dataset)
        self.database = database.astype(np.float16) if variant == "float16-8MB" else database
        self.options = {"cosine": {"metric": "cosine"},
                        "float16-8MB": {"memory_limit": "8MB"},
                        "1-thread": {"n_threads": 1}}[variant]

    def time_knn(self, dataset, variant):
        minivec2vec.knn(self.queries, self.database, 50, **self.options)


class KNNEngines:
    """The two exact engines side by side on the default search (k = 50, inner product): the
    int8-screened VNNI kernel and BLAS tiles with the fused top-k."""

    params = [KNN_DATASETS, ["int8", "blas"]]
    param_names = ["dataset", "engine"]
    timeout = 300

    def setup(self, dataset, engine):
        if engine == "int8" and not _core.has_vnni():
            raise NotImplementedError("this CPU has no AVX-512 VNNI")
        self.queries, self.database = knn_data(dataset)

    def time_knn(self, dataset, engine):
        minivec2vec.knn(self.queries, self.database, 50, engine=engine)

    def track_recall(self, dataset, engine):
        """Recall@50 of the first 256 queries against float64 brute force (1.0 up to ties)."""
        queries = self.queries[:256]
        _, found = minivec2vec.knn(queries, self.database, 50, engine=engine)
        return recall(found, brute_force_topk(queries, self.database, 50))

    track_recall.unit = "recall"
