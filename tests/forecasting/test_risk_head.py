"""The served risk: a trained run stores a log-HAR head per (coin, horizon) and its forecasts serve it,
expected_abs_move = sqrt(2 f / pi) with f recomputed here from the stored numbers and the candles alone; a
set stored before the head existed still forecasts with the trailing-volatility construction."""

from __future__ import annotations

import copy
import math

import numpy as np

from coinline.forecasting.modelset import load_run_set
from coinline.forecasting.predict import Inputs, predict_model_rows
from coinline.forecasting.service import load_candles
from coinline.lake import open_lake


def _head_variance(head: dict, close: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """f at each row from the stored dict, written out independently of `evaluation.risk`: trailing means of
    squared 1-bar log returns over each window, floored, in logs, times the coefficients, exp, times c."""
    r1 = np.diff(np.log(close), prepend=np.nan)
    out = []
    for t in rows:
        logx = [math.log(max(float(np.mean(r1[t - w + 1: t + 1] ** 2)), fl))
                for w, fl in zip(head["windows"], head["floor"], strict=True)]
        out.append(head["scale"] * math.exp(head["coef"][0] + sum(b * x for b, x in zip(head["coef"][1:], logx,
                                                                                         strict=True))))
    return np.array(out)


def _set_and_inputs(trained):
    lake = open_lake(f"file://{trained.root}")
    ms = load_run_set(lake, trained.run_id)
    last = int((trained.end.timestamp() - 3600) * 1000)      # the last stored candle's open time
    return ms, Inputs(ms, load_candles(lake, ms, last_decision_ms=last))


def test_forecasts_serve_the_stored_log_har_head(trained):
    ms, inputs = _set_and_inputs(trained)
    for sym in ms.symbols:
        frame = inputs.frames[sym]
        rows = np.arange(len(frame.times) - 48, len(frame.times))
        out, _ = predict_model_rows(ms, inputs, sym, rows)
        for h_key, spec in ms.coin(sym)["horizons"].items():
            head = spec["risk_head"]
            assert head["kind"] == "loghar" and head["h"] == int(h_key) and head["n_train"] > 500
            got = out[out["horizon"] == int(h_key)]
            f = _head_variance(head, frame.close, rows)
            np.testing.assert_allclose(got["expected_abs_move"].to_numpy(), np.sqrt(2.0 * f / math.pi), rtol=1e-9)
            # the volatility column stays the trailing reference the scoreboard judges the risk against
            vol = frame.column("vol_long")[rows] * math.sqrt(int(h_key))
            np.testing.assert_array_equal(got["volatility"].to_numpy(), vol)
            assert not np.allclose(got["expected_abs_move"].to_numpy(), vol * spec["risk_scale"])


def test_a_set_stored_without_a_head_keeps_the_trailing_construction(trained):
    ms, inputs = _set_and_inputs(trained)
    sym = ms.symbols[0]
    rows = np.arange(len(inputs.frames[sym].times) - 24, len(inputs.frames[sym].times))
    old = copy.deepcopy(ms.doc)
    for spec in old["coins"][sym]["horizons"].values():
        del spec["risk_head"]
    ms.doc = old
    out, _ = predict_model_rows(ms, inputs, sym, rows)
    for h_key, spec in old["coins"][sym]["horizons"].items():
        got = out[out["horizon"] == int(h_key)]
        np.testing.assert_array_equal(got["expected_abs_move"].to_numpy(), got["volatility"].to_numpy()
                                      * spec["risk_scale"])
