"""What the file readers refuse (a whole file) and reject (one row): spacing against the interval,
OHLC invariants, git conflict markers, directories. Tiny synthetic files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coinline.errors import ImportFormatError
from coinline.providers.files import (
    SPACING_MIN_GAPS,
    duration_text,
    modal_spacing_ms,
    read_candle_file,
)
from coinline.providers.files_csv import CONFLICT_MARKER, ticker_match_mask, ticker_matches

H = 3600
T0 = 1_704_067_200          # 2024-01-01T00:00:00Z, a midnight


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def kraken_rows(starts: list[int], price: str = "1,2,1,2,3,4") -> str:
    return "".join(f"{t},{price}\n" for t in starts)


# --- spacing ------------------------------------------------------------------------------------

def test_hourly_file_imported_as_daily_is_refused_naming_both_spacings(tmp_path):
    path = write(tmp_path, "BTC_1h.csv", kraken_rows([T0 + i * H for i in range(48)]))
    with pytest.raises(ImportFormatError) as info:
        read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1d")
    assert str(info.value) == (f"file {path} spacing is 1h, --interval says 1d "
                               "(most frequent gap between its 48 distinct open times)")


def test_daily_file_imported_as_hourly_is_refused(tmp_path):
    path = write(tmp_path, "BTC_1d.csv", kraken_rows([T0 + i * 24 * H for i in range(SPACING_MIN_GAPS + 1)]))
    with pytest.raises(ImportFormatError, match="spacing is 1d, --interval says 1h"):
        read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")


def test_a_short_sparse_file_is_not_mistaken_for_a_coarser_one(tmp_path):
    """Kraken omits hours without trades: SPACING_MIN_GAPS - 1 gaps of 3h are not evidence of a 3h file."""
    starts = [T0 + 3 * i * H for i in range(SPACING_MIN_GAPS)]
    result = read_candle_file(write(tmp_path, "k.csv", kraken_rows(starts)), "kraken-ohlcvt", symbol="BTC",
                              quote="USD", interval="1h")
    assert result.candles.num_rows == len(starts) and result.rejected == ()
    longer = [T0 + 3 * i * H for i in range(SPACING_MIN_GAPS + 1)]
    with pytest.raises(ImportFormatError, match="spacing is 3h, --interval says 1h"):
        read_candle_file(write(tmp_path, "k2.csv", kraken_rows(longer)), "kraken-ohlcvt", symbol="BTC",
                         quote="USD", interval="1h")


def test_a_spacing_shorter_than_the_interval_is_refused_from_the_first_gap(tmp_path):
    path = write(tmp_path, "k.csv", kraken_rows([T0, T0 + H]))
    with pytest.raises(ImportFormatError, match="spacing is 1h, --interval says 4h"):
        read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="4h")


def test_gappy_file_whose_modal_gap_is_the_interval_imports(tmp_path):
    starts = [T0, T0 + H, T0 + 2 * H, T0 + 5 * H, T0 + 9 * H, T0 + 10 * H]      # gaps 1,1,3,4,1 hours
    result = read_candle_file(write(tmp_path, "k.csv", kraken_rows(starts)), "kraken-ohlcvt", symbol="BTC",
                              quote="USD", interval="1h")
    assert result.candles.num_rows == 6


def test_modal_spacing_ties_and_duplicates():
    values, n = modal_spacing_ms(np.array([0, 10, 10, 20, 50, 80], dtype=np.int64))   # distinct gaps 10,10,30,30
    assert (values.tolist(), n) == ([10, 30], 4)
    values, n = modal_spacing_ms(np.array([5, 5], dtype=np.int64))
    assert (values.tolist(), n) == ([], 0)


@pytest.mark.parametrize(("ms", "text"), [(86_400_000, "1d"), (3_600_000, "1h"), (5_400_000, "90m"),
                                          (7_000, "7s"), (604_800_000, "1w"), (1_500, "1500ms")])
def test_duration_text(ms, text):
    assert duration_text(ms) == text


# --- OHLC invariants ----------------------------------------------------------------------------

@pytest.mark.parametrize(("prices", "expected"), [
    ("10,9,8,9.5", "high 9 is below open 10 (high must be >= max(open, close))"),
    ("9,9.5,8,10", "high 9.5 is below close 10 (high must be >= max(open, close))"),
    ("9,11,9.5,10", "low 9.5 is above open 9 (low must be <= min(open, close))"),
    ("10,11,9.5,9", "low 9.5 is above close 9 (low must be <= min(open, close))"),
    ("10,8,12,10", "high 8 is below open 10 (high must be >= max(open, close)); low 12 is above open 10 "
                   "(low must be <= min(open, close)); high 8 is below low 12"),
])
def test_ohlc_invariants_reject_the_row_with_line_and_reason(tmp_path, prices, expected):
    path = write(tmp_path, "x.csv", "time,open,high,low,close,volume\n"
                 f"2024-01-01T00:00:00Z,10,11,9,10,1\n2024-01-01T01:00:00Z,{prices},1\n"
                 "2024-01-01T02:00:00Z,10,10,10,10,0\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1h")
    [rej] = result.rejected
    assert (rej.line, rej.reason) == (3, expected)
    assert result.candles.num_rows == 2           # a flat candle (all prices equal, volume 0) is valid


def test_ohlc_invariants_in_a_freqtrade_feather(tmp_path):
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC"),
                          "open": [1.0, 2.0, 3.0], "high": [2.0, 1.5, 4.0], "low": [0.5, 1.0, 2.0],
                          "close": [1.5, 1.8, 3.5], "volume": [1.0, 1.0, 1.0]})
    path = tmp_path / "x.feather"
    frame.to_feather(path)
    result = read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")
    assert [(r.location(), r.reason) for r in result.rejected] == [
        ("row 1", "high 1.5 is below open 2.0 (high must be >= max(open, close))")]


# --- conflict markers, directories ---------------------------------------------------------------

def test_conflict_markers_in_a_ticker_csv_are_rejected_not_other_symbols(tmp_path):
    path = write(tmp_path, "many.csv", "ticker,time,open,high,low,close,volume\n"
                 "BTC,2024-01-01,1,2,1,2,1\n"
                 "<<<<<<< HEAD\n"
                 "BTC,2024-01-02,1,2,1,2,1\n"
                 "=======\n"
                 "BTC,2024-01-02,1,3,1,2,1\n"
                 ">>>>>>> other-branch\n"
                 "ETH,2024-01-03,1,2,1,2,1\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    assert result.skipped_other_symbols == 1
    assert [(r.line, r.reason) for r in result.rejected] == [(3, CONFLICT_MARKER), (5, CONFLICT_MARKER),
                                                             (7, CONFLICT_MARKER)]
    assert result.rejected[0].raw_dict()["ticker"] == "<<<<<<< HEAD"
    assert result.rows_read == result.candles.num_rows + len(result.rejected) + result.skipped_other_symbols


def test_conflict_markers_in_csv_and_kraken_without_ticker_column(tmp_path):
    csv = write(tmp_path, "x.csv", "time,open,high,low,close,volume\n2024-01-01,1,2,1,2,1\n=======\n"
                "2024-01-02,1,2,1,2,1\n")
    result = read_candle_file(csv, "csv", symbol="BTC", quote="USD", interval="1d")
    assert [(r.line, r.reason) for r in result.rejected] == [(3, CONFLICT_MARKER)]
    kraken = write(tmp_path, "k.csv", f"{T0},1,2,1,2,1,1\n||||||| merged common ancestors\n"
                   f"{T0 + H},1,2,1,2,1,1\n>>>>>>>\n")
    result = read_candle_file(kraken, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")
    assert [(r.line, r.reason) for r in result.rejected] == [(2, CONFLICT_MARKER), (4, CONFLICT_MARKER)]
    assert result.candles.num_rows == 2


def test_a_near_marker_is_an_ordinary_bad_row(tmp_path):
    path = write(tmp_path, "x.csv", "time,open,high,low,close,volume\n2024-01-01,1,2,1,2,1\n<<<<<< six\n")
    [rej] = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d").rejected
    assert rej.reason.startswith("time '<<<<<< six' is not a recognizable time")


@pytest.mark.parametrize("fmt", ["csv", "kraken-ohlcvt"])
def test_conflict_marker_on_line_1_refuses_the_file(tmp_path, fmt):
    path = write(tmp_path, "x.csv", "<<<<<<< HEAD\ntime,open,high,low,close,volume\n")
    with pytest.raises(ImportFormatError, match=r"x.csv: line 1: '<<<<<<< HEAD' is a git conflict marker"):
        read_candle_file(path, fmt, symbol="BTC", quote="USD", interval="1d")


def test_a_directory_is_named_as_one(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    with pytest.raises(ImportFormatError, match=f"^{folder}: is a directory"):
        read_candle_file(folder, "csv", symbol="BTC", quote="USD", interval="1d")


TICKERS = ["BTC", "btc", "BTCUSDT", "BTC-USD", "BTC/USDT", "BTC/USDT:USDT", "BTC-EUR", "BTCST", "ETH", "WBTC",
           " btc-usd ", "", "BTC/USD:X", "BTC.USD", "BTC USDT"]


@pytest.mark.parametrize("quote", ["USD", "USDT"])
def test_vectorized_ticker_match_agrees_with_the_scalar_rule(quote):
    mask = ticker_match_mask(pd.Series(TICKERS), "BTC", quote)
    assert mask.tolist() == [ticker_matches(t, "BTC", quote) for t in TICKERS]


# --- every row is accounted for (property) --------------------------------------------------------

ROW = st.tuples(st.integers(0, 30), st.sampled_from(["1", "2", "0", "-1", "", "x"]),
                st.sampled_from(["1", "2", "3"]), st.sampled_from(["1", "0.5", "2"]), st.sampled_from(["1", "2"]),
                st.sampled_from(["1", "0", "-2"]), st.sampled_from(["BTC", "ETH", "", "<<<<<<< HEAD"]))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=25))
def test_every_row_is_valid_rejected_or_another_symbol_and_valid_rows_keep_ohlc(tmp_path_factory, rows):
    lines = [marker if marker.startswith("<") else f"{marker},{T0 + hour * H},{o},{h},{lo},{c},{v}"
             for hour, o, h, lo, c, v, marker in rows]
    path = tmp_path_factory.mktemp("p") / "x.csv"
    path.write_text("ticker,time,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    try:
        result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1h")
    except ImportFormatError as exc:            # a random file may be too sparse for 1h: refused whole
        assert "spacing is" in str(exc)
        return
    assert result.rows_read == len(rows)
    assert result.rows_read == result.candles.num_rows + len(result.rejected) + result.skipped_other_symbols
    t = result.candles.to_pandas()
    assert (t["high"] >= t[["open", "close"]].max(axis=1)).all()
    assert (t["low"] <= t[["open", "close"]].min(axis=1)).all() and (t["volume"] >= 0).all()
    assert result.skipped_other_symbols == sum(r[-1] == "ETH" for r in rows)
    assert sum(r.reason == CONFLICT_MARKER for r in result.rejected) == sum(r[-1].startswith("<") for r in rows)
