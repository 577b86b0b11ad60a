"""Prediction drift and degradation from the forecasts ledger: the champion's recorded p_up (earliest vs
latest window) and its matured outcomes (vs the base-rate baseline on the same rows), and the fallback to the
re-predicted figures when the ledger holds too few rows."""

from __future__ import annotations

import numpy as np
import pytest

from coinline.forecasting import ledger
from coinline.promotion.drift import DriftThresholds, drift_report, rolling_scores
from coinline.promotion.drift_ledger import ledger_degradation, ledger_evidence
from tests.report.ledger_data import HOUR, T0, commit_walk, forecast_rows, realized_up

RUN = "run-active"
COINS = ("BTC", "ETH")
NOW = T0 + 400 * HOUR


def _noise(seed: int):
    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, 0.03, size=(len(COINS), 1000))
    return lambda sym, h: table[COINS.index(sym), h]


def _record(lake, model_set, hours, *, role="champion", horizon=1, p_up=0.5, base_rate=0.5):
    rows = forecast_rows(model_set, COINS, hours, horizon=horizon, p_up=p_up, base_rate=base_rate)
    return ledger.record(lake, rows, role=role, now=T0 + (max(hours) + 1) * HOUR)


def _features(seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (400, 2)), rng.normal(0, 1, (200, 2))


def _repredicted(seed: int = 2, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.45, 0.55, 400), rng.uniform(0.45, 0.55, 200) + shift


def _shifted_ledger(lake, *, shift: float) -> None:
    """200 decision hours of the champion at h=1: the last 100 with p_up moved by `shift`; beside it rows that
    must not count (another horizon, a shadow set, the run as a study), all strongly shifted."""
    lake.write_json(f"runs/{RUN}/metrics.json", {"run_id": RUN, "primary_horizon": 1})
    noise = _noise(3)
    _record(lake, RUN, range(200), p_up=lambda s, h: 0.5 + noise(s, h) + (shift if h >= 100 else 0.0))
    _record(lake, RUN, range(200), horizon=4, p_up=lambda s, h: 0.5 if h < 100 else 0.9)
    _record(lake, "run-shadow", range(200), role="shadow", p_up=lambda s, h: 0.5 if h < 100 else 0.9)


@pytest.mark.parametrize("shift", [0.0, 0.08])
def test_prediction_drift_from_the_ledger_fires_only_on_a_shifted_p_up(lake, shift):
    _shifted_ledger(lake, shift=shift)
    ev = ledger_evidence(lake, RUN, now=NOW)
    assert ev.predictions_ready and ev.horizon == 1 and ev.n_rows == 400
    windows = ev.to_dict()["prediction_windows"]
    assert windows["decision_times"] == 100 and windows["rows_ref"] == windows["rows_cur"] == 200
    assert windows["coins"] == list(COINS)
    F_ref, F_cur = _features()
    p_ref, p_cur = _repredicted(shift=0.3)          # the re-predicted figures would fire: the ledger wins
    report = drift_report(F_ref, F_cur, p_ref, p_cur, ledger=ev)
    d = report.to_dict()
    assert d["sources"]["prediction"] == "ledger" and d["ledger"]["predictions_ready"]
    assert report.prediction.n_ref == report.prediction.n_cur == 200
    if shift:
        assert report.triggered and report.prediction.drifted
        assert any(r.startswith("prediction drift (ledger)") for r in report.reasons)
    else:
        assert not report.triggered and not report.prediction.drifted, report.reasons
        assert report.prediction.psi < 0.2


def test_too_few_ledger_rows_fall_back_to_the_re_predicted_figures(lake):
    F_ref, F_cur = _features()
    p_ref, p_cur = _repredicted(shift=0.3)
    # no ledger table at all, then a ledger with 60 decision times (two windows need 2 * min_rows = 96)
    for hours in (None, range(60)):
        if hours is not None:
            _record(lake, RUN, hours, p_up=lambda s, h: 0.5 if h < 30 else 0.9)
        ev = ledger_evidence(lake, RUN, now=NOW)
        assert not ev.predictions_ready and not ev.degradation_ready
        report = drift_report(F_ref, F_cur, p_ref, p_cur, ledger=ev)
        assert report.sources == {"prediction": "re-predicted", "degradation": None}
        assert report.prediction.n_cur == 200 and report.triggered
        assert any(r.startswith("prediction drift (re-predicted)") for r in report.reasons)
        assert any(n.startswith("prediction: not from the ledger") for n in report.notes)
    # without a ledger argument the behaviour is the old one, and says so
    plain = drift_report(F_ref, F_cur, p_ref, p_cur).to_dict()
    assert plain["sources"]["prediction"] == "re-predicted" and plain["ledger"] is None


