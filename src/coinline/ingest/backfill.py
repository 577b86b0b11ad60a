"""Walk each (coin, quote, interval) through a provider, page by page, into the lake.

Resumable without bookkeeping: what is stored is read from the Delta log (first/last open time per
series), so a rerun fetches only the head before and the tail after it and requests no page twice.
Each series runs under its lease. Outcomes are explicit per series: ok, not-listed, no-data, error,
lease-held, incomplete; nothing is skipped silently.

Completeness is checked, not assumed (`coinline.ingest.completeness`): after the walk, the stored candles
are compared with what the provider says exists, and a page that contradicted it (empty or short, still
so after the gateway's retries) ends the walk of that range. Either way the missing range is recorded as
an unexplained gap, the outcome is `incomplete` (exit 1) and materialization is blocked; a later walk
that fills the range closes the record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import pyarrow.compute as pc
from tqdm import tqdm

from coinline.errors import CoinlineError, IncompletePageError, LeaseHeldError, NotListedError, ProviderError
from coinline.ingest import completeness
from coinline.ingest.grid import ranges_to_fetch
from coinline.ingest.writer import commit_candles
from coinline.lake import tables
from coinline.lake.lease import series_lease
from coinline.lake.store import Lake
from coinline.providers.base import CandleSource, SeriesKey, SeriesRef
from coinline.timeframes import floor_to_interval, interval_seconds

log = logging.getLogger("coinline")


@dataclass
class SeriesOutcome:
    series: str
    symbol: str
    quote: str
    interval: str
    status: str                 # ok | not-listed | no-data | error | lease-held | incomplete | needs-backfill
    pages: int = 0
    inserted: int = 0
    revised: int = 0
    duplicates: int = 0
    message: str = ""
    batches: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batches"] = len(self.batches)
        return d


def stored_bounds(lake: Lake) -> dict[SeriesKey, tuple[datetime | None, datetime | None]]:
    return {k: (first, last) for k, _rows, first, last in tables.series_in(lake)}


def ingest_range(source: CandleSource, lake: Lake, ref: SeriesRef, start: datetime, end: datetime,
                 outcome: SeriesOutcome, *, now: datetime, on_page: Callable[[int], None] | None = None,
                 walked: list[tuple[datetime, datetime]] | None = None,
                 seen: list[datetime] | None = None) -> None:
    """Fetch [start, end) page by page and commit each page; the cursor must always advance. `walked`
    collects the part of [start, end) the provider answered for: all of it once a page says the range is
    done, else up to the page that failed; `seen` the first and last open time of every non-empty page."""
    cursor = start
    try:
        while cursor < end:
            page = source.fetch(ref, cursor, end)
            outcome.pages += 1
            result = commit_candles(lake, page.candles, key=ref.key, request=page.request, now=now)
            outcome.inserted += result.inserted
            outcome.revised += result.revised
            outcome.duplicates += result.duplicates
            if result.table_version is not None:
                outcome.batches.append(result.batch_id)
            if on_page:
                on_page(page.candles.num_rows)
            if seen is not None and page.candles.num_rows:
                span = pc.min_max(page.candles["open_time"])
                seen += [span["min"].as_py(), span["max"].as_py()]
            if page.done or page.next_cursor is None:
                cursor = end
                return
            if page.next_cursor <= cursor:
                raise ProviderError(f"cursor did not advance past {cursor.isoformat()}", provider=source.name,
                                    series=ref.key.label(), request=str(dict(page.request)))
            cursor = page.next_cursor
    finally:
        if walked is not None:
            walked.append((start, min(cursor, end)))


def backfill_series(source: CandleSource, lake: Lake, symbol: str, quote: str, interval: str, *, now: datetime,
                    bounds: dict[SeriesKey, tuple[datetime | None, datetime | None]], tail_only: bool = False,
                    lookback: int = 0, on_page: Callable[[int], None] | None = None,
                    gap_records: dict[SeriesKey, list[dict]] | None = None) -> SeriesOutcome:
    """Fetch what the lake lacks of one series. `tail_only` (sync): only newly closed candles, and no
    history discovery unless the series is empty and the provider only has recent candles anyway.
    Then check completeness (`check_complete`): a shortfall makes the outcome `incomplete`. `gap_records`:
    the latest `known_gaps` records per series when the caller has read them already."""
    label = f"{source.name}:{symbol}-{quote}:{interval}"
    outcome = SeriesOutcome(label, symbol, quote, interval, "ok")
    try:
        ref = source.resolve(symbol, quote, interval)
    except NotListedError as exc:
        outcome.status, outcome.message = "not-listed", str(exc)
        return outcome
    except CoinlineError as exc:
        outcome.status, outcome.message = "error", str(exc)
        return outcome
    outcome.series = ref.key.label()
    end = floor_to_interval(now, interval)  # the candle open at `now` is not closed yet
    missing: list[completeness.Missing] = []
    walked: list[tuple[datetime, datetime]] = []
    seen: list[datetime] = []
    try:
        with series_lease(lake, ref.key) as lease:
            def progressed(rows: int) -> None:
                lease.renew()
                if on_page:
                    on_page(rows)

            first, last = bounds.get(ref.key, (None, None))
            discover = first is None if tail_only else (first is None or source.capabilities.history == "full")
            if tail_only and first is None and source.capabilities.history == "full":
                outcome.status, outcome.message = "needs-backfill", "no stored history; run `coinline backfill` first"
                return outcome
            try:
                earliest = source.earliest(ref) if discover else None
            except IncompletePageError as exc:
                missing.append(completeness.from_error(exc, start=last or end, end=end))
                earliest = None
            if earliest is None and first is None and not missing:
                outcome.status, outcome.message = "no-data", "provider reports no history for this series"
                return outcome
            for start, stop in ranges_to_fetch(first, last, earliest, end, interval, lookback=lookback):
                try:
                    ingest_range(source, lake, ref, start, stop, outcome, now=now, on_page=progressed,
                                 walked=walked, seen=seen)
                except IncompletePageError as exc:
                    missing.append(completeness.from_error(exc, start=walked[-1][1], end=stop))
            stored = [t for t in (first, last, *seen) if t is not None]
            check_complete(source, lake, ref, missing, walked, outcome, now=now, end=end,
                           action="sync" if tail_only else "backfill",
                           records=None if gap_records is None else gap_records.get(ref.key, []),
                           bounds=(min(stored), max(stored)) if stored else None)
    except LeaseHeldError as exc:
        outcome.status, outcome.message = "lease-held", str(exc)
    except CoinlineError as exc:
        outcome.status, outcome.message = "error", str(exc)
    return outcome


def check_complete(source: CandleSource, lake: Lake, ref: SeriesRef, missing: list[completeness.Missing],
                   walked: list[tuple[datetime, datetime]], outcome: SeriesOutcome, *, now: datetime,
                   end: datetime, action: str, records: list[dict] | None = None,
                   bounds: tuple[datetime, datetime] | None = None) -> list[completeness.Missing]:
    """Compare the stored series with what the provider says exists (its optional `listed_candles`),
    add what incomplete pages left out (`missing`), record/close unexplained gaps, and mark the outcome
    `incomplete` with every missing range named when anything is missing. `bounds`: the first and last
    stored open time when the caller knows them (a claim holding one needs no read)."""
    listed = getattr(source, "listed_candles", None)
    claims = listed(ref) if listed is not None else []
    unmet = completeness.unmet_claims(lake, ref, claims, end=end, provider=source.name, bounds=bounds)
    found = completeness.reconcile(lake, ref.key, [*missing, *unmet], walked=walked, now=now, action=action,
                                   records=records)
    if found:
        outcome.status = "incomplete"
        outcome.message = completeness.describe(found, ref.key.interval)
    return found


LEASE_POLL_S = 5.0


def backfill(source: CandleSource, lake: Lake, pairs: Iterable[tuple[str, str, str]], *, now: datetime,
             progress: bool = True, tail_only: bool = False, lookback: int = 0, lease_wait_s: float = 0.0,
             sleep: Callable[[float], None] = time.sleep) -> list[SeriesOutcome]:
    """Backfill (or with `tail_only`, sync) every (symbol, quote, interval); one failing series never
    stops the others. A series whose lease another ingester holds is skipped on the first pass and tried
    again every LEASE_POLL_S seconds for up to `lease_wait_s` (the other ingester usually finishes it, so
    the retry is a cheap no-op), so one job run ends with every series done instead of asking for a rerun;
    what is still held after the wait stays `lease-held` (exit 3)."""
    tables.ensure_tables(lake)
    bounds = stored_bounds(lake)
    gap_records: dict[SeriesKey, list[dict]] = {}
    for record in completeness.latest_records(lake):
        gap_records.setdefault(completeness.record_key(record), []).append(record)
    pairs = list(pairs)
    outcomes = []
    with tqdm(total=len(pairs), desc=f"{'sync' if tail_only else 'backfill'} {source.name}", unit="series", disable=not progress) as bar:
        for symbol, quote, interval in pairs:
            bar.set_postfix_str(f"{symbol}-{quote} {interval}")
            outcomes.append(backfill_series(source, lake, symbol, quote, interval, now=now, bounds=bounds,
                                            tail_only=tail_only, lookback=lookback, gap_records=gap_records))
            bar.update(1)
    waited = 0.0
    while waited < lease_wait_s and any(o.status == "lease-held" for o in outcomes):
        step = min(LEASE_POLL_S, lease_wait_s - waited)
        log.info("waiting %.0fs for %d series another ingester holds", step,
                 sum(o.status == "lease-held" for o in outcomes))
        sleep(step)
        waited += step
        bounds = stored_bounds(lake)   # the holder may have stored them meanwhile
        for i, o in enumerate(outcomes):
            if o.status == "lease-held":
                outcomes[i] = backfill_series(source, lake, o.symbol, o.quote, o.interval, now=now, bounds=bounds,
                                              tail_only=tail_only, lookback=lookback, gap_records=gap_records)
    return outcomes


def next_close(now: datetime, interval: str) -> datetime:
    """When the candle open at `now` closes."""
    return floor_to_interval(now, interval) + timedelta(seconds=interval_seconds(interval))
