"""The risk head is scored out of sample against EWMA and HAR-RV: on a market with volatility clustering
the conditional forecasts beat the constant variance (pooled QLIKE); on the
metric package every horizon has the four forecasts on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coinline.evaluation.risk import loghar_fit, loghar_forecast
from coinline.features.frame import build_coin_frames, valid_rows
from coinline.training.coin_task import serving_stats
from coinline.training.folds import folds_for
from coinline.training.risk_check import coin_risk_rows, risk_metrics, served_variance
from tests.training.conftest import fast_config


def _garch_candles(seed: int, symbols=("BTC", "ETH"), bars: int = 2400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    for sym in symbols:
        var, r = 1e-4, np.empty(bars)
        for i in range(bars):
            r[i] = np.sqrt(var) * rng.standard_normal()
            var = 2e-6 + 0.08 * r[i] ** 2 + 0.9 * var
        close = 100 * np.exp(np.cumsum(r))
        open_ = np.r_[100.0, close[:-1]]
        rows.append(pd.DataFrame({"symbol": sym, "open_time": t0 + pd.to_timedelta(np.arange(bars), "h"),
                                  "open": open_, "high": np.maximum(open_, close) * 1.001,
                                  "low": np.minimum(open_, close) * 0.999, "close": close,
                                  "volume": rng.lognormal(3, 0.5, bars)}))
    return pd.concat(rows, ignore_index=True)


def test_conditional_variance_forecasts_beat_the_constant_on_a_clustered_market():
    cfg = fast_config()
    frames = build_coin_frames(_garch_candles(3), cfg)
    out = risk_metrics(frames, cfg)
    assert out["reference"] == "har"
    for h in ("1", "4", "24"):
        pooled = out[h]["pooled"]
        assert set(pooled["forecasts"]) == {"served", "ewma", "har", "constant"} and pooled["n"] > 1000
        assert set(out[h]["per_coin"]) == {"BTC", "ETH"}
    h1 = out["1"]["pooled"]["forecasts"]
    assert h1["har"]["qlike"] < h1["constant"]["qlike"]
    assert h1["constant"]["vs_reference"]["qlike_diff"] > 0
    assert h1["ewma"]["qlike"] < h1["constant"]["qlike"]
    assert h1["served"]["qlike"] < h1["constant"]["qlike"]
    assert out["served"].startswith("log-HAR")


def test_served_is_the_head_serving_stores_for_the_same_rows():
    cfg = fast_config()
    frame = build_coin_frames(_garch_candles(4, symbols=("BTC",)), cfg)["BTC"]
    h = 4
    folds = folds_for(frame.times, cfg)
    last = folds[-1]
    rows = np.intersect1d(np.concatenate([last.train_idx, last.calib_idx]), valid_rows(frame, h))
    stats = serving_stats(frame, h, rows)
    head = stats["risk_head"]
    assert head == loghar_fit(frame.column("ret_1"), rows, h).to_dict() and head["h"] == h
    got = coin_risk_rows(frame, cfg, h)
    te = last.test_idx
    np.testing.assert_array_equal(got["served"][-len(te):], loghar_forecast(loghar_fit(frame.column("ret_1"), rows, h),
                                                                            frame.column("ret_1"), te))
    # too few rows to fit: the served forecast is NaN (not scored), serving keeps the old construction
    assert np.isnan(served_variance(frame.column("ret_1"), h, rows[:100], te)).all()
    few = serving_stats(frame, h, rows[:100])
    assert few["risk_head"] is None and "usable training rows" in few["risk_head_error"]
