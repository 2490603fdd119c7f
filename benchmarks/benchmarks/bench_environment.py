"""What decides the speed of this run: the CPU's features, the kNN engine, the BLAS kernels.

asv stores numbers only, so each fact is a ``track_`` of its own (asv keeps them beside the
timings of the same commit and machine, and a jump in a timing can be read against them); the
whole record (CPU model, SIMD flags, engines, faiss SIMD level, every BLAS/OpenMP pool with its
kernel architecture from threadpoolctl, the forcing environment variables, the load average) is
printed to stderr in ``setup``, which ``asv run --show-stderr`` (benchmarks/run_quick.sh) shows.
The record comes from benchmarks/harness.py, the same one compare.py prints.
"""
import json
import pathlib
import sys

from minivec2vec import _core
from minivec2vec._runtime.threads import resolve_n_threads
from minivec2vec.kernels import knn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import harness  # noqa: E402

# OpenBLAS kernel families that use AVX-512 (threadpoolctl's "architecture")
AVX512_BLAS_KERNELS = ("SkylakeX", "Cooperlake", "SapphireRapids")


class Environment:
    """One record per run; the tracks below are 0/1 flags or an engine number."""

    timeout = 120

    def setup(self):
        self.record = harness.environment(n_threads=resolve_n_threads(None))
        print("minivec2vec benchmark environment: " + json.dumps(self.record),
              file=sys.stderr, flush=True)

    def track_knn_engine(self):
        """0 = int8 (AVX-512 VNNI), 1 = int8-avx2, 2 = blas: the engine every kNN here used."""
        return knn._ENGINES.index(knn.ENGINE)

    track_knn_engine.unit = "engine (0 int8, 1 int8-avx2, 2 blas)"

    def track_knn_engine_forced(self):
        """1 when MINIVEC2VEC_KNN_ENGINE chose the engine instead of the CPU."""
        return int("MINIVEC2VEC_KNN_ENGINE" in self.record["forced"])

    track_knn_engine_forced.unit = "forced"

    def track_cpu_avx512_vnni(self):
        return int(_core.has_vnni())

    track_cpu_avx512_vnni.unit = "has"

    def track_cpu_avx2_fma(self):
        return int(_core.has_avx2())

    track_cpu_avx2_fma.unit = "has"

    def track_blas_avx512_kernels(self):
        """1 when an OpenBLAS loaded here runs AVX-512 kernels (numpy's and scipy's: SkylakeX
        on Zen 4; 0 under OPENBLAS_CORETYPE=Haswell or on an AVX2 CPU)."""
        return int(any(pool["architecture"] in AVX512_BLAS_KERNELS
                       for pool in self.record["blas_pools"]))

    track_blas_avx512_kernels.unit = "any"