def test_other_sets_roles_and_horizons_are_not_the_champion(lake):
    _shifted_ledger(lake, shift=0.0)
    _record(lake, RUN, range(200, 260), role="study", p_up=0.95)     # the run again, but not as champion
    ev = ledger_evidence(lake, RUN, now=NOW)
    assert ev.n_rows == 400 and float(np.max(ev.predictions_cur)) < 0.7
    assert ledger_evidence(lake, RUN, now=NOW, horizon=4).predictions_ready       # an explicit horizon
    assert ledger_evidence(lake, "run-shadow", now=NOW).n_rows == 0               # a shadow is no champion


@pytest.mark.parametrize("quality", ["good", "bad"])
def test_degradation_from_matured_ledger_forecasts_against_the_base_rate(lake, quality):
    closes = commit_walk(lake, COINS, 200, seed=7)
    sign = 1.0 if quality == "good" else -1.0

    size = np.random.default_rng(8).uniform(0.02, 0.08 if quality == "good" else 0.35, (len(COINS), 200))

    def p_up(sym, h):   # right (good) or wrong (bad) about the realized direction, by a varying margin
        return 0.5 + sign * size[COINS.index(sym), h] * (1 if realized_up(closes, sym, h) else -1)

    _record(lake, RUN, range(160), p_up=p_up, base_rate=0.5)
    F_ref, F_cur = _features()
    oos = {"hit_rate": 0.99, "brier": 0.01}                        # the re-predicted path would always fire
    fallback = rolling_scores(np.full(100, 0.5), np.ones(100))
    ev = ledger_evidence(lake, RUN, now=NOW)
    assert ev.degradation_ready and ev.to_dict()["matured"]["rows"] == 320
    report = drift_report(F_ref, F_cur, ledger=ev, scores_ref=oos, scores_cur=fallback)
    degr = report.degradation
    assert report.sources["degradation"] == "ledger" and degr["source"] == "ledger"
    assert degr["reference"]["log_loss"] == pytest.approx(np.log(2))
    if quality == "bad":
        assert degr["triggered"] and degr["chance"]["significant"] and degr["log_loss_rise"] > 0.1
        assert any("vs base rate" in r for r in degr["reasons"])
        assert any(r.startswith("degradation") for r in report.reasons)
    else:
        assert not degr["triggered"] and degr["log_loss_rise"] < 0 and not report.triggered
    # maturity follows `now`: before any target time nothing matured, so the re-predicted scores are used
    early = ledger_evidence(lake, RUN, now=T0 + 1 * HOUR)
    assert not early.degradation_ready and "degradation" in early.notes
    back = drift_report(F_ref, F_cur, ledger=early, scores_ref=oos, scores_cur=fallback,
                        thresholds=DriftThresholds(min_scored=48))
    assert back.sources["degradation"] == "re-predicted" and back.degradation["source"] == "re-predicted"
    assert back.degradation["triggered"]


def test_ledger_degradation_needs_significance_except_when_worse_at_every_time_stamp():
    th = DriftThresholds(min_scored=10)
    ref = {"count": 100, "hit_rate": 0.5, "brier": 0.25, "log_loss": 0.693}
    cur = {"count": 100, "hit_rate": 0.5, "brier": 0.26, "log_loss": 0.75}
    noisy = ledger_degradation(ref, cur, {"significant": False, "p_value": 0.2, "reason": None}, th)
    assert not noisy["triggered"] and noisy["breaches"] and "not significant" in noisy["note"]
    assert ledger_degradation(ref, cur, {"significant": True, "p_value": 0.01}, th)["triggered"]
    constant = {"significant": False, "p_value": 1.0, "mean_diff": -0.05,
                "reason": "loss differences are constant: no sampling noise to test against"}
    assert ledger_degradation(ref, cur, constant, th)["triggered"]
    assert not ledger_degradation(ref, ref, constant, th)["triggered"]     # no breach, nothing to confirm
