"""Commit pages of candles: the only way candles enter the lake.

Per page (deterministic): drop candles not yet closed (they are not final; reported in the manifest),
collapse identical duplicates (of conflicting ones the later arrival wins, logged), compare with the
series' current versions, append new keys as version 1 and changed values as version n+1 with a
correction-log entry. Identical re-deliveries add nothing, so re-running any ingest is idempotent.

Batched: a `CommitBuffer` gathers the pages of a walk (of one series during a backfill; of every series
of a sync cycle) and writes them as ONE raw Delta commit whose metadata lists each page's manifest
(request, provider, time range, row count, content hash; `tables.commit_manifests` gives one per page).
`commit_candles` is a buffer of one page.

No read-back of history: the raw table is opened once per commit, and its log's per-file statistics (the
series' partition and each file's max open time, versioned with every commit) say up to when the series
is stored. Candles after that are new and need no read; only candles at or before it (a reconciliation
lookback, a revision, a re-fetched page) are compared with what is stored, by a read bounded to their
time range, and with the rows that earlier pages of the same buffer write. A series file without that
statistic makes every candle of its pages compared (a read, never a guess). A page costs O(page), not
O(history).

Crash safety: corrections are written before the raw commit and are only trusted once the raw commit
naming their batch exists, and nothing of a buffer is visible before its raw commit, so a process killed
at any point leaves nothing visible and the next run simply re-fetches the pages. Each page can name the
series lease its walk holds: the lease is renewed just before the commit, and the pages of a series whose
lease was taken over are dropped (`CommitBuffer.lost`), never written.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from coinline.errors import BadDataError, CoinlineError, LeaseHeldError
from coinline.hashing import table_sha256
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, VALUE_COLUMNS, SeriesKey
from coinline.timeframes import interval_ms

KEY_COLUMNS = ("source", "venue", "symbol", "quote", "interval", "open_time")
NOTHING_STORED = int(np.iinfo(np.int64).min)   # stored_until of a series without a stored candle
UNKNOWN = int(np.iinfo(np.int64).max)          # ... of one whose files lack statistics: compare every candle
# A buffer commits once it holds this many pages, or rows, or has held its first page this long (whichever
# comes first): a walk of Kraken's 720-row pages commits every 278 pages, of CoinAPI's 100,000-row pages every
# 2. The rows bound its memory: measured, a 5M-row backfill peaked at 0.56 GB RSS (0.76 GB at 500,000 rows,
# 0.49 GB committing every page); the pages bound a sync cycle over many series of a few candles each.
MAX_PAGES = 500
MAX_ROWS = 200_000
MAX_SECONDS = 60.0
_ROW_COLUMNS = ["open_time", *VALUE_COLUMNS]
# A page's candles as the writer keeps them: open time as int64 ms, the values, and (once compared) version
ROWS_SCHEMA = pa.schema([pa.field("open_time", pa.int64()),
                         *(pa.field(c, pa.int64() if c == "trade_count" else pa.float64()) for c in VALUE_COLUMNS)])
OUT_SCHEMA = ROWS_SCHEMA.append(pa.field("version", pa.int32()))
_NO_REVISIONS = pd.DataFrame(columns=[*_ROW_COLUMNS, "version_old"])   # shared, never modified


@dataclass(frozen=True)
class CommitResult:
    key: SeriesKey
    batch_id: str
    received: int
    inserted: int
    revised: int
    duplicates: int
    not_closed: int
    table_version: int | None   # None when nothing new was committed

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.key.label(), "batch_id": self.batch_id, "received": self.received,
                "inserted": self.inserted, "revised": self.revised, "duplicates": self.duplicates,
                "not_closed": self.not_closed, "table_version": self.table_version}


class Renewable(Protocol):
    def renew(self) -> None: ...


@dataclass
class _Page:
    """One page as added: its closed, in-page deduplicated candles (sorted by open time) and accounting."""

    key: SeriesKey
    batch_id: str
    request: dict[str, Any]
    now: datetime
    rows: pa.Table                                       # ROWS_SCHEMA
    conflicts: list[tuple[pd.DataFrame, pd.DataFrame]]   # (earlier, later) arrivals that differ
    received: int
    not_closed: int
    in_page_duplicates: int
    on_result: Callable[[CommitResult], None] | None
    lease: Renewable | None


@dataclass
class _Compared:
    """A page against the series' current versions: the rows to write (OUT_SCHEMA), the revised rows
    with the old values and version they replace, and how many candles were already stored as is."""

    out: pa.Table
    revised: pd.DataFrame
    old: pd.DataFrame
    duplicates: int


@dataclass
class _Series:
    """What one commit knows of a series: up to when it is stored (log statistics of the version the
    commit builds on), and the rows that earlier pages of the same commit write (first, last, rows)."""

    stored_until: int
    written: list[tuple[int, int, pa.Table]] = field(default_factory=list)
    written_until: int = NOTHING_STORED


class CommitBuffer:
    """Pages of candles committed together: one corrections commit (when any page revises a candle), then
    ONE raw commit for every page that has something new, naming each page's manifest. Pages are compared
    in the order added, each against what is stored and what the pages before it write, so a later page
    overlapping an earlier one (a reconciliation lookback) is deduplicated like a committed one.

    `full()` says when to `flush()` (MAX_PAGES / MAX_ROWS / MAX_SECONDS since the first page, `clock`
    injectable); the owner flushes at the end of its walk or cycle. `lost`: series whose lease was taken
    over before a flush, with the holder's message; their pages were dropped. `failed`: series whose
    pages a failed flush carried, with the error (the flush raised it too)."""

    def __init__(self, lake: Lake, *, max_pages: int = MAX_PAGES, max_rows: int = MAX_ROWS,
                 max_seconds: float = MAX_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.lake, self.max_pages, self.max_rows, self.max_seconds, self.clock = (
            lake, max_pages, max_rows, max_seconds, clock)
        self.lost: dict[SeriesKey, str] = {}
        self.failed: dict[SeriesKey, str] = {}
        self._pages: list[_Page] = []
        self._rows = 0
        self._since = 0.0

    @property
    def pages(self) -> int:
        return len(self._pages)

    @property
    def rows(self) -> int:
        return self._rows

    def series(self) -> set[SeriesKey]:
        return {p.key for p in self._pages}

    def add(self, candles: pa.Table, *, key: SeriesKey, request: Mapping[str, Any], now: datetime,
            batch_id: str | None = None, on_result: Callable[[CommitResult], None] | None = None,
            lease: Renewable | None = None) -> str:
        """Check and prepare one page (refused at once if it is not of `key`); committed at the next
        flush, which hands its CommitResult to `on_result`. Returns the page's batch id."""
        page = _prepare(candles, key, dict(request), now, batch_id or uuid.uuid4().hex, on_result, lease)
        if not self._pages:
            self._since = self.clock()
        self._pages.append(page)
        self._rows += page.rows.num_rows
        return page.batch_id

    def full(self) -> bool:
        return bool(self._pages) and (len(self._pages) >= self.max_pages or self._rows >= self.max_rows
                                      or self.clock() - self._since >= self.max_seconds)

    def discard(self, key: SeriesKey) -> int:
        """Drop the pages of one series (its lease was lost); returns how many."""
        kept = [p for p in self._pages if p.key != key]
        dropped = len(self._pages) - len(kept)
        self._pages, self._rows = kept, sum(p.rows.num_rows for p in kept)
        return dropped

    def flush(self) -> list[CommitResult]:
        """Commit every buffered page (see the class); returns one result per page committed or found
        to hold nothing new, in the order added. The buffer is empty afterwards, also when it raises."""
        pages, self._pages, self._rows = self._pages, [], 0
        pages = self._still_leased(pages)
        if not pages:
            return []
        try:
            return self._commit(pages)
        except CoinlineError as exc:
            self.failed.update({p.key: str(exc) for p in pages})
            raise

    def _commit(self, pages: list[_Page]) -> list[CommitResult]:
        table = tables.open_table(self.lake, tables.RAW)   # the one open: read statistics, then commit on it
        index = tables.table_index(table)
        states: dict[SeriesKey, _Series] = {}
        compared = []
        for page in pages:
            state = states.get(page.key)
            if state is None:
                state = states[page.key] = _Series(stored_until(index, page.key))
            compared.append(_compare(page, state, self.lake, index))
        written = [(p, c, _raw_table(c.out, p.key, p.batch_id, p.now))
                   for p, c in zip(pages, compared, strict=True) if c.out.num_rows]
        version = None
        if written:
            corrections = [t for p, c, _raw in written for t in _correction_tables(p, c)]
            if corrections:
                tables.append(self.lake, tables.CORRECTIONS, pa.concat_tables(corrections),
                              {"kind": "corrections", "batch_ids": sorted({p.batch_id for p, _c, _r in written})})
            manifests = [_manifest(p, c, raw) for p, c, raw in written]
            version = tables.append(self.lake, tables.RAW, pa.concat_tables([raw for _p, _c, raw in written]),
                                    {"kind": "candles", "pages": manifests}, table=table)
        results = []
        for page, c in zip(pages, compared, strict=True):
            result = CommitResult(page.key, page.batch_id, page.received, c.out.num_rows - len(c.revised),
                                  len(c.revised), page.in_page_duplicates + c.duplicates, page.not_closed,
                                  version if c.out.num_rows else None)
            results.append(result)
            if page.on_result:
                page.on_result(result)
        return results

    def _still_leased(self, pages: list[_Page]) -> list[_Page]:
        """Renew each lease the pages name, once; drop the pages of a series whose lease was lost."""
        renewed: set[int] = set()
        lost: set[SeriesKey] = set()
        for page in pages:
            if page.lease is None or id(page.lease) in renewed:
                continue
            renewed.add(id(page.lease))
            try:
                page.lease.renew()
            except LeaseHeldError as exc:
                self.lost[page.key] = str(exc)
                lost.add(page.key)
        return [p for p in pages if p.key not in lost]


