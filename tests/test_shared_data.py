"""Checks on the real data directory ../shared/data (skipped when it is absent)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minivec2vec import knn
from minivec2vec.evaluation.datasets import load_sample
from minivec2vec.io.etl import file_sha256

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", ["minilm", "wordllama", "e5"])
def test_shipped_sample_is_the_first_rows_of_the_real_data(shared_data, model):
    expected = json.loads((shared_data / "SHA256.json").read_text())[f"{model}.npy"]
    assert file_sha256(shared_data / f"{model}.npy") == expected
    full = np.load(shared_data / f"{model}.npy", mmap_mode="r")
    sample = load_sample(model)
    assert full.dtype == sample.dtype == np.float16
    np.testing.assert_array_equal(full[:sample.shape[0]], sample)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_knn_on_the_full_real_data_equals_brute_force(shared_data, metric):
    D = np.load(shared_data / "minilm.npy", mmap_mode="r")        # 70000 x 384 float16
    Q = np.asarray(D[-150:]) + np.float16(0.01)                   # near, not equal, to rows
    scores, indices = knn(Q, D, 10, metric=metric, n_threads=2)
    D64 = np.asarray(D, dtype=np.float64)
    Q64 = Q.astype(np.float64)
    if metric == "cosine":
        D64 /= np.linalg.norm(D64, axis=1, keepdims=True)
        Q64 /= np.linalg.norm(Q64, axis=1, keepdims=True)
    S = Q64 @ D64.T
    ref = np.argsort(-S, axis=1, kind="stable")[:, :10]
    ref_scores = np.take_along_axis(S, ref, axis=1)
    atol = 1e-5 * np.abs(ref_scores).max()
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=atol)
    differ = indices != ref
    gap = np.abs(np.take_along_axis(S, indices, axis=1) - ref_scores)
    assert np.all(gap[differ] <= atol)
    assert differ.mean() < 0.01
    # thread invariance on the real data as well
    s1, i1 = knn(Q, D, 10, metric=metric, n_threads=1)
    assert s1.tobytes() == scores.tobytes()
    np.testing.assert_array_equal(i1, indices)
