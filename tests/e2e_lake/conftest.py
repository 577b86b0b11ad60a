"""End-to-end lake fixtures: a small simulated market served by a real ReplayServer over HTTP, a
CoinAPISource on a Gateway that records its backoff sleeps instead of sleeping, and fresh file:// lakes.

Nothing here races the clock: the clients have no timeout (the in-process venue always answers; the
pytest timeout guards a hang), so however slow a loaded machine is, no request times out and no retry
happens that a test did not plant. The one deliberate timeout is a short client timeout on
exactly the faulted requests, which the venue never answers (`FaultPlan.timeouts` without a delay;
`HeldAttempts`).

The market has a fixed clock (NOW) so every run, in-process or in a subprocess with `--now`, sees the
same candles. USD series have no no-trade gaps, so a full USD backfill is gap-free on the 1h grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pytest

from coinline.datasets.canonical import canonical_candles
from coinline.ingest.backfill import backfill
from coinline.lake import open_lake, tables
from coinline.lake.store import Lake
from coinline.providers.coinapi import CoinAPISource, coinapi_client
from coinline.providers.http import Gateway, RetryPolicy
from coinline.replay import FaultPlan, ReplayServer, SimulatedMarket
from coinline.replay.faults import Fault
from coinline.secrets import Secret
from coinline.universe import Universe, load_universe

UNIVERSE = "UNIVERSE_V1_TOP30_NON_STABLE"
NOW = datetime(2026, 6, 1, tzinfo=UTC)          # on the day grid: the listing's data_start is exact
SEED = 7
HISTORY_DAYS = 60
PAIRS = [("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("TRX", "USD", "1h")]
PAGE_LIMIT = 500                                 # 1440 candles per series -> 3 pages
FAULT_TIMEOUT_S = 0.2                            # the client's timeout on a request the venue never answers
HISTORY_START = NOW - timedelta(days=HISTORY_DAYS)


def page_start(page: int, *, page_limit: int = PAGE_LIMIT, start: datetime = HISTORY_START) -> datetime:
    """Where page number `page` (0-based) of a gap-free 1h USD series starts."""
    return start + timedelta(hours=page * page_limit)


def history_target(symbol: str, start: datetime, quote: str = "USD") -> str:
    """A substring of the request target (path + query) of the 1h history page starting at `start`,
    for arming a fault on exactly that page (the query's colons are percent-encoded, the hour is not)."""
    return f"KRAKEN_SPOT_{symbol}_{quote}/history?period_id=1HRS&time_start={start:%Y-%m-%dT%H}"


def history_requests(server: ReplayServer, symbol: str | None = None) -> list[dict]:
    """The server's log of OHLCV history requests (optionally of one coin), in arrival order."""
    return [r for r in server.requests if r["path"].endswith("/history")
            and (symbol is None or f"_SPOT_{symbol}_" in r["path"])]


class SleepRecorder(list):
    """Stands in for `time.sleep` in the Gateway: records each requested wait, never sleeps."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def new_lake(path) -> Lake:
    lake = open_lake(f"file://{path}")
    tables.ensure_tables(lake)
    return lake


def stored_keys(lake: Lake) -> list:
    return [k for k, *_ in tables.series_in(lake)]


def lake_candles(lake: Lake) -> pa.Table:
    """The canonical view of every stored series (canonical order, highest version per key)."""
    return canonical_candles(lake, stored_keys(lake))


class HeldAttempts(httpx.HTTPTransport):
    """The client side of a `timeouts` fault (which the venue never answers): each request the fault
    will hold gets a short timeout (FAULT_TIMEOUT_S), every other request none. A matching request is
    sent only once the venue has taken the fault of every held one before it, so the venue sees them in
    the order they were sent and exactly the first `n` are held, however the machine schedules threads."""

    def __init__(self, fault: Fault):
        super().__init__()
        self.fault, self.held = fault, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.fault.path is None or self.fault.path in request.url.raw_path.decode("ascii"):
            while self.fault.fired < self.held:   # a condition, not a deadline: the venue takes it
                time.sleep(0.005)
            if self.fault.remaining > 0:
                self.held += 1
                request.extensions["timeout"] = httpx.Timeout(FAULT_TIMEOUT_S).as_dict()
        return super().handle_request(request)


def build_source(server: ReplayServer, universe: Universe, sleep: Callable[[float], None], *,
                 page_limit: int = PAGE_LIMIT, transport: httpx.BaseTransport | None = None) -> CoinAPISource:
    """A CoinAPISource on the venue whose requests never time out (unless `transport` says otherwise)."""
    gateway = Gateway("coinapi", coinapi_client(server.coinapi_url, Secret(""), timeout=None, transport=transport),
                      policy=RetryPolicy(), sleep=sleep)
    return CoinAPISource(gateway, universe, exchange_id="KRAKEN", page_limit=page_limit)


def build_market(universe: Universe, *, history_days: int = HISTORY_DAYS, now: datetime = NOW) -> SimulatedMarket:
    return SimulatedMarket(universe, seed=SEED, now=now, history_days=history_days,
                           cad_usdc_history_days=history_days)


@pytest.fixture(scope="session")
def universe() -> Universe:
    return load_universe(UNIVERSE)


@pytest.fixture
def market(universe) -> SimulatedMarket:
    """A fresh market per test (tests revise candles and move its clock)."""
    return build_market(universe)


@pytest.fixture
def venue(market) -> Iterator[ReplayServer]:
    with ReplayServer(market, faults=FaultPlan()) as server:
        yield server


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_source(venue, universe, sleeps) -> Iterator[Callable[..., CoinAPISource]]:
    """CoinAPISource factory on the test's venue; every gateway records into the same `sleeps`."""
    made: list[CoinAPISource] = []

    def make(page_limit: int = PAGE_LIMIT, transport: httpx.BaseTransport | None = None) -> CoinAPISource:
        made.append(build_source(venue, universe, sleeps, page_limit=page_limit, transport=transport))
        return made[-1]

    yield make
    for source in made:
        source.gateway.client.close()


@pytest.fixture
def source(make_source) -> CoinAPISource:
    return make_source()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return new_lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def clean_candles(universe, tmp_path_factory) -> pa.Table:
    """Canonical candles of PAIRS after an uninterrupted, fault-free backfill (one page per series)."""
    with ReplayServer(build_market(universe)) as server:
        src = build_source(server, universe, SleepRecorder(), page_limit=100_000)
        lake = new_lake(tmp_path_factory.mktemp("clean") / "lake")
        outcomes = backfill(src, lake, PAIRS, now=NOW, progress=False)
        src.gateway.client.close()
    assert [o.status for o in outcomes] == ["ok"] * len(PAIRS)
    return lake_candles(lake)
