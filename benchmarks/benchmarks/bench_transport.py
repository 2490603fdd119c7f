"""Refine-transport (minivec2vec.stages.transport): annealed Wasserstein-Procrustes iterations."""
import numpy as np

from minivec2vec.stages.transport import refine_transport

from .common import SEED, transport_data


class RefineTransport:
    """20 iterations on 1,000 x 1,000 rows (384-d): Gibbs kernel, 10 Sinkhorn scalings, the
    plan-weighted cross-covariance and a Procrustes per iteration."""

    n_iter = 20

    def setup(self):
        self.X_a, self.X_b, self.W = transport_data()

    def _run(self):
        return refine_transport(self.W, self.X_a, self.X_b, n_iter=self.n_iter,
                                sample_size=1000, rng=np.random.default_rng(SEED))

    def time_refine_transport(self):
        self._run()

    def peakmem_refine_transport(self):
        self._run()
