"""`coinline maintain`: compact the lake's Delta tables, VACUUM only what no pinned version needs, checkpoint and
shorten their logs; every run is recorded in `maintenance/<time>-<id>.json`.

Why: every ingest page is one commit adding one small Parquet file per series, so the file index that every
read and every no-op sync builds (and the Parquet files a series read opens) grows with the number of commits.

Per table (raw_candles, corrections, known_gaps, and forecasts when it exists), in this order; a table whose
log `coinline doctor` would repair is not touched (VACUUM would delete the data files the doctor re-commits):
1. settings: the `tables.TABLE_CONFIG` properties an older table lacks are set once (one metadata commit; a
   concurrent `tables.append` retries on top of it), with tombstones kept `tombstone_hours`.
   `delta.enableExpiredLogCleanup=false` must be in place before the OPTIMIZE commit: delta-rs 1.6 deletes
   log entries older than `delta.logRetentionDuration` after an OPTIMIZE whatever its commit hook
   properties say, and its cleanup loses commit manifests and the versions that datasets pin (step 5 is ours).
2. compaction: `optimize.compact` bin-packs each partition's files smaller than `target_bytes` into files of
   up to `target_bytes`. raw_candles is partitioned by series, so a file holds one series; compaction keeps
   insertion order and ingest appends in time order, so a series' rows stay sorted by open_time. (A z-order
   would rewrite every file on every run, so a second run would not be a no-op, and within one series it
   only sorts by open_time, which the rows already are.) It is a rewrite commit (dataChange=false): rows,
   versions and every earlier table version are unchanged, and a concurrent append does not conflict with it
   (delta-rs retries the rewrite on top of blind appends).
3. VACUUM, delta-rs' "full" mode (Delta's own VACUUM semantics): it lists the table's stored files and deletes
   a file only when (a) no kept version references it (`keep_versions`: the newest and every table version
   that any dataset manifest pins, `datasets/*/manifest.json`, `inputs.<table>_version`), (b) no unexpired
   tombstone names it with a removal less than `retention_hours` ago (readers that opened the table just
   before a compaction finish with the files they saw), and (c) it was written at least `retention_hours`
   ago (a writer's file not committed yet is seconds old; one a killed writer left is garbage after that).
   Full rather than "lite" mode: lite only sees files whose tombstone is still in the log, and tombstones
   expire after `tombstone_hours` (a day), long before the next weekly run. Every version a dataset pins
   keeps exactly the files it had, so `canonical_candles(raw_version=V)` (`coinline audit`, a dataset
   rebuild) reads the same rows after maintenance as before. Every pinned version is kept, not only those a
   run or a decision names today: a dataset can be trained on, and so become a decision's lineage, at any
   later time. The price: each pinned version's files stay stored (`kept_for_pins` in the record); a lake
   where a dataset is materialized every cycle pins every cycle's version, so there VACUUM frees little while
   compaction still bounds the files a read opens.
4. checkpoint at the newest version when this run compacted or vacuumed (and none is there yet). A table
   whose files this run left as they were keeps its log as it is: a checkpoint of a few small entries makes
   every open slower (measured: an empty table opened in 1.45 ms from its one JSON entry and in 3.76 ms from
   a checkpoint of it), and writers checkpoint every `delta.checkpointInterval` commits themselves.
5. log cleanup (`lake/log_retention.py`): a checkpoint at every pinned version, each commit's record copied
   to `log_archive/<table>/`, then the entries and unpinned checkpoints older than the newest checkpoint
   deleted, so opening a table lists a short log however long the lake has synced.

A second run with nothing new changes nothing (no commit; only its record is written). Two maintainers are
exclusive through a lake-wide lease (`MAINTENANCE_LEASE`); writers need none. `dry_run` plans: it reports
what compaction would rewrite and what VACUUM would delete now, and writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from coinline.errors import CoinlineError, ConfigError, LeaseHeldError
from coinline.lake import integrity, log_retention, tables
from coinline.lake.lease import lease_name, series_lease
from coinline.lake.store import Lake
from coinline.providers.base import SeriesKey

FORECASTS = "forecasts"    # coinline.forecasting.ledger.FORECASTS (not imported: it pulls in pandas code)
MAINTAINED = (tables.RAW, tables.CORRECTIONS, tables.GAPS, FORECASTS)
PIN_FIELDS = {tables.RAW: "raw_candles_version", tables.CORRECTIONS: "corrections_version",
              tables.GAPS: "known_gaps_version"}
DEFAULT_RETENTION_HOURS = 6       # far longer than any coinline reader holds a snapshot; < the daily step
TARGET_FILE_BYTES = 128 * 1024 * 1024
RECORDS = "maintenance"
RECORD_KEY = "coinline_maintenance"   # custom commit metadata naming the record (not tables.META_KEY: no batch)
# the lake-wide maintenance lease, held through the series-lease mechanism (create-only, stale takeover)
MAINTENANCE_LEASE = SeriesKey("coinline", "lake", "maintenance", "all", "all")
_ATTEMPTS = 3


# -- pure planning ---------------------------------------------------------------------------------------
def pins_from_manifests(manifests: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[int, list[str]]]:
    """{table: {version: [dataset ids]}} from (object name, manifest) pairs; a manifest whose pin is missing
    or not a version number raises CoinlineError naming it (what it pins cannot be kept otherwise)."""
    pins: dict[str, dict[int, list[str]]] = {t: {} for t in PIN_FIELDS}
    for name, manifest in manifests:
        inputs = manifest.get("inputs") if isinstance(manifest, Mapping) else None
        for table, field in PIN_FIELDS.items():
            version = inputs.get(field) if isinstance(inputs, Mapping) else None
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise CoinlineError(f"{name}: inputs.{field} is {version!r}, not a {table} version; maintain cannot "
                                    f"keep what it pins (fix or remove the dataset), nothing was changed")
            pins[table].setdefault(version, []).append(str(manifest.get("dataset_id") or name))
    return {t: {v: sorted(ids) for v, ids in sorted(by.items())} for t, by in pins.items()}


def keep_versions(table: str, pinned: Mapping[int, list[str]], newest: int) -> list[int]:
    """The versions VACUUM must keep readable; a pin newer than the table raises CoinlineError (the manifest
    belongs to another table or lake: keeping nothing for it would be guessing)."""
    ahead = [(v, ids) for v, ids in pinned.items() if v > newest]
    if ahead:
        v, ids = ahead[0]
        raise CoinlineError(f"dataset {ids[0]} pins {table} version {v}, but the table's newest version is {newest}; "
                            f"maintain refuses to vacuum a table that does not hold what a dataset pins")
    return sorted(pinned)


def table_config(tombstone_hours: int) -> dict[str, str]:
    """`tables.TABLE_CONFIG` with tombstones kept `tombstone_hours` (the default gives TABLE_CONFIG itself)."""
    return {**tables.TABLE_CONFIG, "delta.deletedFileRetentionDuration": f"interval {tombstone_hours} hours"}


def config_upgrade(current: Mapping[str, str], target: Mapping[str, str] | None = None) -> dict[str, str]:
    """The `target` (default TABLE_CONFIG) properties a table lacks or has otherwise."""
    return {k: v for k, v in (target or tables.TABLE_CONFIG).items() if current.get(k) != v}


def compaction_candidates(index: pa.Table, partitions: list[str], target_bytes: int) -> dict[str, int]:
    """{partition: files} of the partitions compaction would rewrite: those with two or more files smaller
    than `target_bytes` (a single small file is left as it is)."""
    counts: dict[str, int] = {}
    cols = [f"partition.{c}" for c in partitions]
    for row in index.select(["size_bytes", *cols]).to_pylist():
        if row["size_bytes"] < target_bytes:
            label = "/".join(f"{c}={row[f'partition.{c}']}" for c in partitions) or "(table)"
            counts[label] = counts.get(label, 0) + 1
    return {p: n for p, n in sorted(counts.items()) if n > 1}


def _path(name: str) -> str:
    return unquote(name)


# -- facts read from the lake ----------------------------------------------------------------------------
def stored_files(lake: Lake, table: str) -> dict[str, int]:
    """{path relative to the table: bytes} of every stored data file (not the log, nor any other hidden `_` or
    `.` entry at the table's top, which VACUUM never touches either)."""
    base = lake.path(table).rstrip("/") + "/"
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return {i.path[len(base):]: int(i.size or 0) for i in lake.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and not i.path[len(base):].startswith(("_", "."))}


def pinned_versions(lake: Lake) -> dict[str, dict[int, list[str]]]:
    """Every table version that a dataset manifest in the lake pins."""
    names = [n for n in lake.list("datasets") if n.endswith("/manifest.json")]
    return pins_from_manifests((n, lake.read_json(n) or {}) for n in names)


def _facts(lake: Lake, table: str) -> dict[str, Any]:
    dt = tables.open_table(lake, table)
    index = pa.table(dt.get_add_actions(flatten=True))
    stored = stored_files(lake, table)
    return {"version": dt.version(), "active_files": index.num_rows,
            "active_bytes": int(pc.sum(index["size_bytes"]).as_py() or 0),
            "stored_files": len(stored), "stored_bytes": sum(stored.values())}


def _checkpoint_version(lake: Lake, table: str) -> int | None:
    hint = lake.read_json(f"{table}/_delta_log/_last_checkpoint")
    return hint.get("version") if isinstance(hint, dict) else None


def _present(lake: Lake) -> list[str]:
    return [t for t in MAINTAINED if DeltaTable.is_deltatable(lake.uri(t), storage_options=lake.storage_options)]


# -- the steps -------------------------------------------------------------------------------------------
def _retrying(step: Callable[[], Any]) -> Any:
    for attempt in range(_ATTEMPTS):
        try:
            return step()
        except CommitFailedError:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _vacuum(dt: DeltaTable, retention_hours: int, keep: list[int] | None, *, dry_run: bool,
            tag: CommitProperties) -> list[str]:
    return sorted(_path(p) for p in dt.vacuum(retention_hours=retention_hours, dry_run=dry_run, full=True,
                                              enforce_retention_duration=False, keep_versions=keep,
                                              commit_properties=tag, post_commithook_properties=tables.KEEP_LOG))


def maintain_table(lake: Lake, table: str, pinned: Mapping[int, list[str]], *, retention_hours: int,
                   target_bytes: int, dry_run: bool, record_id: str,
                   tombstone_hours: int = tables.TOMBSTONE_HOURS) -> dict[str, Any]:
    """Settings, compaction, VACUUM, checkpoint and log cleanup of one table (see the module docstring)."""
    tag = CommitProperties(custom_metadata={RECORD_KEY: record_id})
    damage = integrity.first_damage(lake, table)
    if damage:   # VACUUM would delete the data files `coinline doctor` re-commits from
        raise CoinlineError(f"its log is damaged ({damage[0]}); run `coinline doctor` first, nothing was changed")
    before = _facts(lake, table)
    keep = keep_versions(table, pinned, before["version"])
    out: dict[str, Any] = {"table": table, "before": before,
                           "kept_versions": {str(v): list(pinned[v]) for v in keep}}
    dt = tables.open_table(lake, table)
    out["settings"] = config_upgrade(dt.metadata().configuration, table_config(tombstone_hours))
    if out["settings"] and not dry_run:
        _retrying(lambda: tables.open_table(lake, table).alter.set_table_properties(
            out["settings"], commit_properties=tag, post_commithook_properties=tables.KEEP_LOG))
    index = pa.table(dt.get_add_actions(flatten=True))
    candidates = compaction_candidates(index, list(dt.metadata().partition_columns), target_bytes)
    out["compaction"] = {"partitions": len(candidates), "files": sum(candidates.values())}
    if candidates and not dry_run:
        try:
            metrics = tables.open_table(lake, table).optimize.compact(
                target_size=target_bytes, commit_properties=tag, post_commithook_properties=tables.KEEP_LOG)
            out["compaction"].update(files_removed=metrics["numFilesRemoved"], files_added=metrics["numFilesAdded"])
        except CommitFailedError as exc:  # a concurrent rewrite; the next run compacts what is left
            out["compaction"]["skipped"] = f"conflicting concurrent commit: {_first_line(exc)}"
    out["vacuum"] = _vacuum_step(lake, table, keep, retention_hours=retention_hours, dry_run=dry_run, tag=tag)
    newest = tables.open_table(lake, table)
    out["checkpoint"] = None
    rewrote = bool(out["compaction"].get("files_removed") or out["vacuum"]["files"])
    if not dry_run and rewrote and _checkpoint_version(lake, table) != newest.version():
        newest.create_checkpoint()
        out["checkpoint"] = newest.version()
    out["log"] = log_retention.clean(lake, table, keep, retention_hours=retention_hours, dry_run=dry_run,
                                     open_version=lambda v: tables.open_table(lake, table, v))
    out["after"] = before if dry_run else _facts(lake, table)
    return out


def _vacuum_step(lake: Lake, table: str, keep: list[int], *, retention_hours: int, dry_run: bool,
                 tag: CommitProperties) -> dict[str, Any]:
    """VACUUM (or its plan): the files deleted, and those a VACUUM without the pins would also have deleted.
    delta-rs lists a removed file until its tombstone expires, deleted or not, so only stored files count,
    and VACUUM runs (and commits) only when one of them is to be deleted: a second run changes nothing."""
    dt = tables.open_table(lake, table)
    sizes = stored_files(lake, table)
    unpinned = [p for p in _vacuum(dt, retention_hours, None, dry_run=True, tag=tag) if p in sizes]
    try:
        deleted = [p for p in _vacuum(dt, retention_hours, keep or None, dry_run=True, tag=tag) if p in sizes]
        if deleted and not dry_run:
            deleted = [p for p in _vacuum(dt, retention_hours, keep or None, dry_run=False, tag=tag) if p in sizes]
    except DeltaError as exc:  # e.g. a pinned version whose log entries an older delta-rs cleaned up
        raise CoinlineError(f"table {table}: VACUUM keeping versions {keep[:5]}{'...' if len(keep) > 5 else ''} "
                            f"failed, nothing deleted: {_first_line(exc)}") from None
    protected = sorted(set(unpinned) - set(deleted))
    return {"retention_hours": retention_hours, "files": len(deleted),
            "bytes": sum(sizes.get(p, 0) for p in deleted), "paths": deleted,
            "kept_for_pins": len(protected), "kept_for_pins_paths": protected}


# -- the run ---------------------------------------------------------------------------------------------
@contextmanager
def maintenance_lease(lake: Lake, *, clock: Callable[[], datetime]):
    """Hold the lake-wide maintenance lease; LeaseHeldError (one line) when another maintainer holds it."""
    try:
        with series_lease(lake, MAINTENANCE_LEASE, ttl=timedelta(hours=6), clock=clock) as lease:
            yield lease
    except LeaseHeldError as exc:
        raise LeaseHeldError(f"another `coinline maintain` holds {lease_name(MAINTENANCE_LEASE)} ({exc}); "
                             f"not maintaining") from None


def maintain(lake: Lake, *, now: datetime, dry_run: bool = False, retention_hours: int = DEFAULT_RETENTION_HOURS,
             target_bytes: int = TARGET_FILE_BYTES, clock: Callable[[], datetime] | None = None,
             tombstone_hours: int = tables.TOMBSTONE_HOURS) -> dict[str, Any]:
    """Maintain every table of the lake (see the module docstring); returns the record, which is also written
    to `maintenance/<record id>.json` unless `dry_run`. A table that fails is recorded with its error and the
    others are still maintained; then CoinlineError names it (after the record is written: what was done to
    the other tables stays on record)."""
    if isinstance(retention_hours, bool) or not isinstance(retention_hours, int) or retention_hours < 0:
        raise ConfigError(f"retention_hours={retention_hours!r} must be a whole number of hours >= 0")
    if isinstance(tombstone_hours, bool) or not isinstance(tombstone_hours, int) or tombstone_hours < 0:
        raise ConfigError(f"tombstone_hours={tombstone_hours!r} must be a whole number of hours >= 0")
    if target_bytes < 1:
        raise ConfigError(f"target_bytes={target_bytes!r} must be >= 1")
    record_id = f"{now:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:8]}"
    record: dict[str, Any] = {"record": f"{RECORDS}/{record_id}.json", "dry_run": dry_run,
                              "started_at": now.isoformat(), "retention_hours": retention_hours,
                              "tombstone_hours": tombstone_hours,
                              "target_file_bytes": target_bytes,
                              "keep_rule": "every table version a dataset manifest pins (datasets/*/manifest.json)"}
    lease = maintenance_lease(lake, clock=clock or (lambda: now)) if not dry_run else _nothing()
    with lease as held:
        pins = pinned_versions(lake)
        record["tables"] = []
        for table in _present(lake):
            try:
                done = maintain_table(lake, table, pins.get(table, {}), retention_hours=retention_hours,
                                      target_bytes=target_bytes, dry_run=dry_run, record_id=record_id,
                                      tombstone_hours=tombstone_hours)
            except (CoinlineError, DeltaError, OSError) as exc:
                done = {"table": table, "error": f"{type(exc).__name__}: {_first_line(exc)}"}
            record["tables"].append(done)
            if held is not None:
                held.renew()
        record["changed"] = any("error" not in t and (t["after"]["version"] != t["before"]["version"]
                                                      or t["vacuum"]["files"] or t["checkpoint"] is not None
                                                      or t["log"]["entries_deleted"])
                                for t in record["tables"])
        if not dry_run:
            record["finished_at"] = (clock() if clock else now).isoformat()
            lake.create_only(record["record"], record)
    failed = [t for t in record["tables"] if "error" in t]
    if failed:
        raise CoinlineError(f"maintenance of table {failed[0]['table']} failed: {failed[0]['error']}"
                            + ("" if dry_run else f" (the other tables were maintained; record {record['record']})"))
    return record


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


@contextmanager
def _nothing():
    yield None


def _log_words(log: Mapping[str, Any], dry_run: bool) -> str:
    if "skipped" in log:
        return f"- ({log['skipped']})"
    if dry_run:
        return f"would remove {log.get('entries_planned', 0)} entries, {log.get('checkpoints_planned', 0)} checkpoints"
    return f"{log['entries_deleted']} entries, {log['checkpoints_deleted']} checkpoints removed"


def summary_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per table for the console."""
    rows = []
    for t in record["tables"]:
        if "error" in t:
            rows.append({"table": t["table"], "version": "-", "compacted": f"FAILED: {t['error']}"})
            continue
        b, a, c, v = t["before"], t["after"], t["compaction"], t["vacuum"]
        compacted = (f"{c.get('files_removed', 0)} -> {c.get('files_added', 0)}" if "files_removed" in c
                     else c.get("skipped") or (f"would rewrite {c['files']} in {c['partitions']} partitions"
                                                if record["dry_run"] and c["files"] else "-"))
        rows.append({"table": t["table"], "version": f"{b['version']} -> {a['version']}",
                     "active_files": f"{b['active_files']} -> {a['active_files']}",
                     "stored_files": f"{b['stored_files']} -> {a['stored_files']}", "compacted": compacted,
                     "vacuumed": f"{'would delete ' if record['dry_run'] else ''}{v['files']} ({v['bytes']:,} B)",
                     "kept_for_pins": f"{v['kept_for_pins']} files, {len(t['kept_versions'])} versions",
                     "checkpoint": "-" if t["checkpoint"] is None else t["checkpoint"],
                     "log_cleaned": _log_words(t["log"], record["dry_run"])})
    return rows
