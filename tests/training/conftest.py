"""Small training setups: a pure random-walk market committed to a lake, and a fast TrainConfig."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from coinline.datasets.materialize import DatasetSpec, materialize
from coinline.ingest.writer import commit_candles
from coinline.providers.base import SeriesKey, candle_table
from coinline.training.config import FoldConfig, SequenceConfig, TrainConfig, TuneConfig
from coinline.universe import load_universe

START = datetime(2025, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTC", "ETH", "SOL")


def fast_config(**kw) -> TrainConfig:
    return TrainConfig(folds=FoldConfig(n_folds=3, test_bars=300, min_train_bars=900),
                       sequence=SequenceConfig(window=16, epochs=2, max_train_samples=800),
                       tune=TuneConfig(trials=0), max_history_bars=None, **kw)


def random_walk_dataset(lake, *, seed: int, bars: int = 2400, symbols=SYMBOLS) -> str:
    """iid Gaussian log returns: nothing about the future is predictable from the past."""
    rng = np.random.default_rng(seed)
    now = START + timedelta(hours=bars + 1)
    t0 = int(START.timestamp() * 1000)
    for sym in symbols:
        key = SeriesKey("sim", "RANDOMWALK", sym, "USD", "1h")
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
        open_ = np.concatenate([[100.0], close[:-1]])
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.003, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.003, bars)))
        volume = rng.lognormal(3, 0.5, bars)
        times = t0 + np.arange(bars, dtype=np.int64) * 3_600_000
        table = candle_table(key, times, open_, high, low, close, volume, rng.integers(1, 500, bars))
        commit_candles(lake, table, key=key, request={"generator": "random_walk", "seed": seed}, now=now)
    spec = DatasetSpec("UNIVERSE_V1_TOP30_NON_STABLE", "1h", "sim", ("USD",))
    return materialize(lake, load_universe(spec.universe_version), spec, gap_tolerance=0, now=now).dataset_id


@pytest.fixture
def rw_dataset(lake):
    return random_walk_dataset(lake, seed=11)
