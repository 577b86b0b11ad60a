"""Metrics, baselines, skill scores and the block-bootstrap chance test."""

import json
import math

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.calibration import calibration_curve

from coinline.evaluation import (
    baseline_probabilities,
    chance_test,
    classification_metrics,
    skill_scores,
)


def _json_safe(obj):
    json.dumps(obj, allow_nan=False)


# ---------------------------------------------------------------------------------------- metrics


def test_perfect_predictor():
    y = np.array([0, 1, 0, 1, 1])
    m = classification_metrics(y, y.astype(float))
    assert m["n"] == 5 and m["base_rate"] == pytest.approx(0.6)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["brier"] == 0.0
    assert m["log_loss"] == pytest.approx(-math.log(1 - 1e-6))  # clipped at 1e-6
    assert m["ece"] == 0.0
    cc = m["calibration_curve"]
    assert cc["count"] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 3]
    assert cc["mean_pred"][1] is None and cc["frac_pos"][1] is None  # empty bins stay explicit
    assert cc["frac_pos"][0] == 0.0 and cc["frac_pos"][9] == 1.0
    _json_safe(m)


def test_constant_predictor():
    y = np.array([0, 1, 1, 1])
    m = classification_metrics(y, np.full(4, 0.5))
    assert m["accuracy"] == 0.75  # p >= 0.5 predicts up
    assert m["balanced_accuracy"] == 0.5
    assert m["brier"] == pytest.approx(0.25)
    assert m["log_loss"] == pytest.approx(math.log(2))
    # 0.5 sits on an inner edge: sklearn's rule puts it in the lower bin [0.4, 0.5]
    assert m["calibration_curve"]["count"][4] == 4
    assert m["ece"] == pytest.approx(0.25)


def test_known_ece():
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55])
    y = np.array([0, 1, 1, 1, 1, 0])
    m = classification_metrics(y, p)
    assert m["ece"] == pytest.approx((2 * 0.45 + 2 * 0.05 + 2 * 0.05) / 6)
    m5 = classification_metrics(y, p, n_bins=5)
    assert len(m5["calibration_curve"]["bin_edges"]) == 6
    assert m5["calibration_curve"]["count"] == [2, 0, 2, 0, 2]


def test_calibration_matches_sklearn_on_nonempty_bins():
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.beta(2, 5, 400), np.linspace(0, 1, 11)])  # include exact edges
    y = (rng.random(p.size) < p).astype(int)
    cc = classification_metrics(y, p, n_bins=10)["calibration_curve"]
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    keep = [i for i, c in enumerate(cc["count"]) if c]
    assert np.allclose([cc["frac_pos"][i] for i in keep], frac)
    assert np.allclose([cc["mean_pred"][i] for i in keep], mean)
    assert sum(cc["count"]) == p.size


def test_single_class_and_empty_are_json_safe():
    m = classification_metrics(np.ones(3, int), np.array([0.9, 0.8, 0.3]))
    assert m["balanced_accuracy"] is None
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.49) / 3)
    _json_safe(m)
    e = classification_metrics(np.array([], int), np.array([]))
    assert e["n"] == 0 and e["brier"] is None and e["ece"] is None
    _json_safe(e)


@pytest.mark.parametrize("y,p", [
    ([0, 1], [0.5]),
    ([0, 2], [0.5, 0.5]),
    ([0, 1], [0.5, np.nan]),
    ([0, 1], [0.5, 1.2]),
])
def test_bad_inputs_raise(y, p):
    with pytest.raises(ValueError):
        classification_metrics(np.array(y), np.array(p))


# ---------------------------------------------------------------------------------------- baselines


def test_baselines_use_training_rows_only():
    y_train = np.array([1, 1, 1, 0, 0, 1, 0, 1])  # 5/8 up
    mom_train = np.array([1.0, 2.0, -1.0, -1.0, 3.0, np.nan, -2.0, 0.0])
    mom_test = np.array([0.5, -0.5, 0.0, np.nan])
    b = baseline_probabilities(y_train, mom_test, 4, momentum_train_ret=mom_train, prior_strength=2.0)
    assert set(b) == {"base_rate", "momentum", "random_walk"}
    assert np.all(b["base_rate"] == 5 / 8)
    assert np.all(b["random_walk"] == 0.5)
    # positive sign rows: 0,1,4 -> ups 2 of 3; negative: 2,3,6 -> ups 1 of 3; smoothed towards 5/8 with a=2
    up = (2 + 2 * 5 / 8) / (3 + 2)
    down = (1 + 2 * 5 / 8) / (3 + 2)
    assert b["momentum"] == pytest.approx([up, down, 5 / 8, 5 / 8])
    raw = baseline_probabilities(y_train, mom_test, 4, momentum_train_ret=mom_train, prior_strength=0.0)
    assert raw["momentum"][:2] == pytest.approx([2 / 3, 1 / 3])


