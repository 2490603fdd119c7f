"""Procrustes (minivec2vec.procrustes) and the streamed cross-covariance that feeds it."""
import numpy as np

import minivec2vec

from .common import PAIR_DATASETS, neighbour_indices, pair_data


class Procrustes:
    """W = polar factor of a d_a x d_b cross-covariance (384 x 256 here)."""

    params = [PAIR_DATASETS]
    param_names = ["dataset"]

    def setup(self, dataset):
        X, Y = pair_data(dataset)
        self.M = X.T.astype(np.float64) @ Y.astype(np.float64)

    def time_procrustes(self, dataset):
        minivec2vec.procrustes(self.M)


class NeighbourCrossCovariance:
    """sum_i x_i^T mean_j Y[nb[i, j]] for k = 50 random neighbours per row (pseudo-pairs)."""

    params = [PAIR_DATASETS]
    param_names = ["dataset"]
    timeout = 300
    k = 50

    def setup(self, dataset):
        self.X, self.Y = pair_data(dataset)
        n = self.X.shape[0]
        self.neighbours = neighbour_indices(n, n, self.k)

    def time_cross_covariance(self, dataset):
        minivec2vec.neighbour_cross_covariance(self.X, self.Y, self.neighbours)

    def track_relative_error(self, dataset):
        """Relative Frobenius error against a float64 gather done in numpy."""
        M = minivec2vec.neighbour_cross_covariance(self.X, self.Y, self.neighbours)
        ref = np.zeros_like(M)
        Y64 = self.Y.astype(np.float64)
        for start in range(0, self.X.shape[0], 1000):
            nb = self.neighbours[start:start + 1000]
            targets = Y64[nb].mean(axis=1)
            ref += self.X[start:start + 1000].T.astype(np.float64) @ targets
        return float(np.linalg.norm(M - ref) / np.linalg.norm(ref))

    track_relative_error.unit = "relative"
