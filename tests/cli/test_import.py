"""`coinline import` commits real files from ../shared/data/ohlcv into the lake, idempotently,
keeping rejected rows (with line and reason) instead of dropping them."""

import json
from pathlib import Path

import pytest

OHLCV = Path(__file__).resolve().parents[3] / "shared" / "data" / "ohlcv"
pytestmark = pytest.mark.skipif(not OHLCV.is_dir(), reason="../shared/data/ohlcv not available")

FILES = [
    ("kraken-ohlcvt", "BTC", "USD", "1d", "kraken_ohlcvt_noah-perry/XBTUSD_1440.csv"),
    ("freqtrade", "ETH", "USDT", "1h", "binance_freqtrade_GeneTrader/ETH_USDT-1h.feather"),
    ("freqtrade", "AAVE", "USDT", "1h", "binance_freqtrade_djienne/AAVE_USDT-1h.json"),
    ("csv", "LTC", "USD", "1h", "coinapi_bitstamp_Chen0092/LTC_1HRS_2017-06-28.csv"),
    ("csv", "SHIB", "USD", "1d", "yfinance_budydeveloper/SHIB-USD_1d.csv"),
]
DIRTY = {"yfinance_budydeveloper/SHIB-USD_1d.csv"}      # rows rejected: the import exits 2
ACCOUNTED = ("inserted", "duplicates", "revised", "rejected", "not_yet_closed", "skipped_other_symbols")


@pytest.mark.parametrize("fmt, symbol, quote, interval, name", FILES, ids=[f[4].split("/")[0] for f in FILES])
def test_import_commits_the_file_and_a_second_import_adds_nothing(cli, fmt, symbol, quote, interval, name, tmp_path):
    path = str(OHLCV / name)
    args = ["import", "--format", fmt, "--symbol", symbol, "--quote", quote, "--interval", interval, path, "--json"]
    expect = 2 if name in DIRTY else 0
    (first,) = cli(*args, as_json=True, expect=expect)
    assert first["inserted"] > 0 and first["inserted"] + first["rejected"] <= first["rows_read"]
    assert first["rows_read"] == sum(first[k] for k in ACCOUNTED)
    assert bool(first["rejected"]) == (name in DIRTY) and len(first["rejected_rows"]) == first["rejected"]
    (second,) = cli(*args, as_json=True, expect=expect)
    assert second["inserted"] == 0 and second["duplicates"] == first["inserted"]
    assert second["rows_read"] == sum(second[k] for k in ACCOUNTED)
    status = {s["series"]: s for s in cli("status", "--json", as_json=True)}
    assert status[first["series"]]["rows"] == first["inserted"]
    if first["rejected"]:
        (kept,) = (tmp_path / "lake" / "imports" / "rejected").glob("*.json")
        rows = json.loads(kept.read_text())["rejected"]
        assert len(rows) == first["rejected"] and all(r["reason"] and r["line"] for r in rows)


def test_import_of_a_wrong_format_names_the_file(cli, tmp_path):
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("a,b\n1,2\n")
    out = cli("import", "--format", "csv", "--symbol", "BTC", "--quote", "USD", "--interval", "1h", str(bogus), expect=2)
    assert "bogus.csv" in out.err
