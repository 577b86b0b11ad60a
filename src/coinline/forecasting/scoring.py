"""Score matured forecasts of the `forecasts` ledger against realized candles (pure: frames in, dicts out).

What is scored. `realized_outcomes` looks up, for every forecast, the canonical close of its own
(symbol, quote, interval, source) at decision_time and at decision_time + horizon * interval. A forecast is
matured once its target_time has passed and both candles exist; then realized_ret = log(close_target /
close_decision) and y = 1{realized_ret > 0}. `score` reports, per group (default model_set x symbol x
horizon) and pooled per (model_set, horizon) over all coins (symbol "*"), for the model's p_up and for the
baselines fixed at forecast time (base_rate, momentum, and random_walk = 0.5): n, log loss, Brier,
accuracy, ECE and the reliability table; the model's skill against each baseline (1 - loss_model /
loss_baseline, from `evaluation.baselines.skill_scores`); and the risk forecast expected_abs_move against
|realized_ret| (MAE, beside the MAE of the naive volatility * sqrt(2/pi), the mean |x| of a normal with
that sd).

The joint chance test. Coins move together (a shared market factor), so the rows of different coins at one
time stamp are not independent evidence: concatenating the coins and block-bootstrapping each coin's rows
on their own (a per-coin test applied to pooled rows) understates the noise and finds skill where there is
none. Here the per-row log-loss differences d = loss_model - loss_base_rate are first SUMMED over coins per
decision_time, giving one value per time stamp, and the moving-block bootstrap resamples blocks of that
time series, so all coins of a time stamp are always drawn together. The one-sided p-value (model better)
is computed exactly as `chance_test` computes its log-loss p-value (same RNG draws, bootstrap means centred
on their exact expectation, the larger of the bootstrap and the Student-t p-value), so on a single coin the
two agree. The p-values of all pooled (model_set, horizon) tests are Holm-corrected together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from coinline.evaluation.baselines import skill_scores
from coinline.evaluation.joint import MIN_BLOCKS, joint_chance_test  # noqa: F401  (re-exported)
from coinline.evaluation.metrics import classification_metrics, pointwise_losses
from coinline.jsonsafe import clean
from coinline.models.base import derive_seed
from coinline.models.calibration import reliability
from coinline.training.skill import holm

BASELINE_COLUMNS = {"base_rate": "p_base_rate", "momentum": "p_momentum", "random_walk": None}
CANDLE_KEY = ["symbol", "quote", "interval", "source"]
LEDGER_KEY = ["model_set", "symbol", "quote", "interval", "horizon", "decision_time"]


def _ms(values: Any) -> np.ndarray:
    """UTC timestamps (any resolution) -> int64 epoch milliseconds."""
    return pd.to_datetime(pd.Series(values), utc=True).dt.as_unit("ms").astype("int64").to_numpy()


def realized_outcomes(forecasts: pd.DataFrame, closes: pd.DataFrame, *, interval_ms: int,
                      now_ms: int) -> pd.DataFrame:
    """The forecast rows plus `matured`, `realized_ret`, `y` (NaN unless matured) and `status`."""
    out = forecasts.copy()
    candles = closes[CANDLE_KEY].copy()
    candles["_t"] = _ms(closes["open_time"])
    candles["_close"] = closes["close"].to_numpy(dtype=float)
    candles = candles.drop_duplicates(CANDLE_KEY + ["_t"], keep="last")
    keys = forecasts[CANDLE_KEY].reset_index(drop=True)
    t0 = _ms(forecasts["decision_time"])
    looked_up = []
    for t in (t0, t0 + forecasts["horizon"].to_numpy(dtype=np.int64) * int(interval_ms)):
        merged = keys.assign(_t=t).merge(candles, on=CANDLE_KEY + ["_t"], how="left", sort=False)
        looked_up.append(merged["_close"].to_numpy(dtype=float))
    c0, c1 = looked_up
    due = _ms(forecasts["target_time"]) <= int(now_ms)
    matured = due & np.isfinite(c0) & np.isfinite(c1) & (c0 > 0) & (c1 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(matured, np.log(c1 / c0), np.nan)
    out["matured"] = matured
    out["realized_ret"] = ret
    out["y"] = np.where(matured, (ret > 0).astype(float), np.nan)
    out["status"] = np.where(matured, "matured", np.where(due, "missing_candle", "pending"))
    return out


def _predictions(g: pd.DataFrame) -> dict[str, np.ndarray]:
    preds = {"model": g["p_up"].to_numpy(dtype=float)}
    for name, col in BASELINE_COLUMNS.items():
        preds[name] = g[col].to_numpy(dtype=float) if col else np.full(len(g), 0.5)
    return preds


def _evaluate(g: pd.DataFrame) -> dict:
    """Metrics of the model and every baseline, skills and risk scoring on one set of matured rows."""
    y = g["y"].to_numpy(dtype=float).astype(np.int64)
    full, report = {}, {}
    for name, p in _predictions(g).items():
        full[name] = classification_metrics(y, p)
        rel = reliability(y, p)
        report[name] = {
            "n": full[name]["n"], "log_loss": full[name]["log_loss"], "brier": full[name]["brier"],
            "accuracy": full[name]["accuracy"], "ece": rel["ece"],
            "reliability": {k: rel[k] for k in ("edges", "count", "mean_pred", "frac_pos")},
        }
    abs_ret = np.abs(g["realized_ret"].to_numpy(dtype=float))
    expected = g["expected_abs_move"].to_numpy(dtype=float)
    naive = g["volatility"].to_numpy(dtype=float) * math.sqrt(2.0 / math.pi)
    ok = np.isfinite(abs_ret) & np.isfinite(expected) & np.isfinite(naive)
    mae = float(np.mean(np.abs(expected[ok] - abs_ret[ok]))) if ok.any() else None
    naive_mae = float(np.mean(np.abs(naive[ok] - abs_ret[ok]))) if ok.any() else None
    return {
        "n": len(g),
        "model": report["model"],
        "baselines": {name: report[name] for name in BASELINE_COLUMNS},
        "skill": skill_scores(full["model"], {name: full[name] for name in BASELINE_COLUMNS}),
        "risk": {"n": int(ok.sum()), "mae": mae, "naive_mae": naive_mae,
                 "skill": 1.0 - mae / naive_mae if mae is not None and naive_mae else None},
    }


def _log_loss(y: np.ndarray, p: Any) -> np.ndarray:
    return pointwise_losses(y, np.asarray(p, dtype=float))["log_loss"]


def score(outcomes: pd.DataFrame, *, seed: int, block: int = 24, n_boot: int = 500, alpha: float = 0.05,
          by: Sequence[str] = ("model_set", "symbol", "horizon")) -> dict:
    """Scoreboard of the matured rows: per-group and pooled metrics, skills, risk and joint chance tests."""
    # rows in ledger-key order, so the result does not depend on the order the ledger was read in
    m = outcomes[outcomes["matured"].astype(bool)].sort_values(LEDGER_KEY, kind="stable")
    by = list(by)
    groups = []
    for key, g in m.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        groups.append({**dict(zip(by, key, strict=True)), **_evaluate(g)})
    pooled, p_values = [], {}
    for (model_set, horizon), g in m.groupby(["model_set", "horizon"], sort=True):
        y = g["y"].to_numpy(dtype=float).astype(np.int64)
        d = _log_loss(y, g["p_up"]) - _log_loss(y, g["p_base_rate"])
        chance = joint_chance_test(_ms(g["decision_time"]), d, block=block, n_boot=n_boot, alpha=alpha,
                                   seed=derive_seed(seed, model_set, int(horizon), "scoreboard"))
        entry = {"model_set": model_set, "symbol": "*", "horizon": int(horizon), "n_rows": len(g),
                 "n_times": chance["n_times"], **_evaluate(g), "chance": chance}
        del entry["n"]
        pooled.append(entry)
        p_values[f"{model_set}|{int(horizon)}"] = chance["p_value"]
    adjusted = holm(p_values)
    for entry in pooled:
        chance = entry["chance"]
        chance["p_value_holm"] = adjusted[f"{entry['model_set']}|{entry['horizon']}"]
        chance["significant"] = bool(chance["reason"] is None and chance["p_value_holm"] <= alpha)
    return clean({"groups": groups, "pooled": pooled, "alpha": alpha, "correction": "holm",
                  "block": block, "n_boot": n_boot, "seed": seed})


def head_to_head(outcomes: pd.DataFrame, champion: str, challenger: str, horizon: int, *, seed: int = 0,
                 block: int = 24, n_boot: int = 500, alpha: float = 0.05) -> dict:
    """Champion vs challenger on the matured rows both forecast (same symbol, quote, interval, horizon, time).

    diff = mean per-row log loss of challenger minus champion (< 0: challenger better); p_value is the joint
    block-bootstrap test of "challenger better" (uncorrected). No shared rows -> n_rows 0 and None metrics.
    """
    key = ["symbol", "quote", "interval", "horizon", "decision_time"]
    m = outcomes[outcomes["matured"].astype(bool) & (outcomes["horizon"] == horizon)]
    a = m[m["model_set"] == champion][key + ["y", "p_up"]].drop_duplicates(key)
    b = m[m["model_set"] == challenger][key + ["p_up"]].drop_duplicates(key)
    joined = a.merge(b, on=key, suffixes=("_champion", "_challenger")).sort_values(key, kind="stable")
    out: dict = {"champion": champion, "challenger": challenger, "horizon": int(horizon),
                 "n_rows": len(joined), "n_times": 0, "log_loss": {"champion": None, "challenger": None},
                 "diff": None, "p_value": None, "significant": False, "block": int(block), "reason": "no shared rows"}
    if joined.empty:
        return out
    y = joined["y"].to_numpy(dtype=float).astype(np.int64)
    ll_a, ll_b = _log_loss(y, joined["p_up_champion"]), _log_loss(y, joined["p_up_challenger"])
    test = joint_chance_test(_ms(joined["decision_time"]), ll_b - ll_a, block=block, n_boot=n_boot, alpha=alpha,
                             seed=derive_seed(seed, champion, challenger, int(horizon), "head_to_head"))
    out.update(n_times=test["n_times"], log_loss={"champion": float(ll_a.mean()), "challenger": float(ll_b.mean())},
               diff=float(ll_b.mean() - ll_a.mean()), p_value=test["p_value"], significant=test["significant"],
               reason=test["reason"])
    return clean(out)
