"""Continuous sync: append only newly closed candles. Re-running adds nothing and, when nothing has
closed since the last run, makes no request at all (the stored last open time comes from the log).
Reconciliation: when new candles have closed, the request starts `lookback` candles earlier, so a
late revision of a recent candle is detected and versioned (identical candles add nothing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from coinline.ingest.backfill import SeriesOutcome, backfill, next_close
from coinline.lake.store import Lake
from coinline.providers.base import CandleSource


def sync(source: CandleSource, lake: Lake, pairs: Iterable[tuple[str, str, str]], *, now: datetime,
         progress: bool = True, lookback: int = 0, lease_wait_s: float = 0.0,
         sleep: Callable[[float], None] = time.sleep) -> list[SeriesOutcome]:
    return backfill(source, lake, pairs, now=now, progress=progress, tail_only=True, lookback=lookback,
                    lease_wait_s=lease_wait_s, sleep=sleep)


def follow(source: CandleSource, lake: Lake, pairs: list[tuple[str, str, str]], *,
           clock: Callable[[], datetime] = lambda: datetime.now(UTC), sleep: Callable[[float], None] = time.sleep,
           grace_s: float = 5.0, max_cycles: int | None = None, lookback: int = 0,
           on_cycle: Callable[[list[SeriesOutcome]], None] | None = None) -> None:
    """Poll on the interval cadence: sync, then sleep until the next candle closes (plus a grace)."""
    intervals = sorted({p[2] for p in pairs})
    cycles = 0
    while max_cycles is None or cycles < max_cycles:
        outcomes = sync(source, lake, pairs, now=clock(), progress=False, lookback=lookback)
        if on_cycle:
            on_cycle(outcomes)
        cycles += 1
        if max_cycles is not None and cycles >= max_cycles:
            return
        now = clock()
        wake = min(next_close(now, i) for i in intervals)
        sleep(max(0.0, (wake - now).total_seconds()) + grace_s)
