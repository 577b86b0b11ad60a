"""Drift of recent data against a training reference, and degradation of rolling scores. Pure functions.

Statistics (per feature, on finite values only):
    psi          Population Stability Index over quantile bins of the REFERENCE (numpy; no maintained
                 library offers a plain PSI without a heavy framework). Bins are the reference deciles
                 (`psi_bins`), open at both ends; a reference with <= `psi_bins` distinct values is binned
                 by value (categorical) with one extra bin for values the reference never took. Empty bins
                 are floored at `PSI_EPS` so the log stays finite.
                 Rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant shift.
    ks           two-sample Kolmogorov-Smirnov statistic D and p-value (`scipy.stats.ks_2samp`).
    wasserstein  earth mover's distance (`scipy.stats.wasserstein_distance`), also reported in units of the
                 reference standard deviation (`wasserstein_norm`) so one threshold fits every feature.

A feature has drifted when psi > thresholds.psi, or when D > thresholds.ks_statistic with p < thresholds.
ks_pvalue (a shift both large and significant), or (if set) when wasserstein_norm > thresholds.wasserstein.
Feature drift triggers when the share of drifted features is >= thresholds.feature_share. Prediction drift
(P(up) of the monitored model) uses the same statistics with the `prediction_*` thresholds. Label drift
compares the realized up-rate (binary labels: rate delta and a two-bin PSI) or, for continuous labels,
the feature statistics. Degradation compares the rolling hit rate / Brier score of the monitored model on
recent realized labels with the run's out-of-sample figures. Nothing triggers on fewer than `min_rows`
current rows (`min_scored` realized labels for degradation): the report says so instead.

Prediction drift and degradation may come from the forecasts ledger instead of re-predicting one model family
(`coinline.promotion.drift_ledger.ledger_evidence`, passed to `drift_report` as `ledger=`); `DriftReport.sources`
says which source each part used: "ledger" or "re-predicted" (None: not evaluated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from coinline.jsonsafe import clean

if TYPE_CHECKING:
    from coinline.promotion.drift_ledger import LedgerEvidence

PSI_EPS = 1e-4
SOURCE_LEDGER = "ledger"
SOURCE_REPREDICTED = "re-predicted"


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2                    # feature PSI above which the feature has drifted
    ks_statistic: float = 0.2           # KS D above which (with p < ks_pvalue) the feature has drifted
    ks_pvalue: float = 0.01
    wasserstein: float | None = None    # in reference std units; None: reported, never triggers
    feature_share: float = 0.3          # share of drifted features that triggers feature drift
    prediction_psi: float = 0.2
    prediction_ks: float = 0.2
    label_rate_delta: float = 0.10      # |up-rate now - up-rate in the reference|
    label_psi: float = 0.2
    hit_rate_drop: float = 0.05         # rolling hit rate below the run's OOS accuracy by more than this
    brier_rise: float = 0.02            # rolling Brier above the run's OOS Brier by more than this
    min_rows: int = 48                  # current rows needed before feature/prediction/label drift can trigger
    min_scored: int = 48                # realized labels needed before degradation can trigger
    psi_bins: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftThresholds:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown drift threshold(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def _finite(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def psi(reference: Any, current: Any, bins: int = 10) -> float:
    """Population Stability Index of `current` against `reference` (NaN when either side is empty)."""
    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    if bins < 2:
        raise ValueError("psi needs at least 2 bins")
    values = np.unique(ref)
    if len(values) <= bins:  # discrete reference: one bin per value, plus "a value never seen"
        ref_idx = np.searchsorted(values, ref)
        pos = np.searchsorted(values, cur)
        seen = (pos < len(values)) & (values[np.minimum(pos, len(values) - 1)] == cur)
        cur_idx = np.where(seen, pos, len(values))
        nbins = len(values) + 1
    else:
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
        ref_idx = np.searchsorted(edges, ref, side="right")
        cur_idx = np.searchsorted(edges, cur, side="right")
        nbins = len(edges) + 1
    r = np.bincount(ref_idx, minlength=nbins) / len(ref)
    c = np.bincount(cur_idx, minlength=nbins) / len(cur)
    r, c = np.maximum(r, PSI_EPS), np.maximum(c, PSI_EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def ks(reference: Any, current: Any) -> tuple[float, float]:
    """Two-sample KS (statistic D, p-value) via scipy; (NaN, NaN) when either side is empty."""
    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan"), float("nan")
    res = stats.ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


def wasserstein(reference: Any, current: Any) -> float:
    """Earth mover's distance via scipy (NaN when either side is empty)."""
    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    return float(stats.wasserstein_distance(ref, cur))


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    n_ref: int
    n_cur: int
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    wasserstein: float | None
    wasserstein_norm: float | None
    drifted: bool
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons)}


