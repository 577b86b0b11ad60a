"""Collaborators built once from Settings at an entry point: lake, universe, provider adapters.

Offline (no historical key, or COINLINE_VENUE=replay) every provider URL points at an in-process
replay venue that speaks the providers' formats, so the same code path runs with and without network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coinline.errors import ConfigError
from coinline.lake import open_lake, tables
from coinline.lake.store import Lake
from coinline.providers.http import Gateway
from coinline.settings import SUPPORTED_QUOTES, Settings
from coinline.timeframes import known_intervals
from coinline.universe import Universe, load_universe

log = logging.getLogger("coinline")


@dataclass
class App:
    settings: Settings
    lake: Lake
    universe: Universe
    now: datetime
    hist_base_url: str
    kraken_base_url: str
    coingecko_base_url: str
    replay: Any = None
    _gateways: list[Gateway] = field(default_factory=list)

    def pairs(self, symbols=None, quotes=None, intervals=None) -> list[tuple[str, str, str]]:
        symbols = [s.upper() for s in (symbols or self.settings.symbols)] or self.universe.symbols()
        for s in symbols:
            self.universe.coin(s)  # unknown symbol -> clear error
        quotes = [q.upper() for q in (quotes or self.settings.quotes)]
        intervals = list(intervals or self.settings.intervals)
        for q in quotes:
            if q not in SUPPORTED_QUOTES:
                raise ConfigError(f"--quotes {q}: not a supported quote (supported: {', '.join(SUPPORTED_QUOTES)})")
        for i in intervals:
            if i not in known_intervals():
                raise ConfigError(f"--intervals {i}: not a supported interval (supported: {', '.join(known_intervals())})")
        return [(s, q, i) for s in symbols for q in quotes for i in intervals]

    def hist_source(self):
        from coinline.providers.coinapi import CoinAPISource, coinapi_client

        gw = Gateway("coinapi", coinapi_client(self.hist_base_url, self.settings.hist_api_key))
        self._gateways.append(gw)
        return CoinAPISource(gw, self.universe, exchange_id=self.settings.hist_exchange)

    def kraken_source(self):
        from coinline.providers.kraken import KrakenOHLCSource, kraken_client

        gw = Gateway("kraken", kraken_client(self.kraken_base_url))
        self._gateways.append(gw)
        return KrakenOHLCSource(gw, universe=self.universe, clock=lambda: self.now)

    def kraken_trades_source(self):
        from coinline.providers.kraken import kraken_client
        from coinline.providers.kraken_trades import KrakenTradesSource

        gw = Gateway("kraken", kraken_client(self.kraken_base_url))
        self._gateways.append(gw)
        return KrakenTradesSource(gw, universe=self.universe, clock=lambda: self.now)

    def source(self, name: str):
        """The adapter behind `--source`: hist (HIST_MARKET_DATA_PROVIDER), kraken (OHLC, recent),
        kraken-trades (deep history aggregated from trades)."""
        return {"hist": self.hist_source, "kraken": self.kraken_source,
                "kraken-trades": self.kraken_trades_source}[name]()

    def coingecko_gateway(self) -> Gateway:
        from coinline.providers.coingecko import coingecko_client, coingecko_gateway

        gw = coingecko_gateway(coingecko_client(self.coingecko_base_url, self.settings.universe_api_key,
                                                self.settings.universe_api_tier))
        self._gateways.append(gw)
        return gw

    def requests_made(self) -> int:
        return sum(g.requests_made for g in self._gateways)

    def close(self) -> None:
        for g in self._gateways:
            g.client.close()
        if self.replay is not None:
            self.replay.stop()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def settings_lake(settings: Settings):
    """The lake OBJECT_STORE_URL and the object-store settings name."""
    return open_lake(settings.object_store_url, endpoint_url=settings.object_store_endpoint_url,
                     access_key=settings.object_store_access_key_id,
                     secret_key=settings.object_store_secret_access_key, region=settings.object_store_region)


NO_PROVIDERS = "unreachable://this-command-reads-only-the-lake"


def build_app(settings: Settings, *, now: datetime | None = None, providers: bool = True) -> App:
    """The collaborators of one command. `providers=False` (commands that only read the lake: status,
    export, validate, ...) starts no replay venue and needs no provider key; its provider URLs are unusable."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    lake = settings_lake(settings)
    tables.ensure_tables(lake)
    universe = load_universe(settings.training_universe_version, Path(settings.universe_dir))
    if not providers:
        return App(settings, lake, universe, now, NO_PROVIDERS, NO_PROVIDERS, NO_PROVIDERS, None)
    if settings.venue == "live" and not settings.hist_api_key:
        raise ConfigError(f"HIST_MARKET_DATA_API_KEY is required when HIST_MARKET_DATA_PROVIDER="
                          f"{settings.hist_provider} and COINLINE_VENUE=live")
    hist, kraken, gecko, replay = (settings.hist_base_url, settings.kraken_public_base_url,
                                   settings.universe_base_url, None)
    if settings.offline:
        from coinline.replay import ReplayServer, SimulatedMarket

        market = SimulatedMarket(universe, seed=settings.replay_seed, now=now,
                                 history_days=settings.replay_history_days, market_profile=settings.replay_profile)
        replay = ReplayServer(market, required_coinapi_key=settings.hist_api_key.reveal() or None,
                              coinapi_exchange=settings.hist_exchange)
        base = replay.start()
        hist, kraken, gecko = base, f"{base}/0", f"{base}/api/v3"
        log.info("offline: using the embedded replay venue at %s, %s market (set HIST_MARKET_DATA_API_KEY for live "
                 "providers)", base, settings.replay_profile)
    return App(settings, lake, universe, now, hist, kraken, gecko, replay)
