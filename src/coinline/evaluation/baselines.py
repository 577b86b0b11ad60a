"""Naive baselines on the same test rows, skill scores against them, and a block-bootstrap chance test.

Baselines (all produce P(up) for each test row, using training rows only):
    "base_rate"    climatology: the training frequency of up, constant over the test rows.
    "momentum"     conditional climatology on the sign of the trailing return known at the row:
                   P(up | sign) estimated on the training rows as a Beta-smoothed frequency
                       (ups_in_sign + a * base_rate) / (rows_in_sign + a),   a = ``prior_strength``
                   so a sign seen on few training rows falls back towards the base rate. Rows whose
                   trailing return is 0 / NaN get the base rate (in training they only count to the base rate).
    "random_walk"  0.5 everywhere (a driftless random walk is as likely to go up as down).

``chance_test`` asks whether a model's advantage over a baseline on the same rows could be chance. It uses
the per-row loss differences d_i = loss_model_i - loss_baseline_i (negative = model better) and a moving-block
bootstrap so that serial dependence (overlapping horizons, volatility clustering) is kept inside blocks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.stats import t as student_t

from .metrics import pointwise_losses

BASELINES = ("base_rate", "momentum", "random_walk")


def _as_labels(y: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must contain only 0 and 1")
    return arr


def baseline_probabilities(
    y_train: np.ndarray,
    momentum_ret: np.ndarray,
    n_test: int,
    *,
    momentum_train_ret: np.ndarray,
    prior_strength: float = 10.0,
) -> dict[str, np.ndarray]:
    """P(up) of each naive baseline for ``n_test`` test rows, fitted on training rows only.

    y_train: 0/1 labels of the training rows. momentum_ret: trailing return known at each TEST row
    (length n_test). momentum_train_ret: trailing return at each TRAINING row (aligned with y_train), used
    to estimate the conditional frequencies. Returns {"base_rate", "momentum", "random_walk"} -> float arrays.
    """
    y_tr = _as_labels(y_train, "y_train")
    if y_tr.shape[0] == 0:
        raise ValueError("y_train is empty: a baseline needs training rows")
    m_test = np.asarray(momentum_ret, dtype=float)
    m_train = np.asarray(momentum_train_ret, dtype=float)
    if m_test.ndim != 1 or m_test.shape[0] != n_test:
        raise ValueError(f"momentum_ret must be 1-D with n_test={n_test} rows, got shape {m_test.shape}")
    if m_train.shape != y_tr.shape:
        raise ValueError(f"momentum_train_ret must align with y_train: {m_train.shape} vs {y_tr.shape}")
    if prior_strength < 0:
        raise ValueError("prior_strength must be >= 0")

    base = float(np.mean(y_tr))
    sign_train = np.sign(np.nan_to_num(m_train, nan=0.0))
    sign_test = np.sign(np.nan_to_num(m_test, nan=0.0))
    cond = {0.0: base}
    for s in (-1.0, 1.0):
        mask = sign_train == s
        rows = int(mask.sum())
        ups = float(y_tr[mask].sum())
        denom = rows + prior_strength
        cond[s] = base if denom == 0 else (ups + prior_strength * base) / denom
    momentum = np.array([cond[float(s)] for s in sign_test], dtype=float)
    return {
        "base_rate": np.full(n_test, base, dtype=float),
        "momentum": momentum,
        "random_walk": np.full(n_test, 0.5, dtype=float),
    }


def _skill(model: float | None, base: float | None) -> float | None:
    if model is None or base is None or base == 0:
        return None
    return float(1.0 - model / base)


def _lift(model: float | None, base: float | None) -> float | None:
    if model is None or base is None:
        return None
    return float(model - base)


def _skill_vs(model_metrics: Mapping, base_metrics: Mapping) -> dict:
    return {
        "brier_skill": _skill(model_metrics.get("brier"), base_metrics.get("brier")),
        "log_loss_skill": _skill(model_metrics.get("log_loss"), base_metrics.get("log_loss")),
        "accuracy_lift": _lift(model_metrics.get("accuracy"), base_metrics.get("accuracy")),
        "balanced_accuracy_lift": _lift(model_metrics.get("balanced_accuracy"),
                                        base_metrics.get("balanced_accuracy")),
    }


def skill_scores(model_metrics: Mapping, baseline_metrics: Mapping) -> dict:
    """Skill of a model against baselines, from ``classification_metrics`` dicts on the same rows.

    brier_skill = 1 - brier_model / brier_baseline, log_loss_skill = 1 - ll_model / ll_baseline (> 0: model
    better; None when the baseline loss is 0 or a value is missing), accuracy_lift = acc_model - acc_baseline
    (same for balanced accuracy). ``baseline_metrics`` is either {baseline name: metrics dict} -> returns
    {name: skills}, or a single metrics dict (recognized by its "brier" key) -> returns one skills dict.
    """
    if "brier" in baseline_metrics:
        return _skill_vs(model_metrics, baseline_metrics)
    return {name: _skill_vs(model_metrics, m) for name, m in baseline_metrics.items()}


def _block_bootstrap_means(d: np.ndarray, starts: np.ndarray, block: int) -> tuple[np.ndarray, float]:
    """Means of moving-block resamples of d, and their exact bootstrap expectation.

    starts: (n_boot, k) block starts in [0, n - block]; each resample is k blocks concatenated and cut to n
    rows (the last block contributes its first r = n - (k-1)*block rows).
    """
    n = d.shape[0]
    k = starts.shape[1]
    r = n - (k - 1) * block
    c = np.concatenate([[0.0], np.cumsum(d)])
    full = c[starts[:, :-1] + block] - c[starts[:, :-1]]
    last = c[starts[:, -1] + r] - c[starts[:, -1]]
    means = (full.sum(axis=1) + last) / n
    s = np.arange(n - block + 1)
    expectation = ((k - 1) * np.mean(c[s + block] - c[s]) + np.mean(c[s + r] - c[s])) / n
    return means, float(expectation)


def chance_test(
    y: np.ndarray,
    p_model: np.ndarray,
    p_baseline: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    block: int = 24,
    alpha: float = 0.05,
    min_blocks: int = 5,
) -> dict:
    """Moving-block bootstrap test of "the model beats the baseline" on the same rows.

    For each score (log loss, Brier) with per-row differences d = loss_model - loss_baseline:
        mean_diff  mean(d)                                  (< 0: model better)
        ci95       [mean_diff + q_.025(D* - E*), mean_diff + q_.975(D* - E*)]
                   D* = means of n_boot moving-block resamples (blocks of ``block`` consecutive rows, starts
                   drawn uniformly with numpy default_rng(seed)), E* = their exact bootstrap expectation
                   (removes the moving-block edge bias).
        p_value    one-sided for H0: E[d] >= 0 vs H1: model better; the LARGER (more conservative) of
                     p_bootstrap = (1 + #{D* - E* <= mean_diff}) / (1 + n_boot)       (never 0)
                     p_t         = StudentT(df = n // block - 1).cdf(mean_diff / sd(D*))
                   the t reference accounts for the bootstrap standard error itself being estimated from only
                   about n / block independent blocks.
        significant  p_value <= alpha
    Both scores share the same resampled blocks (a paired test).

    Top level (what gates read): mean_diff / ci95 are the log-loss ones; p_value = max of the two p-values and
    significant = p_value <= alpha, i.e. the model must beat the baseline on BOTH proper scores (an
    intersection-union test, still level alpha). With fewer than ``min_blocks`` blocks of data (or zero
    variance in d) the bootstrap cannot measure the noise, so nothing is significant (``reason`` says why).
    """
    losses_m = pointwise_losses(y, p_model)
    losses_b = pointwise_losses(y, p_baseline)
    n = int(np.asarray(y).shape[0])
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if block < 1:
        raise ValueError("block must be >= 1")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    out: dict = {
        "n": n, "block": int(block), "n_boot": int(n_boot), "seed": int(seed), "alpha": float(alpha),
        "reason": None,
    }
    if min_blocks < 2:
        raise ValueError("min_blocks must be >= 2")
    enough = n >= min_blocks * block
    rng = np.random.default_rng(seed)
    k = max(1, math.ceil(n / block)) if n else 1
    starts = rng.integers(0, max(n - block, 0) + 1, size=(n_boot, k)) if enough else None

    scores = {}
    for name in ("log_loss", "brier"):
        d = losses_m[name] - losses_b[name]
        mean_diff = float(np.mean(d)) if n else None
        res = {"mean_diff": mean_diff, "ci95": [None, None], "p_value": 1.0, "p_bootstrap": None, "p_t": None,
               "se": None, "significant": False}
        if enough and np.ptp(d) > 0:
            means, expectation = _block_bootstrap_means(d, starts, block)
            centered = means - expectation
            lo, hi = np.quantile(centered, [0.025, 0.975])
            p_boot = (1.0 + float(np.sum(centered <= mean_diff))) / (1.0 + n_boot)
            se = float(np.std(centered, ddof=1)) if n_boot > 1 else 0.0
            p_t = float(student_t.cdf(mean_diff / se, df=n // block - 1)) if se > 0 else 1.0
            p_value = max(p_boot, p_t)
            res.update(ci95=[float(mean_diff + lo), float(mean_diff + hi)], p_value=float(p_value),
                       p_bootstrap=float(p_boot), p_t=p_t, se=se, significant=bool(p_value <= alpha))
        scores[name] = res

    if not enough:
        out["reason"] = f"too few rows: n={n} < min_blocks*block={min_blocks * block}"
    elif all(np.ptp(losses_m[s] - losses_b[s]) == 0 for s in scores):
        out["reason"] = "loss differences are constant: no sampling noise to test against"
    p_value = max(scores["log_loss"]["p_value"], scores["brier"]["p_value"])
    out.update(
        mean_diff=scores["log_loss"]["mean_diff"],
        ci95=scores["log_loss"]["ci95"],
        p_value=float(p_value),
        significant=bool(out["reason"] is None and p_value <= alpha),
        log_loss=scores["log_loss"],
        brier=scores["brier"],
    )
    return out
