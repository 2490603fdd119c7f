"""Refine-assignment (minivec2vec.stages.assignment): Wasserstein-Procrustes steps with one-to-one
assignments on random batches (sparse over each row's 100 best candidates, dense fallback)."""
import numpy as np

from minivec2vec.stages.assignment import refine_assignment

from .common import SEED, transport_data


class RefineAssignment:
    """5 steps of two 1,000-row batches per side (384-d): the batches' score matrices, scipy's
    the assignment of each (side by side on ``n_threads``), the assigned pairs'
    cross-covariance and a Procrustes per step. ``time_assign_*`` times one 2,000-row assignment
alone: the sparse solver the stage uses against scipy's dense one."""

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


class Assign2000:
    """One 2,000 x 2,000 assignment of rank-64 scores: the stage's solver (sparse over each
    row's 100 best candidates) against scipy's dense linear_sum_assignment."""

    def setup(self):
        rng = np.random.default_rng(SEED)
        self.scores = (rng.standard_normal((2000, 64)).astype(np.float32)
                       @ rng.standard_normal((64, 2000)).astype(np.float32))

    def time_assign_sparse_candidates(self):
        from minivec2vec.stages.assignment import _assign
        _assign(self.scores)

    def time_assign_dense_scipy(self):
        from scipy.optimize import linear_sum_assignment
        linear_sum_assignment(self.scores, maximize=True)
