"""Refine-assignment (minivec2vec.assignment): Wasserstein-Procrustes steps with exact
one-to-one assignments on random batches."""
import numpy as np

from minivec2vec.assignment import refine_assignment

from .common import SEED, transport_data


class RefineAssignment:
    """5 steps of two 1,000-row batches per side (384-d): the batches' score matrices, scipy's
    linear_sum_assignment on each (side by side on ``n_threads``), the assigned pairs'
    cross-covariance and a Procrustes per step."""

    n_iter = 5
    params = [1, 2]
    param_names = ["n_threads"]

    def setup(self, n_threads):
        self.X_a, self.X_b, self.W = transport_data()

    def _run(self, n_threads):
        return refine_assignment(self.W, self.X_a, self.X_b, n_iter=self.n_iter,
                                 sample_size=1000, rng=np.random.default_rng(SEED),
                                 n_threads=n_threads)

    def time_refine_assignment(self, n_threads):
        self._run(n_threads)

    def peakmem_refine_assignment(self, n_threads):
        self._run(n_threads)
