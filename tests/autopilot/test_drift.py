"""Drift statistics and the drift report: identical vs shifted distributions, label drift, degradation."""

import numpy as np
import pytest

from coinline.promotion.drift import (
    DriftThresholds,
    degradation,
    drift_report,
    ks,
    label_drift,
    psi,
    rolling_scores,
    wasserstein,
)


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift(rng):
    ref = rng.normal(0, 1, 5000)
    same = rng.normal(0, 1, 2000)
    shifted = rng.normal(1.0, 1, 2000)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, same) < 0.02
    assert psi(ref, shifted) > 0.5
    assert psi(ref, rng.normal(0, 2.0, 2000)) > 0.2          # a scale change too
    assert np.isnan(psi(ref, [])) and np.isnan(psi([np.nan], same))


def test_psi_on_a_discrete_reference_bins_by_value_and_sees_new_values():
    ref = np.array([0, 1] * 500, dtype=float)
    assert psi(ref, np.array([0, 1] * 50, dtype=float)) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, np.array([0.0] * 80 + [1.0] * 20)) > 0.3
    assert psi(np.zeros(100), np.full(50, 3.0)) > 1.0        # a constant reference, a value never seen


def test_ks_and_wasserstein_come_from_scipy_and_separate_same_from_shifted(rng):
    ref = rng.normal(0, 1, 3000)
    d_same, p_same = ks(ref, rng.normal(0, 1, 1000))
    d_shift, p_shift = ks(ref, rng.normal(0.5, 1, 1000))
    assert d_same < 0.06 and p_same > 0.01
    assert d_shift > 0.15 and p_shift < 1e-6
    assert wasserstein(ref, ref + 2.0) == pytest.approx(2.0, rel=1e-9)
    assert wasserstein(ref, rng.normal(0, 1, 1000)) < 0.1


def test_report_on_identical_distributions_does_not_trigger(rng):
    names = ["a", "b", "c"]
    ref = rng.normal(0, 1, (3000, 3))
    cur = rng.normal(0, 1, (500, 3))
    p_ref, p_cur = rng.uniform(0.4, 0.6, 3000), rng.uniform(0.4, 0.6, 500)
    y_ref, y_cur = rng.integers(0, 2, 3000), rng.integers(0, 2, 500)
    report = drift_report(ref, cur, p_ref, p_cur, y_ref, y_cur, DriftThresholds(), feature_names=names)
    assert not report.triggered and report.reasons == ()
    assert report.drifted_features == [] and report.feature_share == 0.0
    d = report.to_dict()
    assert set(d["features"]) == set(names)
    assert {"psi", "ks_statistic", "ks_pvalue", "wasserstein", "wasserstein_norm"} <= set(d["features"]["a"])
    assert d["prediction"]["drifted"] is False and d["label"]["triggered"] is False


def test_report_on_shifted_features_triggers_with_the_drifted_features_named(rng):
    ref = rng.normal(0, 1, (3000, 3))
    cur = np.column_stack([rng.normal(1.5, 1, 500), rng.normal(0, 1, 500), rng.normal(0, 1, 500)])
    report = drift_report(ref, cur, thresholds=DriftThresholds(feature_share=0.3), feature_names=["x", "y", "z"])
    assert report.triggered and report.drifted_features == ["x"]
    assert "feature drift" in report.reasons[0] and "x" in report.reasons[0]
    quiet = drift_report(ref, cur, thresholds=DriftThresholds(feature_share=0.5), feature_names=["x", "y", "z"])
    assert not quiet.triggered            # one of three features is below a 50% share


def test_prediction_drift_triggers_on_shifted_probabilities(rng):
    ref, cur = rng.normal(0, 1, (2000, 1)), rng.normal(0, 1, (300, 1))
    report = drift_report(ref, cur, rng.uniform(0.45, 0.55, 2000), rng.uniform(0.6, 0.7, 300))
    assert report.triggered and report.prediction.drifted
    assert any(r.startswith("prediction drift") for r in report.reasons)


def test_label_drift_on_the_realized_up_rate(rng):
    th = DriftThresholds()
    y_ref = (rng.uniform(size=4000) < 0.5).astype(float)
    stable = label_drift(y_ref, (rng.uniform(size=400) < 0.52).astype(float), th)
    assert not stable["triggered"] and stable["kind"] == "binary"
    shifted = label_drift(y_ref, (rng.uniform(size=400) < 0.75).astype(float), th)
    assert shifted["triggered"] and shifted["rate_delta"] > 0.15 and "up-rate" in shifted["reasons"][0]
    few = label_drift(y_ref, np.ones(10), th)
    assert not few["triggered"] and "insufficient" in few["note"]
    continuous = label_drift(rng.normal(0, 1, 2000), rng.normal(1, 1, 300), th)
    assert continuous["kind"] == "continuous" and continuous["triggered"]


def test_nothing_triggers_on_too_few_current_rows(rng):
    ref = rng.normal(0, 1, (2000, 2))
    report = drift_report(ref, rng.normal(5, 1, (10, 2)), thresholds=DriftThresholds(min_rows=48))
    assert not report.triggered and report.feature_share is None
    assert any("insufficient current rows" in n for n in report.notes)
    assert report.features[0].psi > 1.0   # the figures are still reported
    assert drift_report(ref, rng.normal(5, 1, (10, 2)), thresholds=DriftThresholds(min_rows=5)).triggered


def test_degradation_of_rolling_hit_rate_and_brier_against_oos_figures(rng):
    th = DriftThresholds(min_scored=50)
    oos = {"hit_rate": 0.56, "brier": 0.245}
    y = rng.integers(0, 2, 400).astype(float)
    good_p = np.where(y == 1, 0.58, 0.42)          # right every time
    assert rolling_scores(good_p, y) == {"count": 400, "hit_rate": 1.0, "brier": pytest.approx(0.42 ** 2)}
    assert not degradation(oos, rolling_scores(good_p, y), th)["triggered"]
    bad_p = np.where(y == 1, 0.35, 0.65)           # wrong every time
    worse = degradation(oos, rolling_scores(bad_p, y), th)
    assert worse["triggered"] and worse["hit_rate_drop"] == pytest.approx(0.56)
    assert len(worse["reasons"]) == 2              # hit rate dropped and brier rose
    few = degradation(oos, rolling_scores(bad_p[:10], y[:10]), th)
    assert not few["triggered"] and "insufficient" in few["note"]
    # through the report, with NaN labels (not yet realized) ignored
    y_nan = y.copy()
    y_nan[-50:] = np.nan
    report = drift_report(rng.normal(0, 1, (500, 1)), rng.normal(0, 1, (400, 1)), thresholds=th,
                          scores_ref=oos, scores_cur=rolling_scores(bad_p, y_nan))
    assert report.triggered and report.degradation["current"]["count"] == 350
    assert any(r.startswith("degradation") for r in report.reasons)
