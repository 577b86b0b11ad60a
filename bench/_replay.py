"""Shared set-up for the benchmarks that backfill from the offline venue: a pinned clock, the universe,
a `SimulatedMarket` + in-process `ReplayServer`, a CoinAPI source aimed at it, a fresh local lake, and
`Venue`, all of them together with the lake backfilled."""

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


def _check(outcomes, what: str) -> None:
    bad = [o for o in outcomes if o.status != "ok"]
    if bad:
        raise RuntimeError(f"{what} failed: {[o.to_dict() for o in bad]}")


class Venue:
    """A replay venue (`market(history_days)` served in-process, its clock at NOW), a CoinAPI source aimed
    at it (page limit the CoinAPI maximum) and a fresh lake at `path` backfilled with `pairs` through the
    real path (`backfill_seconds`). `advance` moves the venue's clock, `sync` syncs every pair at it.
    Any series not "ok" after a backfill or sync raises (naming `label`'s lake). (`bench._common` is
    imported here, not at the top: `bench._backfill_child` counts this module's imports in its baseline.)"""

    def __init__(self, path: Path, pairs, history_days: int, label: str = ""):
        from bench._common import timed
        from coinline.ingest.backfill import backfill
        from coinline.providers.coinapi import MAX_LIMIT
        from coinline.replay import ReplayServer

        self.pairs, self.now = pairs, NOW
        self.what = f"the {label} lake" if label else "the lake"
        self.server = ReplayServer(market(history_days))
        self.server.start()
        self.source, self.gateway = source(self.server.coinapi_url, MAX_LIMIT)
        try:
            self.lake = fresh_lake(path)
            outcomes, self.backfill_seconds = timed(backfill, self.source, self.lake, pairs, now=self.now,
                                                    progress=False)
            _check(outcomes, f"backfill of {self.what}")
        except BaseException:
            self.close()
            raise

    def advance(self, now: datetime) -> None:
        self.now = now
        self.server.market.set_now(now)

    def sync(self) -> tuple[float, int, int]:
        """`coinline.ingest.sync.sync` of every pair at the venue's clock: (seconds, requests the venue
        served, candles inserted)."""
        from bench._common import timed
        from coinline.ingest.sync import sync

        before = len(self.server.requests)
        outcomes, seconds = timed(sync, self.source, self.lake, self.pairs, now=self.now, progress=False)
        _check(outcomes, f"sync of {self.what}")
        return seconds, len(self.server.requests) - before, sum(o.inserted for o in outcomes)

    def close(self) -> None:
        self.gateway.client.close()
        self.server.stop()
