"""Features, targets, look-ahead check and walk-forward folds. Shared data helpers live here (no conftest)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa

NOW = datetime(2026, 1, 12, 10, 17, 23, tzinfo=UTC)
SYMBOLS = ("BTC", "ETH", "SOL", "XRP")
HOUR_MS = 3_600_000


@cache
def _market():
    from coinline.replay import SimulatedMarket
    from coinline.universe.model import load_universe

    return SimulatedMarket(load_universe("UNIVERSE_V1_TOP30_NON_STABLE"), seed=11, now=NOW, history_days=45,
                           cad_usdc_history_days=45)


@cache
def market_table(quote: str = "USD", symbols: tuple[str, ...] = SYMBOLS) -> pa.Table:
    """Canonical 1h candles of the replay market (CAD series carry no-trade gaps)."""
    m = _market()
    return pa.concat_tables([m.candles(s, quote, "1h") for s in symbols])


def market_frames(quote: str = "USD", symbols: tuple[str, ...] = SYMBOLS) -> dict[str, pd.DataFrame]:
    df = market_table(quote, symbols).to_pandas()
    return {s: g.reset_index(drop=True) for s, g in df.groupby("symbol", sort=True)}


def random_walk(n: int, *, seed: int = 0, start_ms: int = 1_700_000_000_000 // HOUR_MS * HOUR_MS,
                symbol: str = "AAA", drop: tuple[int, ...] = ()) -> pd.DataFrame:
    """Synthetic hourly candles (a log-normal random walk); `drop` removes rows (gaps)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    df = pd.DataFrame({
        "symbol": symbol, "quote": "USD", "interval": "1h",
        "open_time": pd.to_datetime(start_ms + np.arange(n, dtype="int64") * HOUR_MS, unit="ms", utc=True).as_unit("ms"),
        "open": open_, "high": high, "low": low, "close": close, "volume": rng.lognormal(3, 1, n),
        "trade_count": rng.integers(1, 100, n),
    })
    if drop:
        df = df.drop(index=list(drop)).reset_index(drop=True)
    return df
