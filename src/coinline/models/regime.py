"""Global market regime: causal rule-based labels, a classifier that forecasts them, and a scorer.

Three pieces:

* `regime_labels(market, ...)` turns the equal-weight market return series (`mkt_ret_1`, one row per bar,
  in time order) into integer labels indexing `REGIMES`. Every quantity at row t uses rows <= t only
  (pandas rolling windows; the volatility quantile is taken over the PREVIOUS `lookback_for_quantiles`
  volatility values), so appending future rows never changes a past label. Rows without enough history
  (or with a missing return) get label -1 and must be excluded by every consumer.

  Per row t, with r the market log return:
      vol      = rolling std of r over `vol_window` rows
      trend_r  = rolling sum of r over `trend_window` rows
      dd       = cumsum(r) - rolling max of cumsum(r) over `4 * trend_window` rows   (log drawdown, <= 0)
      vol_q    = `vol_quantile` (0.8) quantile of vol over the `lookback_for_quantiles` rows BEFORE t
      strength = |trend_r| / (vol * sqrt(trend_window))
  and, in order of precedence:
      stress   : dd < stress_drawdown (default -10 %)  and vol > vol_q
      high_vol : vol > vol_q
      trend    : strength > trend_threshold (1.0)
      range    : otherwise

* `RegimeClassifier` predicts the label `h` rows ahead (`shift_labels(labels, h)` aligns them) from
  cross-asset features: a multinomial L2 logistic regression (lbfgs, deterministic) on features
  standardized with training-row statistics. Regimes absent from the training labels get posterior
  0 before smoothing; all posteriors are then smoothed as p' = (p + eps) / (1 + 4 * eps)
  (eps = params["smoothing"], default 1e-3), so every column is > 0 (finite log loss) and rows sum to 1.

* `regime_score(true, posteriors)` scores the argmax path and a hysteresis-decoded path (`decode`),
  charging an explicit penalty for false regime transitions (the predicted regime changes while the
  true one does not): penalized_score = accuracy - transition_penalty * false_transitions / n.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from coinline.models.base import row_linear

REGIMES = ("trend", "range", "high_vol", "stress")
TREND, RANGE, HIGH_VOL, STRESS = range(4)
N_REGIMES = len(REGIMES)


# ----------------------------------------------------------------------------------------------- labels


def regime_labels(market: pd.DataFrame, *, vol_window: int, trend_window: int, lookback_for_quantiles: int,
                  vol_quantile: float = 0.8, trend_threshold: float = 1.0, stress_drawdown: float = -0.10,
                  min_quantile_history: int | None = None) -> np.ndarray:
    """Causal regime label per row of `market` (int array; -1 = warmup / missing, excluded).

    `min_quantile_history` (default max(1, lookback_for_quantiles // 4)) is how many past volatility values
    the trailing quantile needs before a row is labelled.
    """
    if "mkt_ret_1" not in market.columns:
        raise ValueError("market needs a 'mkt_ret_1' column")
    if not market.index.is_monotonic_increasing:
        raise ValueError("market must be indexed by time in increasing order")
    if min(vol_window, trend_window, lookback_for_quantiles) < 1:
        raise ValueError("windows must be >= 1")
    if min_quantile_history is None:
        min_quantile_history = max(1, lookback_for_quantiles // 4)
    min_quantile_history = int(min(max(min_quantile_history, 1), lookback_for_quantiles))

    r = pd.Series(np.asarray(market["mkt_ret_1"], dtype=float))
    vol = r.rolling(vol_window, min_periods=vol_window).std(ddof=1)
    trend_r = r.rolling(trend_window, min_periods=trend_window).sum()
    cum = r.fillna(0.0).cumsum()
    dd = cum - cum.rolling(4 * trend_window, min_periods=1).max()
    vol_q = vol.shift(1).rolling(lookback_for_quantiles, min_periods=min_quantile_history).quantile(vol_quantile)

    vol_a, trend_a, dd_a, q_a = (s.to_numpy() for s in (vol, trend_r, dd, vol_q))
    denom = vol_a * np.sqrt(trend_window)
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = np.where(denom > 0, np.abs(trend_a) / denom, 0.0)

    valid = np.isfinite(r.to_numpy()) & np.isfinite(vol_a) & np.isfinite(trend_a) & np.isfinite(q_a)
    high = vol_a > q_a
    labels = np.full(len(r), RANGE, dtype=np.int64)
    labels[strength > trend_threshold] = TREND
    labels[high] = HIGH_VOL
    labels[high & (dd_a < stress_drawdown)] = STRESS
    labels[~valid] = -1
    return labels


def shift_labels(labels: np.ndarray, h: int) -> np.ndarray:
    """labels_next[t] = labels[t + h]; the last h rows (future not yet seen) get -1."""
    labels = np.asarray(labels, dtype=np.int64)
    if h < 0:
        raise ValueError("h must be >= 0")
    out = np.full(len(labels), -1, dtype=np.int64)
    if h < len(labels):
        out[: len(labels) - h] = labels[h:]
    return out


# ------------------------------------------------------------------------------------------- classifier


class RegimeClassifier:
    """Multinomial logistic regression over cross-asset features -> posteriors in REGIMES order.

    params: C (inverse L2 strength, default 1.0), max_iter (default 1000), tol (1e-6),
    smoothing (additive posterior smoothing eps, default 1e-3).
    Rows with label -1 or any non-finite feature are excluded from fitting. At prediction time a
    non-finite feature is imputed with its training mean (0 after standardization).
    """

    DEFAULTS: Mapping[str, Any] = {"C": 1.0, "max_iter": 1000, "tol": 1e-6, "smoothing": 1e-3}

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = {**self.DEFAULTS, **(params or {})}
        self.classes_: np.ndarray | None = None   # regime ids seen in training, ascending
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None      # (n_classes_or_1, d) as sklearn returns it
        self.intercept_: np.ndarray | None = None
        self.seed: int | None = None
        self.n_train: int = 0

    # -- fitting
    def fit(self, X: np.ndarray, labels_next: np.ndarray, *, seed: int) -> RegimeClassifier:
        X = np.asarray(X, dtype=float)
        y = np.asarray(labels_next, dtype=np.int64)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError("X must be (n, d) with one label per row")
        if np.any((y < -1) | (y >= N_REGIMES)):
            raise ValueError("labels must be -1 or an index into REGIMES")
        keep = (y >= 0) & np.all(np.isfinite(X), axis=1)
        Xk, yk = X[keep], y[keep]
        if len(yk) == 0:
            raise ValueError("no labelled rows to fit on")
        self.seed = int(seed)
        self.n_train = int(len(yk))
        self.mean_ = Xk.mean(axis=0)
        sd = Xk.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.classes_ = np.unique(yk)
        if len(self.classes_) == 1:       # degenerate: always the one regime seen
            self.coef_ = np.zeros((1, X.shape[1]))
            self.intercept_ = np.zeros(1)
            return self
        model = LogisticRegression(C=float(self.params["C"]), solver="lbfgs", max_iter=int(self.params["max_iter"]),
                                   tol=float(self.params["tol"]), random_state=self.seed)
        with threadpool_limits(limits=1):   # single-threaded BLAS: bit-identical across machines, no oversubscription
            model.fit((Xk - self.mean_) / self.scale_, yk)
        self.coef_ = np.asarray(model.coef_, dtype=float)
        self.intercept_ = np.asarray(model.intercept_, dtype=float)
        return self

    # -- prediction
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.classes_ is None:
            raise RuntimeError("RegimeClassifier is not fitted")
        X = np.asarray(X, dtype=float)
        Z = (X - self.mean_) / self.scale_
        Z = np.where(np.isfinite(Z), Z, 0.0)
        n = len(Z)
        present = np.zeros((n, len(self.classes_)))
        if len(self.classes_) == 1:
            present[:, 0] = 1.0
        elif len(self.classes_) == 2:     # sklearn binary: one logit for classes_[1]
            z = row_linear(Z, self.coef_[0], self.intercept_[0])
            p1 = 1.0 / (1.0 + np.exp(-z))
            present[:, 0], present[:, 1] = 1.0 - p1, p1
        else:
            logits = np.column_stack([row_linear(Z, c, b) for c, b in zip(self.coef_, self.intercept_, strict=True)])
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            present = e / e.sum(axis=1, keepdims=True)
        post = np.zeros((n, N_REGIMES))
        post[:, self.classes_] = present
        eps = float(self.params["smoothing"])
        post = (post + eps) / (1.0 + N_REGIMES * eps)
        return post / post.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    # -- artifact
    def to_bytes(self) -> bytes:
        if self.classes_ is None:
            raise RuntimeError("RegimeClassifier is not fitted")
        doc = {
            "kind": "regime_classifier", "regimes": list(REGIMES), "params": dict(self.params),
            "seed": self.seed, "n_train": self.n_train, "classes": [int(c) for c in self.classes_],
            "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(), "intercept": self.intercept_.tolist(),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> RegimeClassifier:
        doc = json.loads(blob)
        self = cls(doc["params"])
        self.seed, self.n_train = doc["seed"], doc["n_train"]
        self.classes_ = np.asarray(doc["classes"], dtype=np.int64)
        self.mean_, self.scale_ = np.asarray(doc["mean"]), np.asarray(doc["scale"])
        self.coef_, self.intercept_ = np.asarray(doc["coef"]), np.asarray(doc["intercept"])
        return self


# ------------------------------------------------------------------------------------- scoring / decoding


def decode(posteriors: np.ndarray, *, min_margin: float) -> np.ndarray:
    """Hysteresis decoding: start at the first row's argmax; switch to row t's argmax only when its
    posterior exceeds the CURRENT regime's posterior at row t by more than `min_margin`.
    Causal and deterministic (ties -> lowest index); min_margin=0 reproduces the argmax path."""
    post = np.asarray(posteriors, dtype=float)
    out = np.empty(len(post), dtype=np.int64)
    if len(post) == 0:
        return out
    best = np.argmax(post, axis=1)
    cur = int(best[0])
    for t in range(len(post)):
        cand = int(best[t])
        if cand != cur and post[t, cand] - post[t, cur] > min_margin:
            cur = cand
        out[t] = cur
    return out


def _path_metrics(true: np.ndarray, pred: np.ndarray, transition_penalty: float) -> dict[str, Any]:
    n = len(true)
    acc = float(np.mean(true == pred))
    recalls = [float(np.mean(pred[true == c] == c)) for c in np.unique(true)]
    pred_change = pred[1:] != pred[:-1]
    true_same = true[1:] == true[:-1]
    false_tr = int(np.sum(pred_change & true_same))
    return {
        "accuracy": acc,
        "balanced_accuracy": float(np.mean(recalls)),
        "n_pred_transitions": int(np.sum(pred_change)),
        "false_transitions": false_tr,
        "penalized_score": acc - transition_penalty * false_tr / n,
    }


def regime_score(true_labels: np.ndarray, posteriors: np.ndarray, *, transition_penalty: float = 0.5,
                 min_margin: float = 0.1) -> dict[str, Any]:
    """Score posteriors against the true regime sequence.

    Rows whose true label is -1 are dropped (transitions are then counted between consecutive kept rows).
    Top-level keys score the raw argmax path: n, accuracy, balanced_accuracy, log_loss, n_true_transitions,
    n_pred_transitions, false_transitions, penalized_score. `"decoded"` holds the same path metrics for
    `decode(posteriors, min_margin=min_margin)` (decoded over all rows, then filtered).
    """
    true = np.asarray(true_labels, dtype=np.int64)
    post = np.asarray(posteriors, dtype=float)
    if post.shape != (len(true), N_REGIMES):
        raise ValueError(f"posteriors must be (n, {N_REGIMES}) aligned with true_labels")
    keep = true >= 0
    n = int(keep.sum())
    if n == 0:
        raise ValueError("no labelled rows to score")
    t, p = true[keep], post[keep]
    raw = _path_metrics(t, np.argmax(p, axis=1), transition_penalty)
    dec = _path_metrics(t, decode(post, min_margin=min_margin)[keep], transition_penalty)
    ll = float(-np.mean(np.log(np.clip(p[np.arange(n), t], 1e-15, 1.0))))
    return {
        "n": n, **raw, "log_loss": ll, "n_true_transitions": int(np.sum(t[1:] != t[:-1])),
        "transition_penalty": float(transition_penalty),
        "decoded": {**dec, "min_margin": float(min_margin)},
    }
