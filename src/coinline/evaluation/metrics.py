"""Probability-forecast metrics for a binary direction label: one JSON-safe dict per scored set.

Every value is a plain Python float / int / list (no numpy scalars, no NaN): a value that is undefined
for the data given (e.g. balanced accuracy when only one class occurs) is ``None``. Values are exact
(no rounding) so equal inputs give byte-equal JSON.

Definitions (y in {0, 1}, p = predicted P(up)):
    base_rate          mean(y)
    accuracy           mean((p >= 0.5) == y)                      (sklearn accuracy_score)
    balanced_accuracy  mean of per-class recall; None unless both classes occur (sklearn)
    brier              mean((p - y)^2)                            (sklearn brier_score_loss)
    log_loss           mean(-y log p - (1-y) log(1-p)), p clipped to [1e-6, 1 - 1e-6] (sklearn, labels=[0,1])
    ece                sum_b (n_b / n) |mean_pred_b - frac_pos_b| over ``n_bins`` equal-width bins on [0, 1]
    calibration_curve  per bin: edges, mean prediction, fraction positive, count (empty bins kept, values None)

Binning is exactly scikit-learn's ``calibration_curve(strategy="uniform")``: edges = linspace(0, 1, n_bins+1),
bin index = searchsorted(inner edges, p, side="left"), i.e. bins [0, e1], (e1, e2], ..., (e_{n-1}, 1].
sklearn's function drops empty bins and returns no counts, so the binning is reproduced here (a test checks
the two agree on every non-empty bin).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, log_loss

LOG_LOSS_EPS = 1e-6


def check_binary_inputs(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: y -> int 0/1 array, p -> float array in [0, 1], same 1-D shape, all finite."""
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=float)
    if y_arr.ndim != 1 or p_arr.ndim != 1:
        raise ValueError(f"y and p must be 1-D; got shapes {y_arr.shape} and {p_arr.shape}")
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"y and p differ in length: {y_arr.shape[0]} vs {p_arr.shape[0]}")
    y_float = y_arr.astype(float)
    if not np.all(np.isfinite(y_float)) or not np.all((y_float == 0) | (y_float == 1)):
        raise ValueError("y must contain only 0 and 1 (drop unrealized / missing labels first)")
    if not np.all(np.isfinite(p_arr)):
        raise ValueError("p contains NaN or inf (drop rows without a prediction first)")
    if np.any(p_arr < 0) or np.any(p_arr > 1):
        raise ValueError("p must lie in [0, 1]")
    return y_float.astype(np.int64), p_arr


def bin_edges(n_bins: int) -> np.ndarray:
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return np.linspace(0.0, 1.0, int(n_bins) + 1)


def calibration_table(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> dict:
    """Equal-width reliability table with empty bins kept (their mean_pred / frac_pos are None)."""
    y_i, p_f = check_binary_inputs(y, p)
    edges = bin_edges(n_bins)
    k = len(edges) - 1
    ids = np.searchsorted(edges[1:-1], p_f)  # same rule as sklearn.calibration.calibration_curve
    count = np.bincount(ids, minlength=k)
    sum_pred = np.bincount(ids, weights=p_f, minlength=k)
    sum_pos = np.bincount(ids, weights=y_i.astype(float), minlength=k)
    mean_pred: list[float | None] = []
    frac_pos: list[float | None] = []
    for b in range(k):
        if count[b] == 0:
            mean_pred.append(None)
            frac_pos.append(None)
        else:
            mean_pred.append(float(sum_pred[b] / count[b]))
            frac_pos.append(float(sum_pos[b] / count[b]))
    return {
        "bin_edges": [float(e) for e in edges],
        "mean_pred": mean_pred,
        "frac_pos": frac_pos,
        "count": [int(c) for c in count],
    }


def expected_calibration_error(table: dict) -> float | None:
    """ECE from a calibration table: count-weighted mean |mean_pred - frac_pos| over non-empty bins."""
    n = sum(table["count"])
    if n == 0:
        return None
    total = 0.0
    for c, mp, fp in zip(table["count"], table["mean_pred"], table["frac_pos"], strict=True):
        if c:
            total += c * abs(mp - fp)
    return float(total / n)


def classification_metrics(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> dict:
    """All metrics for one set of (label, P(up)) pairs; see the module docstring for definitions.

    An empty set gives n = 0 and None for every metric (with an all-empty calibration table).
    """
    y_i, p_f = check_binary_inputs(y, p)
    n = int(y_i.shape[0])
    table = calibration_table(y_i, p_f, n_bins=n_bins)
    if n == 0:
        return {
            "n": 0, "base_rate": None, "accuracy": None, "balanced_accuracy": None, "brier": None,
            "log_loss": None, "ece": None, "calibration_curve": table,
        }
    pred = (p_f >= 0.5).astype(np.int64)
    both_classes = bool(np.any(y_i == 0) and np.any(y_i == 1))
    p_clip = np.clip(p_f, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return {
        "n": n,
        "base_rate": float(np.mean(y_i)),
        "accuracy": float(accuracy_score(y_i, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_i, pred)) if both_classes else None,
        "brier": float(brier_score_loss(y_i, p_f, labels=[0, 1])),
        "log_loss": float(log_loss(y_i, p_clip, labels=[0, 1])),
        "ece": expected_calibration_error(table),
        "calibration_curve": table,
    }


def pointwise_losses(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row log loss (same clipping as ``classification_metrics``) and squared error (Brier)."""
    y_i, p_f = check_binary_inputs(y, p)
    p_clip = np.clip(p_f, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    yf = y_i.astype(float)
    ll = -(yf * np.log(p_clip) + (1.0 - yf) * np.log1p(-p_clip))
    return {"log_loss": ll, "brier": (p_f - yf) ** 2}
