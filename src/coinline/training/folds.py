"""Leakage-safe walk-forward folds over one coin's rows (purged and embargoed, in rows AND in time).

The test blocks are the LAST `n_folds * test_bars` rows, split into consecutive blocks (oldest first).
For the fold of test block [s, s + test_bars):
  * the training window ends `embargo_bars` rows before s: a row i's label looks h <= max_horizon <= embargo
    rows ahead, so no training label reaches a test row. With gaps in the rows the window also ends early
    enough IN TIME: the last training row i satisfies times[s] - times[i] > embargo_bars * interval.
  * the calibration slice is the tail `calib_fraction` of that window; the fitted part ends another embargo
    gap (rows and time, same rule) before the calibration slice, so fitted labels never reach it.
  * expanding: the window starts at row 0; rolling: it holds the last `rolling_train_bars` rows
    (default `min_train_bars`).
A fold whose training window (fitted part + gap + calibration slice) has fewer than `min_train_bars` rows is
dropped; when no fold remains a ValueError says how many rows there are and how many are needed.
Indices are positions in `times` (a coin's frame rows); consumers intersect them with the rows whose targets
are valid for the horizon they train (`features.valid_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coinline.errors import CoinlineError
from coinline.timeframes import from_ms


class FoldError(CoinlineError, ValueError):
    """The walk-forward configuration does not fit the data (too few rows, inconsistent sizes): an input
    problem of the training request, named with the numbers that disagree (CLI exit 2)."""


@dataclass(frozen=True, eq=False)
class Fold:
    index: int                   # position in the returned list
    train_idx: np.ndarray        # int64 row indices, the fitted part
    calib_idx: np.ndarray        # int64 row indices, calibration / early stopping (may be empty)
    test_idx: np.ndarray         # int64 row indices of the test block
    train_start: int             # ms, open_time of the first / last fitted row (inclusive)
    train_end: int
    calib_start: int | None      # None when calib_idx is empty
    calib_end: int | None
    test_start: int
    test_end: int
    embargo_bars: int
    block: int = 0               # which of the n_folds test blocks (0 = oldest); blocks of dropped folds are absent

    def to_dict(self) -> dict:
        def part(idx: np.ndarray) -> dict:
            if not len(idx):
                return {"rows": 0, "start": None, "end": None, "first_row": None, "last_row": None}
            return {"rows": int(len(idx)), "first_row": int(idx[0]), "last_row": int(idx[-1])}

        out = {"index": self.index, "block": self.block, "embargo_bars": self.embargo_bars,
               "train": part(self.train_idx), "calib": part(self.calib_idx), "test": part(self.test_idx)}
        for name, lo, hi in (("train", self.train_start, self.train_end), ("calib", self.calib_start, self.calib_end),
                             ("test", self.test_start, self.test_end)):
            out[name]["start"] = _iso(lo)
            out[name]["end"] = _iso(hi)
        return out


def _iso(value: int | None) -> str | None:
    return None if value is None else from_ms(int(value)).isoformat().replace("+00:00", "Z")


def folds_to_dict(folds: list[Fold]) -> dict:
    """Fold boundaries for persisting with a run (ISO-8601 UTC times, row counts and first/last rows)."""
    return {"n_folds": len(folds), "folds": [f.to_dict() for f in folds]}


def _purged_end(times: np.ndarray, start: int, embargo: int, step: int) -> int:
    """Exclusive end of the rows allowed before row `start`: at least `embargo` rows earlier and, in time,
    times[start] - times[last] > embargo * step."""
    by_time = int(np.searchsorted(times, times[start] - embargo * step, side="left"))
    return max(0, min(start - embargo, by_time))


def walk_forward(times: np.ndarray, *, n_folds: int, test_bars: int, min_train_bars: int, embargo_bars: int,
                 calib_fraction: float, max_horizon: int, mode: str = "expanding",
                 rolling_train_bars: int | None = None, interval_ms: int | None = None) -> list[Fold]:
    """Purged, embargoed walk-forward folds over rows with open times `times` (int ms, strictly increasing).

    `interval_ms` is the candle interval for the time-based purge (default: the smallest time step).
    """
    t = np.asarray(times, dtype="int64")
    n = len(t)
    if n_folds < 1 or test_bars < 1:
        raise FoldError(f"n_folds={n_folds} and test_bars={test_bars} must both be >= 1")
    if max_horizon < 1:
        raise FoldError(f"max_horizon={max_horizon} must be >= 1")
    if embargo_bars < max_horizon:
        raise FoldError(f"embargo_bars={embargo_bars} < max_horizon={max_horizon}: training labels would reach "
                         f"into the test block; set the embargo to at least the longest horizon")
    if not 0.0 <= calib_fraction < 1.0:
        raise FoldError(f"calib_fraction={calib_fraction} must be in [0, 1)")
    if mode not in ("expanding", "rolling"):
        raise FoldError(f"mode={mode!r}: expected 'expanding' or 'rolling'")
    window = None
    if mode == "rolling":
        window = int(rolling_train_bars if rolling_train_bars is not None else min_train_bars)
        if window < min_train_bars:
            raise FoldError(f"rolling_train_bars={window} < min_train_bars={min_train_bars}: every fold would be dropped")
    if n > 1 and not (np.diff(t) > 0).all():
        raise FoldError("walk_forward: times must be strictly increasing (one coin's rows in time order)")
    test_rows = n_folds * test_bars
    need_one, need_all = min_train_bars + embargo_bars + test_bars, min_train_bars + embargo_bars + test_rows
    if n <= test_rows:
        raise FoldError(f"walk_forward: {n} rows, but {n_folds} test folds x {test_bars} bars = {test_rows} rows "
                         f"leave nothing to train on; need at least {need_one} rows for one fold "
                         f"({need_all} for all {n_folds})")
    step = int(interval_ms) if interval_ms else (int(np.diff(t).min()) if n > 1 else 1)

    folds: list[Fold] = []
    largest = 0
    for block in range(n_folds):
        s = n - (n_folds - block) * test_bars
        hi = _purged_end(t, s, embargo_bars, step)
        lo = 0 if window is None else max(0, hi - window)
        size = hi - lo
        largest = max(largest, size)
        if size < min_train_bars or size <= 0:
            continue
        n_cal = int(round(calib_fraction * size))
        if calib_fraction > 0:
            n_cal = max(1, n_cal)
        if n_cal:
            fit_hi = max(lo, _purged_end(t, hi - n_cal, embargo_bars, step))
            calib = np.arange(hi - n_cal, hi, dtype="int64")
        else:
            fit_hi, calib = hi, np.empty(0, dtype="int64")
        if fit_hi - lo < 1:
            continue
        train = np.arange(lo, fit_hi, dtype="int64")
        test = np.arange(s, s + test_bars, dtype="int64")
        folds.append(Fold(
            index=len(folds), train_idx=train, calib_idx=calib, test_idx=test,
            train_start=int(t[train[0]]), train_end=int(t[train[-1]]),
            calib_start=int(t[calib[0]]) if len(calib) else None, calib_end=int(t[calib[-1]]) if len(calib) else None,
            test_start=int(t[test[0]]), test_end=int(t[test[-1]]), embargo_bars=int(embargo_bars), block=block))
    if not folds:
        raise FoldError(
            f"walk_forward: no fold has enough training data: {n} rows; the last {test_rows} rows are "
            f"{n_folds} test folds x {test_bars} bars and training ends {embargo_bars} rows (embargo) before each "
            f"test fold, so the largest training window has {largest} rows < min_train_bars={min_train_bars}; "
            f"need at least {need_one} rows for one fold ({need_all} for all {n_folds})")
    return folds


def folds_for(times: np.ndarray, cfg, *, interval_ms: int | None = None) -> list[Fold]:
    """`walk_forward` with a TrainConfig's fold settings (embargo defaults to the longest horizon)."""
    fc = cfg.folds
    max_h = max(int(h) for h in cfg.horizons)
    embargo = fc.embargo_bars if fc.embargo_bars is not None else max_h
    return walk_forward(times, n_folds=fc.n_folds, test_bars=fc.test_bars, min_train_bars=fc.min_train_bars,
                        embargo_bars=embargo, calib_fraction=fc.calib_fraction, max_horizon=max_h, mode=fc.mode,
                        interval_ms=interval_ms)
