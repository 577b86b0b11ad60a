"""`coinline run` offline: backfill, venue sync, gaps, validate, materialize, report, reproducibly."""

import json
from pathlib import Path

import pytest

from tests.cli.conftest import _environment, _runner


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("job")


@pytest.fixture(scope="module")
def first_report(job_dir):
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, job_dir)
        import contextlib
        import io

        from coinline.cli import main

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            assert main(["--now", "2026-06-01T12:30:00Z", "run", "--no-train", "--json"]) == 0
        return json.loads(buf.getvalue())


@pytest.fixture
def job(job_dir, monkeypatch, capsys, first_report):
    """The shared lake of one offline run (read-only tests)."""
    _environment(monkeypatch, job_dir)
    return _runner(capsys)


@pytest.fixture
def report(first_report):
    return first_report


def test_run_backfills_validates_and_materializes_offline(report, job_dir):
    outcomes = {(s["symbol"], s["quote"]): s["status"] for s in report["backfill"]["series"]}
    assert outcomes[("BTC", "USD")] == outcomes[("BTC", "CAD")] == outcomes[("TRX", "USD")] == "ok"
    assert outcomes[("TRX", "CAD")] == "not-listed"  # explicit, never a silent skip
    (dataset,) = report["datasets"]
    assert len(dataset["content_hash"]) == 64 and dataset["series"] == 5
    manifest = json.loads((Path(dataset["path"].removeprefix("file://")) / "manifest.json").read_text())
    assert manifest["content_hash"] == dataset["content_hash"]
    assert manifest["quality"]["success"] and manifest["inputs"]["raw_candles_version"] >= 5
    assert {p["symbol"] for p in report["parity"]} == {"BTC", "ETH", "TRX"}
    assert not any(p["flagged"] for p in report["parity"])
    # CAD series on the replay venue have no-trade gaps: retried, then recorded with the answer
    cad = [g for g in report["gaps"] if "-CAD:" in g["series"]]
    assert cad and all(g["status"] == "known" and "retried" in g["answer"] for g in cad)
    assert list((job_dir / "lake" / "reports").glob("run-*.json"))


def test_rerunning_the_job_adds_nothing_and_reproduces_the_hash(report, job):
    again = job("run", "--no-train", "--json", as_json=True)
    assert sum(s["inserted"] + s["revised"] for s in again["backfill"]["series"]) == 0
    assert again["datasets"][0]["content_hash"] == report["datasets"][0]["content_hash"]


def test_status_and_export_show_the_canonical_candles(job, tmp_path):
    status = job("status", "--json", as_json=True)
    btc = next(s for s in status if s["series"] == "coinapi:KRAKEN:BTC-USD:1h")
    assert btc["rows"] == 45 * 24 and btc["missing_candles"] == 0
    job("export", "--symbol", "BTC", "--quote", "USD", "--interval", "1h", "--out", str(tmp_path / "btc.csv"))
    lines = (tmp_path / "btc.csv").read_text().splitlines()
    assert len(lines) == 1 + 45 * 24 and lines[0].startswith('"source","venue","symbol"')


def test_materialize_prints_dataset_id_and_hash_as_json(report, job):
    (ds,) = job("materialize", "--json", as_json=True)
    assert ds["content_hash"] == report["datasets"][0]["content_hash"]
    assert ds["dataset_id"].endswith(ds["content_hash"][:16])


def test_quality_gate_blocks_a_dataset_with_inconsistent_candles(cli, tmp_path):
    from datetime import UTC, datetime

    from coinline.ingest.writer import commit_candles
    from coinline.lake import open_lake
    from coinline.providers.base import SeriesKey, candle_table

    cli("run", "--no-train")
    lake = open_lake(f"file://{tmp_path}/lake")
    key = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
    t = int(datetime(2026, 6, 1, 11, tzinfo=UTC).timestamp() * 1000)
    bad = candle_table(key, [t], [100.0], [90.0], [95.0], [99.0], [1.0], [3])  # high below open and close
    commit_candles(lake, bad, key=key, request={"test": "inconsistent"}, now=datetime(2026, 6, 2, tzinfo=UTC))
    out = cli("materialize", expect=1)   # bad data in the lake: a runtime failure, not bad input
    assert "raw quality suite" in out.err and "materialization blocked" in out.err
    results = list((tmp_path / "lake" / "quality" / "raw").glob("*.json"))
    failed = [json.loads(p.read_text()) for p in results if not json.loads(p.read_text())["success"]]
    assert len(failed) == 1 and any(c["name"].startswith("ohlc") and not c["success"] for c in failed[0]["checks"])
