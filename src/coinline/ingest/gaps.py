"""Gap detection against the interval grid, explicit retry, and known-gap records.

Nothing is ever forward-filled: a gap is either filled by the provider on retry (new candles committed
like any other page) or recorded in `known_gaps` with the provider's answer, so the quality gate can
tell an explained hole from an unexplained one. Gaps the completeness check recorded as unexplained
(`coinline.ingest.completeness`: candles the provider vouches for and did not deliver, e.g. after an
empty page) are listed here too, with their reason, including those outside the stored range; a retry
that fills one closes its record, one that cannot leaves it unexplained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa

from coinline.datasets.canonical import series_candles
from coinline.errors import CoinlineError, IncompletePageError
from coinline.ingest import completeness
from coinline.ingest.backfill import SeriesOutcome, check_complete, ingest_range
from coinline.ingest.grid import find_gaps
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import CandleSource, SeriesKey
from coinline.timeframes import floor_to_interval, from_ms, interval_ms, to_utc


@dataclass(frozen=True)
class Gap:
    series: str
    gap_start: str
    gap_end: str
    missing_candles: int
    status: str        # unexplained | known | filled
    answer: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def known_gaps(lake: Lake, key: SeriesKey | None = None) -> pa.Table:
    """Open known-gap records (the latest record per gap wins)."""
    where = None if key is None else {c: getattr(key, c) for c in tables.SERIES_COLUMNS}
    recs = tables.read(lake, tables.GAPS, where=where, time_column="gap_start")
    if recs.num_rows == 0:
        return recs
    recs = recs.sort_by([(c, "ascending") for c in (*tables.SERIES_COLUMNS, "gap_start", "detected_at")])
    rows = {}
    for r in recs.to_pylist():
        rows[tuple(r[c] for c in (*tables.SERIES_COLUMNS, "gap_start"))] = r
    return pa.Table.from_pylist([r for r in rows.values() if r["status"] == "open"], schema=tables.GAPS_SCHEMA)


def detect(lake: Lake, key: SeriesKey) -> list[Gap]:
    """Missing candles on the grid between the first and last stored one (known when a record explains
    them), then every recorded unexplained gap not already among them (status `unexplained`, its reason
    as the answer), sorted by start."""
    grid = _grid_gaps(lake, key)
    recorded = {(to_utc(r["gap_start"]), to_utc(r["gap_end"])): r for r in completeness.unexplained_records(lake, key)}
    out = []
    for g in grid:
        record = recorded.pop((datetime.fromisoformat(g.gap_start), datetime.fromisoformat(g.gap_end)), None)
        out.append(g if record is None or g.status != "unexplained" else
                   Gap(g.series, g.gap_start, g.gap_end, g.missing_candles, g.status, record["answer"]))
    for (start, end), r in recorded.items():
        out.append(Gap(key.label(), start.isoformat(), end.isoformat(), r["missing_candles"], "unexplained",
                       r["answer"]))
    return sorted(out, key=lambda g: datetime.fromisoformat(g.gap_start))


def series_to_check(lake: Lake) -> list[SeriesKey]:
    """Every stored series and every series with a recorded unexplained gap (which may hold no candle)."""
    stored = [k for k, *_ in tables.series_in(lake)]
    return sorted({*stored, *completeness.series_with_unexplained(lake)})


def _grid_gaps(lake: Lake, key: SeriesKey) -> list[Gap]:
    candles = series_candles(lake, key)
    times = candles["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
    known = {(r["gap_start"], r["gap_end"]): r["answer"] for r in known_gaps(lake, key).to_pylist()}
    out = []
    for start, end, missing in find_gaps(times, interval_ms(key.interval)):
        s, e = from_ms(start), from_ms(end)
        answer = known.get((s, e))
        out.append(Gap(key.label(), s.isoformat(), e.isoformat(), missing,
                       "known" if answer is not None else "unexplained", answer or ""))
    return out


def retry(source: CandleSource, lake: Lake, key: SeriesKey, *, now: datetime) -> list[Gap]:
    """Re-request every unexplained gap once; record what is still missing with the provider's answer."""
    ref = source.resolve(key.symbol, key.quote, key.interval)
    results = []
    new_records = []
    for gap in detect(lake, key):
        if gap.status != "unexplained":
            results.append(gap)
            continue
        start, end = datetime.fromisoformat(gap.gap_start), datetime.fromisoformat(gap.gap_end)
        outcome = SeriesOutcome(key.label(), key.symbol, key.quote, key.interval, "ok")
        missing: list[completeness.Missing] = []
        walked: list[tuple[datetime, datetime]] = []
        try:
            ingest_range(source, lake, ref, start, end, outcome, now=now, walked=walked)
            answer = f"retried with {outcome.pages} request(s); provider returned {outcome.inserted} new candle(s)"
        except IncompletePageError as exc:
            missing.append(completeness.from_error(exc, start=walked[-1][1], end=end))
            answer = f"retry failed: {exc}"
        except CoinlineError as exc:
            answer = f"retry failed: {exc}"
        if gap.answer and gap.status == "unexplained":
            # a recorded unexplained gap: it stays unexplained until a walk through it finds it complete
            left = check_complete(source, lake, ref, missing, walked, outcome, now=now,
                                  end=floor_to_interval(now, key.interval), action="gaps --retry")
            overlapping = [m for m in left if m.start < end and start < m.end]
            results.append(Gap(gap.series, gap.gap_start, gap.gap_end, gap.missing_candles,
                               "unexplained" if overlapping else "filled", answer))
            continue
        still = [g for g in _grid_gaps(lake, key) if start <= datetime.fromisoformat(g.gap_start) < end]
        if not still:
            results.append(Gap(gap.series, gap.gap_start, gap.gap_end, gap.missing_candles, "filled", answer))
        for g in still:
            results.append(Gap(g.series, g.gap_start, g.gap_end, g.missing_candles, "known", answer))
            new_records.append({**{c: getattr(key, c) for c in tables.SERIES_COLUMNS},
                                "gap_start": datetime.fromisoformat(g.gap_start),
                                "gap_end": datetime.fromisoformat(g.gap_end),
                                "missing_candles": g.missing_candles, "status": "open", "answer": answer,
                                "detected_at": now.astimezone(UTC)})
    if new_records:
        tables.append(lake, tables.GAPS, pa.Table.from_pylist(new_records, schema=tables.GAPS_SCHEMA),
                      {"kind": "known_gaps", "series": key.label(), "count": len(new_records)})
    return results


def record_as_known(lake: Lake, key: SeriesKey, *, answer: str, now: datetime) -> list[Gap]:
    """Record every unexplained gap of a series that has no provider to ask (e.g. imported files) as a
    known gap with `answer`; nothing is filled."""
    found = [g for g in detect(lake, key) if g.status == "unexplained"]
    if found:
        records = [{**{c: getattr(key, c) for c in tables.SERIES_COLUMNS},
                    "gap_start": datetime.fromisoformat(g.gap_start), "gap_end": datetime.fromisoformat(g.gap_end),
                    "missing_candles": g.missing_candles, "status": "open", "answer": answer,
                    "detected_at": now.astimezone(UTC)} for g in found]
        tables.append(lake, tables.GAPS, pa.Table.from_pylist(records, schema=tables.GAPS_SCHEMA),
                      {"kind": "known_gaps", "series": key.label(), "count": len(records)})
    return [Gap(g.series, g.gap_start, g.gap_end, g.missing_candles, "known", answer) for g in found]
