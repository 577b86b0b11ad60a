"""`coinline maintain`: compaction bounds the files a read sees, VACUUM keeps every version a dataset pins
(an old decision still audits as a match), a second run is a recorded no-op, a dry run changes nothing, and
the Delta log is cleaned up only by maintain, after it archived every commit's manifest and checkpointed
every pinned version."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from coinline.audit.replay import audit
from coinline.datasets.canonical import canonical_candles
from coinline.errors import CoinlineError, DamagedTableError, LeaseHeldError
from coinline.hashing import table_sha256
from coinline.ingest.writer import commit_candles
from coinline.lake import maintain as mt
from coinline.lake import open_lake, tables
from coinline.lake.lease import series_lease
from coinline.providers.base import SeriesKey, candle_table

START = datetime(2025, 1, 1, tzinfo=UTC)
BARS, PAGE, SYNCED = 2400, 400, 40   # backfill 6 pages per series, then 40 one-candle syncs per series
SYMBOLS = ("BTC", "ETH", "SOL")
SERIES = {s: SeriesKey("sim", "RANDOMWALK", s, "USD", "1h") for s in SYMBOLS}
NOW = START + timedelta(hours=BARS + SYNCED + 2)


def _walk(rng, key: SeriesKey, n: int) -> pa.Table:
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    times = int(START.timestamp() * 1000) + np.arange(n, dtype=np.int64) * 3_600_000
    return candle_table(key, times, open_, high, low, close, rng.lognormal(3, 0.5, n), rng.integers(1, 500, n))


def _revised(page: pa.Table, row: int) -> pa.Table:
    close = page["close"].to_numpy().copy()
    close[row] *= 1.01
    high = np.maximum(page["high"].to_numpy(), close)
    page = page.set_column(page.schema.get_field_index("close"), "close", pa.array(close))
    return page.set_column(page.schema.get_field_index("high"), "high", pa.array(high))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    """A lake of many small commits: a paged backfill, a dataset pinned at that version with a trained and
    decided run on it, then one-candle syncs and a revision of a candle inside the dataset (so the newest
    version no longer rebuilds the dataset: only the pinned one does)."""
    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.promotion.decide import promote
    from coinline.training.run import train
    from coinline.universe import load_universe
    from tests.training.conftest import fast_config

    root = tmp_path_factory.mktemp("maintain") / "lake"
    lake = open_lake(f"file://{root}")
    tables.ensure_tables(lake)
    rng = np.random.default_rng(3)
    full = {s: _walk(rng, k, BARS + SYNCED) for s, k in SERIES.items()}
    backfilled = START + timedelta(hours=BARS + 1)
    for lo in range(0, BARS, PAGE):
        for s, k in SERIES.items():
            commit_candles(lake, full[s].slice(lo, PAGE), key=k, request={"page": lo}, now=backfilled)
    spec = DatasetSpec("UNIVERSE_V1_TOP30_NON_STABLE", "1h", "sim", ("USD",))
    dataset = materialize(lake, load_universe(spec.universe_version), spec, gap_tolerance=0, now=backfilled)
    run = train(lake, dataset.dataset_id, fast_config(families=("lightgbm",)), workers=1)
    decision = promote(lake, run.run_id, now=backfilled)["decision"]
    for i in range(SYNCED):
        for s, k in SERIES.items():
            commit_candles(lake, full[s].slice(BARS + i, 1), key=k, request={"sync": i},
                           now=backfilled + timedelta(hours=i + 1))
    commit_candles(lake, _revised(full["BTC"].slice(100, 1), 0), key=SERIES["BTC"], request={"late": True}, now=NOW)
    return {"root": root, "dataset": dataset.manifest, "decision": decision}


@pytest.fixture
def scenario(template, tmp_path) -> dict:
    """A private copy of the template lake (Delta logs hold relative paths, so a copy is the same lake)."""
    shutil.copytree(template["root"], tmp_path / "lake")
    return {**template, "lake": open_lake(f"file://{tmp_path / 'lake'}")}


def _raw_paths(lake, version: int | None = None) -> set[str]:
    return {p for p in tables.file_index(lake, tables.RAW, version)["path"].to_pylist()}


def _rebuilt_hash(lake, manifest: dict, version: int | None) -> str:
    keys = [SeriesKey(s["source"], s["venue"], s["symbol"], s["quote"], s["interval"]) for s in manifest["series"]]
    return table_sha256(canonical_candles(lake, keys, raw_version=version), manifest["hashed_columns"])


def _raw(record: dict) -> dict:
    return next(t for t in record["tables"] if t["table"] == tables.RAW)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_maintain_bounds_files_and_an_old_decision_still_audits_as_a_match(scenario):
    lake, manifest, decision = scenario["lake"], scenario["dataset"], scenario["decision"]
    pinned = manifest["inputs"]["raw_candles_version"]
    pinned_files = _raw_paths(lake, pinned)
    manifests = tables.commit_manifests(lake, tables.RAW)
    before = _raw_paths(lake)
    assert len(before) == 3 * (BARS // PAGE + SYNCED) + 1                    # one file per commit
    assert _rebuilt_hash(lake, manifest, None) != manifest["content_hash"]   # the revision changed the newest view

    record = mt.maintain(lake, now=NOW, retention_hours=0)

    raw = _raw(record)
    after = _raw_paths(lake)
    assert len(after) == len(SERIES)                                # one file per series partition
    assert raw["before"]["active_files"] == len(before) and raw["after"]["active_files"] == len(SERIES)
    stored = set(mt.stored_files(lake, tables.RAW))
    assert stored == after | pinned_files                           # all else deleted; the pinned version's kept
    assert raw["after"]["stored_files"] == len(stored) < raw["before"]["stored_files"]
    assert raw["vacuum"]["files"] == raw["before"]["stored_files"] + len(SERIES) - len(stored)   # + compacted
    assert raw["kept_versions"] == {str(pinned): [manifest["dataset_id"]]}
    assert set(raw["vacuum"]["kept_for_pins_paths"]) == pinned_files - after   # a VACUUM without pins deletes these
    assert _rebuilt_hash(lake, manifest, pinned) == manifest["content_hash"]
    report = audit(lake, decision["decision_id"])                   # dataset, retraining and gates
    assert report.match, report.to_dict()
    assert lake.read_json(record["record"]) == record
    operations = {h["operation"]: h.get(mt.RECORD_KEY) for h in tables.commit_history(lake, tables.RAW)[-8:]}
    assert operations["OPTIMIZE"] == record["record"].removeprefix("maintenance/").removesuffix(".json")
    # the log keeps the newest state (from the checkpoint before the newest) and the pinned version; every
    # commit's manifest is still there
    log = sorted(p.name for p in (Path(lake.base_path) / tables.RAW / "_delta_log").iterdir())
    checkpoints = [int(n[:20]) for n in log if n.endswith(".checkpoint.parquet")]
    newest = tables.open_table(lake, tables.RAW).version()
    assert checkpoints[0] == pinned and checkpoints[-1] == newest and len(checkpoints) == 3
    assert [int(n[:20]) for n in log if n.endswith(".json")] == list(range(checkpoints[1], newest + 1))
    assert raw["log"]["entries_deleted"] == checkpoints[1] and raw["log"]["pinned_checkpoints_written"] == [pinned]
    assert tables.commit_manifests(lake, tables.RAW) == manifests


def test_a_vacuum_without_the_pins_would_break_the_audit(scenario):
    """The control: the same VACUUM minus `keep_versions` deletes files the pinned version reads."""
    lake, decision = scenario["lake"], scenario["decision"]
    mt.maintain(lake, now=NOW, retention_hours=0)
    assert audit(lake, decision["decision_id"], retrain=False).match
    DeltaTable(lake.uri(tables.RAW)).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    with pytest.raises(DamagedTableError, match="is missing"):
        audit(lake, decision["decision_id"], retrain=False)


def test_a_second_maintain_is_a_recorded_no_op(scenario):
    lake = scenario["lake"]
    first = mt.maintain(lake, now=NOW, retention_hours=0)
    tree = _tree(Path(lake.base_path) / tables.RAW)
    second = mt.maintain(lake, now=NOW + timedelta(hours=1), retention_hours=0)
    assert first["changed"] and not second["changed"]
    for t in second["tables"]:
        assert t["before"] == t["after"] and t["settings"] == {}
        assert (t["compaction"]["files"], t["vacuum"]["files"], t["checkpoint"]) == (0, 0, None)
    assert _tree(Path(lake.base_path) / tables.RAW) == tree
    assert [n for n in lake.list(mt.RECORDS)] == sorted([first["record"], second["record"]])


def test_dry_run_plans_and_changes_nothing(scenario):
    lake = scenario["lake"]
    root = Path(lake.base_path)
    tree = _tree(root)
    plan = mt.maintain(lake, now=NOW, dry_run=True, retention_hours=0)
    assert _tree(root) == tree
    raw = _raw(plan)
    assert raw["compaction"] == {"partitions": len(SERIES), "files": len(_raw_paths(lake))}
    assert raw["before"] == raw["after"] and raw["vacuum"]["files"] == 0   # nothing removed yet
    assert raw["settings"] == {}    # tables created with TABLE_CONFIG need no upgrade


def test_retention_keeps_files_removed_less_than_its_hours_ago(scenario):
    lake = scenario["lake"]
    record = mt.maintain(lake, now=NOW, retention_hours=1)
    raw = _raw(record)
    assert raw["after"]["active_files"] == len(SERIES) and raw["vacuum"]["files"] == 0
    assert raw["after"]["stored_files"] == raw["before"]["stored_files"] + len(SERIES)


def test_delta_rs_never_cleans_the_log_of_an_older_table_and_maintain_archives_before_it_does(lake):
    """A table created before TABLE_CONFIG disabled log cleanup: delta-rs would delete log entries older than
    its log retention at the next checkpoint (appends) or after any OPTIMIZE, manifests and pinned versions
    with them; appends must not. maintain cleans the log only after archiving and checkpointing the pins."""
    shutil.rmtree(Path(lake.base_path) / tables.GAPS)
    DeltaTable.create(lake.uri(tables.GAPS), tables.GAPS_SCHEMA, configuration={
        "delta.checkpointInterval": "10", "delta.logRetentionDuration": "interval 1 day"})
    log = Path(lake.base_path) / tables.GAPS / "_delta_log"

    def gap(i: int) -> pa.Table:
        t0 = START + timedelta(hours=i)
        return pa.Table.from_pylist([{"source": "sim", "venue": "V", "symbol": "BTC", "quote": "USD", "interval": "1h",
                                      "gap_start": t0, "gap_end": t0 + timedelta(hours=1), "missing_candles": 1,
                                      "status": "open", "answer": "", "detected_at": t0}], schema=tables.GAPS_SCHEMA)

    for i in range(5):
        tables.append(lake, tables.GAPS, gap(i), {"batch_id": f"b{i}", "kind": "gaps"})
    old = time.time() - 60 * 86400
    for entry in log.iterdir():
        os.utime(entry, (old, old))
    for i in range(5, 12):   # crosses a checkpoint (version 10)
        tables.append(lake, tables.GAPS, gap(i), {"batch_id": f"b{i}", "kind": "gaps"})
    assert (log / f"{0:020d}.json").exists() and len(tables.commit_manifests(lake, tables.GAPS)) == 12
    lake.write_json("datasets/d/manifest.json", {"dataset_id": "d", "inputs": {
        "raw_candles_version": 0, "corrections_version": 0, "known_gaps_version": 3}})
    record = mt.maintain(lake, now=NOW, retention_hours=0)
    gaps = next(t for t in record["tables"] if t["table"] == tables.GAPS)
    assert gaps["settings"]["delta.enableExpiredLogCleanup"] == "false"
    assert gaps["compaction"]["files_removed"] == 12
    assert not (log / f"{0:020d}.json").exists() and gaps["log"]["archive"]
    assert [m["batch_id"] for m in tables.commit_manifests(lake, tables.GAPS)] == [f"b{i}" for i in range(12)]
    assert tables.read(lake, tables.GAPS, version=3).num_rows == 3
    with pytest.raises(CoinlineError, match="known_gaps version 4 is no longer in its Delta log"):
        tables.read(lake, tables.GAPS, version=4)


def test_an_append_retries_over_a_concurrent_metadata_commit(lake, monkeypatch):
    """maintain's one-time settings commit fails a blind append that started before it; the append retries."""
    real = tables.write_deltalake
    calls = []

    def racing(table, *args, **kw):
        if not calls:   # the settings commit lands between the append's open and its commit
            DeltaTable(lake.uri(tables.GAPS)).alter.set_table_properties({"delta.logRetentionDuration": "interval 90 days"})
        calls.append(table.version())
        return real(table, *args, **kw)

    monkeypatch.setattr(tables, "write_deltalake", racing)
    t0 = START
    rows = pa.Table.from_pylist([{"source": "sim", "venue": "V", "symbol": "BTC", "quote": "USD", "interval": "1h",
                                  "gap_start": t0, "gap_end": t0 + timedelta(hours=1), "missing_candles": 1,
                                  "status": "open", "answer": "", "detected_at": t0}], schema=tables.GAPS_SCHEMA)
    version = tables.append(lake, tables.GAPS, rows, {"batch_id": "b", "kind": "gaps"})
    assert calls == [0, 1] and version == 2


