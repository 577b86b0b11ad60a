"""`coinline doctor` on a damaged lake (issue 12): every command that opens a damaged table fails with one
line naming the table and the doctor; the doctor names the damage, `--repair` repairs it, and every row
ever committed (the damaged commit's too) reads back exactly as before the damage."""

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from coinline.datasets.canonical import series_candles
from coinline.doctor import doctor
from coinline.errors import DamagedTableError
from coinline.hashing import table_sha256
from coinline.ingest.writer import CommitBuffer, commit_candles
from coinline.lake import integrity, tables
from coinline.lake.integrity import check_entry
from coinline.lake.lease import lease_name
from coinline.providers.base import SeriesKey
from tests.fakes import KEY, T0, candles

NOW = T0 + timedelta(days=30)
VALUES = ["open_time", "open", "high", "low", "close", "volume", "trade_count", "version"]
DAMAGE = {
    "zero-byte": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "cut-at-a-line": lambda data: data[: data.index(b"\n")],  # valid JSON, but its add action is gone
}


def _commit(lake, batches: int, first: int = 0) -> None:
    for i in range(first, first + batches):
        commit_candles(lake, candles(n=50, start=T0 + timedelta(hours=50 * i), price=100.0 + i), key=KEY,
                       request={"batch": i}, now=NOW)


def _content(lake) -> tuple[int, str]:
    rows = series_candles(lake, KEY)
    return rows.num_rows, table_sha256(rows, VALUES)


def _entry(lake, version: int) -> Path:
    return Path(lake.path(integrity.entry_name(tables.RAW, version)))


def _damage_newest(lake, how: str) -> tuple[int, bytes]:
    version = tables.open_table(lake, tables.RAW).version()
    entry = _entry(lake, version)
    damaged = DAMAGE[how](entry.read_bytes())
    entry.write_bytes(damaged)
    return version, damaged


def _one_line_failure(out, *needles: str) -> str:
    """The error is one line; anything else on stderr is an INFO log line (e.g. the replay venue's)."""
    lines = out.err.strip().splitlines()
    errors = [line for line in lines if " INFO " not in line]
    assert len(errors) == 1 and "Traceback" not in out.err, out.err
    assert all(n in errors[0] for n in needles), errors[0]
    return errors[0]


@pytest.mark.parametrize("how", list(DAMAGE))
def test_doctor_repairs_a_damaged_newest_entry_and_nothing_committed_is_lost(cli, lake, how):
    _commit(lake, 4)
    committed = _content(lake)  # the damaged commit's rows included
    version, damaged = _damage_newest(lake, how)

    line = _one_line_failure(cli("status", expect=1), "table raw_candles", f"{version:020d}.json", "coinline doctor")
    assert line.startswith("coinline: error:")
    found = cli("doctor", "--json", expect=1, as_json=True)
    (problem,) = found["problems"]
    assert (problem["kind"], problem["severity"]) == ("interrupted-commit", "error")
    assert problem["subject"] == integrity.entry_name(tables.RAW, version) and problem["repair"]
    assert not lake.list("doctor/records")  # examining changes nothing

    repaired = cli("doctor", "--repair", "--json", as_json=True)
    assert repaired["healthy"] and repaired["problems"] == []
    assert _content(lake) == committed
    record = lake.read_json(repaired["record"])
    placeholder = next(r for r in record["repairs"] if r["action"] == "placeholder")
    assert lake.read_bytes(placeholder["quarantined_to"]) == damaged  # the damaged entry kept, not deleted
    (result,) = placeholder["recovered"]
    assert (result["status"], result["rows_in_files"], result["inserted"]) == ("recommitted", 50, 50)
    assert record["status"] == "done"

    assert "healthy" in cli("doctor").out
    status = cli("status", "--json", as_json=True)
    assert [s["rows"] for s in status] == [committed[0]]
    assert tables.open_table(lake, tables.RAW).version() == version + 1  # the placeholder keeps its number


