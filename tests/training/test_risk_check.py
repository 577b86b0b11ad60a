"""The risk head is scored out of sample against EWMA and HAR-RV: on a market with volatility clustering
the conditional forecasts beat the constant variance (pooled QLIKE); on the
metric package every horizon has the four forecasts on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coinline.features.frame import build_coin_frames
from coinline.training.risk_check import risk_metrics
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