def commit_candles(lake: Lake, candles: pa.Table, *, key: SeriesKey, request: Mapping[str, Any],
                   now: datetime, batch_id: str | None = None) -> CommitResult:
    """Commit one page now (a buffer of one page): one raw commit, or none when nothing is new."""
    buffer = CommitBuffer(lake)
    buffer.add(candles, key=key, request=request, now=now, batch_id=batch_id)
    (result,) = buffer.flush()
    return result


def stored_until(index: pa.Table, key: SeriesKey) -> int:
    """The series' last stored open time (int ms) by the log's per-file max statistics, no data read:
    NOTHING_STORED without a file of the series, UNKNOWN when one of its files has no statistic."""
    if index.num_rows == 0:
        return NOTHING_STORED
    mask = None
    for col in tables.SERIES_COLUMNS:
        eq = pc.equal(index[f"partition.{col}"], getattr(key, col))
        mask = eq if mask is None else pc.and_(mask, eq)
    files = index.filter(mask)
    if files.num_rows == 0:
        return NOTHING_STORED
    if "max.open_time" not in files.column_names or files["max.open_time"].null_count:
        return UNKNOWN
    last = pc.max(files["max.open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())).as_py()
    return NOTHING_STORED if last is None else int(last)


# ----------------------------------------------------------------------------------- one page


def _frame(table: pa.Table) -> pd.DataFrame:
    """Open time (int64 ms) and values as pandas, for the comparisons that need a merge."""
    df = table.select(list(VALUE_COLUMNS)).to_pandas()
    df.insert(0, "open_time", table["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
              if pa.types.is_timestamp(table.schema.field("open_time").type) else table["open_time"].to_numpy())
    return df


def _table(df: pd.DataFrame) -> pa.Table:
    """`_frame`'s inverse: ROWS_SCHEMA (OUT_SCHEMA when `df` has a version)."""
    cols = {"open_time": pa.array(df["open_time"].to_numpy(np.int64))}
    for c in VALUE_COLUMNS:
        cols[c] = (pa.array(df[c].astype("Int64"), pa.int64()) if c == "trade_count"
                   else pa.array(df[c].to_numpy(np.float64)))
    if "version" in df.columns:
        cols["version"] = pa.array(df["version"].to_numpy(np.int32))
    return pa.table(cols).cast(OUT_SCHEMA if "version" in df.columns else ROWS_SCHEMA)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Row-wise equality of candle values, treating two missing trade counts as equal."""
    eq = np.ones(len(a), dtype=bool)
    for c in VALUE_COLUMNS:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if c == "trade_count":
            xn, yn = pd.isna(a[c]).to_numpy(), pd.isna(b[c]).to_numpy()
            eq &= (xn & yn) | (~xn & ~yn & (a[c].fillna(0).to_numpy() == b[c].fillna(0).to_numpy()))
        else:
            eq &= x == y
    return eq


def _prepare(candles: pa.Table, key: SeriesKey, request: dict[str, Any], now: datetime, batch_id: str,
             on_result, lease) -> _Page:
    """Check the page is of `key` and keep its closed candles, sorted by open time with in-page duplicates
    collapsed. Arrow only for the usual page (strictly increasing open times); see `_collapse`."""
    _check_series(candles, key, request)
    rows = candles.select(_ROW_COLUMNS)
    rows = rows.set_column(0, "open_time", rows["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()))
    rows = rows.cast(ROWS_SCHEMA)
    times = rows["open_time"].to_numpy()
    closed = (times + interval_ms(key.interval)) <= int(now.timestamp() * 1000)
    not_closed = int((~closed).sum())
    if not_closed:
        rows, times = rows.filter(pa.array(closed)), times[closed]
    conflicts: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    superseded = 0
    if len(times) > 1 and not (np.diff(times) > 0).all():
        rows, conflicts, superseded = _collapse(rows)
    return _Page(key, batch_id, request, now, rows, conflicts, candles.num_rows, not_closed, superseded,
                 on_result, lease)


def _collapse(rows: pa.Table) -> tuple[pa.Table, list[tuple[pd.DataFrame, pd.DataFrame]], int]:
    """Sort by open time (stable: equal keys keep their arrival order) and keep the last arrival of each
    key; an earlier arrival with other values is returned as a conflict (earlier, later)."""
    df = _frame(rows).sort_values("open_time", kind="stable").reset_index(drop=True)
    conflicts = []
    superseded = df.duplicated("open_time", keep="last").to_numpy()
    if superseded.any():
        last = df.drop_duplicates("open_time", keep="last").set_index("open_time")
        early = df[superseded]
        later = last.loc[early["open_time"]].reset_index()
        differ = ~_same(early.reset_index(drop=True), later)
        if differ.any():
            conflicts.append((early[differ].reset_index(drop=True), later[differ].reset_index(drop=True)))
        df = df[~superseded]
    return _table(df), conflicts, int(superseded.sum())


def _compare(page: _Page, state: _Series, lake: Lake, index: pa.Table) -> _Compared:
    """Candles after everything stored or written so far are new (version 1, nothing read); the rest
    are compared with the current versions of their time range. Records the page's rows in `state`."""
    rows = page.rows
    times = rows["open_time"].to_numpy()
    split = int(np.searchsorted(times, np.int64(max(state.stored_until, state.written_until)), side="right"))
    tail = rows.slice(split)
    out = tail.append_column("version", _constant(1, tail.num_rows, pa.int32())).cast(OUT_SCHEMA)
    if split:
        head = _against(_frame(rows.slice(0, split)),
                        _current(lake, index, page.key, state, int(times[0]), int(times[split - 1])))
        compared = _Compared(pa.concat_tables([_table(head.out), out]), head.revised, head.old, head.duplicates)
    else:
        compared = _Compared(out, _NO_REVISIONS, _NO_REVISIONS, 0)
    if compared.out.num_rows:
        out_times = compared.out["open_time"]
        last = int(out_times[-1].as_py())
        state.written.append((int(out_times[0].as_py()), last, compared.out))
        state.written_until = max(state.written_until, last)
    return compared


def _current(lake: Lake, index: pa.Table, key: SeriesKey, state: _Series, lo: int, hi: int) -> pd.DataFrame:
    """The latest version of each key in [lo, hi] (ms): stored (a read bounded to that range, only where
    the log says the series is stored) or written by an earlier page of the same commit."""
    parts = []
    if lo <= state.stored_until:
        start = pd.Timestamp(lo, unit="ms", tz="UTC").to_pydatetime()
        end = pd.Timestamp(min(hi, state.stored_until), unit="ms", tz="UTC").to_pydatetime() + timedelta(milliseconds=1)
        stored = tables.read(lake, tables.RAW, series=key, start=start, end=end, columns=[*_ROW_COLUMNS, "version"],
                             index=index)
        if stored.num_rows:
            cur = _frame(stored)
            cur["version"] = stored["version"].to_numpy()
            parts.append(cur)
    for first, last, rows in state.written:
        if first <= hi and lo <= last:
            t = rows["open_time"]
            overlap = rows.filter(pc.and_(pc.greater_equal(t, lo), pc.less_equal(t, hi)))
            cur = _frame(overlap)
            cur["version"] = overlap["version"].to_numpy()
            parts.append(cur)
    if not parts:
        return pd.DataFrame({"open_time": pd.Series(dtype="int64"), "version": pd.Series(dtype="int32"),
                             **{c: pd.Series(dtype="float64") for c in VALUE_COLUMNS}})
    cur = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return cur.sort_values(["open_time", "version"]).drop_duplicates("open_time", keep="last")


def _against(df: pd.DataFrame, current: pd.DataFrame) -> _Compared:
    """Compare rows with the current versions of their keys: unknown keys are new (version 1), changed
    values a new version (n + 1) of the key, identical ones duplicates. `out` is a DataFrame here."""
    old = current.rename(columns={c: f"{c}_old" for c in current.columns if c != "open_time"})
    merged = df.merge(old, on="open_time", how="left")
    has_old = merged["version_old"].notna().to_numpy()
    old_vals = merged[[f"{c}_old" for c in VALUE_COLUMNS]].rename(columns=lambda c: c[:-4])
    same = np.zeros(len(merged), dtype=bool)
    if has_old.any():
        same[has_old] = _same(merged.loc[has_old, list(VALUE_COLUMNS)].reset_index(drop=True),
                              old_vals[has_old].reset_index(drop=True))
    write = ~(has_old & same)
    revised = has_old & ~same
    out = merged.loc[write, _ROW_COLUMNS].reset_index(drop=True)
    out["version"] = np.where(revised[write], merged.loc[write, "version_old"].fillna(0), 0).astype(np.int32) + 1
    return _Compared(out, merged[revised], old_vals[revised], int((has_old & same).sum()))


def _manifest(page: _Page, compared: _Compared, raw: pa.Table) -> dict[str, Any]:
    step = interval_ms(page.key.interval)
    span = pc.min_max(compared.out["open_time"])
    t_min, t_max = span["min"].as_py(), span["max"].as_py()
    return {
        "batch_id": page.batch_id, "kind": "candles", "series": page.key.label(), "provider": page.key.source,
        "request": page.request, "time_range": [_iso(t_min), _iso(t_max + step)],
        "row_count": raw.num_rows, "content_hash": table_sha256(raw, list(CANDLE_SCHEMA.names) + ["version"]),
        "received": page.received, "duplicates": page.in_page_duplicates + compared.duplicates,
        "revised": len(compared.revised), "not_closed": page.not_closed, "committed_at": page.now.isoformat(),
    }


def _iso(ms_value: int) -> str:
    return pd.Timestamp(ms_value, unit="ms", tz="UTC").isoformat()


def _check_series(candles: pa.Table, key: SeriesKey, request: Mapping[str, Any]) -> None:
    if candles.schema.names != CANDLE_SCHEMA.names:
        raise BadDataError(f"page columns {candles.schema.names} do not match the canonical schema",
                           provider=key.source, series=key.label(), request=str(dict(request)))
    for col in ("source", "venue", "symbol", "quote", "interval"):
        values = set(candles[col].unique().to_pylist())
        if values - {getattr(key, col)}:
            raise BadDataError(f"page holds {col}={sorted(values)} for series {key.label()}",
                               provider=key.source, series=key.label(), request=str(dict(request)))


def _constant(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    """A column of one repeated value, built by Arrow (not from a Python list of n items)."""
    return pa.repeat(pa.scalar(value, typ), n)


def _raw_table(out: pa.Table, key: SeriesKey, batch_id: str, now: datetime) -> pa.Table:
    n = out.num_rows
    cols = {c: _constant(getattr(key, c), n, pa.string()) for c in tables.SERIES_COLUMNS}
    cols["open_time"] = out["open_time"].cast(pa.timestamp("ms", tz="UTC"))
    for c in (*VALUE_COLUMNS, "version"):
        cols[c] = out[c]
    cols["batch_id"] = _constant(batch_id, n, pa.string())
    cols["ingested_at"] = _constant(now, n, tables.TS)
    return pa.table(cols)


def _correction_tables(page: _Page, compared: _Compared) -> list[pa.Table]:
    """The page's correction-log entries: revisions of stored (or earlier-page) candles, then conflicting
    duplicates inside the page."""
    out = []
    if len(compared.revised):
        old_version = compared.revised["version_old"].to_numpy().astype(np.int32)
        out.append(_correction_rows(page.key, compared.revised.reset_index(drop=True),
                                    compared.old.reset_index(drop=True), old_version, page.batch_id, page.now,
                                    "revised"))
    for early, later in page.conflicts:
        out.append(_correction_rows(page.key, later, early, np.zeros(len(early), np.int32), page.batch_id, page.now,
                                    "conflict-in-batch"))
    return out


def _correction_rows(key, new: pd.DataFrame, old: pd.DataFrame, old_version: np.ndarray, batch_id, now, reason) -> pa.Table:
    n = len(new)
    cols: dict[str, pa.Array] = {c: _constant(getattr(key, c), n, pa.string()) for c in tables.SERIES_COLUMNS}
    cols["open_time"] = pa.array(new["open_time"].to_numpy(np.int64)).cast(pa.timestamp("ms", tz="UTC"))
    cols["old_version"] = pa.array(old_version.astype(np.int32))
    cols["new_version"] = pa.array((old_version + 1).astype(np.int32))
    for prefix, frame in (("old", old), ("new", new)):
        for c in VALUE_COLUMNS:
            typ = pa.int64() if c == "trade_count" else pa.float64()
            values = frame[c].astype("Int64") if c == "trade_count" else frame[c].to_numpy(np.float64)
            cols[f"{prefix}_{c}"] = pa.array(values, typ)
    cols["batch_id"] = _constant(batch_id, n, pa.string())
    cols["detected_at"] = _constant(now, n, tables.TS)
    cols["reason"] = _constant(reason, n, pa.string())
    return pa.table(cols)
