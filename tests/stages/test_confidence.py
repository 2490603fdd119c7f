"""The unpaired confidence score, n_restarts and the doubtful-alignment warning."""
from __future__ import annotations

import importlib
import json
import warnings

import numpy as np
import pytest

from minivec2vec import MiniVec2Vec
from minivec2vec.stages.confidence import (AGREEMENT_THRESHOLD, CONFIDENCE_THRESHOLD, RETURN_THRESHOLD,
                                           RETURN_TURN, AlignmentWarning, alignment_confidence,
                                           doubtful, map_agreement, random_turn, restart_agreement,
                                           return_agreement, scoring_sample)
from minivec2vec.kernels.rows import centre_normalise, column_mean
from minivec2vec.kernels.procrustes import procrustes

pipeline_module = importlib.import_module("minivec2vec.pipeline")

LIGHT = {"n_runs": 5, "n_clusters": 10, "refine_iter": 20, "refine_clusters": 50, "qap_restarts": 10,
         "mutual_iter": 3, "mutual_sample": 600, "confidence_sample": 300,
         "transport_iter": 5}


def _centred(split):
    A = centre_normalise(split.train_a, column_mean(split.train_a), "a")
    B = centre_normalise(split.train_b, column_mean(split.train_b), "b")
    return A, B


def test_true_map_scores_high_and_random_maps_score_low(rotation_split):
    """Oracle: on minilm vs rotated minilm, the supervised Procrustes map is near 1 and above
    the threshold; random orthogonal maps of the same data are far below it."""
    A, B = _centred(rotation_split)
    sample = scoring_sample(A, B, sample_size=1000, csls_k=10, rng=np.random.default_rng(0))
    A_pairs = centre_normalise(rotation_split.train_a, column_mean(rotation_split.train_a), "a")
    B_pairs = centre_normalise(rotation_split.paired_train_b,
                               column_mean(rotation_split.paired_train_b), "b")
    W_true = procrustes(A_pairs.T.astype(np.float64) @ B_pairs.astype(np.float64))
    good = alignment_confidence(W_true, sample, 10)
    rng = np.random.default_rng(1)
    bad = [alignment_confidence(procrustes(rng.standard_normal(W_true.shape)), sample, 10)
           for _ in range(3)]
    assert good > CONFIDENCE_THRESHOLD > max(bad), (good, bad)
    assert 0.9 < good < 1.1


def test_confidence_is_invariant_to_rotating_b(rotation_split):
    """Rotating B's coordinates (and W with it) leaves the score unchanged."""
    A, B = _centred(rotation_split)
    R = procrustes(np.random.default_rng(2).standard_normal((B.shape[1], B.shape[1])))
    W = procrustes(np.random.default_rng(3).standard_normal((A.shape[1], B.shape[1])))
    s1 = scoring_sample(A, B, sample_size=500, csls_k=10, rng=np.random.default_rng(4))
    s2 = scoring_sample(A, (B @ R).astype(np.float32), sample_size=500, csls_k=10,
                        rng=np.random.default_rng(4))
    assert abs(alignment_confidence(W, s1, 10) - alignment_confidence(W @ R, s2, 10)) < 1e-4


def test_restart_agreement_oracles(rotation_split):
    """Identical maps agree 1, opposite maps -1, one map gives NaN; on real rows two
    independent random orthogonal maps agree about 0. With more maps, the kept one is compared
    with every other and the closest counts."""
    A, _ = _centred(rotation_split)
    rows = A[:500]
    rng = np.random.default_rng(6)
    W1, W2 = (procrustes(rng.standard_normal((384, 384))) for _ in range(2))
    assert restart_agreement([W1, W1], rows, kept=0) == pytest.approx(1.0, abs=1e-5)
    assert restart_agreement([W1, -W1], rows, kept=1) == pytest.approx(-1.0, abs=1e-5)
    assert np.isnan(restart_agreement([W1], rows, kept=0))
    assert abs(restart_agreement([W1, W2], rows, kept=0)) < 0.05
    maps = [W2, W1, -W1, W1]
    assert restart_agreement(maps, rows, kept=1) == pytest.approx(1.0, abs=1e-5)  # found W1
    assert abs(restart_agreement(maps, rows, kept=0)) < 0.05     # W2: no other map is close
    assert abs(restart_agreement(maps, rows, kept=2)) < 0.05     # -W1: W2 beats the W1s (-1)