def test_a_held_maintenance_lease_stops_a_second_maintainer(lake):
    with series_lease(lake, mt.MAINTENANCE_LEASE), pytest.raises(LeaseHeldError, match="another `coinline maintain`"):
        mt.maintain(lake, now=NOW)
    assert lake.list(mt.RECORDS) == []


def test_a_failing_table_is_recorded_and_named_and_the_others_are_still_maintained(lake):
    from tests.fakes import KEY, candles

    for i in range(3):
        commit_candles(lake, candles(n=24 * 3).slice(24 * i, 24), key=KEY, request={}, now=NOW)
    lake.write_json("datasets/d/manifest.json", {"dataset_id": "d", "inputs": {
        "raw_candles_version": 99, "corrections_version": 0, "known_gaps_version": 0}})
    with pytest.raises(CoinlineError, match=r"maintenance of table raw_candles failed: CoinlineError: dataset d "
                                            r"pins raw_candles version 99, but the table's newest version is 3"):
        mt.maintain(lake, now=NOW, retention_hours=0)
    (name,) = lake.list(mt.RECORDS)
    record = lake.read_json(name)
    assert [t["table"] for t in record["tables"] if "error" in t] == [tables.RAW]
    assert len(_raw_paths(lake)) == 3                                   # the failing table is left as it was
    assert {t["table"] for t in record["tables"] if "error" not in t} == {tables.CORRECTIONS, tables.GAPS}


