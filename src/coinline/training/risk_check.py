"""The risk head out of sample: per horizon, what a model set serves as risk (the log-HAR variance forecast of
`evaluation.risk.loghar_fit`, fitted per fold exactly as `training.coin_task.serving_stats` fits the served
head: on the fold's training + calibration rows whose targets are valid at the horizon) against the EWMA and
HAR-RV baselines and the constant (unconditional) variance, on the same walk-forward test rows as the
direction models, scored by QLIKE and MSE on log variance (`evaluation.risk`), pooled over coins with the
joint test (coins summed per time stamp).

Each fold's log-HAR, HAR coefficients and constant are fitted on that fold's training + calibration rows
only; EWMA needs no fitting. A fold with too few usable rows for the log-HAR (`RiskModelError`) gets a NaN
served forecast: serving would fall back to the trailing-volatility construction there, which is not the
head being judged, so those rows are left out of the scores (counted in `n_forecast_missing`) rather than
scored with something else. Reported in the metric package as `risk`, with HAR as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coinline.evaluation.risk import (
    RiskModelError,
    baseline_forecasts,
    loghar_fit,
    loghar_forecast,
    realized_variance,
    score_variance,
)
from coinline.features.frame import CoinFrame, valid_rows
from coinline.models.base import derive_seed
from coinline.training.config import TrainConfig
from coinline.training.folds import folds_for


def coin_risk_rows(frame: CoinFrame, cfg: TrainConfig, h: int) -> dict[str, np.ndarray]:
    """Per OOS row of one coin: time, realized variance target and each variance forecast."""
    r1 = frame.column("ret_1")
    target = realized_variance(r1, h)
    usable = valid_rows(frame, h)
    parts: dict[str, list[np.ndarray]] = {"t": [], "target": [], "served": [], "ewma": [], "har": [], "constant": []}
    for fold in folds_for(frame.times, cfg):
        fit = np.concatenate([fold.train_idx, fold.calib_idx])
        te = fold.test_idx
        base = baseline_forecasts(r1, h, fit, te)
        parts["t"].append(frame.times[te])
        parts["target"].append(target[te])
        parts["served"].append(served_variance(r1, h, np.intersect1d(fit, usable), te))
        for name in ("ewma", "har", "constant"):
            parts[name].append(base[name])
    return {k: np.concatenate(v) for k, v in parts.items()}


def served_variance(r1: np.ndarray, h: int, fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The served head's h-bar variance forecast at `rows`: log-HAR fitted on `fit_rows` (NaN everywhere when
    they are too few to fit it)."""
    try:
        model = loghar_fit(r1, fit_rows, h)
    except RiskModelError:
        return np.full(len(rows), np.nan)
    return loghar_forecast(model, r1, rows)


def risk_metrics(frames: dict[str, CoinFrame], cfg: TrainConfig) -> dict[str, Any]:
    """{h: {"pooled": score_variance(...), "per_coin": {symbol: score_variance(...)}}} with HAR as reference."""
    out: dict[str, Any] = {"reference": "har", "target": "realized variance of the next h bars",
                           "served": "log-HAR (log RV_h on log HAR components, QLIKE-optimal scale) fitted on "
                                     "each fold's training + calibration rows"}
    for h in cfg.horizons:
        rows = {s: coin_risk_rows(f, cfg, h) for s, f in sorted(frames.items())}
        names = ("served", "ewma", "har", "constant")
        pooled = {k: np.concatenate([r[k] for r in rows.values()]) for k in ("t", "target", *names)}
        block = max(24, 2 * h)
        out[str(h)] = {
            "pooled": score_variance(pooled["target"], {n: pooled[n] for n in names}, pooled["t"],
                                     seed=derive_seed(cfg.seed, "risk", h), block=block),
            "per_coin": {s: score_variance(r["target"], {n: r[n] for n in names}) for s, r in rows.items()},
        }
    return out
