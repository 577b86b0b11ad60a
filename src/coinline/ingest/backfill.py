"""Walk each (coin, quote, interval) through a provider, page by page, into the lake.

Resumable without bookkeeping: what is stored is read from the Delta log (first/last open time per
series), so a rerun fetches only the head before and the tail after it and requests no page twice.
Each series runs under its lease. Outcomes are explicit per series: ok, not-listed, no-data, error,
lease-held, incomplete; nothing is skipped silently.

Commits are batched (`coinline.ingest.writer.CommitBuffer`): a backfill commits each series' walk at once
(or every MAX_PAGES / MAX_ROWS / MAX_SECONDS of it), so it holds one lease at a time; a sync commits its
whole cycle at once, every series of it under its own lease, held until that commit. A page is thus
committed only after the pages before it, and a killed run leaves nothing of its uncommitted pages.

Completeness is checked, not assumed (`coinline.ingest.completeness`): after the walk, the stored candles
are compared with what the provider says exists, and a page that contradicted it (empty or short, still
so after the gateway's retries) ends the walk of that range. Either way the missing range is recorded as
an unexplained gap, the outcome is `incomplete` (exit 1) and materialization is blocked; a later walk
that fills the range closes the record.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from coinline.errors import CoinlineError, IncompletePageError, LeaseHeldError, NotListedError, ProviderError
from coinline.ingest import completeness
from coinline.ingest.grid import ranges_to_fetch
from coinline.ingest.writer import CommitBuffer, CommitResult
from coinline.lake import tables
from coinline.lake.lease import Lease, series_lease
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

    def record(self, result: CommitResult) -> None:
        """Count one page once it is committed (or found to hold nothing new)."""
        self.inserted += result.inserted
        self.revised += result.revised
        self.duplicates += result.duplicates
        if result.table_version is not None:
            self.batches.append(result.batch_id)


def stored_bounds(lake: Lake) -> dict[SeriesKey, tuple[datetime | None, datetime | None]]:
    return {k: (first, last) for k, _rows, first, last in tables.series_in(lake)}


def ingest_range(source: CandleSource, lake: Lake, ref: SeriesRef, start: datetime, end: datetime,
                 outcome: SeriesOutcome, *, now: datetime, on_page: Callable[[int], None] | None = None,
                 walked: list[tuple[datetime, datetime]] | None = None,
                 seen: list[datetime] | None = None, buffer: CommitBuffer | None = None,
                 lease: Lease | None = None) -> None:
    """Fetch [start, end) page by page into a commit buffer; the cursor must always advance. `walked`
    collects the part of [start, end) the provider answered for: all of it once a page says the range is
    done, else up to the page that failed; `seen` the first and last open time of every non-empty page.

    `buffer`: the caller's, flushed here whenever it is full, the rest is the caller's to flush. Without
    one, a buffer of the walk's own is flushed when the walk ends, also when a provider error ends it (the
    pages before it were fine). A lost lease (LeaseHeldError) drops the series' pages from the buffer; any
    other exception leaves them uncommitted. `lease`: renewed just before each commit of the pages."""
    own = buffer is None
    pages = CommitBuffer(lake) if buffer is None else buffer
    cursor = start
    try:
        while cursor < end:
            page = source.fetch(ref, cursor, end)
            outcome.pages += 1
            pages.add(page.candles, key=ref.key, request=page.request, now=now, on_result=outcome.record, lease=lease)
            if on_page:
                on_page(page.candles.num_rows)
            if seen is not None and page.candles.num_rows:
                span = pc.min_max(page.candles["open_time"])
                seen += [span["min"].as_py(), span["max"].as_py()]
            if pages.full():
                pages.flush()
            if page.done or page.next_cursor is None:
                cursor = end
                break
            if page.next_cursor <= cursor:
                raise ProviderError(f"cursor did not advance past {cursor.isoformat()}", provider=source.name,
                                    series=ref.key.label(), request=str(dict(page.request)))
            cursor = page.next_cursor
    except LeaseHeldError:
        pages.discard(ref.key)
        raise
    except CoinlineError:
        if own:
            pages.flush()
        raise
    else:
        if own:
            pages.flush()
    finally:
        if walked is not None:
            walked.append((start, min(cursor, end)))


@dataclass
class _Walk:
    """A series walked into a shared buffer, waiting for its commit: its lease stays held (on `stack`)
    until then, and `finish` (its completeness check) runs once its pages are committed."""

    outcome: SeriesOutcome
    key: SeriesKey | None = None
    stack: ExitStack = field(default_factory=ExitStack)
    finish: Callable[[Callable[[], pa.Table]], None] | None = None


def backfill_series(source: CandleSource, lake: Lake, symbol: str, quote: str, interval: str, *, now: datetime,
                    bounds: dict[SeriesKey, tuple[datetime | None, datetime | None]], tail_only: bool = False,
                    lookback: int = 0, on_page: Callable[[int], None] | None = None,
                    gap_records: dict[SeriesKey, list[dict]] | None = None) -> SeriesOutcome:
    """Fetch what the lake lacks of one series. `tail_only` (sync): only newly closed candles, and no
    history discovery unless the series is empty and the provider only has recent candles anyway.
    Then check completeness (`check_complete`): a shortfall makes the outcome `incomplete`. `gap_records`:
    the latest `known_gaps` records per series when the caller has read them already."""
    buffer = CommitBuffer(lake)
    walk = _walk_series(source, lake, symbol, quote, interval, now=now, bounds=bounds, tail_only=tail_only,
                        lookback=lookback, on_page=on_page, gap_records=gap_records, buffer=buffer)
    _settle(buffer, [walk])
    return walk.outcome


def _walk_series(source: CandleSource, lake: Lake, symbol: str, quote: str, interval: str, *, now: datetime,
                 bounds: dict[SeriesKey, tuple[datetime | None, datetime | None]], tail_only: bool, lookback: int,
                 on_page: Callable[[int], None] | None, gap_records: dict[SeriesKey, list[dict]] | None,
                 buffer: CommitBuffer) -> _Walk:
    """`backfill_series` up to its completeness check: take the lease (held on the walk's stack) and walk
    what the lake lacks into `buffer`. An error ends the walk (its pages so far are still committed)."""
    label = f"{source.name}:{symbol}-{quote}:{interval}"
    walk = _Walk(SeriesOutcome(label, symbol, quote, interval, "ok"))
    outcome = walk.outcome
    try:
        ref = source.resolve(symbol, quote, interval)
    except NotListedError as exc:
        outcome.status, outcome.message = "not-listed", str(exc)
        return walk
    except CoinlineError as exc:
        outcome.status, outcome.message = "error", str(exc)
        return walk
    outcome.series = ref.key.label()
    end = floor_to_interval(now, interval)  # the candle open at `now` is not closed yet
    missing: list[completeness.Missing] = []
    walked: list[tuple[datetime, datetime]] = []
    seen: list[datetime] = []
    try:
        lease = walk.stack.enter_context(series_lease(lake, ref.key))
        walk.key = ref.key

        def progressed(rows: int) -> None:
            lease.renew()
            if on_page:
                on_page(rows)

        first, last = bounds.get(ref.key, (None, None))
        discover = first is None if tail_only else (first is None or source.capabilities.history == "full")
        if tail_only and first is None and source.capabilities.history == "full":
            outcome.status, outcome.message = "needs-backfill", "no stored history; run `coinline backfill` first"
            return walk
        try:
            earliest = source.earliest(ref) if discover else None
        except IncompletePageError as exc:
            missing.append(completeness.from_error(exc, start=last or end, end=end))
            earliest = None
        if earliest is None and first is None and not missing:
            outcome.status, outcome.message = "no-data", "provider reports no history for this series"
            return walk
        for start, stop in ranges_to_fetch(first, last, earliest, end, interval, lookback=lookback):
            try:
                ingest_range(source, lake, ref, start, stop, outcome, now=now, on_page=progressed,
                             walked=walked, seen=seen, buffer=buffer, lease=lease)
            except IncompletePageError as exc:
                missing.append(completeness.from_error(exc, start=walked[-1][1], end=stop))
        stored = [t for t in (first, last, *seen) if t is not None]

        def finish(raw_index: Callable[[], pa.Table]) -> None:
            check_complete(source, lake, ref, missing, walked, outcome, now=now, end=end,
                           action="sync" if tail_only else "backfill",
                           records=None if gap_records is None else gap_records.get(ref.key, []),
                           bounds=(min(stored), max(stored)) if stored else None, raw_index=raw_index)

        walk.finish = finish
    except LeaseHeldError as exc:
        buffer.discard(ref.key)
        walk.stack.close()
        outcome.status, outcome.message = "lease-held", str(exc)
    except CoinlineError as exc:
        outcome.status, outcome.message = "error", str(exc)
    return walk


def _settle(buffer: CommitBuffer, walks: list[_Walk]) -> None:
    """Commit the buffer, then finish every waiting walk and let its lease go: a series whose lease was
    lost before a commit is `lease-held` (its pages were dropped), one whose pages a failed commit carried
    an `error`; the others get their completeness check, on the lake that now holds their pages."""
    with ExitStack() as leases:
        for walk in walks:
            leases.push(walk.stack)
        try:
            buffer.flush()
        except CoinlineError:
            pass   # recorded per series in buffer.failed
        raw_index = functools.cache(lambda: tables.file_index(buffer.lake, tables.RAW))  # read once, when needed
        for walk in walks:
            outcome = walk.outcome
            if walk.key in buffer.lost:
                outcome.status, outcome.message = "lease-held", buffer.lost.pop(walk.key)
            elif walk.key in buffer.failed:
                outcome.status, outcome.message = "error", buffer.failed.pop(walk.key)
            elif walk.finish is not None:
                try:
                    walk.finish(raw_index)
                except CoinlineError as exc:
                    outcome.status, outcome.message = "error", str(exc)
        walks.clear()


def check_complete(source: CandleSource, lake: Lake, ref: SeriesRef, missing: list[completeness.Missing],
                   walked: list[tuple[datetime, datetime]], outcome: SeriesOutcome, *, now: datetime,
                   end: datetime, action: str, records: list[dict] | None = None,
                   bounds: tuple[datetime, datetime] | None = None,
                   raw_index: Callable[[], pa.Table] | None = None) -> list[completeness.Missing]:
    """Compare the stored series with what the provider says exists (its optional `listed_candles`),
    add what incomplete pages left out (`missing`), record/close unexplained gaps, and mark the outcome
    `incomplete` with every missing range named when anything is missing. `bounds`: the first and last
    stored open time when the caller knows them (a claim holding one needs no read); `raw_index`: see
    `completeness.unmet_claims`."""
    listed = getattr(source, "listed_candles", None)
    claims = listed(ref) if listed is not None else []
    unmet = completeness.unmet_claims(lake, ref, claims, end=end, provider=source.name, bounds=bounds,
                                      raw_index=raw_index)
    found = completeness.reconcile(lake, ref.key, [*missing, *unmet], walked=walked, now=now, action=action,
                                   records=records)
    if found:
        outcome.status = "incomplete"
        outcome.message = completeness.describe(found, ref.key.interval)
    return found


LEASE_POLL_S = 5.0


def backfill(source: CandleSource, lake: Lake, pairs: Iterable[tuple[str, str, str]], *, now: datetime,
             progress: bool = True, tail_only: bool = False, lookback: int = 0, lease_wait_s: float = 0.0,
             sleep: Callable[[float], None] = time.sleep, buffer: CommitBuffer | None = None) -> list[SeriesOutcome]:
    """Backfill (or with `tail_only`, sync) every (symbol, quote, interval); one failing series never
    stops the others. A series whose lease another ingester holds is skipped on the first pass and tried
    again every LEASE_POLL_S seconds for up to `lease_wait_s` (the other ingester usually finishes it, so
    the retry is a cheap no-op), so one job run ends with every series done instead of asking for a rerun;
    what is still held after the wait stays `lease-held` (exit 3).

    Commits (see the module): a backfill's after each series, a sync's once per cycle (or whenever the
    buffer is full: `buffer` sets its limits, default `CommitBuffer(lake)`)."""
    tables.ensure_tables(lake)
    bounds = stored_bounds(lake)
    gap_records: dict[SeriesKey, list[dict]] = {}
    for record in completeness.latest_records(lake):
        gap_records.setdefault(completeness.record_key(record), []).append(record)
    buffer = CommitBuffer(lake) if buffer is None else buffer
    waiting: list[_Walk] = []

    def walk(symbol: str, quote: str, interval: str) -> SeriesOutcome:
        if any((w.outcome.symbol, w.outcome.quote, w.outcome.interval) == (symbol, quote, interval) for w in waiting):
            _settle(buffer, waiting)   # the same series twice: its lease is ours until that commit
        done = _walk_series(source, lake, symbol, quote, interval, now=now, bounds=bounds, tail_only=tail_only,
                            lookback=lookback, on_page=None, gap_records=gap_records, buffer=buffer)
        waiting.append(done)
        if not tail_only or buffer.full():   # a sync settles once per cycle: one commit, one index read
            _settle(buffer, waiting)
        return done.outcome

    pairs = list(pairs)
    outcomes = []
    try:
        with tqdm(total=len(pairs), desc=f"{'sync' if tail_only else 'backfill'} {source.name}", unit="series",
                  disable=not progress) as bar:
            for symbol, quote, interval in pairs:
                bar.set_postfix_str(f"{symbol}-{quote} {interval}")
                outcomes.append(walk(symbol, quote, interval))
                bar.update(1)
        _settle(buffer, waiting)
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
                    outcomes[i] = walk(o.symbol, o.quote, o.interval)
            _settle(buffer, waiting)
    finally:   # only on an unexpected exception: nothing more is committed, the leases are let go
        for w in waiting:
            w.stack.close()
    return outcomes


def next_close(now: datetime, interval: str) -> datetime:
    """When the candle open at `now` closes."""
    return floor_to_interval(now, interval) + timedelta(seconds=interval_seconds(interval))
