"""Seeded search on Ray Tune: same seed, same candidates, scores and winner; every trial is logged."""

import math

import numpy as np
import pytest

from coinline.models.base import derive_seed
from coinline.models.trees import SEARCH_SPACES
from coinline.training.executor import start_local_ray
from coinline.training.tune import TuneResult, inner_split, sample_candidates, score_candidate, tune_family

SPACE = {  # small and quick
    "n_estimators": ("int", 20, 60),
    "num_leaves": ("int", 4, 15),
    "learning_rate": ("loguniform", 0.03, 0.2),
    "min_child_samples": ("logint", 10, 80),
}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    started = False
    if not ray.is_initialized():
        start_local_ray(2)   # workers at normal priority: a nice-15 worker starves beside busy neighbours
        started = True
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    n, d = 2000, 8
    F = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-1.2 * F[:, 0]))).astype(np.int64)
    return F, {"dir": y, "ret": rng.normal(size=n), "risk": rng.random(n)}, np.arange(0, 1500), np.arange(1500, n)


def test_candidates_are_seeded_and_within_bounds():
    for space in SEARCH_SPACES.values():
        a = sample_candidates(space, 16, seed=1)
        assert a == sample_candidates(space, 16, seed=1)
        assert a != sample_candidates(space, 16, seed=2)
        for c in a:
            assert set(c) == set(space)
            for k, spec in space.items():
                if spec[0] == "choice":
                    assert c[k] in spec[1]
                else:
                    assert spec[1] <= c[k] <= spec[2]
                    if spec[0] in ("int", "logint"):
                        assert isinstance(c[k], int)
    assert sample_candidates({"fixed": 3, "x": ("choice", ("a", "b"))}, 2, 0)[0]["fixed"] == 3
    fit, cal = inner_split(np.arange(100), 0.8, gap=4)
    assert fit.tolist() == list(range(80)) and cal.tolist() == list(range(84, 100))


def test_same_seed_same_search_and_every_trial_logged(ray_local, data):
    F, targets, train_idx, calib_idx = data
    a = tune_family("lightgbm", F, targets, train_idx=train_idx, calib_idx=calib_idx, trials=4, seed=3, space=SPACE)
    b = tune_family("lightgbm", F, targets, train_idx=train_idx, calib_idx=calib_idx, trials=4, seed=3, space=SPACE)
    assert isinstance(a, TuneResult) and a.metric == "val_log_loss" and a.family == "lightgbm"
    assert a == b and a.to_dict() == b.to_dict()

    candidates = sample_candidates(SPACE, 4, derive_seed(3, "lightgbm", "tune-candidates"))
    assert [t["trial_index"] for t in a.trials] == [0, 1, 2, 3]
    assert [t["params"] for t in a.trials] == candidates
    scores = [t["score"] for t in a.trials]
    assert all(math.isfinite(s) and 0.3 < s < 0.75 for s in scores)
    best = min(range(4), key=lambda i: (scores[i], i))
    assert a.best_params == candidates[best] and a.best_score == scores[best]

    # a trial's score on a Ray worker equals the same computation in this process
    fit_idx, inner_calib = inner_split(train_idx)
    local = score_candidate("lightgbm", a.best_params, F, targets, fit_idx=fit_idx, inner_calib_idx=inner_calib,
                            val_idx=calib_idx, seed=derive_seed(3, "lightgbm", "tune-fit"))
    assert local == a.best_score


def test_failed_trials_are_logged_not_hidden(ray_local, data):
    F, targets, train_idx, calib_idx = data
    space = {"n_estimators": ("choice", (20, "not-a-number"))}
    seed = next(s for s in range(100)
                if len({c["n_estimators"] for c in sample_candidates(
                    space, 3, derive_seed(s, "xgboost", "tune-candidates"))}) == 2)
    r = tune_family("xgboost", F, targets, train_idx=train_idx, calib_idx=calib_idx, trials=3, seed=seed, space=space)
    assert len(r.trials) == 3
    for t in r.trials:
        if t["params"]["n_estimators"] == 20:
            assert math.isfinite(t["score"]) and "error" not in t
        else:
            assert t["score"] == math.inf and t["error"]
    assert r.best_params == {"n_estimators": 20}


def test_rejects_bad_arguments(data):
    F, targets, train_idx, calib_idx = data
    with pytest.raises(ValueError):
        tune_family("lstm", F, targets, train_idx=train_idx, calib_idx=calib_idx, trials=2, seed=0)
    with pytest.raises(ValueError):
        tune_family("xgboost", F, targets, train_idx=train_idx, calib_idx=calib_idx, trials=0, seed=0)
