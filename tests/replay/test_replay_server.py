"""ReplayServer over plain httpx: format fidelity against the captured provider responses, listing,
paging, the Kraken open-candle rule, trades, auth, request log, revisions and every fault."""

from __future__ import annotations

import json
import math
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from coinline.replay import FaultPlan, ReplayServer, SimulatedMarket
from coinline.timeframes import floor_to_interval, parse_iso_utc
from coinline.universe.model import load_universe

NOW = datetime(2026, 1, 12, 10, 17, 23, tzinfo=UTC)
ISO7 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SHARED = Path(os.environ.get("COINLINE_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
API = SHARED / "data" / "api"


_MISSING = object()


def captured(rel: str, default=_MISSING):
    """A captured/spec response from shared/data/api; `default` (a known constant) or a skip without it."""
    path = API / rel
    if not path.exists():
        if default is not _MISSING:
            return default
        pytest.skip(f"capture {rel} not available (no shared dir at {SHARED})")
    return json.loads(path.read_text())


def kind(v) -> str:
    """JSON type, numbers as one kind (providers send 20277 and 1.248e-05 alike)."""
    return "number" if isinstance(v, int | float) and not isinstance(v, bool) else type(v).__name__


@pytest.fixture(scope="module")
def universe():
    return load_universe("UNIVERSE_V1_TOP30_NON_STABLE")


@pytest.fixture(scope="module")
def market(universe):
    return SimulatedMarket(universe, seed=7, now=NOW, history_days=120, cad_usdc_history_days=90)


@pytest.fixture
def server(market):
    with ReplayServer(market, faults=FaultPlan()) as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        yield c


def history(client, sid="KRAKEN_SPOT_BTC_USD", **params):
    params.setdefault("period_id", "1HRS")
    return client.get(f"/v1/ohlcv/{sid}/history", params=params)


# ---- CoinAPI ---------------------------------------------------------------------------------------
def test_coinapi_symbols_match_spec_example(client, market):
    spec = captured("coinapi/spec_examples/symbols.json")
    spot = next(r for r in spec if r["symbol_type"] == "SPOT")
    every = set().union(*(r.keys() for r in spec))
    rows = client.get("/v1/symbols").json()
    assert len(rows) == len(market.pairs())
    for row in rows:
        assert set(spot) <= set(row) <= every
        assert all(kind(row[k]) == kind(spot[k]) for k in spot), row["symbol_id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", row["data_start"]) and ISO7.match(row["data_trade_start"])
    ids = {r["symbol_id"] for r in rows}
    assert {"KRAKEN_SPOT_BTC_USD", "KRAKEN_SPOT_BTC_CAD", "KRAKEN_SPOT_SOL_USDC"} <= ids
    assert "KRAKEN_SPOT_TRX_CAD" not in ids and not any("XBT" in i for i in ids)
    btc = next(r for r in rows if r["symbol_id"] == "KRAKEN_SPOT_BTC_USD")
    assert btc["data_start"] == (NOW - timedelta(days=120)).date().isoformat()
    assert btc["asset_id_base_exchange"] == "XBT" and btc["symbol_id_exchange"] == "XXBTZUSD"


def test_coinapi_symbol_filters(client):
    def ids(path="/v1/symbols", **p):
        return {r["symbol_id"] for r in client.get(path, params=p).json()}
    assert ids(filter_asset_id="CAD") == {f"KRAKEN_SPOT_{s}_CAD" for s in ("BTC", "ETH", "XRP", "SOL")}
    assert ids(filter_symbol_id="KRAKEN_SPOT_BTC_;KRAKEN_SPOT_TRX_") == {
        "KRAKEN_SPOT_BTC_USD", "KRAKEN_SPOT_BTC_USDC", "KRAKEN_SPOT_BTC_CAD", "KRAKEN_SPOT_TRX_USD"}
    assert ids(filter_exchange_id="BITSTAMP") == set()
    assert ids("/v1/symbols/KRAKEN", filter_asset_id="TRX") == {"KRAKEN_SPOT_TRX_USD"}
    assert ids("/v1/symbols/BINANCE") == set()


def test_coinapi_ohlcv_matches_spec_example(client):
    spec = captured("coinapi/spec_examples/ohlcv_symbol_history.json")
    r = history(client, time_start="2026-01-01T00:00:00Z", limit=50)
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 50
    for row in rows:
        assert list(row) == list(spec[0]) and all(kind(row[k]) == kind(spec[0][k]) for k in row)
        assert all(ISO7.match(row[k]) for k in ("time_period_start", "time_period_end", "time_open", "time_close"))
        assert row["time_period_start"] <= row["time_open"] <= row["time_close"] <= row["time_period_end"]
        assert isinstance(row["trades_count"], int)
    starts = [parse_iso_utc(x["time_period_start"]) for x in rows]
    assert starts[0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert all(b - a == timedelta(hours=1) for a, b in zip(starts, starts[1:], strict=False))


def test_coinapi_history_equals_market_and_pages_by_time(client, market):
    want = market.arrays("ETH", "CAD", "15m", datetime(2025, 12, 20, tzinfo=UTC), datetime(2025, 12, 25, tzinfo=UTC))
    got, start = [], "2025-12-20T00:00:00Z"
    while True:
        page = history(client, "KRAKEN_SPOT_ETH_CAD", period_id="15MIN", time_start=start,
                       time_end="2025-12-25T00:00:00Z", limit=100).json()
        got += page
        if len(page) < 100:
            break
        start = page[-1]["time_period_end"]
    assert [int(parse_iso_utc(r["time_period_start"]).timestamp() * 1000) for r in got] == want.open_time.tolist()
    assert [r["price_close"] for r in got] == want.close.tolist()
    assert [r["volume_traded"] for r in got] == want.volume.tolist()
    assert [r["trades_count"] for r in got] == want.trade_count.tolist()


def test_coinapi_gaps_omitted_unless_empty_items_requested(client, market):
    gap = market.missing("XRP", "CAD", "1h")[0]
    params = {"period_id": "1HRS", "time_start": (gap - timedelta(hours=3)).isoformat(),
              "time_end": (gap + timedelta(hours=3)).isoformat()}
    plain = client.get("/v1/ohlcv/KRAKEN_SPOT_XRP_CAD/history", params=params).json()
    assert gap not in {parse_iso_utc(r["time_period_start"]) for r in plain}
    full = client.get("/v1/ohlcv/KRAKEN_SPOT_XRP_CAD/history", params=params | {"include_empty_items": "true"}).json()
    empty = [r for r in full if r["price_close"] is None]
    assert len(full) == 6 and parse_iso_utc(empty[0]["time_period_start"]) == gap
    assert empty[0]["trades_count"] == 0 and empty[0]["time_open"] is None


def test_coinapi_latest_periods_and_weekly(client, market):
    latest = client.get("/v1/ohlcv/KRAKEN_SPOT_BTC_USD/latest", params={"period_id": "1DAY", "limit": 3}).json()
    days = market.recent("BTC", "USD", "1d", 3)
    assert [r["price_close"] for r in latest] == days.close[::-1].tolist()
    weeks = history(client, period_id="7DAY", time_start="2025-11-01T00:00:00Z").json()
    assert weeks and all(parse_iso_utc(w["time_period_end"]) - parse_iso_utc(w["time_period_start"])
                         == timedelta(days=7) for w in weeks)
    periods = client.get("/v1/ohlcv/periods").json()
    fields = ["period_id", "length_seconds", "length_months", "unit_count", "unit_name", "display_name"]
    spec = captured("coinapi/spec_examples/ohlcv_periods.json", [dict.fromkeys(fields)])
    assert {p["period_id"] for p in periods} >= {"1MIN", "1HRS", "1DAY"} and set(periods[0]) == set(spec[0])


@pytest.mark.parametrize("params", [
    {"period_id": "2HRS"}, {"period_id": "BOGUS"}, {"period_id": "1HRS", "limit": "0"},
    {"period_id": "1HRS", "limit": "100001"}, {"period_id": "1HRS", "limit": "ten"},
    {"period_id": "1HRS", "time_start": "yesterday"},
    {"period_id": "1HRS", "time_start": "2025-12-02T00:00:00Z", "time_end": "2025-12-01T00:00:00Z"},
])
def test_coinapi_bad_parameters_are_400(client, params):
    r = client.get("/v1/ohlcv/KRAKEN_SPOT_BTC_USD/history", params=params)
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_coinapi_unknown_symbol_550_and_empty_range(client):
    r = history(client, "KRAKEN_SPOT_TRX_CAD")
    assert r.status_code == 550 and r.json() == {"error": "No data"}
    future = history(client, time_start=(NOW + timedelta(days=1)).isoformat())
    assert future.status_code == 200 and future.json() == []
    before = history(client, time_start="2020-01-01T00:00:00Z", time_end="2020-02-01T00:00:00Z")
    assert before.json() == []


def test_coinapi_rate_limit_headers(client):
    r = history(client, period_id="1MIN", time_start="2026-01-10T00:00:00Z", limit=250)
    h = r.headers
    assert len(r.json()) == 250 and h["x-ratelimit-request-cost"] == "3"
    assert int(h["x-ratelimit-limit"]) > int(h["x-ratelimit-remaining"]) > 0
    assert ISO7.match(h["x-ratelimit-reset"])
    assert client.get("/v1/symbols").headers["x-ratelimit-request-cost"] == "1"


def test_coinapi_auth_and_no_secrets_in_log(market):
    key = "secret-key-0123456789"
    with ReplayServer(market, required_coinapi_key=key) as srv, httpx.Client(base_url=srv.base_url) as c:
        assert c.get("/v1/symbols").status_code == 401
        bad = c.get("/v1/symbols", headers={"X-CoinAPI-Key": "wrong"})
        assert bad.status_code == 401 and bad.json() == {"error": "Invalid API key"}
        assert "x-ratelimit-limit" in bad.headers
        assert c.get("/v1/symbols", headers={"X-CoinAPI-Key": key}).status_code == 200
        assert c.get("/v1/symbols", params={"apikey": key}).status_code == 200
        assert c.get("/0/public/Time").status_code == 200        # other providers need no key
        assert [e["status"] for e in srv.requests] == [401, 401, 200, 200, 200]
        assert key not in repr(srv.requests)
        assert srv.requests[3]["params"] == {"apikey": "<redacted>"}


def test_coinapi_quota_exhaustion(market):
    with ReplayServer(market, coinapi_quota=3) as srv, httpx.Client(base_url=srv.base_url) as c:
        assert history(c, limit=150).headers["x-ratelimit-remaining"] == "1"
        assert history(c, limit=10).headers["x-ratelimit-remaining"] == "0"
        r = history(c)
        assert r.status_code == 429 and "rate limits" in r.json()["error"]


# ---- Kraken ---------------------------------------------------------------------------------------
def test_kraken_asset_pairs_match_capture(client, market):
    cap = captured("kraken/current/AssetPairs_full_2026-01-12.json")["result"]
    ours = client.get("/0/public/AssetPairs").json()
    assert ours["error"] == []
    for key, rec in ours["result"].items():
        assert key in cap, key
        real = cap[key]
        assert {k: rec[k] for k in ("altname", "wsname", "base", "quote")} == \
            {k: real[k] for k in ("altname", "wsname", "base", "quote")}
        required = set(real) - {"long_position_limit", "short_position_limit"}
        assert required <= set(rec) <= set(real) | {"long_position_limit", "short_position_limit"}
        assert all(kind(rec[k]) == kind(real[k]) for k in required), key
    assert len(ours["result"]) == len(market.pairs())
    two = client.get("/0/public/AssetPairs", params={"pair": "XBTUSD,SOLCAD"}).json()["result"]
    assert set(two) == {"XXBTZUSD", "SOLCAD"}
    assert client.get("/0/public/AssetPairs", params={"pair": "TRXCAD"}).json() == {"error": ["EQuery:Unknown asset pair"]}


def test_kraken_ohlc_matches_capture_and_open_candle_rule(client, market):
    cap = captured("kraken/aiokraken_cassettes/OHLC_XETHZCAD_interval1440_2020-07-15.json")
    cap_rows = cap["result"]["XETHZCAD"]
    body = client.get("/0/public/OHLC", params={"pair": "ETHCAD", "interval": 60}).json()
    assert body["error"] == [] and set(body["result"]) == {"XETHZCAD", "last"}
    rows = body["result"]["XETHZCAD"]
    assert len(rows) == len(cap_rows) == 720
    assert [kind(x) for x in rows[0]] == [kind(x) for x in cap_rows[0]]
    assert type(body["result"]["last"]) is type(cap["result"]["last"]) is int
    assert all(re.fullmatch(r"\d+\.\d{8}", r[6]) for r in rows)
    assert body["result"]["last"] == rows[-2][0]
    assert rows[-1][0] == floor_to_interval(NOW, "1h").timestamp()           # the open candle
    closed = market.recent("ETH", "CAD", "1h", 719)
    assert [r[0] * 1000 for r in rows[:-1]] == closed.open_time.tolist()
    assert [float(r[4]) for r in rows[:-1]] == closed.close.tolist()
    assert [r[7] for r in rows[:-1]] == closed.trade_count.tolist()
    open_row = rows[-1]
    assert float(open_row[3]) <= float(open_row[1]) <= float(open_row[2])
    assert rows[-1][1] == rows[-2][4]                                          # opens at the last close


def test_kraken_ohlc_since_and_clock(universe):
    m = SimulatedMarket(universe, seed=5, now=NOW, history_days=10, cad_usdc_history_days=10)
    with ReplayServer(m) as srv, httpx.Client(base_url=srv.kraken_url) as c:
        first = c.get("/public/OHLC", params={"pair": "XXBTZUSD", "interval": 60}).json()["result"]
        last = first["last"]
        again = c.get("/public/OHLC", params={"pair": "XBTUSD", "interval": 60, "since": last}).json()["result"]
        assert len(again["XXBTZUSD"]) == 1 and again["last"] == last           # only the open candle
        m.set_now(NOW + timedelta(hours=2))
        later = c.get("/public/OHLC", params={"pair": "XBTUSD", "interval": 60, "since": last}).json()["result"]
        assert [r[0] for r in later["XXBTZUSD"]] == [last + 3600, last + 7200, last + 10800]
        assert later["last"] == last + 7200
        five = c.get("/public/OHLC", params={"pair": "XBTUSD", "interval": 5}).json()["result"]["XXBTZUSD"]
        assert len(five) == 720 and five[-1][0] % 300 == 0


def test_kraken_errors(client):
    assert client.get("/0/public/OHLC", params={"pair": "TRXCAD"}).json() == {"error": ["EQuery:Unknown asset pair"]}
    bad = client.get("/0/public/OHLC", params={"pair": "XBTUSD", "interval": 7})
    assert bad.status_code == 200 and bad.json() == {"error": ["EGeneral:Invalid arguments"]}
    assert client.get("/0/public/Trades").json() == {"error": ["EGeneral:Invalid arguments"]}
    assert client.get("/0/public/Time").json()["result"]["unixtime"] == int(NOW.timestamp())


def test_kraken_trades_match_docs_and_rebuild_candles(client, market):
    doc = captured("kraken/docs_examples/Trades_XXBTZUSD_docs_example.json")["result"]
    start = datetime(2026, 1, 11, 20, 0, tzinfo=UTC)
    since, trades = str(int(start.timestamp()) * 10**9), []
    while int(since) < int((start + timedelta(minutes=15)).timestamp()) * 10**9:
        body = client.get("/0/public/Trades", params={"pair": "XBTUSD", "since": since}).json()
        assert body["error"] == [] and set(body["result"]) == {"XXBTZUSD", "last"}
        page = body["result"]["XXBTZUSD"]
        assert len(page) == 1000 and isinstance(body["result"]["last"], str)
        assert [kind(x) for x in page[0]] == [kind(x) for x in doc["XXBTZUSD"][0]]
        trades += page
        since = body["result"]["last"]
    ids = [t[6] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    candles = market.arrays("BTC", "USD", "1m", start, start + timedelta(minutes=15))
    for i, ot in enumerate(candles.open_time):
        mine = [t for t in trades if int(t[2] // 60) * 60_000 == ot]
        prices = [Decimal(t[0]) for t in mine]
        assert len(mine) == candles.trade_count[i]
        assert (prices[0], max(prices), min(prices), prices[-1]) == tuple(
            Decimal(repr(float(x))) for x in (candles.open[i], candles.high[i], candles.low[i], candles.close[i]))
        assert sum(Decimal(t[1]) for t in mine) == Decimal(repr(float(candles.volume[i])))
    recent = client.get("/0/public/Trades", params={"pair": "XBTUSD"}).json()["result"]["XXBTZUSD"]
    assert len(recent) == 1000 and recent[-1][2] < NOW.timestamp()


# ---- CoinGecko ------------------------------------------------------------------------------------
def test_coingecko_markets_match_capture(client, universe):
    cap = captured("coingecko/captured/coins_markets_usd_top30_2025-03-04.json")
    real = {r["id"]: r for r in cap}
    rows = client.get("/api/v3/coins/markets", params={"vs_currency": "usd", "order": "market_cap_desc",
                                                       "per_page": 250, "page": 1}).json()
    assert len(rows) == 250
    for row in rows:
        assert list(row) == list(cap[0])
        for k in ("ath_date", "atl_date", "last_updated"):
            assert ISO_MS.match(row[k])
        assert row["symbol"] == row["symbol"].lower()
    for cid in ("bitcoin", "ethereum", "tether", "usd-coin", "staked-ether", "wrapped-bitcoin", "dogecoin"):
        ours = next(r for r in rows if r["id"] == cid)
        assert ours["symbol"] == real[cid]["symbol"]
        assert all(kind(ours[k]) == kind(real[cid][k]) or None in (ours[k], real[cid][k]) for k in ours), cid
    ids = [r["id"] for r in rows]
    assert {c.coingecko_id for c in universe.coins} <= set(ids)
    for cid in ("tether", "usd-coin", "staked-ether", "wrapped-bitcoin", "weth", "wrapped-steth", "ethena-usde",
                "dai", "usds", "first-digital-usd", "dogecoin", "hyperliquid"):
        assert cid in ids
    caps = [r["market_cap"] for r in rows]
    assert caps == sorted(caps, reverse=True) and [r["market_cap_rank"] for r in rows] == list(range(1, 251))
    non_stable = [i for i in ids if i not in {"tether", "usd-coin", "staked-ether", "wrapped-bitcoin", "weth",
                                              "wrapped-steth", "ethena-usde", "dai", "usds", "first-digital-usd"}]
    assert set(non_stable[:30]) == {c.coingecko_id for c in universe.coins}


def test_coingecko_paging_filters_and_ping(client):
    def page(n, per_page=100):
        return client.get("/api/v3/coins/markets", params={"vs_currency": "usd", "per_page": per_page, "page": n}).json()
    pages = [page(1, 250), page(2, 250)]
    assert len(pages[0]) == 250 and 0 < len(pages[1]) < 250
    assert not {r["id"] for r in pages[0]} & {r["id"] for r in pages[1]}
    assert page(1, 100) + page(2, 100) == pages[0][:200]
    two = client.get("/api/v3/coins/markets", params={"vs_currency": "usd", "ids": "bitcoin,solana"}).json()
    assert {r["id"] for r in two} == {"bitcoin", "solana"}
    assert client.get("/api/v3/coins/markets").status_code == 400
    spec = captured("coingecko/spec_examples/ping.json", {"gecko_says": "(V3) To the Moon!"})
    assert client.get("/api/v3/ping").json() == spec


# ---- revisions, determinism, log -------------------------------------------------------------------
def test_revision_visible_through_both_venues(universe):
    m = SimulatedMarket(universe, seed=7, now=NOW, history_days=30, cad_usdc_history_days=30)
    t = floor_to_interval(NOW, "1h") - timedelta(hours=3)
    with ReplayServer(m) as srv, httpx.Client(base_url=srv.base_url) as c:
        def close_now():
            coinapi = history(c, time_start=t.isoformat(), limit=1).json()[0]["price_close"]
            rows = c.get("/0/public/OHLC", params={"pair": "XBTUSD", "interval": 60}).json()["result"]["XXBTZUSD"]
            kraken = next(float(r[4]) for r in rows if r[0] == t.timestamp())
            return coinapi, kraken
        before = close_now()
        rev = m.revise("BTC", "USD", "1h", t, factor=1.01)
        after = close_now()
    assert before == (rev.old_close, rev.old_close) and after == (rev.new_close, rev.new_close)


def test_same_seed_same_bytes(universe):
    bodies = []
    for _ in range(2):
        m = SimulatedMarket(universe, seed=99, now=NOW, history_days=20, cad_usdc_history_days=20)
        with ReplayServer(m) as srv, httpx.Client(base_url=srv.base_url) as c:
            bodies.append((history(c, "KRAKEN_SPOT_SOL_CAD", period_id="5MIN", limit=500).content,
                           c.get("/0/public/OHLC", params={"pair": "SOLCAD", "interval": 15}).content,
                           c.get("/0/public/Trades", params={"pair": "SOLCAD", "since": "0"}).content))
    assert bodies[0] == bodies[1]


def test_request_log(client, server):
    history(client, limit=5)
    client.get("/nowhere")
    a, b = server.requests
    assert a["path"] == "/v1/ohlcv/KRAKEN_SPOT_BTC_USD/history" and a["params"] == {"limit": "5", "period_id": "1HRS"}
    assert (a["status"], a["provider"], a["rows"], a["fault"]) == (200, "coinapi", 5, None)
    assert b["status"] == 404 and b["provider"] is None


# ---- faults ---------------------------------------------------------------------------------------
def test_rate_limit_bursts(client, server):
    server.faults.rate_limit_burst(2, retry_after=3, provider="coinapi")
    r = [history(client, limit=1) for _ in range(3)]
    assert [x.status_code for x in r] == [429, 429, 200]
    assert r[0].headers["retry-after"] == "3" and r[0].json() == {"error": "You have exceeded your API key rate limits"}
    server.faults.rate_limit_burst(1, provider="kraken")
    k = client.get("/0/public/OHLC", params={"pair": "XBTUSD"})
    assert k.status_code == 200 and k.json() == captured(
        "kraken/issue_logs/error_EGeneral_Too_many_requests_public_OHLC.json", {"error": ["EGeneral:Too many requests"]})
    server.faults.rate_limit_burst(1, retry_after=119, provider="coingecko")
    g = client.get("/api/v3/ping")
    assert g.status_code == 429 and g.headers["retry-after"] == "119"
    assert g.json()["status"]["error_code"] == 429
    assert g.json() == captured("coingecko/captured/error_429_rate_limit_body.json", g.json())
    assert client.get("/api/v3/ping").status_code == 200
    assert [e["fault"] for e in server.requests if e["fault"]] == ["rate_limit"] * 4


def test_server_errors_and_html(client, server):
    server.faults.server_errors(2, status=503)
    assert [history(client, limit=1).status_code for _ in range(3)] == [503, 503, 200]
    server.faults.html_error(1, provider="kraken")
    r = client.get("/0/public/OHLC", params={"pair": "XBTUSD"})
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html") and "<html" in r.text
    server.faults.html_error(1, status=200, provider="coingecko")
    r = client.get("/api/v3/ping")
    assert r.status_code == 200 and r.text.lstrip().startswith("<!DOCTYPE html>")


def test_timeout_truncation_and_malformed(server):
    server.faults.timeouts(1, provider="kraken")   # never answers: the client always times out first
    with httpx.Client(base_url=server.base_url, timeout=0.2) as c:
        with pytest.raises(httpx.TimeoutException):
            c.get("/0/public/Time")
        assert c.get("/0/public/Time").status_code == 200
    server.faults.truncated_bodies(1, provider="coinapi")
    with httpx.Client(base_url=server.base_url) as c:
        with pytest.raises(httpx.TransportError):
            history(c, limit=200)
        assert len(history(c, limit=200).json()) == 200
        server.faults.malformed_json(1)
        bad = history(c, limit=20)
        assert bad.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(bad.text)


def test_page_faults(client, server):
    p1 = history(client, time_start="2026-01-01T00:00:00Z", limit=10).json()
    server.faults.duplicate_pages(1, k=3, provider="coinapi")
    p2 = history(client, time_start=p1[-1]["time_period_end"], limit=10).json()
    assert p2[:3] == p1[-3:] and len(p2) == 13
    server.faults.out_of_order(1)
    shuffled = history(client, time_start="2026-01-01T00:00:00Z", limit=10).json()
    assert shuffled != p1 and sorted(shuffled, key=lambda r: r["time_period_start"]) == p1
    server.faults.empty_pages(1, provider="kraken")
    body = client.get("/0/public/OHLC", params={"pair": "XBTUSD"}).json()
    assert body["result"]["XXBTZUSD"] == [] and body["error"] == []
    assert len(client.get("/0/public/OHLC", params={"pair": "XBTUSD"}).json()["result"]["XXBTZUSD"]) == 720


def test_fault_path_filter_and_concurrency(client, server):
    server.faults.server_errors(1, path="pair=SOLCAD")
    assert client.get("/0/public/OHLC", params={"pair": "XBTUSD"}).status_code == 200
    assert client.get("/0/public/OHLC", params={"pair": "SOLCAD"}).status_code == 500
    fault = server.faults.rate_limit_burst(5, provider="coingecko")
    codes: list[int] = []

    def hit():
        with httpx.Client(base_url=server.base_url) as c:
            for _ in range(4):
                codes.append(c.get("/api/v3/ping").status_code)
    threads = [threading.Thread(target=hit) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes).count(429) == 5 and len(codes) == 20
    assert fault.remaining == 0 and fault.fired == 5 and server.faults.pending() == 0
    with pytest.raises(ValueError):
        server.faults.add("meteor", 1)


def test_cost_is_ceil_rows_over_100(client):
    for limit in (1, 100, 101, 1000):
        r = history(client, period_id="1MIN", time_start="2026-01-05T00:00:00Z", limit=limit)
        assert r.headers["x-ratelimit-request-cost"] == str(max(1, math.ceil(len(r.json()) / 100)))
