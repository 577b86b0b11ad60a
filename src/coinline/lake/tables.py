"""The lake's Delta tables and how to append to and read from them.

raw_candles   append-only candles as received, one commit per ingest batch, its manifest in the commit's
              custom metadata; partitioned by series (source/venue/symbol/quote/interval).
corrections   append-only log of revisions: old and new values, batch, detected time.
known_gaps    gaps that a retry could not fill, with the provider's answer (and later fills).

Reads prune files with the Delta log's own per-file partition values and min/max statistics, then read
just those Parquet files with pyarrow: a series read never scans other series.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from coinline.lake import integrity, log_retention
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, VALUE_COLUMNS, SeriesKey

TS = pa.timestamp("us", tz="UTC")  # Delta's timestamp type
SERIES_COLUMNS = ("source", "venue", "symbol", "quote", "interval")
META_KEY = "coinline"

RAW = "raw_candles"
CORRECTIONS = "corrections"
GAPS = "known_gaps"


def _with_ts(schema: pa.Schema) -> list[pa.Field]:
    return [pa.field(f.name, TS, f.nullable) if pa.types.is_timestamp(f.type) else f for f in schema]


RAW_SCHEMA = pa.schema(
    [*_with_ts(CANDLE_SCHEMA), pa.field("version", pa.int32(), False), pa.field("batch_id", pa.string(), False),
     pa.field("ingested_at", TS, False)]
)
_VALUE_FIELDS = [CANDLE_SCHEMA.field(c) for c in VALUE_COLUMNS]
CORRECTIONS_SCHEMA = pa.schema(
    [*(CANDLE_SCHEMA.field(c) for c in SERIES_COLUMNS), pa.field("open_time", TS, False),
     pa.field("old_version", pa.int32(), False), pa.field("new_version", pa.int32(), False),
     *(pa.field(f"old_{f.name}", f.type, True) for f in _VALUE_FIELDS),
     *(pa.field(f"new_{f.name}", f.type, True) for f in _VALUE_FIELDS),
     pa.field("batch_id", pa.string(), False), pa.field("detected_at", TS, False),
     pa.field("reason", pa.string(), False)]
)
GAPS_SCHEMA = pa.schema(
    [*(CANDLE_SCHEMA.field(c) for c in SERIES_COLUMNS), pa.field("gap_start", TS, False),
     pa.field("gap_end", TS, False), pa.field("missing_candles", pa.int64(), False),
     pa.field("status", pa.string(), False), pa.field("answer", pa.string(), False),
     pa.field("detected_at", TS, False)]
)
TABLES: dict[str, tuple[pa.Schema, list[str]]] = {
    RAW: (RAW_SCHEMA, list(SERIES_COLUMNS)),
    CORRECTIONS: (CORRECTIONS_SCHEMA, []),
    GAPS: (GAPS_SCHEMA, []),
}


# A checkpoint every 10 commits keeps opening a table (log replay) cheap however long the history:
# measured, a no-op sync on 5 years took 2.9x as long as on 1 month with the default interval of 100.
# delta-rs never cleans the log up itself (it would delete entries older than delta.logRetentionDuration at each
# checkpoint, with the commit manifests in them and the versions datasets pin): `coinline maintain` does, after
# archiving the manifests and checkpointing every pinned version (lake/log_retention.py). A removed file's
# tombstone stays in checkpoints for a day (TOMBSTONE_HOURS): it keeps the file from VACUUM for readers of the
# version before a compaction; maintain's VACUUM lists the stored files itself (full mode), so a file whose
# tombstone expired is still deleted, and checkpoints do not carry a week of compaction inputs.
TOMBSTONE_HOURS = 24
TABLE_CONFIG = {"delta.checkpointInterval": "10", "delta.enableExpiredLogCleanup": "false",
                "delta.deletedFileRetentionDuration": f"interval {TOMBSTONE_HOURS} hours"}
# ... and per commit, for tables created before TABLE_CONFIG said so (until `coinline maintain` sets it)
KEEP_LOG = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
COMMIT_ATTEMPTS = 3


def ensure_tables(lake: Lake) -> None:
    """Create every table once (idempotent), before any writers race to append."""
    for name, (schema, partitions) in TABLES.items():
        if not DeltaTable.is_deltatable(lake.uri(name), storage_options=lake.storage_options):
            DeltaTable.create(lake.uri(name), schema, partition_by=partitions or None, mode="ignore",
                              storage_options=lake.storage_options, configuration=TABLE_CONFIG)


def open_table(lake: Lake, name: str, version: int | None = None) -> DeltaTable:
    """The table at `version` (default: the newest). A damaged log raises DamagedTableError (one line naming
    the object and `coinline doctor`) instead of delta-rs' error, or instead of silently reading an empty or
    cut entry as a commit of nothing (one small extra read per open, see lake/integrity.py)."""
    try:
        dt = DeltaTable(lake.uri(name), version=version, storage_options=lake.storage_options)
    except (TableNotFoundError, DeltaError) as exc:
        if version is not None and _cleaned_up(exc):
            raise log_retention.version_gone(name, version, exc) from None
        if isinstance(exc, TableNotFoundError) or not integrity.is_log_damage(exc):
            raise
        raise integrity.damage_error(lake, name, exc) from None
    integrity.check_opened_entry(lake, name, dt.version())
    return dt


def _cleaned_up(exc: BaseException) -> bool:
    """delta-rs' words for a time travel to a version whose log entries are gone (the newest checkpoint is
    newer: "No files in log segment"; an older one is the nearest: "LogSegment end version ... not the same")."""
    text = str(exc)
    return "No files in log segment" in text or "not the same as the specified end version" in text


def append(lake: Lake, name: str, data: pa.Table, metadata: Mapping[str, Any], *,
           table: DeltaTable | None = None) -> int:
    """One atomic Delta commit carrying `metadata` (the batch manifest, or `{"pages": [...]}`: see
    `page_manifests`). Returns the new table version, read from the table object the write updated (no
    reopen). `table`: the table as the caller opened it with `open_table` to build on (a writer that read
    its file index to dedupe commits on that same open); opened here when not given, and on a retry."""
    schema, partitions = TABLES[name]
    # one record batch: delta-rs spreads a table's batches over its threads and writes them out of order
    # (measured), and readers (the raw suite, every read without a sort) see the rows in commit order
    data = data.select(schema.names).cast(schema).combine_chunks()
    properties = CommitProperties(custom_metadata={META_KEY: json.dumps(dict(metadata), sort_keys=True, default=str)})
    for attempt in range(COMMIT_ATTEMPTS):
        if table is None or attempt:
            table = open_table(lake, name)  # never commit on top of a damaged log (delta-rs would build on it)
        try:
            write_deltalake(table, data, mode="append", partition_by=partitions or None,
                            storage_options=lake.storage_options, commit_properties=properties,
                            post_commithook_properties=KEEP_LOG)
            break
        except CommitFailedError:  # a blind append fails only on a concurrent metadata commit (`coinline
            if attempt == COMMIT_ATTEMPTS - 1:  # maintain` setting TABLE_CONFIG once): append on top of it
                raise
    return table.version()


def page_manifests(metadata: Any) -> list[dict[str, Any]]:
    """The manifests one commit's metadata holds: a commit of several ingest pages carries
    `{"kind": "candles", "pages": [manifest, ...]}` (`ingest.writer.CommitBuffer`), any other commit (and
    every raw commit written before batching) one manifest; anything else holds none."""
    if isinstance(metadata, dict) and isinstance(metadata.get("pages"), list):
        return [dict(m) for m in metadata["pages"] if isinstance(m, dict)]
    return [metadata] if isinstance(metadata, dict) else []


def commit_manifests(lake: Lake, name: str) -> list[dict[str, Any]]:
    """Manifests of every commit, oldest first (each with its table `version`): one per ingest page, so a
    commit of several pages gives several manifests with the same `table_version`, in page order."""
    out = []
    for entry in commit_history(lake, name):
        raw = entry.get(META_KEY)
        if raw:
            for manifest in page_manifests(json.loads(raw)):
                manifest["table_version"] = entry.get("version")
                out.append(manifest)
    return sorted(out, key=lambda m: m["table_version"])


def commit_history(lake: Lake, name: str) -> list[dict[str, Any]]:
    """The commitInfo of every commit, oldest first, each with its `version`: those `coinline maintain` moved
    out of the log (`lake/log_retention.py`), then the log's own."""
    return log_retention.commit_history(lake, name, open_table(lake, name).history())