def test_baselines_validate_lengths():
    with pytest.raises(ValueError):
        baseline_probabilities(np.array([0, 1]), np.array([1.0]), 2, momentum_train_ret=np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        baseline_probabilities(np.array([0, 1]), np.array([1.0]), 1, momentum_train_ret=np.array([1.0]))


def test_skill_scores():
    model = {"brier": 0.20, "log_loss": 0.60, "accuracy": 0.60, "balanced_accuracy": 0.58}
    base = {"brier": 0.25, "log_loss": 0.6931, "accuracy": 0.52, "balanced_accuracy": 0.5}
    s = skill_scores(model, {"random_walk": base, "base_rate": {**base, "brier": 0.0}})
    rw = s["random_walk"]
    assert rw["brier_skill"] == pytest.approx(0.2)
    assert rw["log_loss_skill"] == pytest.approx(1 - 0.60 / 0.6931)
    assert rw["accuracy_lift"] == pytest.approx(0.08)
    assert rw["balanced_accuracy_lift"] == pytest.approx(0.08)
    assert s["base_rate"]["brier_skill"] is None  # undefined against a zero-loss baseline
    assert skill_scores(model, base) == rw  # a single metrics dict is accepted too


# ---------------------------------------------------------------------------------------- chance test


def _ar(rng, n, phi, sd):
    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, sd, n))


def _equal_skill_pair(seed, phi=0.8, n=720):
    """Persistent labels (flip prob 0.1) and two equally good predictors with AR(1) noise around 0.5."""
    rng = np.random.default_rng(100 + seed)
    y = (np.cumsum(rng.random(n) < 0.1) + rng.integers(0, 2)) % 2
    sd = 0.05 * math.sqrt(1 - phi ** 2)
    pm = np.clip(0.5 + _ar(rng, n, phi, sd), 0.01, 0.99)
    pb = np.clip(0.5 + _ar(rng, n, phi, sd), 0.01, 0.99)
    return y, pm, pb


def test_random_predictor_is_not_significant():
    significant = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 720)
        p = rng.uniform(0.35, 0.65, 720)
        r = chance_test(y, p, np.full(720, 0.5), n_boot=400, seed=seed)
        significant += r["significant"]
        _json_safe(r)
    assert significant == 0


def test_equal_skill_pair_iid_false_positive_rate():
    significant = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 720)
        pm, pb = (np.clip(0.5 + rng.normal(0, 0.05, 720), 0.01, 0.99) for _ in range(2))
        significant += chance_test(y, pm, pb, n_boot=400, seed=seed)["significant"]
    assert significant <= 1


def test_block_bootstrap_controls_false_positives_under_autocorrelation():
    # Equal skill on serially dependent data (the null holds): an iid bootstrap (block=1) is fooled about 4x
    # as often as nominal; the moving-block test stays near alpha. Observed over these 300 fixed seeds:
    # block 1 -> 64 (21%), block 24 -> 24 (8%); over 1000 seeds 20% vs 6.3% (nominal 5%).
    counts = {}
    for block in (1, 24):
        counts[block] = sum(
            chance_test(*_equal_skill_pair(seed), n_boot=200, seed=seed, block=block)["significant"]
            for seed in range(300))
    assert counts[24] <= 24
    assert counts[1] >= 2.5 * counts[24]


def test_informative_predictor_is_significant():
    rng = np.random.default_rng(7)
    n = 720
    p_true = np.clip(0.5 + 0.3 * np.sin(np.arange(n) / 5.0) + rng.normal(0, 0.05, n), 0.05, 0.95)
    y = (rng.random(n) < p_true).astype(int)
    r = chance_test(y, p_true, np.full(n, 0.5), n_boot=500, seed=1)
    assert r["significant"] is True
    assert r["mean_diff"] < 0 and r["ci95"][1] < 0
    assert r["log_loss"]["significant"] and r["brier"]["significant"]
    assert r["p_value"] == max(r["log_loss"]["p_value"], r["brier"]["p_value"])
    assert r["p_value"] >= 1 / 501  # never exactly zero
    again = chance_test(y, p_true, np.full(n, 0.5), n_boot=500, seed=1)
    assert again == r  # deterministic


def test_too_little_data_is_never_significant():
    y = np.array([0, 1] * 30)
    r = chance_test(y, y * 0.8 + 0.1, np.full(60, 0.5), block=24)
    assert r["significant"] is False and "too few rows" in r["reason"]
    same = chance_test(np.array([0, 1] * 100), np.full(200, 0.5), np.full(200, 0.5), block=5)
    assert same["significant"] is False and same["p_value"] == 1.0