def test_a_damaged_commit_of_several_pages_is_named_and_every_page_recommitted(cli, lake):
    _commit(lake, 1)
    buffer = CommitBuffer(lake)   # one commit of three pages (a batched ingest)
    for i in (1, 2, 3):
        buffer.add(candles(n=50, start=T0 + timedelta(hours=50 * i), price=100.0 + i), key=KEY,
                   request={"batch": i}, now=NOW)
    batches = {r.batch_id for r in buffer.flush()}
    committed = _content(lake)
    _damage_newest(lake, "cut-at-a-line")
    (problem,) = cli("doctor", "--json", expect=1, as_json=True)["problems"]
    assert f"(3 batches: 150 rows of {KEY.label()})" in problem["message"]
    repaired = cli("doctor", "--repair", "--json", as_json=True)
    assert repaired["healthy"] and _content(lake) == committed
    recovered = next(r for r in lake.read_json(repaired["record"])["repairs"] if r["action"] == "placeholder")["recovered"]
    assert {r["lost_batch"] for r in recovered} == batches and [r["inserted"] for r in recovered] == [50] * 3


def test_a_writer_refuses_to_commit_on_a_damaged_log(lake):
    _commit(lake, 2)
    version, damaged = _damage_newest(lake, "zero-byte")
    with pytest.raises(DamagedTableError, match="is empty"):
        _commit(lake, 1, first=2)
    listing = integrity.list_log(lake, tables.RAW)
    assert listing.newest == version and _entry(lake, version).read_bytes() == damaged


def test_a_damaged_middle_entry_gets_back_only_the_candles_no_later_commit_has(cli, lake):
    """A lake damaged before opens checked the log: later commits were built on the empty entry."""
    _commit(lake, 4)
    committed = _content(lake)
    _entry(lake, 2).write_bytes(b"")  # commit 2 of 4 (versions 1..4)
    assert _content(lake)[0] == committed[0] - 50  # what delta-rs silently did
    report = cli("doctor", "--json", expect=1, as_json=True)
    assert [p["kind"] for p in report["problems"]] == ["damaged-entry"]
    repaired = cli("doctor", "--repair", "--json", as_json=True)
    assert repaired["healthy"] and _content(lake) == committed
    (result,) = next(r for r in lake.read_json(repaired["record"])["repairs"] if r["action"] == "placeholder")["recovered"]
    assert result["insert_only"] and result["inserted"] == 50


@pytest.mark.parametrize("dies_in, also_found", [
    ("recover.recover_rows", []),                   # after the placeholder, before re-committing
    ("run._place", ["interrupted-commit"]),         # after recording, before the placeholder
])
def test_an_interrupted_repair_is_reported_and_resumed(cli, lake, monkeypatch, dies_in, also_found):
    from coinline.doctor import recover, run

    _commit(lake, 3)
    committed = _content(lake)
    _damage_newest(lake, "truncated")

    def killed(*args, **kw):
        raise KeyboardInterrupt

    module, name = dies_in.split(".")
    with monkeypatch.context() as m:
        m.setattr({"recover": recover, "run": run}[module], name, killed)
        with pytest.raises(KeyboardInterrupt):
            doctor(lake, now=NOW, repair=True)
    report = cli("doctor", "--json", expect=1, as_json=True)
    assert [p["kind"] for p in report["problems"]] == ["unfinished-repair", *also_found]
    assert cli("doctor", "--repair", "--json", as_json=True)["healthy"]
    assert _content(lake) == committed
    assert cli("doctor", "--json", as_json=True)["problems"] == []


def test_a_damaged_checkpoint_is_quarantined_and_rewritten(cli, lake):
    _commit(lake, 12)  # a checkpoint every 10 commits: one at version 9
    committed = _content(lake)
    checkpoint = Path(lake.path(integrity.checkpoint_name(tables.RAW, 9)))
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    _one_line_failure(cli("status", expect=1), "table raw_candles", "checkpoint.parquet", "coinline doctor")
    repaired = cli("doctor", "--repair", "--json", as_json=True)
    assert repaired["healthy"] and _content(lake) == committed
    assert any(r["action"] == "checkpoint-written" for r in repaired["repairs"])
    assert cli("doctor", "--json", as_json=True)["problems"] == []


def test_a_missing_data_file_is_reported_and_not_repaired(cli, lake):
    _commit(lake, 3)
    path = tables.file_index(lake, tables.RAW)["path"][1].as_py()
    os.remove(lake.path(f"{tables.RAW}/{path}"))
    for args in (["doctor"], ["doctor", "--repair"]):
        report = cli(*args, "--json", expect=1, as_json=True)
        (problem,) = report["problems"]
        assert problem["kind"] == "missing-file" and not problem["repair"] and problem["detail"]["rows"] == 50
    assert not lake.list("doctor/records")  # nothing safe to do, nothing done
    with pytest.raises(DamagedTableError, match="is missing; `coinline doctor` explains$"):
        series_candles(lake, KEY)


