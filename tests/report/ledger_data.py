"""Synthetic forecasts-ledger rows and the candles they are scored against (shared by the Live-section
report tests and the ledger-based drift tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from coinline.ingest.writer import commit_candles
from coinline.lake.store import Lake
from coinline.providers.base import SeriesKey, candle_table

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SOURCE, VENUE, QUOTE, INTERVAL = "sim", "RANDOMWALK", "USD", "1h"


def key(symbol: str) -> SeriesKey:
    return SeriesKey(SOURCE, VENUE, symbol, QUOTE, INTERVAL)


def commit_walk(lake: Lake, symbols: Sequence[str], hours: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Hourly random-walk candles from T0 for every symbol; returns the closes per symbol."""
    closes = {}
    t = int(T0.timestamp() * 1000) + np.arange(hours, dtype=np.int64) * 3_600_000
    for i, sym in enumerate(symbols):
        rng = np.random.default_rng(seed + i)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
        open_ = np.concatenate([[100.0], close[:-1]])
        table = candle_table(key(sym), t, open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999,
                             close, np.full(hours, 10.0), np.full(hours, 5, dtype=np.int64))
        commit_candles(lake, table, key=key(sym), request={"test": "ledger"}, now=T0 + hours * HOUR)
        closes[sym] = close
    return closes


def forecast_rows(model_set: str, symbols: Sequence[str], hours: Sequence[int], *, horizon: int = 1,
                  p_up: Callable[[str, int], float] | float = 0.5, base_rate: float = 0.5,
                  regimes: Sequence[float] = (0.6, 0.2, 0.15, 0.05), abs_move: float = 0.01) -> pd.DataFrame:
    """Ledger rows (everything but role / batch / created_at) for each symbol and decision hour."""
    out = []
    for h in hours:
        decision = T0 + h * HOUR
        for sym in symbols:
            p = float(p_up(sym, h)) if callable(p_up) else float(p_up)
            out.append({
                "model_set": model_set, "set_hash": f"hash-{model_set}", "symbol": sym, "quote": QUOTE,
                "interval": INTERVAL, "source": SOURCE, "horizon": horizon, "decision_time": decision,
                "forecast_time": decision + HOUR, "target_time": decision + (1 + horizon) * HOUR, "p_up": p,
                "expected_move": (2 * p - 1) * abs_move, "expected_abs_move": abs_move,
                "volatility": abs_move * 1.2, "confidence": abs(2 * p - 1),
                "regime_trend": regimes[0], "regime_range": regimes[1], "regime_high_vol": regimes[2],
                "regime_stress": regimes[3], "p_base_rate": base_rate, "p_momentum": 0.5,
                "combiner": "stacked", "dataset_hash": "ds-hash", "input_hash": f"in-{sym}-{h}",
            })
    return pd.DataFrame(out)


def realized_up(closes: dict[str, np.ndarray], sym: str, hour: int, horizon: int = 1) -> bool:
    """Whether the close `horizon` bars after `hour` is above the close at `hour`."""
    c = closes[sym]
    return bool(c[hour + horizon] > c[hour])
