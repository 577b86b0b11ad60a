"""Unit tests for `coinline import` file readers, on tiny files written to tmp_path."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from coinline.errors import ConfigError, ImportFormatError
from coinline.providers.base import CANDLE_SCHEMA
from coinline.providers.files import FORMATS, ImportResult, read_candle_file
from coinline.providers.files_csv import ticker_matches

H = 3600
T0 = 1_704_067_200          # 2024-01-01T00:00:00Z


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def times(result: ImportResult) -> list[datetime]:
    return result.candles.column("open_time").to_pylist()


def check_invariants(result: ImportResult) -> None:
    assert result.candles.schema == CANDLE_SCHEMA
    assert result.rows_read == result.candles.num_rows + len(result.rejected) + result.skipped_other_symbols


def reasons(result: ImportResult) -> list[str]:
    return [r.reason for r in result.rejected]


def test_formats_constant():
    assert FORMATS == ("kraken-ohlcvt", "freqtrade", "csv")


# --- kraken-ohlcvt ------------------------------------------------------------------------------

def test_kraken_reads_rows_gaps_and_trade_counts(tmp_path):
    path = write(tmp_path, "XBTUSD_60.csv",
                 f"{T0},42000.0,42100,41900,42050,1.5,12\n"
                 f"{T0 + 3 * H},42050,42060,42000,42010,0,0\n")      # two hours without trades: omitted
    result = read_candle_file(path, "kraken-ohlcvt", symbol="btc", quote="usd", interval="1h")
    check_invariants(result)
    assert result.rejected == () and result.rows_read == 2
    t = result.candles.to_pylist()
    assert t[0]["open_time"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert t[1]["open_time"] == datetime(2024, 1, 1, 3, tzinfo=UTC)
    assert (t[0]["source"], t[0]["venue"], t[0]["symbol"], t[0]["quote"], t[0]["interval"]) == (
        "import:kraken-ohlcvt", "KRAKEN", "BTC", "USD", "1h")
    assert [r["trade_count"] for r in t] == [12, 0]
    assert t[0]["open"] == 42000.0 and t[0]["volume"] == 1.5
    assert result.key.label() == "import:kraken-ohlcvt:KRAKEN:BTC-USD:1h"


def test_kraken_venue_override(tmp_path):
    path = write(tmp_path, "x.csv", f"{T0},1,1,1,1,1,1\n")
    result = read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h", venue="kraken_x")
    assert result.candles.column("venue").to_pylist() == ["KRAKEN_X"]


@pytest.mark.parametrize(("row", "expected"), [
    ("{t},0,1,1,1,1,1", "open is 0 (prices must be > 0)"),
    ("{t},1,-2,1,1,1,1", "high is -2 (prices must be > 0)"),
    ("{t},1,1,,1,1,1", "low is empty"),
    ("{t},1,1,1,abc,1,1", "close 'abc' is not a number"),
    ("{t},1,1,1,nan,1,1", "close is nan (not finite)"),
    ("{t},1,1,1,inf,1,1", "close is inf (not finite)"),
    ("{t},1,1,1,1,-0.5,1", "volume is -0.5 (must be >= 0)"),
    ("{t},1,1,1,1,,1", "volume is empty"),
    ("{t},1,1,1,1,1,-3", "trade_count is -3 (must be a whole number >= 0)"),
    ("{t},1,1,1,1,1,2.5", "trade_count is 2.5 (must be a whole number >= 0)"),
    ("{off},1,1,1,1,1,1", "open time 2024-01-01T01:30:00.000Z is not on the 1h grid"),
    (",1,1,1,1,1,1", "time is empty"),
    ("soon,1,1,1,1,1,1", "time 'soon' is not a recognizable time"),
])
def test_kraken_rejects_each_reason(tmp_path, row, expected):
    good = f"{T0},1,1,1,1,1,1"
    bad = row.format(t=T0 + 2 * H, off=T0 + H + 1800)
    path = write(tmp_path, "k.csv", f"{good}\n{bad}\n{T0 + 5 * H},2,2,2,2,2,2\n")
    result = read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")
    check_invariants(result)
    assert result.candles.num_rows == 2
    [rej] = result.rejected
    assert rej.reason == expected
    assert (rej.line, rej.row, rej.location()) == (2, 1, "line 2")
    assert rej.raw_dict()["open"] == bad.split(",")[1]
    assert list(rej.raw_dict()) == ["time", "open", "high", "low", "close", "volume", "trades"]


def test_kraken_reports_every_problem_of_a_row(tmp_path):
    path = write(tmp_path, "k.csv", f"{T0 + 60},0,,1,1,-1,1\n")
    [rej] = read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h").rejected
    assert rej.reason == ("open time 2024-01-01T00:01:00.000Z is not on the 1h grid; open is 0 (prices must "
                          "be > 0); high is empty; volume is -1 (must be >= 0)")


def test_kraken_short_line_is_rejected_not_dropped(tmp_path):
    path = write(tmp_path, "k.csv", f"{T0},1,1,1,1,1,1\n{T0 + H},1,1\n")
    result = read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")
    check_invariants(result)
    assert reasons(result) == ["low is empty; close is empty; volume is empty"]


def test_kraken_blank_lines_are_not_rows_and_line_numbers_hold(tmp_path):
    path = write(tmp_path, "k.csv", f"{T0},1,1,1,1,1,1\n\n{T0 + H + 7},1,1,1,1,1,1\n\n")
    result = read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")
    check_invariants(result)
    assert result.rows_read == 2
    assert [r.line for r in result.rejected] == [3]


def test_kraken_milliseconds_detected_by_magnitude(tmp_path):
    path = write(tmp_path, "k.csv", f"{T0 * 1000},1,1,1,1,1,1\n")
    result = read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")
    assert times(result) == [datetime(2024, 1, 1, tzinfo=UTC)]


def test_kraken_empty_file_is_empty_table(tmp_path):
    result = read_candle_file(write(tmp_path, "k.csv", ""), "kraken-ohlcvt", symbol="BTC", quote="USD",
                              interval="1d")
    check_invariants(result)
    assert result.candles.num_rows == 0 and result.rows_read == 0


@pytest.mark.parametrize(("text", "match"), [
    (f"{T0},1,1,1,1,1\n", "line 1 has 6 fields; Kraken OHLCVT rows have 7"),
    (f"{T0},1,1,1,1,1,1,1\n", "line 1 has 8 fields"),
    ("time,open,high,low,close,volume,trades\n1,1,1,1,1,1,1\n", "line 1: 'time' is not a unix time"),
    (f"{T0},1,1,1,1,1,1\n{T0 + H},1,1,1,1,1,1,9\n", "line 2"),
])
def test_kraken_format_errors_name_file_and_line(tmp_path, text, match):
    path = write(tmp_path, "bad_kraken.csv", text)
    with pytest.raises(ImportFormatError, match=match) as info:
        read_candle_file(path, "kraken-ohlcvt", symbol="BTC", quote="USD", interval="1h")
    assert str(path) in str(info.value)


def test_binary_file_given_as_text_is_a_format_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00\x81\x92")
    for fmt in ("kraken-ohlcvt", "csv"):
        with pytest.raises(ImportFormatError, match="x.csv"):
            read_candle_file(path, fmt, symbol="BTC", quote="USD", interval="1h")


# --- freqtrade ----------------------------------------------------------------------------------

def freqtrade_frame(n: int = 3, start: str = "2024-01-01", freq: str = "1h") -> pd.DataFrame:
    return pd.DataFrame({
        "date": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
        "open": np.arange(1, n + 1, dtype=float), "high": np.arange(2, n + 2, dtype=float),
        "low": np.arange(1, n + 1, dtype=float) / 2, "close": np.arange(1, n + 1, dtype=float),
        "volume": np.arange(n, dtype=float),
    })


def test_freqtrade_feather(tmp_path):
    path = tmp_path / "BTC_USDT-1h.feather"
    freqtrade_frame(4).to_feather(path)
    result = read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")
    check_invariants(result)
    assert result.candles.num_rows == 4 and result.rejected == ()
    row = result.candles.to_pylist()[1]
    assert row["open_time"] == datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert (row["source"], row["venue"], row["quote"], row["open"], row["trade_count"]) == (
        "import:freqtrade", "BINANCE", "USDT", 2.0, None)


def test_freqtrade_feather_rejects_with_row_index(tmp_path):
    frame = freqtrade_frame(4)
    frame.loc[1, "close"] = np.nan
    frame.loc[2, "date"] = frame.loc[2, "date"] + pd.Timedelta(minutes=5)
    frame.loc[3, "volume"] = -1.0
    path = tmp_path / "x.feather"
    frame.to_feather(path)
    result = read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")
    check_invariants(result)
    assert [(r.row, r.line, r.location()) for r in result.rejected] == [
        (1, None, "row 1"), (2, None, "row 2"), (3, None, "row 3")]
    assert reasons(result) == [
        "close is nan (not finite)",
        "open time 2024-01-01T02:05:00.000Z is not on the 1h grid",
        "volume is -1.0 (must be >= 0)",
    ]
    assert result.rejected[0].raw_dict()["date"].startswith("2024-01-01 01:00:00")


def test_freqtrade_naive_dates_are_utc(tmp_path):
    frame = freqtrade_frame(2)
    frame["date"] = frame["date"].dt.tz_localize(None)
    path = tmp_path / "x.feather"
    frame.to_feather(path)
    result = read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")
    assert times(result) == [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC)]


def test_freqtrade_empty_feather_is_empty_table(tmp_path):
    path = tmp_path / "POL_USDT-1d.feather"
    freqtrade_frame(0).to_feather(path)
    result = read_candle_file(path, "freqtrade", symbol="POL", quote="USDT", interval="1d")
    check_invariants(result)
    assert result.candles.num_rows == 0 and result.rows_read == 0


def test_freqtrade_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    freqtrade_frame(3, freq="1D").to_parquet(path)
    result = read_candle_file(path, "freqtrade", symbol="ETH", quote="USDT", interval="1d")
    assert result.candles.num_rows == 3


def test_freqtrade_extra_columns_ignored(tmp_path):
    frame = freqtrade_frame(2)
    frame["funding_rate"] = 0.01
    path = tmp_path / "x.feather"
    frame.to_feather(path)
    assert read_candle_file(path, "freqtrade", symbol="X", quote="USDT", interval="1h").candles.num_rows == 2


def json_rows(n: int = 3) -> list[list]:
    return [[(T0 + i * H) * 1000, 1.0 + i, 2.0 + i, 0.5, 1.5, 10.0 * i] for i in range(n)]


def test_freqtrade_json_and_gzip(tmp_path):
    rows = json_rows(3)
    plain = write(tmp_path, "ZEC_USDT-1h.json", json.dumps(rows))
    zipped = tmp_path / "ZEC_USDT-1h.json.gz"
    zipped.write_bytes(gzip.compress(json.dumps(rows).encode()))
    for path in (plain, zipped):
        result = read_candle_file(path, "freqtrade", symbol="ZEC", quote="USDT", interval="1h")
        check_invariants(result)
        assert times(result)[2] == datetime(2024, 1, 1, 2, tzinfo=UTC)
        assert result.candles.column("volume").to_pylist() == [0.0, 10.0, 20.0]


def test_freqtrade_json_bad_rows_are_rejected(tmp_path):
    rows: list = json_rows(5)
    rows[1] = rows[1][:5]
    rows[2] = {"date": 1}
    rows[3][4] = None
    rows[4][1] = "x"
    result = read_candle_file(write(tmp_path, "x.json", json.dumps(rows)), "freqtrade", symbol="A",
                              quote="USDT", interval="1h")
    check_invariants(result)
    assert result.candles.num_rows == 1
    assert reasons(result) == ["row has 5 values, expected 6", "row is a dict, not a list of 6 values",
                               "close is empty", "open 'x' is not a number"]
    assert result.rejected[1].raw == (("row", '{"date": 1}'),)
    assert result.rejected[0].raw_dict()["date"] == str(rows[1][0])


def test_freqtrade_empty_json_list(tmp_path):
    result = read_candle_file(write(tmp_path, "x.json", "[]"), "freqtrade", symbol="A", quote="B",
                              interval="1h")
    assert result.candles.num_rows == 0 and result.rows_read == 0


@pytest.mark.parametrize(("content", "match"), [
    (b"", "line 1 column 1"),
    (b"[[1, 2, 3", "not freqtrade JSON"),
    (b'{"a": 1}', "must be a list"),
    (b"[[1, 2, 3]]", "row 0: row has 3 values, expected 6"),
    (b"ARROW1\x00\x00garbage", "cannot read as freqtrade feather"),
    (b"PAR1garbage", "cannot read as freqtrade parquet"),
    (gzip.compress(b"[[1,2,3,4,5,6]]")[:-6], "cannot read as freqtrade gzipped JSON"),
    (gzip.compress(b"not json"), "not freqtrade gzipped JSON"),
])
def test_freqtrade_format_errors_name_file(tmp_path, content, match):
    path = tmp_path / "broken_cache.bin"
    path.write_bytes(content)
    with pytest.raises(ImportFormatError, match=match) as info:
        read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")
    assert "broken_cache.bin" in str(info.value)


def test_freqtrade_feather_missing_column_or_no_columns(tmp_path):
    path = tmp_path / "x.feather"
    freqtrade_frame(2).drop(columns=["volume"]).to_feather(path)
    with pytest.raises(ImportFormatError, match="x.feather.*lacks column.*volume"):
        read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")
    import pyarrow.feather as feather
    feather.write_feather(pa.table({}), path)
    with pytest.raises(ImportFormatError, match="x.feather.*(no columns|cannot read)"):
        read_candle_file(path, "freqtrade", symbol="BTC", quote="USDT", interval="1h")


# --- csv ----------------------------------------------------------------------------------------

COINAPI_HEADER = ("Period Start,Period end,Time open,Time close,Price open,Price close,Price low,Price high,"
                  "Volume traded,Trades count\n")


def test_csv_coinapi_layout_uses_period_start(tmp_path):
    path = write(tmp_path, "BTC_1HRS.csv", COINAPI_HEADER +
                 "2019-08-07T00:00:00.0000000Z,2019-08-07T01:00:00.0000000Z,2019-08-07T00:00:02.8410000Z,"
                 "2019-08-07T00:59:41.4830000Z,11471.58,11461.08,11388.01,11503.24,328.94940718,648\n"
                 "2019-08-07T01:00:00.0000000Z,2019-08-07T02:00:00.0000000Z,2019-08-07T01:00:03.9130000Z,"
                 "2019-08-07T01:59:45.3960000Z,11468.92,11524.06,11438.52,11618.7,1487.87038926,\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1h")
    check_invariants(result)
    assert result.rejected == ()
    row = result.candles.to_pylist()[0]
    assert row["open_time"] == datetime(2019, 8, 7, tzinfo=UTC)
    assert (row["open"], row["high"], row["low"], row["close"]) == (11471.58, 11503.24, 11388.01, 11461.08)
    assert result.candles.column("trade_count").to_pylist() == [648, None]     # empty count: null
    assert (row["venue"], row["source"]) == ("CSV", "import:csv")
    assert result.column_map["time"] == "Period Start" and result.column_map["trade_count"] == "Trades count"


def test_csv_yahoo_dirt_is_rejected_with_reasons(tmp_path):
    path = write(tmp_path, "SHIB-USD_1d.csv", "datetime,open,high,low,close,volume\n"
                 "2020-08-01,,,,0.0,1604789\n"
                 "2021-04-16,0.0,1e-06,0.0,1e-06,161689870\n"
                 "2021-04-17,1e-06,2e-06,1e-06,2e-06,460833712\n")
    result = read_candle_file(path, "csv", symbol="SHIB", quote="USD", interval="1d")
    check_invariants(result)
    assert result.candles.num_rows == 1
    assert reasons(result) == [
        "open is empty; high is empty; low is empty; close is 0.0 (prices must be > 0)",
        "open is 0.0 (prices must be > 0); low is 0.0 (prices must be > 0)",
    ]
    assert [r.line for r in result.rejected] == [2, 3]
    assert result.rejected[0].raw == (("datetime", "2020-08-01"), ("open", ""), ("high", ""), ("low", ""),
                                      ("close", "0.0"), ("volume", "1604789"))


def test_csv_binance_kline_layout(tmp_path):
    path = write(tmp_path, "BTCUSDT_1d.csv",
                 "datetime,open,high,low,close,volume,close_time,quote_asset_volume,num_trades,"
                 "taker_buy_base_vol,taker_buy_quote_vol,ignore\n"
                 "2018-01-01,13715.65,13818.55,12750.0,13380.0,8609.915844,2018-01-01 23:59:59.999,"
                 "114799747.44,105595,3961.93,52809747.44,0\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USDT", interval="1d")
    row = result.candles.to_pylist()[0]
    assert (row["venue"], row["trade_count"], row["volume"]) == ("BINANCE", 105595, 8609.915844)
    assert row["open_time"] == datetime(2018, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("header", ["timestamp", "Open Time", "open_time", "time_period_start", "Date", "TIME"])
def test_csv_time_column_names(tmp_path, header):
    path = write(tmp_path, "x.csv", f"{header},Open,High,Low,Close,Volume\n2024-01-01 05:00:00,1,2,1,2,3\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1h")
    assert times(result) == [datetime(2024, 1, 1, 5, tzinfo=UTC)]


@pytest.mark.parametrize("value", [str(T0 + 5 * H), str((T0 + 5 * H) * 1000), str((T0 + 5 * H) * 10**9),
                                   "2024-01-01T05:00:00Z", "2024-01-01T07:00:00+02:00",
                                   "2024-01-01 05:00:00", "2024-01-01T05:00:00.0000000Z"])
def test_csv_time_values_parse_to_utc(tmp_path, value):
    path = write(tmp_path, "x.csv", f"time,open,high,low,close,volume\n{value},1,2,1,2,3\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1h")
    assert times(result) == [datetime(2024, 1, 1, 5, tzinfo=UTC)]


def test_csv_time_rejects(tmp_path):
    path = write(tmp_path, "x.csv", "date,open,high,low,close,volume\n"
                 "2024-01-01,1,1,1,1,1\n"
                 "2024-01-02 12:00,1,1,1,1,1\n"
                 "yesterday,1,1,1,1,1\n"
                 ",1,1,1,1,1\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    check_invariants(result)
    assert reasons(result) == ["open time 2024-01-02T12:00:00.000Z is not on the 1d grid",
                               "time 'yesterday' is not a recognizable time", "time is empty"]


def test_csv_volume_named_after_symbol(tmp_path):
    path = write(tmp_path, "x.csv", "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD\n"
                 f"{T0 * 1000},2024-01-01 00:00:00,BTC/USD,1,2,1,2,0.5,1.0\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1h")
    assert result.candles.column("volume").to_pylist() == [0.5]
    assert result.column_map["time"] == "unix" and result.column_map["volume"] == "Volume BTC"


def test_csv_ticker_filter(tmp_path):
    path = write(tmp_path, "many.csv", "ticker,time,open,high,low,close,volume,ma10\n"
                 "BTC,2024-01-01,1,1,1,1,1,\n"
                 "ETH,2024-01-01,2,2,2,2,2,\n"
                 "btc-usd,2024-01-02,1,1,1,1,1,0.5\n"
                 "BTC-EUR,2024-01-02,1,1,1,1,1,\n"
                 "BTCUSD,2024-01-03,0,1,1,1,1,\n"
                 "BTCST,2024-01-03,1,1,1,1,1,\n"
                 ",2024-01-04,1,1,1,1,1,\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    check_invariants(result)
    assert result.rows_read == 7 and result.skipped_other_symbols == 3
    assert result.candles.num_rows == 2
    assert reasons(result) == ["open is 0 (prices must be > 0)", "ticker is empty"]
    assert [r.line for r in result.rejected] == [6, 8]


@pytest.mark.parametrize(("ticker", "symbol", "quote", "ok"), [
    ("BTC", "BTC", "USD", True), ("btc", "BTC", "USD", True), ("BTCUSDT", "BTC", "USDT", True),
    ("BTC-USD", "BTC", "USD", True), ("BTC/USDT", "BTC", "USDT", True), ("BTC/USDT:USDT", "BTC", "USDT", True),
    ("BTCUSDT", "BTC", "USD", False), ("BTC-EUR", "BTC", "USD", False), ("BTCST", "BTC", "USD", False),
    ("ETH", "BTC", "USD", False), ("WBTC", "BTC", "USD", False),
])
def test_ticker_matches(ticker, symbol, quote, ok):
    assert ticker_matches(ticker, symbol, quote) is ok


def test_csv_duplicates_kept_and_counted(tmp_path):
    path = write(tmp_path, "x.csv", "date,open,high,low,close,volume\n"
                 "2024-01-01,1,1,1,1,1\n2024-01-01,2,2,2,2,2\n2024-01-02,1,1,1,1,1\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    assert result.candles.num_rows == 3 and result.duplicate_open_times == 1


def test_csv_header_only_is_empty_and_blank_lines_keep_line_numbers(tmp_path):
    empty = read_candle_file(write(tmp_path, "e.csv", "date,open,high,low,close,volume\n"), "csv",
                             symbol="BTC", quote="USD", interval="1d")
    check_invariants(empty)
    assert empty.candles.num_rows == 0 and empty.rows_read == 0
    path = write(tmp_path, "x.csv", "date,open,high,low,close,volume\n\n2024-01-01,1,1,1,1,1\n\n"
                 "2024-01-02,-1,1,1,1,1\n")
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    assert result.rows_read == 2
    assert [(r.line, r.row) for r in result.rejected] == [(5, 3)]


def test_csv_bom_and_spaced_headers(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("\ufeff Date , Open,High,Low,Close,Adj Close,Volume\n2024-01-01,1,2,1,2,9,3\n".encode())
    result = read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    assert result.candles.column("close").to_pylist() == [2.0]


@pytest.mark.parametrize(("text", "match"), [
    ("", "file is empty"),
    ("open,high,low,close,volume\n1,1,1,1,1\n", "line 1: no time column"),
    (f"{T0},1,1,1,1,1,1\n", "no time column.*kraken-ohlcvt"),
    ("date,open,high,low,volume\n2024-01-01,1,1,1,1\n", "no close column"),
    ("date,time,open,high,low,close,volume\n2024-01-01,05:00,1,1,1,1,1\n", "separate date and time"),
    ("date,open,high,low,close,volume\n2024-01-01,1,1,1,1,1\n2024-01-02,1,1,1,1,1,1\n", "line 3"),
])
def test_csv_format_errors_name_file(tmp_path, text, match):
    path = write(tmp_path, "some_export.csv", text)
    with pytest.raises(ImportFormatError, match=match) as info:
        read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="1d")
    assert "some_export.csv" in str(info.value)


# --- arguments ----------------------------------------------------------------------------------

def test_bad_arguments(tmp_path):
    path = write(tmp_path, "x.csv", "date,open,high,low,close,volume\n")
    with pytest.raises(ConfigError, match="--format 'excel' is not a supported import format"):
        read_candle_file(path, "excel", symbol="BTC", quote="USD", interval="1d")
    with pytest.raises(ConfigError, match="--interval '2d' is not a supported interval; supported intervals: 1m"):
        read_candle_file(path, "csv", symbol="BTC", quote="USD", interval="2d")
    with pytest.raises(ConfigError, match="--quote must be non-empty"):
        read_candle_file(path, "csv", symbol="BTC", quote=" ", interval="1d")
    with pytest.raises(ImportFormatError, match="nope.csv: no such file"):
        read_candle_file(tmp_path / "nope.csv", "csv", symbol="BTC", quote="USD", interval="1d")
