"""The doctor's repairs of a table's log. Nothing is deleted: a damaged object is first copied to
`doctor/quarantine/<stamp>/<same name>`, and every step is written to the repair record.

A damaged commit entry is replaced by an empty placeholder commit at the same version (a commitInfo naming
the quarantined original) rather than removed, so version numbers are never reused: a dataset pinned to a
version number keeps meaning what it meant (for a zero-byte entry delta-rs already read that version as a
commit of nothing). The rows the damaged commit added are still in its data files (delta-rs writes them
before the entry); they are re-committed through the writer, so identical candles add nothing and the
writer's own version and correction rules apply. The data files are those the current version does not
reference that were written after the previous entry (the store's own clock), plus any the damaged entry
still names. After the newest entry, nothing newer was committed, so the writer may also apply the lost
commit's revisions; after a middle entry, later commits may hold newer values, so only candles that no
commit has are re-committed ("insert-only"). Only `raw_candles` is re-committed: the other tables'
unreferenced files are listed in the record, not re-appended (their rows are derived or re-detected).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coinline.errors import LeaseHeldError
from coinline.lake import integrity, tables
from coinline.lake.integrity import LOG
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, SeriesKey

RAW_COLUMNS = (*CANDLE_SCHEMA.names, "batch_id", "ingested_at")


def quarantine(lake: Lake, names: Iterable[str], stamp: str) -> dict[str, str]:
    """Copy each object to `doctor/quarantine/<stamp>/<name>`; returns {name: copy}. Originals stay."""
    moved = {}
    for name in names:
        data = lake.read_bytes(name)
        if data is None:
            continue
        copy = f"doctor/quarantine/{stamp}/{name}"
        lake.write_bytes(copy, data)
        if lake.read_bytes(copy) != data:
            raise OSError(f"quarantine copy {copy} does not read back as {name}; nothing changed")
        moved[name] = copy
    return moved


def placeholder(lost: dict[str, Any], previous_ns: int | None, quarantined: str, record: str, defect: str) -> bytes:
    """An empty commit that says what it stands in for. Its timestamp is the lost commit's own (or the
    previous entry's), so the log's timeline stays in order."""
    stamp_ms = lost.get("timestamp_ms") or (previous_ns or 0) // 1_000_000
    note = {"replaces": defect, "quarantined_to": quarantined, "record": record,
            "lost_batch": ", ".join(str(m["batch_id"]) for m in tables.page_manifests(lost.get("manifest"))
                                    if m.get("batch_id")) or None}
    info = {"timestamp": int(stamp_ms), "operation": "COINLINE DOCTOR PLACEHOLDER",
            "operationParameters": {"replaces": defect}, "coinlineDoctor": json.dumps(note, sort_keys=True),
            "operationMetrics": {"num_added_files": 0, "num_removed_files": 0}, "clientVersion": "coinline-doctor"}
    return json.dumps({"commitInfo": info}, sort_keys=True).encode()


def replace_entry(lake: Lake, table: str, version: int, data: bytes) -> bool:
    """Overwrite the entry with `data` (atomic rename on local disk, one PUT on S3) unless it is intact
    already (a placeholder written by an earlier, interrupted run). Returns whether it wrote."""
    if not integrity.read_entry(lake, table, version).defect:
        return False
    lake.write_bytes(integrity.entry_name(table, version), data)
    return True


def drop_objects(lake: Lake, names: Iterable[str]) -> None:
    """Remove objects that were quarantined first (their copies stay under doctor/quarantine/)."""
    for name in names:
        lake.delete(name)


def rewrite_checkpoint(lake: Lake, table: str) -> int:
    """Write a fresh checkpoint (and hint) at the current version; returns that version."""
    dt = tables.open_table(lake, table)
    dt.create_checkpoint()
    return dt.version()


def unreferenced_files(lake: Lake, table: str, *, since_ns: int | None, named: Iterable[str],
                       removed: set[str]) -> list[dict[str, Any]]:
    """Data files the current version does not reference and no commit removed, written at or after
    `since_ns` (the previous entry's time) or named by the damaged entry, oldest first: the damaged
    commit's files (and any a killed writer left since, which the writer's dedup treats like a fetch)."""
    dt = tables.open_table(lake, table)
    referenced = {unquote(p) for p in pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist()}
    referenced |= removed
    named = set(named)
    out = []
    for obj in integrity.list_objects(lake, table):
        rel = obj.name[len(table) + 1:]
        if obj.name.startswith(f"{table}/{LOG}/") or not rel.endswith(".parquet") or rel in referenced:
            continue
        if rel in named or (since_ns is not None and obj.mtime_ns >= since_ns):
            out.append({"path": rel, "mtime_ns": obj.mtime_ns, "size": obj.size})
    return sorted(out, key=lambda f: (f["mtime_ns"], f["path"]))


def recover_rows(lake: Lake, table: str, files: list[dict[str, Any]], *, insert_only: bool,
                 why: dict[str, Any]) -> list[dict[str, Any]]:
    """Re-commit the candles of `files` (raw_candles only), one writer commit per (series, lost batch),
    under the series lease, as of the batch's own ingest time (so its candles were closed then, and keep
    their ingest time). Returns one result per group, and one per file that was not re-committed."""
    if table != tables.RAW:
        return [{"file": f["path"], "status": "not-recommitted", "rows_in_files": _rows(lake, table, f["path"]),
                 "reason": f"only {tables.RAW} rows are re-committed automatically"} for f in files]
    from coinline.ingest.writer import commit_candles
    from coinline.lake.lease import series_lease

    out: list[dict[str, Any]] = []
    groups: dict[tuple[SeriesKey, str], list[tuple[str, pa.Table]]] = {}
    for f in files:
        try:
            rows = read_raw_file(lake, table, f["path"])
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            out.append({"file": f["path"], "status": "unreadable", "reason": str(exc).splitlines()[0][:200]})
            continue
        for batch in sorted(set(rows["batch_id"].to_pylist())):
            part = rows.filter(pc.equal(rows["batch_id"], batch))
            key = SeriesKey(*(part[c][0].as_py() for c in tables.SERIES_COLUMNS))
            groups.setdefault((key, batch), []).append((f["path"], part))
    for (key, batch), parts in groups.items():
        rows = pa.concat_tables([p for _, p in parts])
        ingested = pc.max(rows["ingested_at"]).as_py()
        candles = rows.select(list(CANDLE_SCHEMA.names)).cast(CANDLE_SCHEMA)
        result = {"series": key.label(), "lost_batch": batch, "files": [p for p, _ in parts],
                  "rows_in_files": candles.num_rows, "insert_only": insert_only}
        if insert_only:
            candles = _absent(lake, key, candles)
        try:
            with series_lease(lake, key):
                done = commit_candles(lake, candles, key=key, now=ingested,
                                      request={"recovered_by": "coinline doctor", "lost_batch": batch, **why})
        except LeaseHeldError as exc:
            out.append({**result, "status": "lease-held", "reason": str(exc)})
            continue
        out.append({**result, "status": "recommitted", "batch_id": done.batch_id, "inserted": done.inserted,
                    "revised": done.revised, "duplicates": done.duplicates, "table_version": done.table_version})
    return out


def _rows(lake: Lake, table: str, rel: str) -> int | None:
    try:
        return pq.read_metadata(lake.path(f"{table}/{rel}"), filesystem=lake.fs).num_rows
    except (OSError, pa.ArrowException):
        return None


def read_raw_file(lake: Lake, table: str, rel: str) -> pa.Table:
    """A raw_candles data file's rows with its partition columns restored from its path."""
    data = pq.read_table(lake.path(f"{table}/{rel}"), filesystem=lake.fs)
    parts = dict(seg.split("=", 1) for seg in rel.split("/")[:-1] if "=" in seg)
    for col in tables.SERIES_COLUMNS:
        if col not in data.column_names:
            data = data.append_column(col, pa.array([unquote(parts[col])] * data.num_rows, pa.string()))
    return data.select(list(RAW_COLUMNS))


def _absent(lake: Lake, key: SeriesKey, candles: pa.Table) -> pa.Table:
    """Only the candles whose open time no commit of the series holds."""
    if candles.num_rows == 0:
        return candles
    times = candles["open_time"]
    lo, hi = pc.min(times).as_py(), pc.max(times).as_py() + timedelta(milliseconds=1)
    stored = tables.read(lake, tables.RAW, series=key, start=lo, end=hi, columns=["open_time"])
    held = stored["open_time"].cast(times.type)
    return candles.filter(pc.invert(pc.is_in(times, value_set=held)))
