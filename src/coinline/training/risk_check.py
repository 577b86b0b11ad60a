"""The risk head out of sample: per horizon, what a model set serves as risk (expected |h-bar move| =
trailing volatility * sqrt(h) * the mean |move| / volatility of the fold's fitting window, read as a normal
variance) against the EWMA and HAR-RV baselines and the constant (unconditional) variance, on the same
walk-forward test rows as the direction models, scored by QLIKE and MSE on log variance
(`evaluation.risk`), pooled over coins with the joint test (coins summed per time stamp).

Each fold's scale, HAR coefficients and constant are fitted on that fold's training + calibration rows
only; EWMA needs no fitting. Reported in the metric package as `risk`, with HAR as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coinline.evaluation.risk import (
    baseline_forecasts,
    model_variance_from_abs_move,
    realized_variance,
    score_variance,
)
from coinline.features.frame import CoinFrame
from coinline.models.base import derive_seed
from coinline.training.config import TrainConfig
from coinline.training.folds import folds_for


def coin_risk_rows(frame: CoinFrame, cfg: TrainConfig, h: int) -> dict[str, np.ndarray]:
    """Per OOS row of one coin: time, realized variance target and each variance forecast."""
    r1 = frame.column("ret_1")
    target = realized_variance(r1, h)
    vol = frame.column("vol_long") * np.sqrt(h)
    risk = frame.targets[h]["risk"]
    parts: dict[str, list[np.ndarray]] = {"t": [], "target": [], "served": [], "ewma": [], "har": [], "constant": []}
    for fold in folds_for(frame.times, cfg):
        fit = np.concatenate([fold.train_idx, fold.calib_idx])
        te = fold.test_idx
        scale = float(np.nanmean(risk[fit]))
        base = baseline_forecasts(r1, h, fit, te)
        parts["t"].append(frame.times[te])
        parts["target"].append(target[te])
        parts["served"].append(model_variance_from_abs_move(vol[te] * scale))
        for name in ("ewma", "har", "constant"):
            parts[name].append(base[name])
    return {k: np.concatenate(v) for k, v in parts.items()}


def risk_metrics(frames: dict[str, CoinFrame], cfg: TrainConfig) -> dict[str, Any]:
    """{h: {"pooled": score_variance(...), "per_coin": {symbol: score_variance(...)}}} with HAR as reference."""
    out: dict[str, Any] = {"reference": "har", "target": "realized variance of the next h bars",
                           "served": "trailing volatility * sqrt(h) * training mean |move|/volatility"}
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
