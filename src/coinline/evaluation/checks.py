"""Hindcast and forward checks: score single predictions the way an operator would look at them.

Conventions (shared by every function here):
  * ``times_ms[i]`` is the time at which row i's prediction is made: the CLOSE time of the row's bar (epoch ms),
    strictly increasing. Only data up to that time went into the features.
  * ``p[i]`` is an OUT-OF-SAMPLE P(up) for row i (from a model trained on rows before it; the caller's
    walk-forward predictions). NaN = no prediction for that row.
  * ``y[i]`` is row i's realized direction label over the horizon: 1 if the price went up from times_ms[i] to
    the target time ``times_ms[i] + horizon_bars * interval_ms``, else 0 (NaN = not yet realized / unknown).

Hindcast (spec: "using data up to T-2d, generate prediction for T-1d, then compare to realized T-1d"): for a
window end T, the prediction row is the LAST row with times_ms <= T - ``lookback_ms`` (default 2 days): its
features use data up to T-2d only. Its target time is pred_time + horizon_bars * interval_ms (= T-1d exactly
for a 24-bar horizon on 1h bars with no gap; earlier for shorter horizons). It is scored only if that target
time is <= T, i.e. the outcome was realized by the window end; otherwise the entry is returned unscored.

Forward: at time T the newest row with times_ms <= T gives, per horizon, a pending prediction with its target
time; ``score_forward`` scores those whose labels have since been realized.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

DAY_MS = 86_400_000


def _times(times_ms: np.ndarray) -> np.ndarray:
    t = np.asarray(times_ms)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError("times_ms must be a 1-D array of epoch-ms integers")
    t = t.astype(np.int64)
    if len(t) > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("times_ms must be strictly increasing")
    return t


def _last_row_at_or_before(t: np.ndarray, cutoff_ms: int) -> int | None:
    i = int(np.searchsorted(t, cutoff_ms, side="right")) - 1
    return i if i >= 0 else None


def _score(p: float, y: float) -> dict:
    return {"hit": bool((p >= 0.5) == (y == 1)), "brier": float((p - y) ** 2)}


def hindcast(
    times_ms: np.ndarray,
    p: np.ndarray,
    y: np.ndarray,
    *,
    window_ends_ms: list[int],
    interval_ms: int,
    horizon_bars: int,
    lookback_ms: int = 2 * DAY_MS,
) -> list[dict]:
    """One entry per window end T (in the given order), see the module docstring.

    Entry keys: window_end_ms, cutoff_ms (T - lookback_ms), pred_time_ms, target_time_ms, horizon_bars,
    p, y, hit, brier, scored (bool), reason (None when scored, else why not: "no_row" / "no_prediction" /
    "not_realized" / "no_label").
    """
    t = _times(times_ms)
    p_arr = np.asarray(p, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if p_arr.shape != t.shape or y_arr.shape != t.shape:
        raise ValueError("times_ms, p and y must have the same length")
    if interval_ms <= 0 or horizon_bars < 1:
        raise ValueError("interval_ms must be > 0 and horizon_bars >= 1")
    out = []
    for T in window_ends_ms:
        T = int(T)
        cutoff = T - int(lookback_ms)
        entry = {
            "window_end_ms": T, "cutoff_ms": cutoff, "pred_time_ms": None, "target_time_ms": None,
            "horizon_bars": int(horizon_bars), "p": None, "y": None, "hit": None, "brier": None,
            "scored": False, "reason": None,
        }
        i = _last_row_at_or_before(t, cutoff)
        if i is None:
            entry["reason"] = "no_row"
            out.append(entry)
            continue
        target = int(t[i]) + int(horizon_bars) * int(interval_ms)
        entry.update(pred_time_ms=int(t[i]), target_time_ms=target)
        if not np.isfinite(p_arr[i]):
            entry["reason"] = "no_prediction"
        elif target > T:
            entry.update(p=float(p_arr[i]), reason="not_realized")
        elif not np.isfinite(y_arr[i]):
            entry.update(p=float(p_arr[i]), reason="no_label")
        else:
            if y_arr[i] not in (0.0, 1.0):
                raise ValueError(f"label {y_arr[i]!r} at row {i} is not 0/1")
            entry.update(p=float(p_arr[i]), y=int(y_arr[i]), scored=True, **_score(float(p_arr[i]), float(y_arr[i])))
        out.append(entry)
    return out


def forward(
    times_ms: np.ndarray,
    p: Mapping[int, np.ndarray] | np.ndarray,
    *,
    T_ms: int,
    horizons: Iterable[int],
    interval_ms: int,
) -> list[dict]:
    """Pending predictions as of T: from the last row with times_ms <= T, one per horizon that has a finite
    prediction there. ``p`` maps horizon_bars -> P(up) array aligned with times_ms (a single array is
    accepted only when exactly one horizon is given). Entry keys: as_of_ms, horizon_bars, pred_time_ms,
    target_time_ms, p.
    """
    t = _times(times_ms)
    hs = [int(h) for h in horizons]
    if isinstance(p, Mapping):
        p_by_h = {int(h): np.asarray(v, dtype=float) for h, v in p.items()}
    else:
        if len(hs) != 1:
            raise ValueError("a single prediction array needs exactly one horizon; pass {horizon: array}")
        p_by_h = {hs[0]: np.asarray(p, dtype=float)}
    i = _last_row_at_or_before(t, int(T_ms))
    out = []
    if i is None:
        return out
    for h in hs:
        if h not in p_by_h:
            raise ValueError(f"no predictions given for horizon {h}")
        arr = p_by_h[h]
        if arr.shape != t.shape:
            raise ValueError(f"predictions for horizon {h} do not align with times_ms")
        if not np.isfinite(arr[i]):
            continue
        out.append({
            "as_of_ms": int(T_ms), "horizon_bars": h, "pred_time_ms": int(t[i]),
            "target_time_ms": int(t[i]) + h * int(interval_ms), "p": float(arr[i]),
        })
    return out


def score_forward(
    pending: Iterable[Mapping],
    realized_labels_by_time: Mapping[int, Mapping[int, float]],
    *,
    as_of_ms: int | None = None,
) -> list[dict]:
    """Score the pending predictions whose labels are now known.

    realized_labels_by_time: {horizon_bars: {pred_time_ms: label 0/1}} (the label of the row made at
    pred_time_ms for that horizon; missing / NaN = not realized). With ``as_of_ms``, entries whose target time
    is after it are not scored even if a label is present (guards against labels computed from the future).
    Returns only scored entries: the pending keys plus y, hit, brier.
    """
    out = []
    for entry in pending:
        if as_of_ms is not None and entry["target_time_ms"] > as_of_ms:
            continue
        labels = realized_labels_by_time.get(int(entry["horizon_bars"]), {})
        y = labels.get(int(entry["pred_time_ms"]))
        if y is None or not np.isfinite(float(y)):
            continue
        y = float(y)
        if y not in (0.0, 1.0):
            raise ValueError(f"label {y!r} is not 0/1")
        out.append({**entry, "y": int(y), **_score(float(entry["p"]), y)})
    return out


def rolling_summary(results: Iterable) -> dict:
    """Summary over scored entries of hindcast / score_forward results (a flat list of entries, or a list of
    such lists, e.g. one per walk-forward window). Entries without a score (``scored`` False or no ``hit``)
    count only to n_entries. Keys: n_entries, count, hit_rate, mean_brier, mean_p, base_rate (None if count 0).
    """
    flat: list[Mapping] = []
    for item in results:
        if isinstance(item, Mapping):
            flat.append(item)
        else:
            flat.extend(item)
    scored = [e for e in flat if e.get("hit") is not None and e.get("scored", True)]
    n = len(scored)
    if n == 0:
        return {"n_entries": len(flat), "count": 0, "hit_rate": None, "mean_brier": None, "mean_p": None,
                "base_rate": None}
    return {
        "n_entries": len(flat),
        "count": n,
        "hit_rate": float(sum(bool(e["hit"]) for e in scored) / n),
        "mean_brier": float(sum(float(e["brier"]) for e in scored) / n),
        "mean_p": float(sum(float(e["p"]) for e in scored) / n),
        "base_rate": float(sum(int(e["y"]) for e in scored) / n),
    }