def test_return_agreement_oracles(rotation_split):
    """A refinement that always lands on the same map returns 1; one that does not move
    (the identity) returns the agreement between W and its turned copy, which the turn sets
    near 0.4 on real rows (the calibration's starting distance); the two refinement runs see
    generators of the same seed, and the result depends only on ``rng``."""
    A, _ = _centred(rotation_split)
    rows = A[:500]
    rng = np.random.default_rng(8)
    W, fixed = (procrustes(rng.standard_normal((384, 384))) for _ in range(2))
    assert return_agreement(W, rows, lambda W0, g: fixed, np.random.default_rng(1)) == \
        pytest.approx(1.0, abs=1e-5)
    stay = return_agreement(W, rows, lambda W0, g: W0, np.random.default_rng(1))
    turn = random_turn(384, RETURN_TURN, np.random.default_rng(1))
    np.testing.assert_allclose(turn @ turn.T, np.eye(384), atol=1e-8)
    assert stay == pytest.approx(map_agreement(W, turn @ W, rows), abs=1e-6)
    assert 0.25 < stay < 0.55
    draws = []
    return_agreement(W, rows, lambda W0, g: draws.append(g.random()) or W0,
                     np.random.default_rng(1))
    assert len(draws) == 2 and draws[0] == draws[1]
    assert stay == return_agreement(W, rows, lambda W0, g: W0, np.random.default_rng(1))


def test_verdict_trusts_a_map_the_refinement_comes_back_to():
    nan = float("nan")
    assert doubtful(0.5, nan, nan, RETURN_THRESHOLD) is None          # one restart, returned
    assert doubtful(0.5, 0.0, nan, RETURN_THRESHOLD + 0.01) is None   # restarts disagree
    assert doubtful(0.5, AGREEMENT_THRESHOLD, nan, 0.0) is None       # another restart agrees
    reason = doubtful(1.0, nan, nan, RETURN_THRESHOLD - 0.01)
    assert "return_agreement_" in reason and "restart_agreement_" not in reason
    reason = doubtful(1.0, AGREEMENT_THRESHOLD - 0.01, nan, RETURN_THRESHOLD - 0.01)
    assert "return_agreement_" in reason and "restarts disagree" in reason
    # known pairs decide alone
    assert "known pairs" in doubtful(1.0, 1.0, 0.0, 1.0)


def test_verdict_uses_agreement_when_there_are_restarts():
    nan = float("nan")
    assert doubtful(0.5, AGREEMENT_THRESHOLD + 0.01) is None       # agreement decides
    assert "restarts disagree" in doubtful(1.0, AGREEMENT_THRESHOLD - 0.01)
    assert doubtful(CONFIDENCE_THRESHOLD + 0.01, nan) is None       # one restart: confidence
    assert "n_restarts >= 2" in doubtful(CONFIDENCE_THRESHOLD - 0.01, nan)