def test_pins_come_from_every_manifest_and_a_bad_one_stops_maintenance():
    ok = {"dataset_id": "d1", "inputs": {"raw_candles_version": 7, "corrections_version": 2, "known_gaps_version": 0}}
    other = {"dataset_id": "d2", "inputs": {"raw_candles_version": 7, "corrections_version": 3, "known_gaps_version": 0}}
    pins = mt.pins_from_manifests([("datasets/d2/manifest.json", other), ("datasets/d1/manifest.json", ok)])
    assert pins == {tables.RAW: {7: ["d1", "d2"]}, tables.CORRECTIONS: {2: ["d1"], 3: ["d2"]},
                    tables.GAPS: {0: ["d1", "d2"]}}
    bad = {"dataset_id": "d3", "inputs": {"raw_candles_version": "7"}}
    with pytest.raises(CoinlineError, match=r"datasets/d3/manifest.json: inputs.raw_candles_version is '7'"):
        mt.pins_from_manifests([("datasets/d3/manifest.json", bad)])
    with pytest.raises(CoinlineError, match="dataset d1 pins raw_candles version 7, but the table's newest version is 5"):
        mt.keep_versions(tables.RAW, pins[tables.RAW], 5)
    assert mt.keep_versions(tables.RAW, pins[tables.RAW], 7) == [7]


