"""Shared set-up for the benchmarks that backfill from the offline venue: a pinned clock, the universe,
a `SimulatedMarket` + in-process `ReplayServer`, a CoinAPI source aimed at it, a fresh local lake."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

# A fixed clock: 12:05:30 so that up to 54 one-minute steps stay inside the hour (bench 3's
# "one new candle" variant must not close an hourly candle too). Seed as the project's default.
NOW = datetime(2025, 6, 1, 12, 5, 30, tzinfo=UTC)
SEED = 7
UNIVERSE = "UNIVERSE_V1_TOP30_NON_STABLE"


def universe():
    from coinline.universe.model import load_universe

    return load_universe(UNIVERSE)


def market(history_days: int, *, now: datetime = NOW, seed: int = SEED):
    from coinline.replay import SimulatedMarket

    return SimulatedMarket(universe(), seed=seed, now=now, history_days=history_days,
                           cad_usdc_history_days=history_days)


def source(base_url: str, page_limit: int):
    """A CoinAPISource (and its Gateway) aimed at a replay server, as `coinline` builds it offline."""
    from coinline.providers.coinapi import CoinAPISource, coinapi_client
    from coinline.providers.http import Gateway
    from coinline.secrets import Secret

    gateway = Gateway("coinapi", coinapi_client(base_url, Secret("")))
    return CoinAPISource(gateway, universe(), page_limit=page_limit), gateway


def fresh_lake(path: Path):
    from coinline.lake import open_lake, tables

    if path.exists():
        shutil.rmtree(path)
    lake = open_lake(f"file://{path}")
    tables.ensure_tables(lake)
    return lake


def history_requests(requests: list[dict]) -> list[dict]:
    return [r for r in requests if r.get("path", "").startswith("/v1/ohlcv/") and r["path"].endswith("/history")]