def table_index(table: DeltaTable) -> pa.Table:
    """The per-file index of an opened table: path, rows, partition values and min/max stats."""
    return pa.table(table.get_add_actions(flatten=True))


def file_index(lake: Lake, name: str, version: int | None = None) -> pa.Table:
    """The Delta log's per-file index: path, rows, partition values and min/max stats."""
    return table_index(open_table(lake, name, version))


def _to_ts(value: datetime) -> pa.Scalar:
    return pa.scalar(value, TS)


def read(lake: Lake, name: str, *, series: SeriesKey | None = None, where: Mapping[str, str] | None = None,
         start: datetime | None = None, end: datetime | None = None, columns: list[str] | None = None,
         version: int | None = None, time_column: str = "open_time", index: pa.Table | None = None) -> pa.Table:
    """Rows of `name` (optionally one series and a [start, end) time range), pruning files by the log.
    `index`: the file index (`table_index`) of the version to read when the caller holds it already."""
    schema, partitions = TABLES[name]
    index = file_index(lake, name, version) if index is None else index
    filters = dict(where or {})
    if series is not None:
        filters.update({c: getattr(series, c) for c in SERIES_COLUMNS})
    mask = pa.array([True] * index.num_rows, pa.bool_())
    for col, value in filters.items():
        if col in partitions:
            mask = pc.and_(mask, pc.equal(index[f"partition.{col}"], value))
    if start is not None and f"max.{time_column}" in index.column_names:
        mask = pc.and_(mask, pc.fill_null(pc.greater_equal(index[f"max.{time_column}"], _to_ts(start)), True))
    if end is not None and f"min.{time_column}" in index.column_names:
        mask = pc.and_(mask, pc.fill_null(pc.less(index[f"min.{time_column}"], _to_ts(end)), True))
    chosen = index.filter(mask)
    wanted = columns or schema.names
    file_columns = [c for c in wanted if c not in partitions]
    row_filter = None
    for col, value in filters.items():
        if col not in partitions:
            row_filter = _and(row_filter, pc.field(col) == value)
    if start is not None:
        row_filter = _and(row_filter, pc.field(time_column) >= _to_ts(start))
    if end is not None:
        row_filter = _and(row_filter, pc.field(time_column) < _to_ts(end))
    pieces = []
    paths = chosen["path"].to_pylist()
    for i, path in enumerate(paths):
        full = lake.path(f"{name}/{unquote(path)}")
        read_cols = list(dict.fromkeys(file_columns + ([] if row_filter is None else _filter_cols(filters, partitions, time_column, start, end))))
        try:
            t = pq.read_table(full, columns=read_cols, filters=row_filter, filesystem=lake.fs)
        except OSError as exc:  # a referenced file that is gone: S3 says so in an OSError's text
            if not isinstance(exc, FileNotFoundError) and not any(s in str(exc) for s in ("does not exist", "NoSuchKey")):
                raise
            raise integrity.damaged(name, f"data file {name}/{unquote(path)} is missing", repairable=False) from None
        for col in partitions:
            if col in wanted:
                t = t.append_column(col, pa.repeat(pa.scalar(chosen[f"partition.{col}"][i].as_py(), pa.string()), t.num_rows))
        pieces.append(t.select(wanted))
    out_schema = pa.schema([schema.field(c) for c in wanted])
    if not pieces:
        return out_schema.empty_table()
    return pa.concat_tables([p.cast(out_schema) for p in pieces])


def _filter_cols(filters, partitions, time_column, start, end) -> list[str]:
    cols = [c for c in filters if c not in partitions]
    if start is not None or end is not None:
        cols.append(time_column)
    return cols


def _and(a, b):
    return b if a is None else a & b


def series_in(lake: Lake, name: str = RAW) -> list[tuple[SeriesKey, int, datetime | None, datetime | None]]:
    """Every stored series with its row count and first/last open time, from the log alone."""
    index = file_index(lake, name)
    out: dict[SeriesKey, list] = {}
    for row in index.select(["num_records", "min.open_time", "max.open_time",
                             *(f"partition.{c}" for c in SERIES_COLUMNS)]).to_pylist():
        key = SeriesKey(*(row[f"partition.{c}"] for c in SERIES_COLUMNS))
        acc = out.setdefault(key, [0, None, None])
        acc[0] += row["num_records"] or 0
        lo, hi = row["min.open_time"], row["max.open_time"]
        if lo is not None and (acc[1] is None or lo < acc[1]):
            acc[1] = lo
        if hi is not None and (acc[2] is None or hi > acc[2]):
            acc[2] = hi
    return [(k, *v) for k, v in sorted(out.items())]
