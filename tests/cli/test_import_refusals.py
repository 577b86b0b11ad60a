"""`coinline import` through the real CLI: what it refuses (exit 2, nothing committed), what it rejects
row by row (good rows committed, every rejected row listed, exit 2), and that every row read is
accounted for: rows_read = inserted + duplicates + revised + rejected + not_yet_closed + other symbols.
The clock is pinned by the `cli` fixture (tests/cli/conftest.py) to 2026-06-01T12:30:00Z."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coinline.timeframes import known_intervals

ACCOUNTED = ("inserted", "duplicates", "revised", "rejected", "not_yet_closed", "skipped_other_symbols")
DAY = datetime(2026, 5, 1, tzinfo=UTC)       # a month before the pinned clock: every candle closed
HEADER = "ticker,time,open,high,low,close,volume\n"


def row(hour: int, *, ticker: str = "BTC", open_: float = 10, high: float = 11, low: float = 9,
        close: float = 10.5, volume: float = 1, start: datetime = DAY) -> str:
    when = (start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{ticker},{when},{open_},{high},{low},{close},{volume}\n"


def csv(tmp_path: Path, name: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows))
    return path


def args(path: Path | str, *extra: str, interval: str = "1h", symbol: str = "BTC") -> list[str]:
    return ["import", "--format", "csv", "--symbol", symbol, "--quote", "USD", "--interval", interval,
            str(path), *extra]


def errors(out) -> list[str]:
    """The command's own stderr lines (the app also logs to stderr)."""
    return [line for line in out.err.splitlines() if line.startswith("coinline: ")]


def series_rows(cli) -> dict[str, int]:
    return {s["series"]: s["rows"] for s in cli("status", "--json", as_json=True)}


def test_every_row_is_accounted_for_in_json_and_table(cli, tmp_path):
    first = csv(tmp_path, "a.csv", [row(h) for h in range(6)])
    (a,) = cli(*args(first, "--json"), as_json=True)
    assert (a["rows_read"], a["inserted"]) == (6, 6)
    now = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    second = csv(tmp_path, "b.csv", [
        row(0),                                   # line 2: identical to the stored candle -> duplicate
        row(1, close=10.75),                      # line 3: a changed value -> revised
        row(6),                                   # line 4: new -> inserted
        row(7, high=10),                          # line 5: high below close -> rejected
        row(8, ticker="ETH"),                     # line 6: another coin -> other symbol
        row(9), row(9),                           # lines 7-8: the same candle twice -> inserted + duplicate
        row(0, start=now - timedelta(minutes=30)),   # line 9: 12:00, still open at 12:30 -> not yet closed
    ])
    (b,) = cli(*args(second, "--json"), as_json=True, expect=2)
    assert {k: b[k] for k in ("rows_read", *ACCOUNTED)} == {
        "rows_read": 8, "inserted": 2, "duplicates": 2, "revised": 1, "rejected": 1, "not_yet_closed": 1,
        "skipped_other_symbols": 1}
    assert b["rows_read"] == sum(b[k] for k in ACCOUNTED)
    assert b["rejected_rows"] == [{"line": 5, "row": 3,
                                   "reason": "high 10 is below close 10.5 (high must be >= max(open, close))"}]
    record = json.loads((tmp_path / "lake" / b["rejected_record"]).read_text())
    assert record["rejected"][0]["raw"]["high"] == "10"
    assert series_rows(cli)[b["series"]] == 8      # 6 + 2 new keys; the revision is a new version of one
    out = cli(*args(second), expect=2)              # the table names the not-yet-closed and other-symbol counts
    header, line = out.out.splitlines()
    assert header.split() == ["path", "series", "rows_read", *ACCOUNTED]
    assert line.split()[2:] == ["8", "0", "5", "0", "1", "1", "1"]
    assert f"coinline: rejected {second} line 5: high 10 is below close 10.5" in out.err


