"""The `coinline` command as separate processes on one lake: a backfill killed mid-way resumes to
exactly the uninterrupted result, a second ingester on a leased series refuses to write, and sync run
twice adds nothing the second time. Every process pins the replay market with the hidden `--now`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from coinline.lake import open_lake, tables
from coinline.lake.lease import lease_name, series_lease
from coinline.providers.base import SeriesKey
from coinline.settings import ENV_VARIABLES

from .conftest import NOW, lake_candles, new_lake

CLI_TIMEOUT_S = 120
FIRST_RAW_COMMIT = "raw_candles/_delta_log/00000000000000000001.json"   # version 0 creates the table


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def cli_env(lake_dir: Path, *, history_days: int, symbols: str = "BTC,ETH", intervals: str = "1h") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARIABLES}   # nothing from the caller's config
    env.update({
        "COINLINE_VENUE": "replay",
        "OBJECT_STORE_URL": f"file://{lake_dir}",
        "COINLINE_SYMBOLS": symbols,
        "COINLINE_QUOTES": "USD",
        "COINLINE_INTERVALS": intervals,
        "COINLINE_REPLAY_HISTORY_DAYS": str(history_days),
        "COINLINE_UNIVERSE_DIR": str(lake_dir.parent / "universe"),
    })
    return env


def _argv(args: list[str], now: datetime) -> list[str]:
    return [sys.executable, "-m", "coinline.cli", "--now", _iso(now), *args]


def coinline(args: list[str], env: dict, cwd: Path, *, now: datetime = NOW) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(args, now), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)


def start(args: list[str], env: dict, cwd: Path, *, now: datetime = NOW) -> subprocess.Popen:
    return subprocess.Popen(_argv(args, now), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _json(result: subprocess.CompletedProcess | tuple[str, str]):
    out = result.stdout if isinstance(result, subprocess.CompletedProcess) else result[0]
    return json.loads(out)


def _raw_rows(lake) -> int:
    return tables.read(lake, tables.RAW, columns=["open_time"]).num_rows


def _stop(proc: subprocess.Popen) -> None:
    """Kill a process this test started if it is still running (only on a failure path)."""
    if proc.returncode is None and proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=CLI_TIMEOUT_S)


def _held_leases(lake) -> list[str]:
    return [n for n in lake.list("leases") if n.endswith(".json")]


# --------------------------------------------------------------------------------- kill and resume


def test_backfill_killed_after_a_commit_resumes_to_the_uninterrupted_result(tmp_path):
    """1m candles, so a series needs more than one 100000-candle page: the kill lands after the first
    page's commit and before the run ends. When a run finishes before it can be killed, try again with
    a deeper history (bounded)."""
    for attempt, history_days in enumerate((75, 150)):
        work = tmp_path / f"attempt{attempt}"
        work.mkdir()
        killed_dir, reference_dir = work / "killed", work / "reference"
        args = ["backfill", "--json"]
        killed_env = cli_env(killed_dir, history_days=history_days, intervals="1m")
        reference = start(args, cli_env(reference_dir, history_days=history_days, intervals="1m"), work)
        victim = start(args, killed_env, work)
        try:
            deadline = time.monotonic() + CLI_TIMEOUT_S
            while (victim.poll() is None and not (killed_dir / FIRST_RAW_COMMIT).exists()
                   and time.monotonic() < deadline):
                time.sleep(0.01)
            interrupted = victim.poll() is None
            if interrupted:
                victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=CLI_TIMEOUT_S)
            assert interrupted or victim.returncode == 0, victim.stderr
            ref_out, ref_err = reference.communicate(timeout=CLI_TIMEOUT_S)
        finally:
            _stop(victim)
            _stop(reference)
        assert reference.returncode == 0, ref_err
        expected_rows = 2 * history_days * 1440
        lake = open_lake(f"file://{killed_dir}")
        if interrupted and _raw_rows(lake) < expected_rows:
            break
    else:
        pytest.fail("every backfill finished before it could be killed")

    assert victim.returncode == -signal.SIGKILL
    committed = tables.commit_manifests(lake, tables.RAW)
    rows_before = _raw_rows(lake)
    assert committed and rows_before == sum(m["row_count"] for m in committed)   # only whole pages

    # The dead run still holds the lease of the series it was writing; the rerun sees its holder is a
    # process of this host that no longer exists and takes the lease over at once.
    leases = _held_leases(lake)
    assert len(leases) <= 1                                     # at most the series in flight
    for name in leases:
        assert f":{victim.pid}:" in lake.read_json(name)["holder"]

    rerun = coinline(args, killed_env, work)

    assert rerun.returncode == 0, rerun.stderr
    outcomes = _json(rerun)
    assert [o["status"] for o in outcomes] == ["ok", "ok"]
    assert sum(o["inserted"] for o in outcomes) == expected_rows - rows_before
    assert sum(o["duplicates"] for o in outcomes) == 0          # no committed candle was fetched again
    assert sum(o["revised"] for o in outcomes) == 0
    candles = lake_candles(lake)
    assert candles.equals(lake_candles(open_lake(f"file://{reference_dir}")))
    assert candles.num_rows == _raw_rows(lake) == expected_rows  # no duplicate or partial rows
    assert set(candles["version"].to_pylist()) == {1}
    for series in {m["series"] for m in tables.commit_manifests(lake, tables.RAW)}:
        ranges = sorted(m["time_range"] for m in tables.commit_manifests(lake, tables.RAW) if m["series"] == series)
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False)), series  # pages never overlap
    assert _held_leases(lake) == []


# --------------------------------------------------------------------------------- two ingesters


def test_second_ingester_on_a_leased_series_refuses_and_writes_nothing(tmp_path):
    lake_dir = tmp_path / "lake"
    lake = new_lake(lake_dir)
    env = cli_env(lake_dir, history_days=5)
    args = ["backfill", "--symbols", "BTC", "--quotes", "USD"]
    key = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")

    with series_lease(lake, key) as lease:
        holder = lease.holder
        refused = coinline([*args, "--lease-wait", "0"], env, tmp_path)
        assert lake.read_json(lease_name(key))["holder"] == holder       # not taken over

    assert refused.returncode == 3, refused.stdout + refused.stderr
    said = refused.stdout + refused.stderr
    assert "lease-held" in said and holder in said and "not writing" in said
    assert tables.series_in(lake) == []
    assert tables.open_table(lake, tables.RAW).version() == 0           # not even an empty commit

    after = coinline(args, env, tmp_path)

    assert after.returncode == 0, after.stdout + after.stderr
    ((stored, rows, _first, _last),) = tables.series_in(lake)
    assert stored == key and rows == 5 * 24
    assert lake.read_json(lease_name(key)) is None


# --------------------------------------------------------------------------------- sync and status


def test_sync_twice_with_the_same_clock_adds_nothing_and_status_shows_coverage(tmp_path):
    lake_dir = tmp_path / "lake"
    env = cli_env(lake_dir, history_days=5)
    backfilled = coinline(["backfill", "--json"], env, tmp_path)
    assert backfilled.returncode == 0, backfilled.stderr
    later = NOW + timedelta(hours=3, minutes=20)

    first = coinline(["sync", "--json"], env, tmp_path, now=later)
    log_entries = len(list((lake_dir / "raw_candles" / "_delta_log").glob("*.json")))
    second = coinline(["sync", "--json"], env, tmp_path, now=later)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert [(o["symbol"], o["inserted"]) for o in _json(first)] == [("BTC", 3), ("ETH", 3)]
    assert [(o["status"], o["inserted"], o["revised"], o["duplicates"], o["pages"]) for o in _json(second)] == [
        ("ok", 0, 0, 0, 0)] * 2
    assert len(list((lake_dir / "raw_candles" / "_delta_log").glob("*.json"))) == log_entries

    status = coinline(["status", "--json"], env, tmp_path, now=later)

    assert status.returncode == 0, status.stderr
    rows = _json(status)
    assert [r["series"] for r in rows] == ["coinapi:KRAKEN:BTC-USD:1h", "coinapi:KRAKEN:ETH-USD:1h"]
    for r in rows:
        assert r["first"] == (NOW - timedelta(days=5)).isoformat()
        assert r["last"] == (NOW + timedelta(hours=2)).isoformat()
        assert r["rows"] == 5 * 24 + 3
        assert (r["missing_candles"], r["known_gap_candles"], r["corrections"]) == (0, 0, 0)


def test_an_ingester_waits_for_a_held_series_and_finishes_it_in_the_same_run(tmp_path, venue, universe):
    """The second ingester does the free series, then waits (polling) for the held one; once its holder lets
    go, the same run backfills it: every series ends `ok`, no rerun needed. The wait is counted in the
    sleeps it asks for (injected), not in wall time."""
    from coinline.ingest.backfill import LEASE_POLL_S, backfill

    from .conftest import build_source

    lake = new_lake(tmp_path / "lake")
    key = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
    held = series_lease(lake, key)
    held.__enter__()
    slept: list[float] = []

    def sleep(seconds: float) -> None:       # the other ingester finishes during the second poll
        slept.append(seconds)
        if len(slept) == 2:
            held.__exit__(None, None, None)

    source = build_source(venue, universe, lambda _s: None)
    outcomes = backfill(source, lake, [("BTC", "USD", "1h"), ("ETH", "USD", "1h")], now=NOW, progress=False,
                        lease_wait_s=60, sleep=sleep)
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.message for o in outcomes]
    assert slept == [LEASE_POLL_S, LEASE_POLL_S]
    assert {k.symbol for k, *_ in tables.series_in(lake)} == {"BTC", "ETH"}
    assert _held_leases(lake) == []


def test_a_series_still_held_after_the_wait_stays_lease_held(tmp_path, venue, universe):
    from coinline.ingest.backfill import backfill

    from .conftest import build_source

    lake = new_lake(tmp_path / "lake")
    key = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
    slept: list[float] = []
    with series_lease(lake, key):
        outcomes = backfill(build_source(venue, universe, lambda _s: None), lake, [("BTC", "USD", "1h")], now=NOW,
                            progress=False, lease_wait_s=12, sleep=slept.append)
    assert [o.status for o in outcomes] == ["lease-held"] and sum(slept) == 12
    assert tables.series_in(lake) == []
