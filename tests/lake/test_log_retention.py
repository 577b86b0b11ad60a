"""`coinline maintain` keeps the Delta log short: commit records are archived before their entries go, every
pinned version keeps a checkpoint, a cleanup killed half way finishes on the next run without losing or
doubling a record, damage stops it, and VACUUM (full mode) deletes stray files only past the retention."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coinline.doctor.inspect import inspect_table
from coinline.errors import CoinlineError
from coinline.lake import integrity, log_retention, tables
from coinline.lake import maintain as mt
from coinline.lake.store import Lake

START = datetime(2025, 1, 1, tzinfo=UTC)
NOW = START + timedelta(days=30)


def _gap(i: int) -> pa.Table:
    t0 = START + timedelta(hours=i)
    return pa.Table.from_pylist([{"source": "sim", "venue": "V", "symbol": "BTC", "quote": "USD", "interval": "1h",
                                  "gap_start": t0, "gap_end": t0 + timedelta(hours=1), "missing_candles": 1,
                                  "status": "open", "answer": "", "detected_at": t0}], schema=tables.GAPS_SCHEMA)


def _appended(lake: Lake, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        tables.append(lake, tables.GAPS, _gap(i), {"batch_id": f"b{i}", "kind": "gaps"})


def _pin(lake: Lake, gaps_version: int) -> None:
    lake.write_json("datasets/d/manifest.json", {"dataset_id": "d", "inputs": {
        "raw_candles_version": 0, "corrections_version": 0, "known_gaps_version": gaps_version}})


def _log(lake: Lake) -> list[str]:
    return sorted(p.name for p in (Path(lake.base_path) / tables.GAPS / "_delta_log").iterdir())


def _gaps(record: dict) -> dict:
    return next(t for t in record["tables"] if t["table"] == tables.GAPS)


def _listing(entries: dict[int, int], checkpoints: dict[int, int]) -> integrity.LogListing:
    info = lambda v, kind, t: integrity.ObjectInfo(f"t/_delta_log/{v:020d}.{kind}", 1, t)  # noqa: E731
    return integrity.LogListing({v: info(v, "json", t) for v, t in entries.items()},
                                {v: [info(v, "checkpoint.parquet", t)] for v, t in checkpoints.items()}, None)


def test_plan_takes_old_intact_entries_below_the_newest_checkpoint_and_unpinned_checkpoints():
    listing = _listing({v: 100 for v in range(25)}, {10: 100, 20: 100})
    assert log_retention.plan(listing, 20, keep=[], cutoff_ns=200) == (list(range(20)), [10])
    assert log_retention.plan(listing, 20, keep=[10], cutoff_ns=200) == (list(range(20)), [])
    young = _listing({**{v: 100 for v in range(25)}, 7: 300}, {10: 100, 20: 100})
    assert log_retention.plan(young, 20, keep=[], cutoff_ns=200) == (list(range(7)), [])   # stops at a young entry
    assert log_retention.plan(listing, 20, keep=[], cutoff_ns=200, damaged=[12]) == (list(range(12)), [10])
    assert log_retention.plan(listing, 0, keep=[], cutoff_ns=200) == ([], [])


def test_pinned_and_newest_versions_stay_readable_and_every_record_is_kept(lake):
    _appended(lake, 25)
    _pin(lake, 7)
    pinned_rows = tables.read(lake, tables.GAPS, version=7)
    manifests = tables.commit_manifests(lake, tables.GAPS)
    history = tables.commit_history(lake, tables.GAPS)

    record = mt.maintain(lake, now=NOW, retention_hours=0)

    gaps = _gaps(record)
    newest = tables.open_table(lake, tables.GAPS).version()
    floor = 19   # the checkpoint before the newest stays, with the entries after it (the doctor replays them)
    assert _log(lake) == [f"{v:020d}.checkpoint.parquet" for v in (7, floor)] + [
        f"{v:020d}.json" for v in range(floor, newest)] + [
        f"{newest:020d}.checkpoint.parquet", f"{newest:020d}.json", "_last_checkpoint"]
    assert gaps["log"]["entries_deleted"] == floor and gaps["log"]["pinned_checkpoints_written"] == [7]
    assert not inspect_table(lake, tables.GAPS).problems
    checkpoint = Path(lake.path(integrity.checkpoint_name(tables.GAPS, newest)))
    intact = checkpoint.read_bytes()
    checkpoint.write_bytes(intact[:100])   # a damaged newest checkpoint can still be rebuilt from the log
    assert [(p.kind, bool(p.repair)) for p in inspect_table(lake, tables.GAPS).problems] == [
        ("checkpoint-damaged", True)]
    checkpoint.write_bytes(intact)
    assert tables.read(lake, tables.GAPS, version=7) == pinned_rows
    assert tables.read(lake, tables.GAPS).num_rows == 25
    assert tables.commit_manifests(lake, tables.GAPS) == manifests
    assert tables.commit_history(lake, tables.GAPS)[:len(history)] == history
    with pytest.raises(CoinlineError, match="known_gaps version 8 is no longer in its Delta log"):
        tables.open_table(lake, tables.GAPS, 8)
    _appended(lake, 3, first=25)   # the cleaned table takes appends, and a second cleanup archives the rest
    mt.maintain(lake, now=NOW + timedelta(days=7), retention_hours=0)
    assert [m["batch_id"] for m in tables.commit_manifests(lake, tables.GAPS)] == [f"b{i}" for i in range(28)]
    versions = [c["version"] for c in tables.commit_history(lake, tables.GAPS)]
    assert versions == list(range(versions[-1] + 1))   # every version once, none twice
    assert len(lake.list(f"{log_retention.ARCHIVE}/{tables.GAPS}")) == 2


def test_a_cleanup_killed_after_archiving_finishes_on_the_next_run(lake, monkeypatch):
    _appended(lake, 15)
    manifests = tables.commit_manifests(lake, tables.GAPS)
    real_delete = Lake.delete
    deleted: list[str] = []

    def killed(self, name):
        if "_delta_log" in name and len(deleted) == 3:
            raise OSError("killed")
        deleted.append(name) if "_delta_log" in name else None
        real_delete(self, name)

    monkeypatch.setattr(Lake, "delete", killed)
    with pytest.raises(CoinlineError, match="maintenance of table known_gaps failed: OSError: killed"):
        mt.maintain(lake, now=NOW, retention_hours=0)
    assert tables.commit_manifests(lake, tables.GAPS) == manifests   # 3 entries gone, all archived
    monkeypatch.setattr(Lake, "delete", real_delete)
    record = mt.maintain(lake, now=NOW + timedelta(hours=1), retention_hours=0)
    assert _gaps(record)["log"]["archive"] is None and _gaps(record)["log"]["entries_deleted"] > 0
    assert tables.commit_manifests(lake, tables.GAPS) == manifests
    versions = [c["version"] for c in tables.commit_history(lake, tables.GAPS)]
    assert versions == list(range(versions[-1] + 1))


def test_a_damaged_entry_stops_the_cleanup_and_damage_after_the_checkpoint_stops_maintain(lake):
    _appended(lake, 15)
    entry = Path(lake.path(integrity.entry_name(tables.GAPS, 4)))
    entry.write_bytes(entry.read_bytes()[:-20])   # cut: before the checkpoint at 10, delta-rs never reads it
    record = mt.maintain(lake, now=NOW, retention_hours=0)
    log = _gaps(record)["log"]
    assert log["entries_deleted"] == 4 and log["stopped_at_damaged_entry"] == integrity.entry_name(tables.GAPS, 4)
    assert entry.exists()
    _appended(lake, 2, first=15)   # the newest is then a version no checkpoint holds
    version = tables.open_table(lake, tables.GAPS).version()
    assert not Path(lake.path(integrity.checkpoint_name(tables.GAPS, version))).exists()
    newest = Path(lake.path(integrity.entry_name(tables.GAPS, version)))
    newest.write_bytes(b"")
    with pytest.raises(CoinlineError, match="known_gaps failed: .*run `coinline doctor` first"):
        mt.maintain(lake, now=NOW, retention_hours=0)


def test_vacuum_deletes_a_stray_file_only_past_the_retention(lake):
    _appended(lake, 3)
    table = Path(lake.path(tables.GAPS))
    young, old = table / "part-stray-young.parquet", table / "part-stray-old.parquet"
    pq.write_table(_gap(99), young)
    pq.write_table(_gap(98), old)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))   # a file a killed writer left two days ago, never committed
    record = mt.maintain(lake, now=NOW, retention_hours=6)
    assert young.exists() and not old.exists()
    assert "part-stray-old.parquet" in _gaps(record)["vacuum"]["paths"]


def test_tombstones_leave_checkpoints_after_their_hours(lake):
    _appended(lake, 12)

    def removes_in_newest_checkpoint() -> int:
        hint = integrity.read_hint(lake, tables.GAPS)
        column = pq.read_table(lake.path(integrity.checkpoint_name(tables.GAPS, hint["version"])),
                               columns=["remove"])["remove"]
        return sum(1 for r in column.to_pylist() if r)

    kept = mt.maintain(lake, now=NOW, retention_hours=6)   # compaction inputs stay for readers: tombstones kept
    assert _gaps(kept)["compaction"]["files_removed"] == 12 and removes_in_newest_checkpoint() == 12
    _appended(lake, 12, first=12)
    dropped = mt.maintain(lake, now=NOW, retention_hours=0, tombstone_hours=0)
    assert _gaps(dropped)["settings"] == {"delta.deletedFileRetentionDuration": "interval 0 hours"}
    assert removes_in_newest_checkpoint() == 0 and tables.read(lake, tables.GAPS).num_rows == 24
    assert set(mt.stored_files(lake, tables.GAPS)) == {
        p for p in tables.file_index(lake, tables.GAPS)["path"].to_pylist()}


def test_raw_validation_goes_on_after_maintain_cleaned_the_version_it_stopped_at(lake):
    """The raw suite finds the batches committed since it last ran by time travel to that version; when
    maintenance cleaned it out of the log it reads the new batches' series instead, and misses none."""
    from coinline.ingest.writer import commit_candles
    from coinline.providers.base import SeriesKey
    from coinline.quality.lake_checks import validate_new_batches
    from tests.lake.test_maintain import _walk

    key = SeriesKey("sim", "RANDOMWALK", "BTC", "USD", "1h")
    rows = _walk(np.random.default_rng(5), key, 30)
    ids = [commit_candles(lake, rows.slice(i, 1), key=key, request={"i": i}, now=NOW).batch_id for i in range(12)]
    assert validate_new_batches(lake).validated == frozenset(ids)
    ids = [commit_candles(lake, rows.slice(i, 1), key=key, request={"i": i}, now=NOW).batch_id for i in range(12, 24)]
    mt.maintain(lake, now=NOW, retention_hours=0)
    ids += [commit_candles(lake, rows.slice(24, 1), key=key, request={"i": 24}, now=NOW).batch_id]
    done = validate_new_batches(lake)
    assert done.validated == frozenset(ids) and not done.failed
