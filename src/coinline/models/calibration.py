"""Post-hoc probability calibration for the tree specialists (only what the models need).

A tree model is fitted on the training rows, frozen, and its P(up) re-mapped on a later, disjoint slice
(the calibration rows) with scikit-learn's `CalibratedClassifierCV` over a `FrozenEstimator` (sklearn >= 1.6;
the old `cv="prefit"` is gone). Platt scaling ("sigmoid") by default; isotonic regression once there are
enough calibration rows for it not to overfit. Scoring metrics belong to `coinline.evaluation`;
`reliability` here is a small diagnostic for reports and tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("auto", "sigmoid", "isotonic", "temperature", "none")
ISOTONIC_MIN_ROWS = 1000     # "auto" switches from Platt to isotonic at this many calibration rows
PROB_CLIP = 1e-4             # probabilities are kept inside [PROB_CLIP, 1 - PROB_CLIP]
# Isotonic regression maps the extreme score blocks to exactly 0 or 1 whenever the few calibration rows
# there share a label; one wrong call then costs -log(PROB_CLIP) ~ 9 nats. Its outputs are bounded tighter.
ISOTONIC_CLIP = 0.01


def resolve_method(method: str, n_calib: int) -> str:
    """The concrete method for `method` ("auto" -> isotonic with >= ISOTONIC_MIN_ROWS rows, else sigmoid)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    if method == "auto":
        return "isotonic" if n_calib >= ISOTONIC_MIN_ROWS else "sigmoid"
    return method


def clip_for(method: str) -> float:
    """How far from 0 and 1 the probabilities of a model calibrated with `method` are kept."""
    return ISOTONIC_CLIP if method == "isotonic" else PROB_CLIP


def calibrate(estimator: Any, X_calib: np.ndarray, y_calib: np.ndarray, method: str = "auto") -> Any | None:
    """Fit a calibrator on top of an already fitted binary classifier, using (X_calib, y_calib) only.

    Returns the fitted `CalibratedClassifierCV` (its `predict_proba` gives calibrated probabilities), or
    None when calibration is switched off ("none") or impossible (no rows, or a single class among them):
    callers then use the raw probabilities.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    y = np.asarray(y_calib).astype(np.int64)
    resolved = resolve_method(method, len(y))
    if resolved == "none" or len(y) == 0 or np.unique(y).size < 2:
        return None
    cal = CalibratedClassifierCV(FrozenEstimator(estimator), method=resolved)
    return cal.fit(X_calib, y)


def positive_proba(model: Any, X: np.ndarray, clip: float = PROB_CLIP) -> np.ndarray:
    """P(class 1) from a fitted sklearn-style binary classifier, as float64, kept inside [clip, 1 - clip]."""
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = list(getattr(model, "classes_", [0, 1]))
    p = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(proba))
    return np.clip(p, clip, 1.0 - clip)


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Reliability table over equal-width probability bins, plus expected calibration error (ECE).

    Returns {"edges", "count", "mean_pred", "frac_pos" (NaN for empty bins), "ece", "n"}.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"y and p differ in shape: {y.shape} vs {p.shape}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(which, weights=p, minlength=n_bins)
    sum_y = np.bincount(which, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.where(count > 0, sum_p / np.maximum(count, 1), np.nan)
        frac_pos = np.where(count > 0, sum_y / np.maximum(count, 1), np.nan)
    n = int(count.sum())
    nonempty = count > 0
    ece = float(np.sum(count[nonempty] * np.abs(frac_pos[nonempty] - mean_pred[nonempty])) / n) if n else float("nan")
    return {
        "edges": edges.tolist(),
        "count": count.tolist(),
        "mean_pred": mean_pred.tolist(),
        "frac_pos": frac_pos.tolist(),
        "ece": ece,
        "n": n,
    }