def feature_drift(name: str, reference: Any, current: Any, thresholds: DriftThresholds, *,
                  psi_threshold: float | None = None, ks_threshold: float | None = None) -> FeatureDrift:
    """All three statistics for one variable and whether it drifted (see the module docstring)."""
    ref, cur = _finite(reference), _finite(current)
    p = _num(psi(ref, cur, thresholds.psi_bins))
    d, pv = (_num(v) for v in ks(ref, cur))
    w = _num(wasserstein(ref, cur))
    sd = float(np.std(ref)) if len(ref) > 1 else 0.0
    wn = _num(w / sd) if w is not None and sd > 0 else (0.0 if w == 0.0 else None)
    psi_t = thresholds.psi if psi_threshold is None else psi_threshold
    ks_t = thresholds.ks_statistic if ks_threshold is None else ks_threshold
    reasons = []
    if p is not None and p > psi_t:
        reasons.append(f"psi {p:.3f} > {psi_t}")
    if d is not None and pv is not None and d > ks_t and pv < thresholds.ks_pvalue:
        reasons.append(f"ks D {d:.3f} > {ks_t} (p={pv:.2g})")
    if thresholds.wasserstein is not None and wn is not None and wn > thresholds.wasserstein:
        reasons.append(f"wasserstein {wn:.3f} sd > {thresholds.wasserstein}")
    return FeatureDrift(name, len(ref), len(cur), p, d, pv, w, wn, bool(reasons), tuple(reasons))


def label_drift(labels_ref: Any, labels_cur: Any, thresholds: DriftThresholds) -> dict[str, Any]:
    """Binary labels: up-rate delta and two-bin PSI; continuous labels: the feature statistics."""
    ref, cur = _finite(labels_ref), _finite(labels_cur)
    out: dict[str, Any] = {"n_ref": len(ref), "n_cur": len(cur), "triggered": False, "reasons": []}
    if len(ref) == 0 or len(cur) < thresholds.min_rows:
        out["note"] = f"insufficient realized labels ({len(cur)} < {thresholds.min_rows}); not evaluated"
        return out
    binary = bool(np.isin(ref, (0.0, 1.0)).all() and np.isin(cur, (0.0, 1.0)).all())
    if binary:
        rate_ref, rate_cur = float(ref.mean()), float(cur.mean())
        p = psi(ref, cur, bins=2)
        out.update(kind="binary", rate_ref=rate_ref, rate_cur=rate_cur, rate_delta=rate_cur - rate_ref, psi=_num(p))
        if abs(rate_cur - rate_ref) > thresholds.label_rate_delta:
            out["reasons"].append(f"label up-rate {rate_cur:.3f} vs reference {rate_ref:.3f} "
                                  f"(|delta| > {thresholds.label_rate_delta})")
        if p > thresholds.label_psi:
            out["reasons"].append(f"label psi {p:.3f} > {thresholds.label_psi}")
    else:
        fd = feature_drift("label", ref, cur, thresholds, psi_threshold=thresholds.label_psi)
        out.update(kind="continuous", **{k: v for k, v in fd.to_dict().items() if k not in ("name", "reasons")})
        out["reasons"] += [f"label {r}" for r in fd.reasons]
    out["triggered"] = bool(out["reasons"])
    return out