def test_hourly_file_imported_as_daily_is_refused_and_nothing_committed(cli, tmp_path):
    hourly = csv(tmp_path, "BTC_1h.csv", [row(h) for h in range(72)])
    out = cli(*args(hourly, interval="1d"), expect=2)
    assert errors(out) == [
        f"coinline: error: file {hourly} spacing is 1h, --interval says 1d "
        "(most frequent gap between its 72 distinct open times)"]
    assert series_rows(cli) == {}


def test_a_refused_file_refuses_the_whole_import(cli, tmp_path):
    good = csv(tmp_path, "good.csv", [row(h) for h in range(5)])
    out = cli(*args(good, str(tmp_path / "missing.csv")), expect=2)
    assert "missing.csv: no such file" in out.err
    assert series_rows(cli) == {}                  # good.csv was read but not committed


@pytest.mark.parametrize(("high", "low", "close", "volume", "reason"), [
    (9.5, 9, 10.5, 1, "high 9.5 is below close 10.5 (high must be >= max(open, close))"),
    (11, 10.2, 10.5, 1, "low 10.2 is above open 10 (low must be <= min(open, close))"),
    (8, 12, 10, 1, "high 8 is below open 10"),
    (11, 9, 10.5, -1, "volume is -1 (must be >= 0)"),
])
def test_ohlc_invariants_reject_rows_with_line_and_reason(cli, tmp_path, high, low, close, volume, reason):
    path = csv(tmp_path, "x.csv", [row(0), row(1, high=high, low=low, close=close, volume=volume), row(2)])
    (report,) = cli(*args(path, "--json"), as_json=True, expect=2)
    assert (report["inserted"], report["rejected"]) == (2, 1)
    [rej] = report["rejected_rows"]
    assert rej["line"] == 3 and rej["reason"].startswith(reason)
    assert "1 row(s) rejected" in cli(*args(path), expect=2).err


def test_conflict_markers_are_rejected_not_other_symbols(cli, tmp_path):
    path = csv(tmp_path, "merged.csv", [row(0), "<<<<<<< HEAD\n", row(1), "=======\n", row(1, close=10.25),
                                        ">>>>>>> theirs\n", row(2, ticker="ETH"), row(2)])
    (report,) = cli(*args(path, "--json"), as_json=True, expect=2)
    assert [(r["line"], r["reason"]) for r in report["rejected_rows"]] == [
        (3, "git conflict marker"), (5, "git conflict marker"), (7, "git conflict marker")]
    assert report["skipped_other_symbols"] == 1
    assert report["rows_read"] == 8 == sum(report[k] for k in ACCOUNTED)


def test_a_directory_is_named_as_a_directory(cli, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    out = cli(*args(folder), expect=2)
    assert errors(out) == [f"coinline: error: {folder}: is a directory, not a candle file (name the files inside it)"]


def test_unsupported_interval_is_one_line_listing_the_supported_ones(cli, tmp_path):
    path = csv(tmp_path, "x.csv", [row(0)])
    out = cli(*args(path, interval="7m"), expect=2)
    assert out.err.splitlines() == [                 # refused before anything starts: nothing else
        f"coinline: error: --interval '7m' is not a supported interval; supported intervals: "
        f"{', '.join(known_intervals())}"]


def test_unknown_symbol_is_refused_unless_allowed(cli, tmp_path):
    path = csv(tmp_path, "x.csv", [row(h, ticker="FOO") for h in range(3)])
    out = cli(*args(path, symbol="foo"), expect=2)
    assert "--symbol 'FOO' is not in universe UNIVERSE_V1_TOP30_NON_STABLE" in out.err
    assert "--allow-unknown-symbol" in out.err and series_rows(cli) == {}
    (report,) = cli(*args(path, "--allow-unknown-symbol", "--json", symbol="foo"), as_json=True)
    assert (report["series"], report["inserted"], report["rejected_rows"]) == ("import:csv:CSV:FOO-USD:1h", 3, [])


def test_a_clean_import_exits_0_and_says_nothing_on_stderr(cli, tmp_path):
    path = csv(tmp_path, "x.csv", [row(h) for h in range(4)])
    out = cli(*args(path))
    assert errors(out) == [] and "rows_read" in out.out
