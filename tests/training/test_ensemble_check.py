"""The run's ensemble check reports the ensemble against its best member AND the base rate, per coin and
pooled, with the tolerance, and the combiner each fold served."""

from types import SimpleNamespace

import numpy as np
import pytest

from coinline.training.coin_task import CoinResult
from coinline.training.config import TrainConfig
from coinline.training.run import ensemble_check


def _ll(y, p):
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _coin(symbol, rng, ensemble_shift, choices):
    """600 OOS rows in two folds, labels fair coins; the ensemble is the base rate 0.5 moved by
    `ensemble_shift` (a constant miss costs log loss), one member is noise around 0.5."""
    n, h = 600, 4
    y = (rng.random(n) < 0.5).astype(float)
    frame = SimpleNamespace(targets={h: {"dir": y}})
    r = CoinResult(symbol, {})
    r.oos_rows[h] = np.arange(n)
    r.predictions[h] = {"lightgbm": 1 / (1 + np.exp(-0.3 * rng.standard_normal(n)))}
    r.ensemble = {"p": np.full(n, 0.5 + ensemble_shift)}
    r.base_rate[h] = np.full(n, 0.5)
    r.stacking_weights = {k: {"choice": c, "coin_choice": "member:lightgbm"} for k, c in enumerate(choices)}
    return frame, r


def test_ensemble_check_judges_against_the_base_rate_and_records_the_fold_combiners():
    rng = np.random.default_rng(0)
    cfg = TrainConfig()
    fa, ra = _coin("AAA", rng, 0.0, ["mean", "base_rate"])
    fb, rb = _coin("BBB", rng, 0.1, ["mean", "base_rate"])     # 0.6 vs 0.5: ~0.02 worse than the base rate
    out = ensemble_check({"AAA": fa, "BBB": fb}, [ra, rb], cfg)
    ya, yb = fa.targets[4]["dir"], fb.targets[4]["dir"]
    a, b = out["per_coin"]["AAA"], out["per_coin"]["BBB"]
    assert a["base_rate_log_loss"] == pytest.approx(_ll(ya, 0.5))
    assert a["gap_vs_base_rate"] == pytest.approx(0.0, abs=1e-12)
    assert b["gap_vs_base_rate"] == pytest.approx(_ll(yb, 0.6) - _ll(yb, 0.5))
    assert b["gap_vs_base_rate"] > cfg.ensemble_tolerance
    assert out["worse_than_base_rate_beyond_tolerance"] == ["BBB"]
    y = np.concatenate([ya, yb])
    pooled = out["pooled"]
    assert pooled["base_rate_log_loss"] == pytest.approx(_ll(y, 0.5))
    assert pooled["gap_vs_base_rate"] == pytest.approx(_ll(y, np.r_[np.full(600, 0.5), np.full(600, 0.6)]) - _ll(y, 0.5))
    assert out["pooled_within_tolerance_of_base_rate"] is (pooled["gap_vs_base_rate"] <= cfg.ensemble_tolerance)
    assert out["fold_combiners"] == {"0": {"mean": 2}, "1": {"base_rate": 2}}
    assert a["fold_combiners"] == ["mean", "base_rate"] and a["coin_fold_combiners"] == ["member:lightgbm"] * 2
    assert out["tolerance"] == cfg.ensemble_tolerance and "best_member_log_loss" in pooled
