"""Completeness is checked, not assumed: after every walk of a series (backfill, sync, a gap retry), what
the lake holds is compared with what the provider says exists, and every shortfall is recorded in
`known_gaps` as an *unexplained* gap that blocks materialization until a later fetch fills it.

What "the provider says exists" is each adapter's `listed_candles(ref)` (optional; see its docstring:
CoinAPI's symbol listing, Kraken's `last` cursor): ranges [lo, hi) each vouched to hold a candle. A
walk that stopped on an `IncompletePageError` (a page contradicting the provider, still wrong after the
gateway's retries) adds the range that page left out.

`known_gaps` records, latest per (series, gap_start) wins:

- `open`: a known gap: re-requested, and the provider answered without the candles (explained);
- `unexplained`: the provider vouches for candles there but did not deliver them (blocks materialization);
- `closed`: a former unexplained gap that a later walk through its range filled (kept, never deleted).

Every new and every closed record is one versioned Delta commit and a log line: no silent repair.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from coinline.errors import IncompletePageError
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import SeriesKey, SeriesRef
from coinline.timeframes import interval_seconds, to_utc

log = logging.getLogger(__name__)

UNEXPLAINED = "unexplained"
CLOSED = "closed"


@dataclass(frozen=True)
class Missing:
    """Candles the provider vouches for that the lake lacks: [start, end) on the grid, and why."""

    start: datetime
    end: datetime
    reason: str


def latest_records(lake: Lake, key: SeriesKey | None = None) -> list[dict]:
    """The latest `known_gaps` record per (series, gap_start), oldest gap first."""
    where = None if key is None else {c: getattr(key, c) for c in tables.SERIES_COLUMNS}
    recs = tables.read(lake, tables.GAPS, where=where, time_column="gap_start")
    if recs.num_rows == 0:
        return []
    recs = recs.sort_by([(c, "ascending") for c in (*tables.SERIES_COLUMNS, "gap_start", "detected_at")])
    latest: dict[tuple, dict] = {}
    for r in recs.to_pylist():
        latest[tuple(r[c] for c in (*tables.SERIES_COLUMNS, "gap_start"))] = r
    return list(latest.values())


def unexplained_records(lake: Lake, key: SeriesKey | None = None) -> list[dict]:
    """Open unexplained gaps (of one series, or all): candles vouched for and not delivered."""
    return [r for r in latest_records(lake, key) if r["status"] == UNEXPLAINED]


def record_key(record: dict) -> SeriesKey:
    return SeriesKey(*(record[c] for c in tables.SERIES_COLUMNS))


def series_with_unexplained(lake: Lake) -> list[SeriesKey]:
    """Every series with an open unexplained gap, stored candles or not (an empty first page leaves a
    series with no candles at all: it must still be listed)."""
    return sorted({record_key(r) for r in unexplained_records(lake)})


def from_error(exc: IncompletePageError, *, start: datetime, end: datetime) -> Missing:
    """The range an incomplete page left out: what the provider said it vouches for, else [start, end)."""
    lo = to_utc(exc.missing_from) if exc.missing_from is not None else start
    hi = to_utc(exc.missing_until) if exc.missing_until is not None else end
    return Missing(lo, max(hi, lo), str(exc))


def unmet_claims(lake: Lake, ref: SeriesRef, claims: Iterable[tuple[datetime, datetime]], *,
                 end: datetime, provider: str, bounds: tuple[datetime, datetime] | None = None,
                 raw_index: Callable[[], pa.Table] | None = None) -> list[Missing]:
    """Each claimed range [lo, hi) closed by `end` that holds no stored candle, widened to its stored
    neighbours: from just after the last stored candle before it (or lo) to the first stored at or after
    hi (or `end`). `bounds` (first, last stored open time), when known, settle the usual claims (the
    first and the last candle) without a read; other reads are pruned by the Delta log's statistics.
    `raw_index`: gives raw_candles' file index (`tables.file_index`) as of now, for callers that check
    several series after one commit (one table open for all of them); read once for this series when None."""
    key = ref.key
    index = raw_index or functools.cache(lambda: tables.file_index(lake, tables.RAW))
    step = timedelta(seconds=interval_seconds(key.interval))
    known = [to_utc(t) for t in bounds] if bounds else []
    out = []
    for lo, hi in sorted((to_utc(lo), to_utc(hi)) for lo, hi in claims):
        if hi > end or any(lo <= t < hi for t in known) or _stored(lake, key, lo, hi, pc.min, index()) is not None:
            continue
        before, after = _stored(lake, key, None, lo, pc.max, index()), _stored(lake, key, hi, None, pc.min, index())
        out.append(Missing(before + step if before is not None else lo, after if after is not None else end,
                           f"{provider} says a candle exists in [{lo.isoformat()}, {hi.isoformat()}) "
                           f"and the lake has none there"))
    return out


def _stored(lake: Lake, key: SeriesKey, start: datetime | None, end: datetime | None, pick,
            index: pa.Table) -> datetime | None:
    """The first (`pick=pc.min`) or last (`pc.max`) stored open time in [start, end), None when none."""
    times = tables.read(lake, tables.RAW, series=key, start=start, end=end, columns=["open_time"],
                        index=index)["open_time"]
    value = pick(times).as_py() if len(times) else None
    return to_utc(value) if value is not None else None


def merge(missing: Iterable[Missing]) -> list[Missing]:
    """Overlapping or touching ranges as one, keeping the reason given first (callers list what failed
    pages said before what the listing check found)."""
    out: list[tuple[int, Missing]] = []
    for order, m in sorted(enumerate(missing), key=lambda pair: pair[1].start):
        if m.end <= m.start:
            continue
        if out and m.start <= out[-1][1].end:
            first, last = out[-1]
            keep = last if first <= order else m
            out[-1] = (min(first, order), Missing(last.start, max(last.end, m.end), keep.reason))
        else:
            out.append((order, m))
    return [m for _, m in out]


def covered(start: datetime, end: datetime, walked: Iterable[tuple[datetime, datetime]]) -> bool:
    """Whether [start, end) lies inside the union of the walked ranges."""
    cursor = start
    for lo, hi in sorted(walked):
        if lo > cursor:
            break
        cursor = max(cursor, hi)
        if cursor >= end:
            return True
    return cursor >= end


def reconcile(lake: Lake, key: SeriesKey, missing: Iterable[Missing], *,
              walked: Iterable[tuple[datetime, datetime]], now: datetime, action: str,
              records: list[dict] | None = None) -> list[Missing]:
    """Bring the series' unexplained-gap records in line with this walk and return what is missing.

    A missing range not yet recorded is recorded (`unexplained`); an open record this walk went through
    (`walked`) and no longer finds missing is `closed`, naming the walk; records elsewhere stay open.
    One commit for all changes; each is logged. `records`: the series' latest records (`latest_records`)
    when the caller has read them already (one read per run instead of one per series).

    A new record is stamped `now`, or just after the gap's previous record when that one is as late
    (a pinned clock): the latest record per gap must be the one written last."""
    current = merge(missing)
    walked = list(walked)
    records = latest_records(lake, key) if records is None else records
    open_recs = [r for r in records if r["status"] == UNEXPLAINED]
    previous = {to_utc(r["gap_start"]): to_utc(r["detected_at"]) for r in records}

    def stamp(start: datetime) -> datetime:
        before = previous.get(start)
        return now if before is None or before < now else before + timedelta(microseconds=1)

    known = {(to_utc(r["gap_start"]), to_utc(r["gap_end"])) for r in open_recs}
    step = timedelta(seconds=interval_seconds(key.interval))
    rows = []
    for m in current:
        if (m.start, m.end) not in known:
            rows.append(_row(key, m.start, m.end, step, UNEXPLAINED, m.reason, stamp(m.start)))
            log.warning("%s: unexplained gap [%s, %s) recorded: %s", key.label(), m.start.isoformat(),
                        m.end.isoformat(), m.reason)
    starts = {m.start for m in current}
    for r in open_recs:
        lo, hi = to_utc(r["gap_start"]), to_utc(r["gap_end"])
        if (lo, hi) in {(m.start, m.end) for m in current} or lo in starts:
            continue  # still missing as recorded, or superseded by a new record with the same start
        if any(m.start < hi and lo < m.end for m in current):
            answer = f"partly filled by {action} at {now.isoformat()}; the rest is recorded as a new gap"
        elif covered(lo, hi, walked):
            answer = f"filled by {action} at {now.isoformat()}"
        else:
            continue  # this walk did not look there
        rows.append(_row(key, lo, hi, step, CLOSED, answer, stamp(lo)))
        log.info("%s: unexplained gap [%s, %s) closed: %s", key.label(), lo.isoformat(), hi.isoformat(), answer)
    if rows:
        tables.append(lake, tables.GAPS, pa.Table.from_pylist(rows, schema=tables.GAPS_SCHEMA),
                      {"kind": "unexplained_gaps", "series": key.label(), "action": action,
                       "recorded": sum(r["status"] == UNEXPLAINED for r in rows),
                       "closed": sum(r["status"] == CLOSED for r in rows)})
    return current


def missing_candles(start: datetime, end: datetime, step: timedelta) -> int:
    """Grid points in [start, end): an upper bound where the provider omits periods without trades."""
    return max(0, -(-(end - start) // step))


def describe(missing: list[Missing], interval: str) -> str:
    """One line naming every missing range, for a series outcome."""
    step = timedelta(seconds=interval_seconds(interval))
    parts = [f"[{m.start.isoformat()}, {m.end.isoformat()}) up to {missing_candles(m.start, m.end, step)} candle(s)"
             for m in missing]
    return f"unexplained gap(s) recorded: {'; '.join(parts)}: {missing[0].reason}"


def _row(key: SeriesKey, start: datetime, end: datetime, step: timedelta, status: str, answer: str,
         now: datetime) -> dict:
    return {**{c: getattr(key, c) for c in tables.SERIES_COLUMNS}, "gap_start": start, "gap_end": end,
            "missing_candles": missing_candles(start, end, step), "status": status, "answer": answer,
            "detected_at": now.astimezone(UTC)}
