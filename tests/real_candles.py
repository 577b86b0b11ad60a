"""The shared opening of the real-data studies: import Binance USDT hourly candles (freqtrade caches in
../shared/data/ohlcv) through the CLI, record the files' own missing hours as known gaps, train to a cut-off."""

from __future__ import annotations

import json
from pathlib import Path

OHLCV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ohlcv" / "binance_freqtrade_Mounik"


def import_and_train(run, coins, until: str) -> str:
    """`run(*args) -> stdout` runs one coinline verb; returns the run id of `train --until until`."""
    for coin in coins:
        run("import", "--format", "freqtrade", "--symbol", coin, "--quote", "USDT", "--interval", "1h",
            str(OHLCV / f"{coin}_USDT-1h.feather"))
    run("gaps", "--retry")   # Binance's own missing hours: recorded as known, never filled
    return json.loads(run("train", "--source", "import:freqtrade", "--quote", "USDT", "--until", until,
                          "--symbols", *coins, "--json"))["run_id"]
