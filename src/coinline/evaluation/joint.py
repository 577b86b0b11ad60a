"""Chance tests for evidence pooled over coins that move together.

Crypto returns share a market factor, so the rows of different coins at one time stamp are not independent
evidence: concatenating coins and block-bootstrapping the result as one long series (or each coin on its
own) understates the noise and finds skill that is not there. Here the per-row loss differences
d = loss_model - loss_baseline are first SUMMED over coins per time stamp, giving one value per time, and
the moving-block bootstrap resamples blocks of that time series: all coins of a time stamp are always drawn
together (the same blocks for every coin). The one-sided p-value (model better) is computed as
`evaluation.baselines.chance_test` computes its own (bootstrap means centred on their exact expectation, the
larger of the bootstrap and the Student-t p-value), so on a single coin the two agree.

`joint_model_test` applies it to log loss and Brier with the same blocks and, like `chance_test`, calls a
model better only when it wins on both (an intersection-union test, still level alpha).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from coinline.evaluation.baselines import _block_bootstrap_means
from coinline.evaluation.metrics import pointwise_losses

MIN_BLOCKS = 5          # as chance_test: fewer than this many blocks of time stamps -> nothing is significant


def joint_chance_test(times: Any, d: np.ndarray, *, seed: int, block: int = 24, n_boot: int = 500,
                      alpha: float = 0.05) -> dict:
    """One-sided block-bootstrap test of mean(d) < 0 on d summed per time stamp (see the module docstring).

    times: one time stamp per row (any sortable values); d: per-row loss differences (negative = better).
    The bootstrap resamples blocks of ``block`` consecutive time stamps; rows of one time stamp stay together.
    """
    if n_boot < 1 or block < 1 or not 0 < alpha < 1:
        raise ValueError("need n_boot >= 1, block >= 1 and 0 < alpha < 1")
    d = np.asarray(d, dtype=float)
    s = pd.Series(d).groupby(np.asarray(times), sort=True).sum().to_numpy(dtype=float)
    n = int(s.shape[0])
    mean_diff = float(np.mean(s)) if n else None
    out = {"n_rows": int(d.shape[0]), "n_times": n, "block": int(block), "n_boot": int(n_boot), "seed": int(seed),
           "mean_diff": mean_diff, "p_value": 1.0, "p_bootstrap": None, "p_t": None, "se": None, "reason": None}
    if n < MIN_BLOCKS * block:
        out["reason"] = f"too few time stamps: n_times={n} < min_blocks*block={MIN_BLOCKS * block}"
    elif np.ptp(s) == 0:
        out["reason"] = "loss differences are constant: no sampling noise to test against"
    else:
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, n - block + 1, size=(n_boot, max(1, math.ceil(n / block))))
        means, expectation = _block_bootstrap_means(s, starts, block)
        centered = means - expectation
        p_boot = (1.0 + float(np.sum(centered <= mean_diff))) / (1.0 + n_boot)
        se = float(np.std(centered, ddof=1)) if n_boot > 1 else 0.0
        p_t = float(student_t.cdf(mean_diff / se, df=n // block - 1)) if se > 0 else 1.0
        out.update(p_value=float(max(p_boot, p_t)), p_bootstrap=float(p_boot), p_t=p_t, se=se)
    out["significant"] = bool(out["reason"] is None and out["p_value"] <= alpha)
    return out


def joint_model_test(times: Any, y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray, *, seed: int,
                     block: int = 24, n_boot: int = 500, alpha: float = 0.05) -> dict:
    """Model vs baseline on rows of many coins (one time stamp per row): the joint test on log loss and on
    Brier, the same blocks for both; p_value = the larger of the two (the model must win on both)."""
    lm, lb = pointwise_losses(y, p_model), pointwise_losses(y, p_base)
    scores = {name: joint_chance_test(times, lm[name] - lb[name], seed=seed, block=block, n_boot=n_boot,
                                      alpha=alpha) for name in ("log_loss", "brier")}
    ll = scores["log_loss"]
    p_value = max(ll["p_value"], scores["brier"]["p_value"])
    return {"method": "joint block bootstrap over time (coins summed per time stamp)", "n": ll["n_rows"],
            "n_times": ll["n_times"], "block": int(block), "n_boot": int(n_boot), "seed": int(seed),
            "alpha": float(alpha), "mean_diff": ll["mean_diff"], "p_value": float(p_value),
            "significant": bool(ll["reason"] is None and p_value <= alpha), "reason": ll["reason"],
            "scores": scores}
