"""Pure functions on the interval grid: missing candles and the ranges a run still has to fetch."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from coinline.timeframes import floor_to_interval, interval_seconds


def find_gaps(open_times_ms: np.ndarray, step_ms: int) -> list[tuple[int, int, int]]:
    """Missing grid points between the first and last open time: [(gap_start, gap_end_exclusive, missing)]."""
    t = np.unique(np.asarray(open_times_ms, dtype=np.int64))
    if len(t) < 2:
        return []
    d = np.diff(t)
    idx = np.flatnonzero(d > step_ms)
    return [(int(t[i] + step_ms), int(t[i + 1]), int(d[i] // step_ms - 1)) for i in idx]


def ranges_to_fetch(stored_first: datetime | None, stored_last: datetime | None, earliest: datetime | None,
                    end: datetime, interval: str, *, lookback: int = 0) -> list[tuple[datetime, datetime]]:
    """What a backfill still lacks: the head before what is stored and the tail after it. With
    `lookback`, the tail starts that many stored candles earlier so late revisions are re-read
    (reconciliation; identical candles add nothing). Holes in between are `coinline gaps`' job."""
    step = timedelta(seconds=interval_seconds(interval))
    start = floor_to_interval(earliest, interval) if earliest else None
    if stored_last is None:
        return [(start, end)] if start is not None and start < end else []
    out = []
    if start is not None and start < stored_first:
        out.append((start, stored_first))
    tail = max(stored_last + step - lookback * step, stored_first)
    if stored_last + step < end:
        out.append((tail, end))
    return out