def test_n_restarts_continues_the_best_scoring_restart(monkeypatch, rotation_split):
    """Every restart's W is scored; the one that goes on to refine-2 is the argmax."""
    train_a, train_b = rotation_split.train_a[:800], rotation_split.train_b[:800]
    initial, passed_on = [], []
    original_initial = pipeline_module.initial_map
    original_refine = pipeline_module.refine_clusters

    def recording_initial(*args, **kwargs):
        W, anchors = original_initial(*args, **kwargs)
        initial.append(W.copy())
        return W, anchors

    def recording_refine(W, *args, **kwargs):
        passed_on.append(W.copy())
        return original_refine(W, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "initial_map", recording_initial)
    monkeypatch.setattr(pipeline_module, "refine_clusters", recording_refine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        model = MiniVec2Vec(random_state=5, n_threads=1, n_restarts=3, extra_restarts=0,
                            n_runs=1,
                            **{k: v for k, v in LIGHT.items() if k != "n_runs"}).fit(train_a, train_b)
    assert len(initial) == 3 and len(passed_on) == 1
    scores = model.restart_confidences_
    assert scores.shape == (3,)
    np.testing.assert_array_equal(passed_on[0], initial[int(np.argmax(scores))])
    # the restarts' maps and their pairwise agreements are public, for studying the restarts
    np.testing.assert_array_equal(model.restart_maps_, np.stack(initial))
    agreements = model.restart_agreements_
    assert agreements.shape == (3, 3) and np.array_equal(agreements, agreements.T)
    assert np.all(np.diag(agreements) == 1.0)
    kept = int(np.argmax(scores))
    assert model.restart_agreement_ == max(np.delete(agreements[kept], kept))


def test_n_restarts_is_deterministic(rotation_split):
    data = rotation_split.train_a[:600], rotation_split.train_b[:600]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        # extra_restarts=0: the two restarts under test, not the up to five more a doubtful
        # fit of 600 rows adds (test_extra_restart_runs_only_when_the_restarts_disagree)
        one = MiniVec2Vec(random_state=3, n_threads=1, n_restarts=2, extra_restarts=0,
                          **LIGHT).fit(*data)
        two = MiniVec2Vec(random_state=3, n_threads=2, n_restarts=2, extra_restarts=0,
                          **LIGHT).fit(*data)
    assert one.W_.tobytes() == two.W_.tobytes()
    np.testing.assert_array_equal(one.restart_confidences_, two.restart_confidences_)


@pytest.mark.parametrize("n_restarts", [1, 2])
def test_doubtful_fit_warns(rotation_split, n_restarts):
    """A fit crippled on purpose (refinements off, one anchor run of 3 clusters on 400 rows)
    on minilm vs rotated minilm does not find the rotation, and says so: its restarts
    disagree (with one restart, the extra one runs because the map is not confirmed; the
    better-scoring of two failed restarts may pass the confidence threshold on these 200
    scoring rows: 0.86). 400 rows are too few for the return check."""
    data = rotation_split.train_a[:400], rotation_split.train_b[:400]
    with pytest.warns(AlignmentWarning, match="doubtful: .*restarts disagree"):
        model = MiniVec2Vec(random_state=0, n_threads=1, n_runs=1, n_clusters=3,
                            anchor_sample=400, qap_restarts=1, refine_iter=0,
                            transport_iter=0, refine_clusters=0, mutual_iter=0,
                            confidence_sample=200, n_restarts=n_restarts,
                            extra_restarts=1).fit(*data)
    assert model.restart_agreement_ < AGREEMENT_THRESHOLD
    assert np.isnan(model.return_agreement_) and model.restart_returns_.shape == (0,)
    assert model.restart_confidences_.shape == (n_restarts + 1,)   # the extra restart ran


def test_a_restart_the_refinement_returns_to_confirms_the_fit(tmp_path, monkeypatch):
    """The return check's path through the fit, on a synthetic pair with a known rotation
    (24-d, 1,000 rows per side; the check's row minimum lowered so that it runs). Seed 2's
    first restart fails and its second finds the rotation; the first is not confirmed
    (return agreement measured 0.22), so the second runs, is confirmed (0.99), and no more
    run: the kept map is the true rotation and the fit does not warn, although the two
    restarts disagree."""
    from minivec2vec.evaluation.synthetic import generate_pair
    paths = generate_pair(tmp_path / "pair", 1000, 24, n_test=10, seed=2)
    R = np.load(paths["true_map"])
    monkeypatch.setattr(pipeline_module, "RETURN_MIN_ROWS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AlignmentWarning)
        model = MiniVec2Vec(random_state=2, n_threads=1, n_restarts=1, extra_restarts=3,
                            **LIGHT).fit(paths["a"], paths["b"])
    returns = model.restart_returns_
    assert returns.shape == model.restart_confidences_.shape == (2,)
    assert returns[0] < RETURN_THRESHOLD <= returns[1] == model.return_agreement_
    assert model.restart_agreement_ < AGREEMENT_THRESHOLD
    assert np.linalg.norm(model.W_ - R) / np.linalg.norm(R) < 0.15


def test_cli_fit_prints_confidence_and_warns(tmp_path, capsys, rotation_split):
    """`minivec2vec fit` reports the scores and their thresholds; a crippled fit warns (its
    six default restarts disagree; 400 rows are too few for the return check)."""
    from minivec2vec.cli import main
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, rotation_split.train_a[:400])
    np.save(b, rotation_split.train_b[:400])
    out = tmp_path / "map.mv2v"
    argv = ["fit", str(a), str(b), "-o", str(out), "--json", "--n-threads", "1",
            "--n-runs", "1", "--n-clusters", "3", "--anchor-sample", "400",
            "--qap-restarts", "1", "--refine-iter", "0", "--transport-iter", "0",
            "--refine-clusters", "0", "--mutual-iter", "0", "--confidence-sample", "200"]
    with pytest.warns(AlignmentWarning):
        assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["confidence_threshold"] == CONFIDENCE_THRESHOLD
    assert payload["confidence"] == pytest.approx(MiniVec2Vec.load(out).confidence_, abs=1e-4)
    assert payload["agreement_threshold"] == AGREEMENT_THRESHOLD
    assert payload["restart_agreement"] == pytest.approx(
        MiniVec2Vec.load(out).restart_agreement_, abs=1e-4)
    assert payload["restart_agreement"] < AGREEMENT_THRESHOLD
    assert payload["restarts"] == 6          # the default restart and the five extra ones
    assert payload["return_agreement"] is None and payload["return_threshold"] == RETURN_THRESHOLD


def _synthetic_fit(paths, seed, extra_restarts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        return MiniVec2Vec(random_state=seed, n_threads=1, n_restarts=2,
                           extra_restarts=extra_restarts, **LIGHT).fit(paths["a"], paths["b"])


def test_extra_restart_runs_only_when_the_restarts_disagree(tmp_path):
    """A synthetic pair with a known rotation (24-d, 1,000 rows per side). Seed 0: the two
    restarts agree, so ``extra_restarts`` changes nothing, bit for bit. Seed 2: they disagree
    (one restart failed), so a third runs, the first two are untouched, the kept map is the
    true rotation, and the good restart among the first two now confirms it: no warning."""
    from minivec2vec.evaluation.synthetic import generate_pair
    paths = generate_pair(tmp_path / "pair", 1000, 24, n_test=10, seed=2)
    R = np.load(paths["true_map"])

    plain, extra = _synthetic_fit(paths, 0, 0), _synthetic_fit(paths, 0, 1)
    assert plain.restart_agreement_ >= AGREEMENT_THRESHOLD
    assert extra.restart_confidences_.shape == (2,)
    assert extra.W_.tobytes() == plain.W_.tobytes()

    plain, extra = _synthetic_fit(paths, 2, 0), _synthetic_fit(paths, 2, 1)
    assert plain.restart_agreement_ < AGREEMENT_THRESHOLD
    assert extra.restart_confidences_.shape == (3,)
    np.testing.assert_array_equal(extra.restart_confidences_[:2], plain.restart_confidences_)
    assert plain.restart_agreement_ < 0 < AGREEMENT_THRESHOLD < extra.restart_agreement_
    assert doubtful(extra.confidence_, extra.restart_agreement_) is None
    assert np.linalg.norm(extra.W_ - R) / np.linalg.norm(R) < 0.15
    # the added restart is the one a fit with one more restart would have run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        three = MiniVec2Vec(random_state=2, n_threads=1, n_restarts=3, extra_restarts=0,
                            **LIGHT).fit(paths["a"], paths["b"])
    assert extra.W_.tobytes() == three.W_.tobytes()
    # extra restarts run one at a time: the first one confirms the kept map, so no more run
    more = _synthetic_fit(paths, 2, 3)
    assert more.restart_confidences_.shape == (3,)
    assert more.W_.tobytes() == extra.W_.tobytes()


def test_extra_restarts_all_run_and_a_failed_fit_still_warns(rotation_split):
    """The crippled fit of test_doubtful_fit_warns: its first two restarts disagree, so both
    extra restarts run, and the fit still warns."""
    data = rotation_split.train_a[:400], rotation_split.train_b[:400]
    with pytest.warns(AlignmentWarning, match="restarts disagree"):
        model = MiniVec2Vec(random_state=0, n_threads=1, n_runs=1, n_clusters=3,
                            anchor_sample=400, qap_restarts=1, refine_iter=0,
                            transport_iter=0, refine_clusters=0, mutual_iter=0,
                            confidence_sample=200, n_restarts=2, extra_restarts=2).fit(*data)
    assert model.restart_confidences_.shape == (4,)
    assert model.restart_agreement_ < AGREEMENT_THRESHOLD


def test_extra_restarts_is_validated():
    with pytest.raises(ValueError, match="extra_restarts"):
        MiniVec2Vec(extra_restarts=-1).fit(np.ones((10, 4)), np.ones((10, 4)))


def _climb_recorder(monkeypatch):
    """Record the steps every refine-assignment climb of a fit has run when it ends."""
    steps = []
    run = pipeline_module.AssignmentClimb.run

    def recording_run(self, n_steps, **kwargs):
        levelled = run(self, n_steps, **kwargs)
        steps.append(self.steps)
        return levelled
    monkeypatch.setattr(pipeline_module.AssignmentClimb, "run", recording_run)
    return steps


def _assignment_fit(paths, seed):
    # refine-assignment and the return check both run on 1,000 rows (their row minimums are
    # lowered by the callers); the stage has 300 steps of 200-row batches
    return MiniVec2Vec(random_state=seed, n_threads=1, n_restarts=1, extra_restarts=0,
                       assignment_iter=300, assignment_rows=200,
                       **LIGHT).fit(paths["a"], paths["b"])


def test_a_map_confirmed_part_way_through_refine_assignment_ends_the_stage(tmp_path,
                                                                          monkeypatch):
    """The plumbing of the early check (a synthetic pair of 1,000 rows; the return check is
    calibrated at full size only, so here every map passes it): the map has not levelled off
    after ASSIGNMENT_CHECK_AFTER steps, the check runs once and confirms it, the stage ends
    there, and that check's return agreement is the restart's (no second check runs). On
    real data this is the start already at a good fixed point (a hidden rotation,
    wordllama -> minilm), which never climbs and so would run all its steps."""
    from minivec2vec._runtime import sizing
    from minivec2vec.evaluation.synthetic import generate_pair
    paths = generate_pair(tmp_path / "pair", 1000, 24, n_test=10, seed=0)
    monkeypatch.setattr(pipeline_module, "RETURN_MIN_ROWS", 1000)
    monkeypatch.setattr(sizing, "ASSIGNMENT_MIN_ROWS", 1000)
    checks = []
    monkeypatch.setattr(pipeline_module, "return_agreement",
                        lambda *args: checks.append(1) or 0.9)
    steps = _climb_recorder(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        model = _assignment_fit(paths, 0)   # its climb has not levelled off by then
    assert model.stage_settings_["assignment_iter"] == 300
    assert steps == [pipeline_module.ASSIGNMENT_CHECK_AFTER]
    assert len(checks) == 1
    np.testing.assert_array_equal(model.restart_returns_, [0.9])


def test_a_map_the_early_check_does_not_confirm_is_the_same_as_without_it(tmp_path,
                                                                         monkeypatch):
    """When the check part-way through refine-assignment does not confirm the map (here: no
    map can pass, the threshold is set above 1), the stage runs on to all its steps and the
    fit's map is, bit for bit, the map of a fit without that check: the check draws from a
    generator of its own."""
    from minivec2vec._runtime import sizing
    from minivec2vec.evaluation.synthetic import generate_pair
    paths = generate_pair(tmp_path / "pair", 1000, 24, n_test=10, seed=0)
    monkeypatch.setattr(pipeline_module, "RETURN_MIN_ROWS", 1000)
    monkeypatch.setattr(pipeline_module, "RETURN_THRESHOLD", 2.0)
    monkeypatch.setattr(sizing, "ASSIGNMENT_MIN_ROWS", 1000)
    steps = _climb_recorder(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        checked = _assignment_fit(paths, 0)
        assert steps[0] == pipeline_module.ASSIGNMENT_CHECK_AFTER and steps[-1] > steps[0]
        monkeypatch.setattr(pipeline_module, "ASSIGNMENT_CHECK_AFTER", 10**9)
        unchecked = _assignment_fit(paths, 0)
    assert unchecked.W_.tobytes() == checked.W_.tobytes()
    np.testing.assert_array_equal(unchecked.restart_returns_, checked.restart_returns_)
