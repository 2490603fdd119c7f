"""Refine-mutual's pass sizes, and that the growing passes are the ones that run."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from conftest import assert_semi_orthogonal, noisy_rotation_start, random_unit_rows
from minivec2vec.stages.assignment import refine_assignment
from minivec2vec.kernels.procrustes import procrustes
from minivec2vec.stages.refine import mutual_schedule, refine_matching, refine_mutual
from minivec2vec.stages.transport import refine_transport

refine_module = importlib.import_module("minivec2vec.stages.refine")


@pytest.mark.parametrize("refine", [
    lambda W, A, B, rng: refine_matching(W, A, B, n_iter=0, sample_size=40, n_neighbors=5,
                                         alpha=0.5, reproject=True, rng=rng),
    lambda W, A, B, rng: refine_mutual(W, A, B, n_iter=0, sample_size=40, csls_k=5, rng=rng),
    lambda W, A, B, rng: refine_transport(W, A, B, n_iter=0, sample_size=100, rng=rng),
    lambda W, A, B, rng: refine_assignment(W, A, B, n_iter=0, sample_size=40, rng=rng),
], ids=["matching", "mutual", "transport", "assignment"])
def test_zero_iterations_leave_w_unchanged(refine):
    rng = np.random.default_rng(4)
    A, B = random_unit_rows(rng, 50, 8), random_unit_rows(rng, 60, 8)
    W0 = procrustes(rng.standard_normal((8, 8)))
    assert refine(W0, A, B, rng) is W0


def test_schedule_holds_the_first_half_then_grows_to_the_final_size():
    sizes = mutual_schedule(12, 10_000, 30_000)
    assert len(sizes) == 12
    assert sizes[:6] == [10_000] * 6
    assert sizes[-1] == 30_000
    assert all(later > earlier for earlier, later in zip(sizes[5:], sizes[6:]))
    # geometric: equal ratios between consecutive growing passes
    ratios = np.array(sizes[6:]) / np.array(sizes[5:-1])
    np.testing.assert_allclose(ratios, 3 ** (1 / 6), rtol=1e-3)


@pytest.mark.parametrize("n_iter,expected", [(0, []), (1, [500]), (2, [500, 2000]),
                                             (3, [500, 500, 2000])])
def test_schedule_short_runs(n_iter, expected):
    assert mutual_schedule(n_iter, 500, 2000) == expected


def test_schedule_without_growth_is_constant():
    assert mutual_schedule(7, 800, 800) == [800] * 7


def test_growing_passes_run_and_beat_fixed_small_passes(monkeypatch, rotation_split):
    """Oracle: minilm vs rotated minilm (disjoint texts), starting from the true rotation plus
    noise. Passes of 1000 rows per side pair texts too loosely and lose top-1 (0.92 -> 0.66);
    growing the last passes to all 2000 rows keeps far more of it (0.86)."""
    A, B, W_start, top1 = noisy_rotation_start(rotation_split, 2000, 3.5)

    drawn = []
    original = refine_module.csls_nearest

    def recording(mapped, rows_b, *args, **kwargs):
        drawn.append((mapped.shape[0], rows_b.shape[0]))
        return original(mapped, rows_b, *args, **kwargs)

    monkeypatch.setattr(refine_module, "csls_nearest", recording)
    fixed, grown = (refine_mutual(W_start, A, B, n_iter=4, sample_size=1000,
                                  final_sample_size=final, csls_k=10,
                                  rng=np.random.default_rng(1), n_threads=1)
                    for final in (1000, 2000))
    assert drawn == [(1000, 1000)] * 4 + [(1000, 1000)] * 2 + [(1414, 1414), (2000, 2000)]
    assert_semi_orthogonal(grown, atol=1e-6)
    assert top1(grown) > top1(fixed) + 0.1, (top1(W_start), top1(fixed), top1(grown))