def test_compaction_candidates_are_partitions_with_two_or_more_small_files():
    index = pa.table({"size_bytes": [10, 20, 500, 10, 30], "partition.symbol": ["A", "A", "B", "B", "C"]})
    assert mt.compaction_candidates(index, ["symbol"], 100) == {"symbol=A": 2}
    assert mt.compaction_candidates(index, ["symbol"], 1000) == {"symbol=A": 2, "symbol=B": 2}
    assert mt.config_upgrade(tables.TABLE_CONFIG) == {}
    assert mt.config_upgrade({"delta.checkpointInterval": "10"}) == {
        k: v for k, v in tables.TABLE_CONFIG.items() if k != "delta.checkpointInterval"}


def test_cli_maintain_dry_run_and_run(scenario, monkeypatch, capsys):
    import json

    from coinline.cli import main

    lake = scenario["lake"]
    monkeypatch.setenv("OBJECT_STORE_URL", lake.root)
    assert main(["maintain", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] and lake.list(mt.RECORDS) == []
    assert main(["maintain", "--retention-hours", "0"]) == 0
    out = capsys.readouterr().out
    assert "raw_candles" in out and len(lake.list(mt.RECORDS)) == 1
    assert len(_raw_paths(lake)) == len(SERIES)



def test_the_kfp_step_maintains_and_hands_back_the_record(scenario, tmp_path):
    import inspect
    import json

    import yaml
    from kfp.dsl import Artifact

    from components.ops.maintain.component import maintain_lake
    from pipelines.compile import COMPILED

    assert inspect.signature(maintain_lake.python_func).parameters["retention_hours"].default == \
        mt.DEFAULT_RETENTION_HOURS
    spec = next(yaml.safe_load_all((COMPILED / "maintain.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["retention_hours"]["defaultValue"] == \
        mt.DEFAULT_RETENTION_HOURS
    lake = scenario["lake"]
    out = Artifact(uri=str(tmp_path / "record"))
    name = maintain_lake.python_func(object_store_url=lake.root, record=out, retention_hours=0, now=NOW.isoformat())
    assert json.loads((tmp_path / "record").read_text()) == lake.read_json(name)
    assert len(_raw_paths(lake)) == len(SERIES)