def rolling_scores(p: Any, y: Any) -> dict[str, Any]:
    """Hit rate (P >= 0.5 calls the direction) and Brier score over rows with a finite p and label."""
    pa, ya = np.asarray(p, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if pa.shape != ya.shape:
        raise ValueError("predictions and labels must have the same length")
    ok = np.isfinite(pa) & np.isfinite(ya)
    pa, ya = pa[ok], ya[ok]
    if len(pa) == 0:
        return {"count": 0, "hit_rate": None, "brier": None}
    return {"count": int(len(pa)), "hit_rate": float(np.mean((pa >= 0.5) == (ya == 1.0))),
            "brier": float(np.mean((pa - ya) ** 2))}


def degradation(reference: Mapping[str, Any], current: Mapping[str, Any], thresholds: DriftThresholds, *,
                reference_label: str = "OOS") -> dict[str, Any]:
    """Rolling scores (`current`: count, hit_rate, brier) against the run's OOS figures (`reference`:
    hit_rate, brier). Triggers when the hit rate dropped by more than `hit_rate_drop` or the Brier score
    rose by more than `brier_rise`, on at least `min_scored` realized labels. `reference_label` names the
    reference in the reasons."""
    out: dict[str, Any] = {"reference": dict(reference), "current": dict(current), "triggered": False, "reasons": []}
    n = int(current.get("count") or 0)
    if n < thresholds.min_scored:
        out["note"] = f"insufficient realized labels ({n} < {thresholds.min_scored}); not evaluated"
        return out
    ref_hit, cur_hit = reference.get("hit_rate"), current.get("hit_rate")
    ref_brier, cur_brier = reference.get("brier"), current.get("brier")
    if ref_hit is not None and cur_hit is not None:
        out["hit_rate_drop"] = float(ref_hit) - float(cur_hit)
        if out["hit_rate_drop"] > thresholds.hit_rate_drop:
            out["reasons"].append(f"rolling hit rate {cur_hit:.3f} vs {reference_label} {ref_hit:.3f} "
                                  f"(drop > {thresholds.hit_rate_drop})")
    if ref_brier is not None and cur_brier is not None:
        out["brier_rise"] = float(cur_brier) - float(ref_brier)
        if out["brier_rise"] > thresholds.brier_rise:
            out["reasons"].append(f"rolling brier {cur_brier:.4f} vs {reference_label} {ref_brier:.4f} "
                                  f"(rise > {thresholds.brier_rise})")
    out["triggered"] = bool(out["reasons"])
    return out


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    feature_share: float | None          # share of drifted features (None: not evaluated)
    prediction: FeatureDrift | None
    label: dict[str, Any] | None
    degradation: dict[str, Any] | None
    triggered: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    thresholds: DriftThresholds
    n_ref: int
    n_cur: int
    context: dict[str, Any] = field(default_factory=dict)   # what the caller compared (run, dataset, ...)
    sources: dict[str, str | None] = field(default_factory=dict)  # prediction / degradation: ledger | re-predicted
    ledger: dict[str, Any] | None = None     # LedgerEvidence.to_dict() when the caller passed the ledger

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return clean({
            "triggered": self.triggered,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "n_ref": self.n_ref,
            "n_cur": self.n_cur,
            "feature_share": self.feature_share,
            "drifted_features": self.drifted_features,
            "features": {f.name: f.to_dict() for f in self.features},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "label": self.label,
            "degradation": self.degradation,
            "thresholds": self.thresholds.to_dict(),
            "context": self.context,
            "sources": self.sources,
            "ledger": self.ledger,
        })


def _matrix(x: Any, names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):  # a DataFrame
        return np.asarray(x.to_numpy(dtype=np.float64)), [str(c) for c in x.columns]
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError("features must be a 2-D array (rows, features) or a DataFrame")
    return a, list(names) if names is not None else [f"f{i}" for i in range(a.shape[1])]


def drift_report(reference_frame_features: Any, current_features: Any, predictions_ref: Any = None,
                 predictions_cur: Any = None, labels_ref: Any = None, labels_cur: Any = None,
                 thresholds: DriftThresholds | None = None, *, feature_names: Sequence[str] | None = None,
                 scores_ref: Mapping[str, Any] | None = None, scores_cur: Mapping[str, Any] | None = None,
                 context: Mapping[str, Any] | None = None, ledger: LedgerEvidence | None = None) -> DriftReport:
    """Feature, prediction and label drift of the current rows against the reference rows, plus (when
    `scores_ref` and `scores_cur` are given) degradation of the rolling scores. Arrays are (rows, features)
    with columns named by `feature_names` (or a DataFrame's columns); predictions / labels are 1-D and may
    be None (not evaluated).

    `ledger` (from `drift_ledger.ledger_evidence`): where it holds enough rows, prediction drift and degradation come
    from the forecasts ledger instead of `predictions_*` / `scores_*` (the re-predicted figures, then only
    the fallback); `sources` in the report says which was used."""
    th = thresholds or DriftThresholds()
    ref, names = _matrix(reference_frame_features, feature_names)
    cur, cur_names = _matrix(current_features, feature_names or (names if ref.shape[1] else None))
    if ref.shape[1] != cur.shape[1] or (hasattr(current_features, "columns") and cur_names != names):
        raise ValueError(f"reference and current features differ: {names} vs {cur_names}")
    reasons: list[str] = []
    notes: list[str] = []
    n_cur = len(cur)
    enough = n_cur >= th.min_rows
    features = tuple(feature_drift(n, ref[:, j], cur[:, j], th) for j, n in enumerate(names))
    share = None
    if not enough:
        notes.append(f"insufficient current rows ({n_cur} < {th.min_rows}): feature and prediction drift "
                     "are reported but not evaluated")
    elif features:
        drifted = [f.name for f in features if f.drifted]
        share = len(drifted) / len(features)
        if share >= th.feature_share and drifted:
            reasons.append(f"feature drift: {len(drifted)}/{len(features)} features drifted "
                           f"({share:.0%} >= {th.feature_share:.0%}): {', '.join(drifted[:8])}"
                           + (" ..." if len(drifted) > 8 else ""))
    sources: dict[str, str | None] = {"prediction": None, "degradation": None}
    if ledger is not None and ledger.predictions_ready:
        predictions_ref, predictions_cur = ledger.predictions_ref, ledger.predictions_cur
        sources["prediction"] = SOURCE_LEDGER
    elif predictions_ref is not None and predictions_cur is not None:
        sources["prediction"] = SOURCE_REPREDICTED
    if ledger is not None and ledger.degradation_ready:
        sources["degradation"] = SOURCE_LEDGER
    elif scores_ref is not None and scores_cur is not None:
        sources["degradation"] = SOURCE_REPREDICTED
    if ledger is not None:
        for part in ("prediction", "degradation"):
            if part in ledger.notes:
                notes.append(f"{part}: not from the ledger ({ledger.notes[part]}); "
                             + ("re-predicted figures used" if sources[part] else "not evaluated"))
    prediction = None
    if predictions_ref is not None and predictions_cur is not None:
        prediction = feature_drift("prediction", predictions_ref, predictions_cur, th,
                                   psi_threshold=th.prediction_psi, ks_threshold=th.prediction_ks)
        # ledger windows carry their own row count; re-predicted ones need enough current feature rows
        if (enough or sources["prediction"] == SOURCE_LEDGER) and prediction.n_cur >= th.min_rows \
                and prediction.drifted:
            reasons.append(f"prediction drift ({sources['prediction']}): " + "; ".join(prediction.reasons))
    label = None
    if labels_ref is not None and labels_cur is not None:
        label = label_drift(labels_ref, labels_cur, th)
        if label["triggered"]:
            reasons.append("label drift: " + "; ".join(label["reasons"]))
        elif "note" in label:
            notes.append(f"labels: {label['note']}")
    degr = None
    if sources["degradation"] == SOURCE_LEDGER:
        degr = ledger.degradation(th)
    elif scores_ref is not None and scores_cur is not None:
        degr = degradation(scores_ref, scores_cur, th)
    if degr is not None:
        degr["source"] = sources["degradation"]
        if degr["triggered"]:
            reasons.append("degradation: " + "; ".join(degr["reasons"]))
        elif "note" in degr:
            notes.append(f"degradation: {degr['note']}")
    return DriftReport(features, share, prediction, label, degr, bool(reasons), tuple(reasons), tuple(notes), th,
                       len(ref), n_cur, dict(context or {}), sources,
                       ledger.to_dict() if ledger is not None else None)


__all__ = ["PSI_EPS", "SOURCE_LEDGER", "SOURCE_REPREDICTED", "DriftReport", "DriftThresholds", "FeatureDrift",
           "degradation", "drift_report", "feature_drift", "ks", "label_drift", "psi", "rolling_scores", "wasserstein"]
