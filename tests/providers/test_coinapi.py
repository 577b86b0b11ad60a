"""CoinAPI adapter: listing, pagination, error handling, secrets, rate limits and contract files.

Everything runs against `httpx.MockTransport` (no patching, no network). Sleeping and the clock are
injected into the Gateway so waits are asserted, not slept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coinline.errors import (
    BadDataError,
    ConfigError,
    IncompletePageError,
    NotListedError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from coinline.providers.base import CANDLE_SCHEMA, CandleSource, Page, SeriesKey, SeriesRef
from coinline.providers.coinapi import PERIODS, CoinAPISource, coinapi_client, parse_ohlcv
from coinline.providers.http import Gateway, RateBudget, RetryPolicy
from coinline.secrets import Secret
from coinline.universe.model import Coin, Universe

API_KEY = "ca-TEST-5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"
BASE_URL = "https://rest.coinapi.test"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SHARED = Path(__file__).resolve().parents[3] / "shared"
COINAPI_DATA = SHARED / "data" / "api" / "coinapi"


def _coin(rank: int, symbol: str, asset_id: str | None = None) -> Coin:
    return Coin(rank=rank, symbol=symbol, coingecko_id=symbol.lower(), coinapi_asset_id=asset_id or symbol,
                kraken_altname=symbol, kraken_asset_id=None, kraken_pairs={})


UNIVERSE = Universe("TEST_UNIVERSE", "active", ("USD", "USDC", "CAD"),
                    (_coin(1, "BTC"), _coin(2, "ETH"), _coin(3, "DOGE"), _coin(4, "LTC")))


def iso7(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def candle(ts: datetime, price: float = 100.0, step: timedelta = HOUR, **override: Any) -> dict[str, Any]:
    rec = {
        "time_period_start": iso7(ts), "time_period_end": iso7(ts + step),
        "time_open": iso7(ts + timedelta(seconds=3)), "time_close": iso7(ts + step - timedelta(seconds=2)),
        "price_open": price, "price_high": price + 2.0, "price_low": price - 1.0, "price_close": price + 1.0,
        "volume_traded": 12.5, "trades_count": 42,
    }
    rec.update(override)
    return rec


def symbol_record(symbol_id: str, **extra: Any) -> dict[str, Any]:
    exchange, kind, base, quote = symbol_id.split("_")[:4]
    return {"symbol_id": symbol_id, "exchange_id": exchange, "symbol_type": kind, "asset_id_base": base,
            "asset_id_quote": quote, **extra}


Handler = Callable[[httpx.Request], httpx.Response]


class FakeCoinAPI:
    """A small CoinAPI: /v1/symbols and /v1/ohlcv/{id}/history over in-memory series, honouring
    time_start/time_end/limit like the real one (ascending, empty periods omitted). `script` holds
    canned answers (response, exception or handler) served first, one per request."""

    def __init__(self, series: dict[str, list[dict[str, Any]]] | None = None,
                 listing: list[dict[str, Any]] | None = None):
        self.series = series or {}
        self.listing = listing if listing is not None else [
            symbol_record("KRAKEN_SPOT_BTC_USD", data_start="2013-10-06", data_trade_start="2013-10-06T21:34:15.0000000Z"),
            symbol_record("KRAKEN_SPOT_ETH_USD"),
            symbol_record("KRAKEN_SPOT_BTC_CAD", data_trade_start="2015-06-25T10:12:00.0000000Z"),
            symbol_record("KRAKEN_PERP_DOGE_CAD"),
        ]
        self.script: list[Any] = []
        self.requests: list[httpx.Request] = []
        self.headers: dict[str, str] = {}

    def history_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/history")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            if callable(step):
                return step(request)
            return step
        if request.url.path == "/v1/symbols":
            exchange = request.url.params.get("filter_exchange_id")
            body = [r for r in self.listing if exchange is None or r["exchange_id"] == exchange]
            return httpx.Response(200, json=body, headers=self.headers)
        parts = request.url.path.split("/")
        if len(parts) == 5 and parts[:3] == ["", "v1", "ohlcv"] and parts[4] == "history":
            rows = self.series.get(parts[3])
            if rows is None:
                return httpx.Response(550, json={"error": "No data"})
            q = request.url.params
            start = datetime.fromisoformat(q["time_start"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(q["time_end"].replace("Z", "+00:00")) if "time_end" in q else None
            limit = int(q.get("limit", "100"))
            out = []
            for row in rows:
                ts = datetime.fromisoformat(row["time_period_start"][:19] + "+00:00")
                if ts >= start and (end is None or ts < end):
                    out.append(row)
            return httpx.Response(200, json=out[:limit], headers=self.headers)
        return httpx.Response(404, json={"error": "not found"})


def make(fake: Handler, *, page_limit: int = 100_000, exchange_id: str = "KRAKEN", max_attempts: int = 4,
         universe: Universe = UNIVERSE, clock: Callable[[], datetime] = lambda: NOW):
    waits: list[float] = []
    client = coinapi_client(BASE_URL, Secret(API_KEY), transport=httpx.MockTransport(fake))
    gateway = Gateway("coinapi", client, policy=RetryPolicy(max_attempts=max_attempts, base_delay=0.5, max_delay=60.0),
                      sleep=waits.append, clock=clock)
    return CoinAPISource(gateway, universe, exchange_id=exchange_id, page_limit=page_limit), gateway, waits


def hourly(n: int, start: datetime = T0, skip: set[int] = frozenset()) -> list[dict[str, Any]]:
    return [candle(start + i * HOUR, 100.0 + i) for i in range(n) if i not in skip]


def backfill(source: CoinAPISource, ref: SeriesRef, start: datetime, end: datetime) -> list[Page]:
    pages, cursor = [], start
    for _ in range(10_000):
        page = source.fetch(ref, cursor, end)
        pages.append(page)
        if page.done:
            return pages
        assert page.next_cursor is not None and page.next_cursor > cursor
        cursor = page.next_cursor
    raise AssertionError("pagination did not terminate")


def open_times(pages: list[Page]) -> list[datetime]:
    return [t for p in pages for t in p.candles.column("open_time").to_pylist()]


# ------------------------------------------------------------------------------------ client / resolve


def test_client_sets_headers_and_source_satisfies_protocol():
    client = coinapi_client(BASE_URL, Secret(API_KEY))
    assert client.headers["X-CoinAPI-Key"] == API_KEY
    assert client.headers["Accept"] == "application/json"
    assert API_KEY not in str(client.base_url)
    source, _, _ = make(FakeCoinAPI())
    typed: CandleSource = source   # structural: the protocol's members are all there
    assert typed.name == "coinapi"
    for member in ("resolve", "earliest", "fetch"):
        assert callable(getattr(source, member))
    caps = source.capabilities
    assert (caps.page_limit, caps.pagination, caps.history, caps.auth_required) == (100_000, "time", "full", True)
    assert caps.intervals == tuple(PERIODS) == ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")


def test_page_limit_is_validated():
    with pytest.raises(ConfigError, match="page_limit"):
        make(FakeCoinAPI(), page_limit=100_001)
    with pytest.raises(ConfigError, match="page_limit"):
        make(FakeCoinAPI(), page_limit=0)


def test_resolve_builds_symbol_id_and_series_key():
    fake = FakeCoinAPI()
    source, _, _ = make(fake)
    ref = source.resolve("btc", "usd", "1h")
    assert ref.provider_symbol == "KRAKEN_SPOT_BTC_USD"
    assert (ref.key.source, ref.key.venue, ref.key.symbol, ref.key.quote, ref.key.interval) == (
        "coinapi", "KRAKEN", "BTC", "USD", "1h")
    assert ref.extra["period_id"] == "1HRS"
    assert ref.extra["data_start"] == "2013-10-06"


def test_resolve_uses_coinapi_asset_id_and_exchange():
    universe = Universe("U", "active", ("USD",), (_coin(1, "MIOTA", asset_id="IOTA"),))
    fake = FakeCoinAPI(listing=[symbol_record("BITSTAMP_SPOT_IOTA_USD")])
    source, _, _ = make(fake, exchange_id="bitstamp", universe=universe)
    ref = source.resolve("MIOTA", "USD", "1d")
    assert ref.provider_symbol == "BITSTAMP_SPOT_IOTA_USD"
    assert ref.key.venue == "BITSTAMP" and ref.key.symbol == "MIOTA"
    assert fake.requests[0].url.params["filter_exchange_id"] == "BITSTAMP"


def test_listing_is_fetched_once_with_exchange_filter():
    fake = FakeCoinAPI()
    source, _, _ = make(fake)
    source.resolve("BTC", "USD", "1h")
    source.resolve("ETH", "USD", "1d")
    source.resolve("BTC", "CAD", "1m")
    with pytest.raises(NotListedError):
        source.resolve("ETH", "CAD", "1h")
    assert len(fake.requests) == 1
    req = fake.requests[0]
    assert req.url.path == "/v1/symbols"
    assert dict(req.url.params) == {"filter_exchange_id": "KRAKEN"}


def test_unlisted_pair_raises_not_listed_error():
    source, _, _ = make(FakeCoinAPI())
    with pytest.raises(NotListedError) as info:
        source.resolve("DOGE", "CAD", "1h")   # only a PERP exists for DOGE/CAD
    text = str(info.value)
    assert "KRAKEN_SPOT_DOGE_CAD" in text and "provider=coinapi" in text
    assert "series=coinapi:KRAKEN:DOGE-CAD:1h" in text
    assert info.value.series == "coinapi:KRAKEN:DOGE-CAD:1h"


def test_unknown_symbol_is_config_error_naming_it():
    fake = FakeCoinAPI()
    source, _, _ = make(fake)
    with pytest.raises(ConfigError, match="NOPECOIN"):
        source.resolve("NOPECOIN", "USD", "1h")
    assert fake.requests == []


def test_unknown_interval_is_config_error():
    source, _, _ = make(FakeCoinAPI())
    with pytest.raises(ConfigError, match="2h"):
        source.resolve("BTC", "USD", "2h")


def test_listing_that_is_not_an_array_is_bad_data():
    fake = FakeCoinAPI()
    fake.script.append(httpx.Response(200, json={"error": "Invalid API key"}))
    source, _, _ = make(fake)
    with pytest.raises(BadDataError, match="array of symbols"):
        source.resolve("BTC", "USD", "1h")


# ------------------------------------------------------------------------------------ pagination


@pytest.mark.parametrize(
    ("rows", "limit", "end_offset", "expected_requests"),
    [
        (10, 3, 0, 4),    # ceil(10/3)
        (10, 10_000, 0, 1),
        (9, 3, 0, 3),     # exact multiple, data reaches `end`: next_cursor >= end stops it
        (9, 3, 5, 4),     # exact multiple, data ends before `end`: one extra (empty) request
        (1, 1, 3, 2),
        (7, 1, 0, 7),
    ],
)
def test_pagination_request_count(rows, limit, end_offset, expected_requests):
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(rows)})
    source, _, _ = make(fake, page_limit=limit)
    ref = source.resolve("BTC", "USD", "1h")
    end = T0 + (rows + end_offset) * HOUR
    pages = backfill(source, ref, T0, end)
    assert len(fake.history_requests()) == expected_requests
    assert expected_requests <= math.ceil(rows / limit) + (1 if rows % limit == 0 else 0)
    assert open_times(pages) == [T0 + i * HOUR for i in range(rows)]
    assert all(p.candles.schema == CANDLE_SCHEMA for p in pages)
    assert pages[-1].done and not any(p.done for p in pages[:-1])


def test_pagination_with_gaps_and_window_inside_data():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(50, skip={3, 4, 5, 20, 31})})
    source, _, _ = make(fake, page_limit=4)
    ref = source.resolve("BTC", "USD", "1h")
    pages = backfill(source, ref, T0 + 2 * HOUR, T0 + 40 * HOUR)
    expected = [T0 + i * HOUR for i in range(2, 40) if i not in {3, 4, 5, 20, 31}]
    assert open_times(pages) == expected
    assert len(fake.history_requests()) == math.ceil(len(expected) / 4)


def test_fetch_request_parameters_and_page_request():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(5)})
    source, _, _ = make(fake, page_limit=3)
    ref = source.resolve("BTC", "USD", "1h")
    page = source.fetch(ref, T0, T0 + 5 * HOUR)
    req = fake.history_requests()[0]
    assert req.url.path == "/v1/ohlcv/KRAKEN_SPOT_BTC_USD/history"
    assert dict(req.url.params) == {"period_id": "1HRS", "time_start": "2024-01-01T00:00:00Z",
                                    "time_end": "2024-01-01T05:00:00Z", "limit": "3"}
    assert dict(page.request) == {"endpoint": "/v1/ohlcv/KRAKEN_SPOT_BTC_USD/history",
                                  "symbol_id": "KRAKEN_SPOT_BTC_USD", "period_id": "1HRS",
                                  "time_start": "2024-01-01T00:00:00Z", "time_end": "2024-01-01T05:00:00Z",
                                  "limit": 3}
    assert page.next_cursor == T0 + 3 * HOUR and not page.done
    row = page.candles.slice(0, 1).to_pylist()[0]
    assert row == {"source": "coinapi", "venue": "KRAKEN", "symbol": "BTC", "quote": "USD", "interval": "1h",
                   "open_time": T0, "open": 100.0, "high": 102.0, "low": 99.0, "close": 101.0,
                   "volume": 12.5, "trade_count": 42}


def test_fetch_keeps_rows_as_received_but_only_inside_the_window():
    # a misbehaving provider: descending order, a row before the cursor, a row at `end`, a duplicate
    rows = [candle(T0 + 4 * HOUR), candle(T0 + 9 * HOUR), candle(T0 + 2 * HOUR, 50.0), candle(T0 + HOUR),
            candle(T0 + 5 * HOUR), candle(T0 + 2 * HOUR, 60.0)]
    fake = FakeCoinAPI()
    fake.script.append(httpx.Response(200, json=rows))
    source, _, _ = make(fake, page_limit=10)
    ref = SeriesRef(key=source_key(), provider_symbol="KRAKEN_SPOT_BTC_USD")
    page = source.fetch(ref, T0 + 2 * HOUR, T0 + 9 * HOUR)
    assert page.candles.column("open_time").to_pylist() == [T0 + 4 * HOUR, T0 + 2 * HOUR, T0 + 5 * HOUR,
                                                             T0 + 2 * HOUR]
    assert page.candles.column("open").to_pylist() == [100.0, 50.0, 100.0, 60.0]
    assert page.next_cursor == T0 + 6 * HOUR
    assert page.done  # 6 rows < limit 10


def test_full_page_entirely_before_the_cursor_is_bad_data_not_silent_end():
    fake = FakeCoinAPI()
    fake.script.append(httpx.Response(200, json=[candle(T0), candle(T0 + HOUR)]))  # time_start ignored
    source, _, _ = make(fake, page_limit=2)
    ref = SeriesRef(key=source_key(), provider_symbol="KRAKEN_SPOT_BTC_USD")
    with pytest.raises(BadDataError, match=r"none of the 2 rows is in \[2024-01-01T05:00:00Z, 2024-01-01T09:00:00Z\)"):
        source.fetch(ref, T0 + 5 * HOUR, T0 + 9 * HOUR)


def test_rows_only_at_or_after_end_give_an_empty_done_page():
    fake = FakeCoinAPI()
    fake.script.append(httpx.Response(200, json=[candle(T0 + 9 * HOUR), candle(T0 + 10 * HOUR)]))
    source, _, _ = make(fake, page_limit=2)
    ref = SeriesRef(key=source_key(), provider_symbol="KRAKEN_SPOT_BTC_USD")
    page = source.fetch(ref, T0 + 5 * HOUR, T0 + 9 * HOUR)
    assert page.done and page.candles.num_rows == 0


def source_key() -> SeriesKey:
    return SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")


def test_empty_answer_is_a_done_page():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": []})
    source, _, _ = make(fake)
    ref = source.resolve("BTC", "USD", "1h")
    page = source.fetch(ref, T0, T0 + 24 * HOUR)
    assert page.done and page.candles.num_rows == 0 and page.next_cursor is None


def test_empty_range_makes_no_request():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    source, _, _ = make(fake)
    ref = source.resolve("BTC", "USD", "1h")
    page = source.fetch(ref, T0 + HOUR, T0 + HOUR)
    assert page.done and page.candles.num_rows == 0
    assert fake.history_requests() == []


# ------------------------------------------------------------------------------------ what the listing says exists


def _listed(**extra: Any) -> FakeCoinAPI:
    return FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(6)},
                       listing=[symbol_record("KRAKEN_SPOT_BTC_USD", **extra)])


def test_listed_candles_are_the_first_and_last_trade_candles_or_their_days():
    source, *_ = make(_listed(data_trade_start="2024-01-01T00:20:00.0000000Z",
                              data_trade_end="2024-01-01T05:59:00.0000000Z"))
    ref = source.resolve("BTC", "USD", "1h")
    assert source.listed_candles(ref) == [(T0, T0 + HOUR), (T0 + 5 * HOUR, T0 + 6 * HOUR)]
    source, *_ = make(_listed(data_start="2024-01-01", data_end="2024-01-03"))
    ref = source.resolve("BTC", "USD", "1d")
    assert source.listed_candles(ref) == [(T0, T0 + timedelta(days=1)),
                                          (T0 + timedelta(days=2), T0 + timedelta(days=3))]
    source, *_ = make(_listed())
    assert source.listed_candles(source.resolve("BTC", "USD", "1h")) == []


@pytest.mark.parametrize(("answer", "kind"), [([], "empty"), ([candle(T0, 100.0)], "short")])
def test_a_page_without_the_listed_last_trade_candle_is_retried(answer, kind):
    fake = _listed(data_trade_start=iso7(T0), data_trade_end="2024-01-01T05:30:00.0000000Z")
    source, ref, gateway, waits = _ref_and(fake)
    fake.script.append(httpx.Response(200, json=answer))
    page = source.fetch(ref, T0, T0 + 6 * HOUR)
    assert page.candles.num_rows == 6 and waits == [0.5] and gateway.retries_made == 1


def test_a_page_still_without_the_listed_candle_gives_up_naming_what_is_missing():
    fake = _listed(data_trade_start=iso7(T0), data_trade_end="2024-01-01T05:30:00.0000000Z")
    source, ref, _, waits = _ref_and(fake, max_attempts=3)
    fake.script += [httpx.Response(200, json=[candle(T0, 100.0)])] * 3
    with pytest.raises(IncompletePageError, match="gave up after 3 attempts: short page: 1 candle") as info:
        source.fetch(ref, T0, T0 + 6 * HOUR)
    assert "says one exists in [2024-01-01T05:00:00Z, 2024-01-01T06:00:00Z)" in str(info.value)
    assert (info.value.missing_from, info.value.missing_until) == (T0, T0 + 6 * HOUR)
    assert waits == [0.5, 1.0]


def test_a_listed_candle_outside_the_answered_window_is_not_required():
    fake = _listed(data_trade_start=iso7(T0), data_trade_end="2024-01-01T05:30:00.0000000Z")
    source, ref, _, waits = _ref_and(fake, page_limit=2)
    pages = backfill(source, ref, T0, T0 + 6 * HOUR)            # full pages answer only up to their end
    assert len(pages) == 3 and sum(p.candles.num_rows for p in pages) == 6 and waits == []
    fake.script.append(httpx.Response(200, json=[]))
    assert source.fetch(ref, T0 + 6 * HOUR, T0 + 9 * HOUR).done   # the listed candles lie before it


def test_an_empty_page_right_after_a_full_one_is_retried_when_the_listing_has_later_trades():
    # the last trade is in a candle that is not closed yet: only the mid-walk rule can tell
    fake = _listed(data_trade_end="2024-01-01T09:30:00.0000000Z")
    source, ref, _, waits = _ref_and(fake, page_limit=2, max_attempts=3)
    first = source.fetch(ref, T0, T0 + 6 * HOUR)
    assert first.candles.num_rows == 2 and not first.done
    fake.script += [httpx.Response(200, json=[])] * 3
    with pytest.raises(IncompletePageError, match="gave up after 3 attempts: empty page mid-walk") as info:
        source.fetch(ref, first.next_cursor, T0 + 6 * HOUR)
    assert (info.value.missing_from, info.value.missing_until) == (T0 + 2 * HOUR, T0 + 6 * HOUR)
    fake.script.append(httpx.Response(200, json=[]))
    assert source.fetch(ref, first.next_cursor, T0 + 6 * HOUR).candles.num_rows == 2   # retried, then got it
    assert waits == [0.5, 1.0, 0.5]


def test_an_empty_page_that_does_not_follow_a_full_one_is_the_end():
    fake = _listed(data_trade_end="2024-01-01T09:30:00.0000000Z")
    source, ref, _, waits = _ref_and(fake, page_limit=2)
    fake.script.append(httpx.Response(200, json=[]))
    page = source.fetch(ref, T0 + 2 * HOUR, T0 + 6 * HOUR)     # e.g. a sync's first request: silence is real
    assert page.done and page.candles.num_rows == 0 and waits == []


def test_http_550_is_an_empty_done_page():
    fake = FakeCoinAPI()  # no series stored -> 550
    source, gateway, waits = make(fake)
    ref = source.resolve("BTC", "USD", "1h")
    page = source.fetch(ref, T0, T0 + 10 * HOUR)
    assert page.done and page.next_cursor is None and page.candles.num_rows == 0
    assert page.candles.schema == CANDLE_SCHEMA
    assert page.request["answer"] == "550 no data"
    assert len(fake.history_requests()) == 1 and waits == []


def test_other_intervals_map_to_coinapi_periods():
    day = timedelta(days=1)
    rows = [candle(T0 + i * day, step=day) for i in range(3)]
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_ETH_USD": rows})
    source, _, _ = make(fake)
    ref = source.resolve("ETH", "USD", "1d")
    page = source.fetch(ref, T0, T0 + 10 * day)
    assert fake.history_requests()[0].url.params["period_id"] == "1DAY"
    assert page.candles.num_rows == 3 and page.done and page.next_cursor == T0 + 3 * day


# ------------------------------------------------------------------------------------ earliest


def test_earliest_prefers_the_listing_trade_start_over_the_date_without_request():
    fake = FakeCoinAPI()
    source, _, _ = make(fake)
    ref = source.resolve("BTC", "USD", "1h")
    # data_start is a bare date (midnight); the first candle is at the trade start, floored to the grid
    assert source.earliest(ref) == datetime(2013, 10, 6, 21, tzinfo=UTC)
    assert fake.history_requests() == []


def test_earliest_from_data_trade_start_is_floored_to_the_grid():
    fake = FakeCoinAPI()
    source, _, _ = make(fake)
    ref = source.resolve("BTC", "CAD", "4h")
    assert source.earliest(ref) == datetime(2015, 6, 25, 8, tzinfo=UTC)
    assert fake.history_requests() == []


def test_earliest_probe_when_listing_has_no_dates():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_ETH_USD": hourly(5, start=T0 + 7 * HOUR)})
    source, _, _ = make(fake)
    ref = source.resolve("ETH", "USD", "1h")
    assert source.earliest(ref) == T0 + 7 * HOUR
    (req,) = fake.history_requests()
    assert req.url.params["limit"] == "1"
    assert req.url.params["time_start"] == "2009-01-01T00:00:00Z"
    assert req.url.params["period_id"] == "1HRS"


@pytest.mark.parametrize("answer", [httpx.Response(550, json={"error": "No data"}), httpx.Response(200, json=[])])
def test_earliest_probe_without_data_is_none(answer):
    fake = FakeCoinAPI()
    source, _, _ = make(fake)
    ref = source.resolve("ETH", "USD", "1h")
    fake.script.append(answer)
    assert source.earliest(ref) is None


# ------------------------------------------------------------------------------------ auth and secrets


def test_every_request_carries_the_key_header_and_never_the_key_in_the_url():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(7)})
    source, _, _ = make(fake, page_limit=2)
    ref = source.resolve("BTC", "USD", "1h")
    pages = backfill(source, ref, T0, T0 + 7 * HOUR)
    source.earliest(source.resolve("ETH", "USD", "1h"))
    assert len(fake.requests) >= 5
    for req in fake.requests:
        assert req.headers["X-CoinAPI-Key"] == API_KEY
        assert req.headers["Accept"] == "application/json"
        assert API_KEY not in str(req.url)
        assert "apikey" not in str(req.url).lower()
    for page in pages:
        assert API_KEY not in json.dumps(dict(page.request))


def _html(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html><body>Cloudflare</body></html>", headers={"content-type": "text/html"})


ERROR_SCENARIOS: dict[str, Callable[[], Any]] = {
    "401 echoing the key": lambda: httpx.Response(401, json={"error": f"Invalid API key {API_KEY}"}),
    "403 text echoing the key": lambda: httpx.Response(403, text=f"forbidden for key={API_KEY}"),
    "429 forever": lambda: httpx.Response(429, json={"error": "You have exceeded your API key rate limits"},
                                          headers={"retry-after": "1"}),
    "503 forever": lambda: httpx.Response(503, text=f"upstream {API_KEY}"),
    "reset": lambda: httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    "timeout": lambda: httpx.ReadTimeout(f"timed out GET {BASE_URL}/?apikey={API_KEY}"),
    "html": lambda: _html,
    "malformed": lambda: httpx.Response(200, text='[{"time_period_start": "2024-01-01T00:00:00.0000000Z", '),
    "empty": lambda: httpx.Response(200, text=""),
    "bad row": lambda: httpx.Response(200, json=[candle(T0, price_open=f"{API_KEY}")]),
}


@pytest.mark.parametrize("scenario", sorted(ERROR_SCENARIOS))
def test_key_never_appears_in_exception_text(scenario):
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    source, _, _ = make(fake, max_attempts=2)
    ref = source.resolve("BTC", "USD", "1h")
    fake.script += [ERROR_SCENARIOS[scenario]() for _ in range(2)]
    with pytest.raises(ProviderError) as info:
        source.fetch(ref, T0, T0 + 3 * HOUR)
    exc: BaseException | None = info.value
    while exc is not None:  # the chain a traceback shows, text and repr
        assert API_KEY not in str(exc) and API_KEY not in repr(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    assert "provider=coinapi" in str(info.value)
    assert "series=coinapi:KRAKEN:BTC-USD:1h" in str(info.value)


def test_not_listed_error_has_no_key():
    source, _, _ = make(FakeCoinAPI())
    with pytest.raises(NotListedError) as info:
        source.resolve("ETH", "CAD", "1h")
    assert API_KEY not in str(info.value)


# ------------------------------------------------------------------------------------ retries


def _ref_and(fake: FakeCoinAPI, **kw):
    source, gateway, waits = make(fake, **kw)
    return source, source.resolve("BTC", "USD", "1h"), gateway, waits


def test_429_retry_after_is_honoured():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    source, ref, _, waits = _ref_and(fake)
    fake.script.append(httpx.Response(429, json={"error": "rate"}, headers={"Retry-After": "3"}))
    page = source.fetch(ref, T0, T0 + 3 * HOUR)
    assert page.candles.num_rows == 3
    assert waits == [3.0]
    assert len(fake.history_requests()) == 2


def test_429_x_ratelimit_reset_is_honoured_once():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    source, ref, gateway, waits = _ref_and(fake)
    reset = (NOW + timedelta(seconds=7.5)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    fake.script.append(httpx.Response(429, json={"error": "rate"}, headers={
        "x-ratelimit-reset": reset, "x-ratelimit-remaining": "0", "x-ratelimit-overage": "DISABLED"}))
    page = source.fetch(ref, T0, T0 + 3 * HOUR)
    assert page.candles.num_rows == 3
    assert waits == [7.5]          # the reset is waited once, not again through the budget
    assert gateway.retries_made == 1


def test_5xx_is_retried_with_backoff_then_succeeds():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    source, ref, gateway, waits = _ref_and(fake)
    fake.script += [httpx.Response(503, text="busy"), httpx.Response(502, text="bad gateway")]
    page = source.fetch(ref, T0, T0 + 3 * HOUR)
    assert page.candles.num_rows == 3 and page.done
    assert waits == [0.5, 1.0]
    assert len(fake.history_requests()) == 3


def test_give_up_after_max_attempts_names_provider_series_request():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    source, ref, _, waits = _ref_and(fake, max_attempts=3)
    fake.script += [httpx.Response(500, text="oops")] * 3
    with pytest.raises(TransientError) as info:
        source.fetch(ref, T0, T0 + 3 * HOUR)
    text = str(info.value)
    assert "gave up after 3 attempts" in text and "HTTP 500" in text
    assert "provider=coinapi" in text and "series=coinapi:KRAKEN:BTC-USD:1h" in text
    assert "request=GET /v1/ohlcv/KRAKEN_SPOT_BTC_USD/history?" in text
    assert "period_id=1HRS" in text and "time_start=2024-01-01T00%3A00%3A00Z" in text
    assert waits == [0.5, 1.0]
    assert len(fake.history_requests()) == 3


def test_429_give_up_is_rate_limited_error():
    fake = FakeCoinAPI()
    source, ref, _, waits = _ref_and(fake, max_attempts=2)
    fake.script += [httpx.Response(429, json={"error": "rate"}, headers={"retry-after": "2"})] * 2
    with pytest.raises(RateLimitedError, match="gave up after 2 attempts"):
        source.fetch(ref, T0, T0 + HOUR)
    assert waits == [2.0]


def test_401_is_provider_error_without_retry():
    fake = FakeCoinAPI()
    source, ref, _, waits = _ref_and(fake)
    fake.script.append(httpx.Response(401, json={"error": "Invalid API key"}))
    with pytest.raises(ProviderError, match="HTTP 401: Invalid API key") as info:
        source.fetch(ref, T0, T0 + HOUR)
    assert not isinstance(info.value, TransientError)
    assert len(fake.history_requests()) == 1 and waits == []


def test_truncated_body_is_transient_and_retried():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(2)})
    source, ref, _, waits = _ref_and(fake)
    fake.script.append(httpx.RemoteProtocolError("peer closed connection without sending complete message body"))
    page = source.fetch(ref, T0, T0 + 2 * HOUR)
    assert page.candles.num_rows == 2 and waits == [0.5]


def test_truncated_body_gives_up_as_transient_error():
    fake = FakeCoinAPI()
    source, ref, _, _ = _ref_and(fake, max_attempts=2)
    fake.script += [httpx.RemoteProtocolError("incomplete chunked read")] * 2
    with pytest.raises(TransientError, match="truncated or reset"):
        source.fetch(ref, T0, T0 + HOUR)


# ------------------------------------------------------------------------------------ bad bodies


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_html, "HTML page"),
        (httpx.Response(200, text="<!DOCTYPE html><html></html>"), "HTML page"),
        (httpx.Response(200, json={"error": "Invalid period_id"}), "error instead of OHLCV"),
        (httpx.Response(200, json={"rows": []}), "expected a JSON array"),
        (httpx.Response(200, json=[[1, 2, 3]]), "row 0 is a JSON list"),
    ],
)
def test_bad_bodies_are_bad_data_without_retry(answer, message):
    fake = FakeCoinAPI()
    source, ref, _, waits = _ref_and(fake)
    fake.script.append(answer)
    with pytest.raises(BadDataError, match=message) as info:
        source.fetch(ref, T0, T0 + HOUR)
    assert "provider=coinapi" in str(info.value) and "series=coinapi:KRAKEN:BTC-USD:1h" in str(info.value)
    assert "request=GET /v1/ohlcv/KRAKEN_SPOT_BTC_USD/history" in str(info.value)
    assert len(fake.history_requests()) == 1 and waits == []


DAMAGED = [
    (httpx.Response(200, text='[{"time_period_start": '), "malformed JSON"),
    (httpx.Response(200, text="{'single': 'quotes'}"), "malformed JSON"),
    (httpx.Response(200, text=""), "empty response body"),
    (httpx.Response(200, text="  \n"), "empty response body"),
]


@pytest.mark.parametrize(("answer", "message"), DAMAGED)
def test_damaged_bodies_are_retried_under_the_one_policy_then_succeed(answer, message):
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(2)})
    source, ref, gateway, waits = _ref_and(fake)
    fake.script.append(answer)
    page = source.fetch(ref, T0, T0 + 2 * HOUR)
    assert page.candles.num_rows == 2
    assert len(fake.history_requests()) == 2 and waits == [0.5] and gateway.retries_made == 1


@pytest.mark.parametrize(("answer", "message"), DAMAGED)
def test_damaged_bodies_give_up_as_bad_data_naming_the_request(answer, message):
    fake = FakeCoinAPI()
    source, ref, _, waits = _ref_and(fake, max_attempts=3)
    fake.script += [answer] * 3
    with pytest.raises(BadDataError, match=f"gave up after 3 attempts: {message}") as info:
        source.fetch(ref, T0, T0 + HOUR)
    assert "provider=coinapi" in str(info.value) and "series=coinapi:KRAKEN:BTC-USD:1h" in str(info.value)
    assert "request=GET /v1/ohlcv/KRAKEN_SPOT_BTC_USD/history" in str(info.value)
    assert len(fake.history_requests()) == 3 and waits == [0.5, 1.0]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"price_open": "100.5"}, "field price_open is a string"),
        ({"price_high": None}, "field price_high is null"),
        ({"price_low": True}, "field price_low is a boolean"),
        ({"price_close": [1.0]}, "field price_close is a JSON list"),
        ({"volume_traded": None}, "field volume_traded is null"),
        ({"volume_traded": {"v": 1}}, "field volume_traded is a JSON dict"),
        ({"trades_count": "42"}, "field trades_count is a string"),
        ({"trades_count": 4.5}, "field trades_count is a number"),
        ({"trades_count": -1}, "field trades_count is -1"),
        ({"time_period_start": 1704070800}, "field time_period_start is a number"),
        ({"time_period_start": "2024-01-01 01:00"}, "field time_period_start is not an ISO-8601"),
        ({"time_period_start": "2024-02-30T00:00:00.0000000Z"}, "field time_period_start is not an ISO-8601"),
        ({"time_period_start": "2024-01-01T01:30:00.0000000Z", "time_period_end": "2024-01-01T02:30:00.0000000Z"},
         "open_time is not on the 1h grid"),
        ({"time_period_end": "2024-01-01T03:00:00.0000000Z"}, "time_period_end"),
        ({"price_open": -5.0}, "open is -5.0 \\(prices must be > 0\\)"),
        ({"price_close": 0}, "close is 0.0 \\(prices must be > 0\\)"),
        ({"price_high": float("nan")}, "high is nan \\(not finite\\)"),
        ({"price_low": float("inf")}, "low is inf \\(not finite\\)"),
        ({"volume_traded": -1.0}, "volume is -1.0"),
        ({"price_open": 10**400}, "price_open is too large"),
    ],
)
def test_wrong_field_types_and_bad_values_name_field_and_row(override, needle):
    rows = [candle(T0), candle(T0 + HOUR, **override), candle(T0 + 2 * HOUR)]
    fake = FakeCoinAPI()
    source, ref, _, _ = _ref_and(fake)
    fake.script.append(httpx.Response(200, text=json.dumps(rows), headers={"content-type": "application/json"}))
    with pytest.raises(BadDataError, match=needle) as info:
        source.fetch(ref, T0, T0 + 3 * HOUR)
    text = str(info.value)
    assert "row 1" in text
    assert "provider=coinapi" in text and "series=coinapi:KRAKEN:BTC-USD:1h" in text
    assert "request=GET /v1/ohlcv/KRAKEN_SPOT_BTC_USD/history?" in text


@pytest.mark.parametrize("missing", ["time_period_start", "price_open", "price_high", "price_low", "price_close",
                                     "volume_traded"])
def test_missing_required_field(missing):
    rec = candle(T0)
    del rec[missing]
    with pytest.raises(BadDataError, match=f"field {missing} is missing at row 0"):
        parse_ohlcv([rec], source_key(), where="GET /x")


def test_trades_count_is_optional_and_nullable():
    rows = [candle(T0), candle(T0 + HOUR, trades_count=None), candle(T0 + 2 * HOUR)]
    del rows[2]["trades_count"]
    table = parse_ohlcv(rows, source_key())
    assert table.column("trade_count").to_pylist() == [42, None, None]


# ------------------------------------------------------------------------------------ rate budget


def test_spent_budget_with_overage_disabled_waits_until_reset():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    fake.headers = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-overage": "DISABLED",
                    "x-ratelimit-reset": iso7(NOW + timedelta(seconds=30))}
    source, ref, gateway, waits = _ref_and(fake)   # the listing answer spends the budget
    assert gateway.budget.remaining == 0 and gateway.budget.reset_in == 30.0
    page = source.fetch(ref, T0, T0 + 3 * HOUR)
    assert page.candles.num_rows == 3
    assert waits == [30.0]


def test_negative_remaining_with_overage_enabled_does_not_wait():
    fake = FakeCoinAPI(series={"KRAKEN_SPOT_BTC_USD": hourly(3)})
    fake.headers = {"x-ratelimit-remaining": "-66181", "x-ratelimit-overage": "enabled",
                    "x-ratelimit-reset": iso7(NOW + timedelta(hours=5))}
    source, ref, gateway, waits = _ref_and(fake)
    source.fetch(ref, T0, T0 + 3 * HOUR)
    assert gateway.budget.remaining == -66181 and gateway.budget.overage
    assert waits == []


# ------------------------------------------------------------------------------------ contract files


def _shared_file(name: str) -> Path:
    path = COINAPI_DATA / name
    if not path.is_file():
        pytest.skip(f"shared contract file {path} is absent")
    return path


def test_contract_spec_examples_symbols_and_history_parse():
    symbols = json.loads(_shared_file("spec_examples/symbols.json").read_text())
    history_text = _shared_file("spec_examples/ohlcv_symbol_history.json").read_text()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/symbols":
            return httpx.Response(200, json=symbols)   # unfiltered on purpose: the adapter matches exactly
        assert request.url.path == "/v1/ohlcv/POLONIEX_SPOT_LTC_USDC/history"
        return httpx.Response(200, text=history_text, headers={"content-type": "text/plain; charset=utf-8"})

    source, _, _ = make(handler, exchange_id="POLONIEX")
    ref = source.resolve("LTC", "USDC", "1d")
    assert ref.provider_symbol == "POLONIEX_SPOT_LTC_USDC"
    assert source.earliest(ref) == datetime(2018, 11, 20, tzinfo=UTC)    # data_start "2018-11-20"
    page = source.fetch(ref, datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 1, 3, tzinfo=UTC))
    rows = page.candles.to_pylist()
    assert [r["open_time"] for r in rows] == [datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 1, 2, tzinfo=UTC)]
    assert [(r["open"], r["high"], r["low"], r["close"]) for r in rows] == [
        (966.34, 1005.0, 960.53, 997.75), (997.75, 1032.0, 990.01, 1012.54)]
    assert [r["volume"] for r in rows] == [6850.59330859, 8167.38103018]
    assert [r["trade_count"] for r in rows] == [7815, 7871]
    assert page.done and page.next_cursor == datetime(2017, 1, 3, tzinfo=UTC)
    # the spec's other record is a perpetual: not a spot listing
    with pytest.raises(NotListedError):
        make(handler, exchange_id="KRAKENFTS")[0].resolve("BTC", "USD", "1d")


def _nock(path: Path) -> tuple[dict, httpx.Headers, datetime]:
    doc = json.loads(path.read_text())
    headers = httpx.Headers([(k, v) for k, v in doc["headers"]])
    from email.utils import parsedate_to_datetime

    return doc, headers, parsedate_to_datetime(headers["date"])


def test_contract_captured_rate_limit_headers_parse_into_the_budget():
    if not (COINAPI_DATA / "captured").is_dir():
        pytest.skip("shared captured CoinAPI files are absent")
    files = sorted((COINAPI_DATA / "captured").glob("*.nock.json"))
    if not files:
        pytest.skip("no captured CoinAPI nock files")
    seen_negative = False
    for path in files:
        doc, headers, date = _nock(path)
        body = json.dumps(doc["body"])
        wire_headers = [(k, v) for k, v in doc["headers"] if k.lower() not in ("transfer-encoding", "connection")]

        def handler(request: httpx.Request, body=body, wire_headers=wire_headers,
                    status=doc["status"]) -> httpx.Response:
            return httpx.Response(status, content=body.encode(), headers=wire_headers)

        waits: list[float] = []
        client = coinapi_client(BASE_URL, Secret(API_KEY), transport=httpx.MockTransport(handler))
        gateway = Gateway("coinapi", client, sleep=waits.append, clock=lambda date=date: date)
        parsed, _ = gateway.get_json(httpx.URL(doc["request"]["url"]).path,
                                     {k: v for k, v in doc["request"]["query"].items() if k != "apikey"})
        assert parsed == doc["body"]
        budget = gateway.budget
        assert budget.remaining == float(headers["x-ratelimit-remaining"])
        assert budget.overage is (headers["x-ratelimit-overage"].lower() == "enabled")
        assert budget.reset_in is not None and 86_399 < budget.reset_in < 86_402   # a rolling 24 h window
        assert budget.wait_needed() == 0.0
        seen_negative |= budget.remaining < 0 and budget.overage
        # the same headers with the budget spent and overage disabled: wait for the reset (capped)
        spent = RateBudget()
        spent.update({**dict(headers), "x-ratelimit-remaining": "-3", "x-ratelimit-overage": "disabled"}, date)
        assert spent.wait_needed() == spent.reset_in > 86_399
        gateway.budget = spent
        gateway.get_json("/v1/assets")
        assert waits == [60.0]   # capped at RetryPolicy.max_delay
    assert seen_negative, "expected the capture with negative remaining and overage enabled"
