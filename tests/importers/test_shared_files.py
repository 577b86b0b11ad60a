"""Import EVERY real OHLCV file under ../shared/data/ohlcv (see its INVENTORY.md) with the format,
symbol, quote and interval its directory and name imply, and check the result against inventory.json."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

from coinline.providers.base import CANDLE_SCHEMA
from coinline.providers.files import read_candle_file

ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ohlcv"
DOCS = {"INVENTORY.md", "inventory.json"}
KRAKEN_MINUTES = {"1": "1m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "240": "4h", "1440": "1d",
                  "10080": "1w"}
ALIASES = {"XBT": "BTC", "MATIC": "POL"}     # Kraken's XBT; MATIC was renamed POL (import as POL)
INTERVALS = {"1HRS": "1h", "1D": "1d", "1d": "1d", "1h": "1h", "4h": "4h", "15m": "15m", "5m": "5m"}


@dataclass(frozen=True)
class Spec:
    fmt: str
    symbol: str
    quote: str
    interval: str


def _freqtrade(name: str) -> Spec:
    # COIN_QUOTE-TF.feather|json, futures: COIN_QUOTE_SETTLE-TF-futures.feather|json.gz
    m = re.fullmatch(r"([A-Z0-9]+)_([A-Z]+)(?:_[A-Z]+)?-(\w+?)(?:-futures)?\.(?:feather|json|json\.gz)", name)
    assert m, name
    return Spec("freqtrade", m[1], m[2], m[3])


def _kraken(name: str) -> Spec:          # XBTUSD_60.csv: pair, minutes
    m = re.fullmatch(r"([A-Z0-9]+?)(USDT|USDC|USD|EUR|GBP)_(\d+)\.csv", name)
    assert m, name
    return Spec("kraken-ohlcvt", m[1], m[2], KRAKEN_MINUTES[m[3]])


def _coinapi(name: str) -> Spec:         # ETH_1HRS_2017-08-20.csv (BITSTAMP_SPOT_<coin>_USD)
    m = re.fullmatch(r"([A-Z0-9]+)_(\w+?)_[\d-]+\.csv", name)
    assert m, name
    return Spec("csv", m[1], "USD", INTERVALS[m[2]])


def _yfinance(name: str) -> Spec:        # AAVE-USD_1d.csv
    m = re.fullmatch(r"([A-Z0-9]+)-([A-Z]+)_(\w+)\.csv", name)
    assert m, name
    return Spec("csv", m[1], m[2], INTERVALS[m[3]])


def _binance_kline(name: str) -> Spec:   # BTCUSDT_1d.csv
    m = re.fullmatch(r"([A-Z0-9]+?)(USDT|USDC|BUSD)_(\w+)\.csv", name)
    assert m, name
    return Spec("csv", m[1], m[2], INTERVALS[m[3]])


def _cryptocompare(name: str) -> Spec:   # crypto_data/BTC/1D.csv in the source repo
    m = re.fullmatch(r"(\w+)\.csv", name)
    assert m, name
    return Spec("csv", "BTC", "USD", INTERVALS[m[1]])


DIRECTORIES = (          # directory prefix -> how to read a file name
    ("binance_freqtrade_", _freqtrade),
    ("freqtrade_testdata", _freqtrade),
    ("kraken_ohlcvt_", _kraken),
    ("coinapi_bitstamp_", _coinapi),
    ("yfinance_", _yfinance),
    ("binance_kline_", _binance_kline),
    ("cryptocompare_", _cryptocompare),
)

# Files with known dirt: rel path -> (rejected rows, a substring every reason has). The rest import clean.
DIRTY = {
    "yfinance_budydeveloper/SHIB-USD_1d.csv": (218, "(prices must be > 0)"),
    "yfinance_budydeveloper/AAVE-USD_1d.csv": (1, "open is 0.0 (prices must be > 0)"),
    # high below max(open, close) or low above min(open, close), e.g. 2014-03-01 high 564.07 < open 573.94
    "cryptocompare_aipriceaction/1D.csv": (32, "(open, close))"),
}
HEAVY_BYTES = 2_000_000


def spec_for(rel: str) -> Spec:
    directory, name = rel.split("/", 1)
    for prefix, parse in DIRECTORIES:
        if directory.startswith(prefix):
            spec = parse(name)
            return Spec(spec.fmt, ALIASES.get(spec.symbol, spec.symbol), spec.quote, spec.interval)
    raise AssertionError(f"no mapping for directory {directory!r}: add it to DIRECTORIES")


def _files() -> list[str]:
    if not ROOT.is_dir():
        return []
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and p.name not in DOCS)


FILES = _files()
INVENTORY = {e["file"]: e for e in json.loads((ROOT / "inventory.json").read_text())} if FILES else {}
needs_data = pytest.mark.skipif(not FILES, reason=f"shared OHLCV files absent ({ROOT})")


def _param(rel: str):
    heavy = (ROOT / rel).stat().st_size > HEAVY_BYTES
    return pytest.param(rel, id=rel, marks=[pytest.mark.slow] if heavy else [])


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@needs_data
def test_every_file_is_mapped_and_inventoried():
    for rel in FILES:
        spec_for(rel)
    assert set(FILES) == set(INVENTORY), "inventory.json and the files on disk differ"


@needs_data
@pytest.mark.parametrize("rel", [_param(rel) for rel in FILES])
def test_import_shared_file(rel):
    spec = spec_for(rel)
    inv = INVENTORY[rel]
    assert spec.interval == inv["interval"] and spec.quote == inv["quote"].split()[0]
    result = read_candle_file(ROOT / rel, spec.fmt, symbol=spec.symbol, quote=spec.quote,
                              interval=spec.interval)
    table = result.candles
    assert table.schema == CANDLE_SCHEMA
    assert result.rows_read == inv["rows"]
    assert table.num_rows + len(result.rejected) + result.skipped_other_symbols == result.rows_read
    assert result.skipped_other_symbols == 0
    assert result.duplicate_open_times == 0
    for column, value in (("symbol", spec.symbol), ("quote", spec.quote), ("interval", spec.interval),
                          ("source", f"import:{spec.fmt}")):
        assert set(pc.unique(table.column(column)).to_pylist()) <= {value}

    expected_rejects, reason_part = DIRTY.get(rel, (0, ""))
    assert len(result.rejected) == expected_rejects, [r.reason for r in result.rejected[:5]]
    assert all(reason_part in r.reason for r in result.rejected)
    if inv["rows"] and not result.rejected:
        first, last = pc.min_max(table.column("open_time")).values()
        assert (first.as_py(), last.as_py()) == (_utc(inv["first"]), _utc(inv["last"]))


@needs_data
def test_known_dirty_rows_are_reported_with_reasons():
    shib = read_candle_file(ROOT / "yfinance_budydeveloper/SHIB-USD_1d.csv", "csv", symbol="SHIB",
                            quote="USD", interval="1d")
    empty = [r for r in shib.rejected if "open is empty" in r.reason]
    assert len(empty) == 217
    assert all(r.raw_dict()["open"] == "" and r.line == r.row + 2 for r in empty)
    assert shib.rejected[-1].raw_dict()["datetime"] == "2021-04-16"
    assert shib.candles.column("open_time").to_pylist()[0] == datetime(2021, 4, 17, tzinfo=UTC)
    aave = read_candle_file(ROOT / "yfinance_budydeveloper/AAVE-USD_1d.csv", "csv", symbol="AAVE",
                            quote="USD", interval="1d")
    [row] = aave.rejected
    assert (row.line, row.raw_dict()["datetime"]) == (2, "2020-10-02")
    assert row.reason == "open is 0.0 (prices must be > 0); low is 0.0 (prices must be > 0)"


@needs_data
def test_matic_files_import_as_pol_and_empty_feathers_are_empty():
    matic = [rel for rel in FILES if "MATIC_USDT" in rel]
    assert matic
    for rel in matic:
        spec = spec_for(rel)
        result = read_candle_file(ROOT / rel, spec.fmt, symbol="POL", quote=spec.quote, interval=spec.interval)
        assert result.candles.num_rows > 0
        assert set(result.candles.column("symbol").to_pylist()) == {"POL"}
    for rel in [r for r in FILES if re.search(r"Mounik/(POL|TON)_USDT", r)]:
        spec = spec_for(rel)
        result = read_candle_file(ROOT / rel, spec.fmt, symbol=spec.symbol, quote=spec.quote,
                                  interval=spec.interval)
        assert result.candles.num_rows == 0 and result.rows_read == 0 and result.rejected == ()


@needs_data
def test_default_venues():
    cases = {
        "kraken_ohlcvt_noah-perry/ADAUSD_1440.csv": "KRAKEN",
        "binance_freqtrade_djienne/BTC_USDT-1d.json": "BINANCE",
        "binance_kline_budydeveloper/BTCUSDT_1d.csv": "BINANCE",
        "coinapi_bitstamp_Chen0092/BTC_1HRS_2019-08-07.csv": "CSV",
        "cryptocompare_aipriceaction/1D.csv": "CSV",
    }
    for rel, venue in cases.items():
        spec = spec_for(rel)
        result = read_candle_file(ROOT / rel, spec.fmt, symbol=spec.symbol, quote=spec.quote,
                                  interval=spec.interval)
        assert result.key.venue == venue, rel
    trades = read_candle_file(ROOT / "coinapi_bitstamp_Chen0092/BTC_1HRS_2019-08-07.csv", "csv", symbol="BTC",
                              quote="USD", interval="1h").candles.column("trade_count").to_pylist()
    assert trades[0] == 648 and None not in trades


@needs_data
def test_ohlc_invariant_breaks_in_a_real_file_are_rejected_with_line_and_reason():
    """cryptocompare's BTC 1D.csv has 32 days whose high is below open/close or low above them."""
    result = read_candle_file(ROOT / "cryptocompare_aipriceaction/1D.csv", "csv", symbol="BTC", quote="USD",
                              interval="1d")
    by_day = {r.raw_dict()["time"]: r for r in result.rejected}
    row = by_day["2014-03-01"]                  # open 573.94, high 564.07, low 262.77, close 557.39
    assert row.line == row.row + 2
    assert row.reason == "high 564.07 is below open 573.94 (high must be >= max(open, close))"
    assert by_day["2013-10-22"].reason == "low 192.79 is above open 192.78 (low must be <= min(open, close))"