def test_stale_leases_and_old_tombstones_are_cleaned_live_leases_kept(cli, lake):
    stale = lease_name(KEY)
    live = lease_name(SeriesKey("fake", "FAKEX", "ETH", "USD", "1h"))
    lake.write_json(stale, {"holder": "elsewhere:1:x", "expires_at": "2020-01-01T00:00:00+00:00"})
    lake.write_json(live, {"holder": "elsewhere:2:y", "expires_at": "2999-01-01T00:00:00+00:00"})
    tomb = f"{stale}.expired-elsewhere_0_z"
    lake.write_json(tomb, {"holder": "elsewhere:0:z"})
    os.utime(lake.path(tomb), (1_000_000_000, 1_000_000_000))
    found = cli("doctor", "--json", as_json=True)  # warnings only: exit 0
    assert sorted(p["kind"] for p in found["problems"]) == ["lease-tombstone", "stale-lease"]
    assert [x["lease"] for x in found["live_leases"]] == [live]
    cli("doctor", "--repair")
    assert lake.read_bytes(stale) is None and lake.read_bytes(tomb) is None
    assert lake.read_json(live)["holder"] == "elsewhere:2:y"
    assert lake.read_json(f"{stale}.expired-elsewhere_1_x")["holder"] == "elsewhere:1:x"  # buried, not erased


def test_tables_are_not_repaired_while_an_ingester_holds_a_lease(cli, lake):
    _commit(lake, 2)
    _damage_newest(lake, "zero-byte")
    lake.write_json(lease_name(KEY), {"holder": "elsewhere:2:y", "expires_at": "2999-01-01T00:00:00+00:00"})
    report = cli("doctor", "--repair", "--json", expect=1, as_json=True)
    assert [p["kind"] for p in report["problems"]] == ["interrupted-commit"]
    assert any(r.get("action") == "skipped" and "live leases" in r["reason"] for r in report["repairs"])


@pytest.mark.parametrize("data, defect", [
    (b"", "empty"), (b"\n \n", "empty"), (b'{"commitInfo": {}}\n{"add": {"pa', "truncated"),
    (b'{"x": 1}\n', "unparseable"), (b'not json\n{"add": {}}', "unparseable"),
    (b'{"commitInfo": {"operationMetrics": {"num_added_files": 2}}}\n{"add": {"path": "a"}}', "incomplete"),
    (b'{"commitInfo": {"operationMetrics": {"num_added_files": 1}}}\n{"add": {"path": "a"}}', ""),
])
def test_entry_defects_are_named(data, defect):
    assert check_entry(7, data).defect == defect


def test_examining_a_healthy_lake_reports_its_tables(cli, lake):
    _commit(lake, 2)
    report = cli("doctor", "--json", as_json=True)
    raw = next(t for t in report["tables"] if t["name"] == tables.RAW)
    assert (raw["version"], raw["referenced_files"], raw["unreferenced_files"]) == (2, 2, 0)
    assert report["healthy"] and json.dumps(report)


def test_compacted_files_are_counted_as_tombstones_and_never_recommitted(cli, lake):
    _commit(lake, 4)
    tables.open_table(lake, tables.RAW).optimize.compact()  # removes the 4 small files, adds 1
    _commit(lake, 1, first=4)
    committed = _content(lake)
    _damage_newest(lake, "zero-byte")
    repaired = cli("doctor", "--repair", "--json", as_json=True)
    assert repaired["healthy"] and _content(lake) == committed
    (result,) = next(r for r in lake.read_json(repaired["record"])["repairs"] if r["action"] == "placeholder")["recovered"]
    assert (result["rows_in_files"], result["inserted"]) == (50, 50)  # the damaged commit's file only
    raw = next(t for t in repaired["tables"] if t["name"] == tables.RAW)
    # unreferenced: the 4 compacted files, and the damaged commit's own file (its rows now live in a new one)
    assert raw["remove_tombstones"] == 4 and raw["unreferenced_files"] == 5
