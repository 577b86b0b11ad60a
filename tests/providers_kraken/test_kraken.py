"""Kraken public REST adapter: envelopes, AssetPairs mapping, recent OHLC (real captures + MockTransport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path

import httpx
import pytest

from coinline.errors import (
    BadDataError,
    IncompletePageError,
    NotListedError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from coinline.providers.base import CANDLE_SCHEMA, SeriesKey, SeriesRef
from coinline.providers.http import Gateway, RetryPolicy
from coinline.providers.kraken import (
    INTERVAL_MINUTES,
    KrakenAssetPairs,
    KrakenOHLCSource,
    kraken_client,
    unwrap,
)
from coinline.universe.model import load_universe

SHARED = Path(__file__).resolve().parents[3] / "shared"
KRAKEN = SHARED / "data" / "api" / "kraken"
UNIVERSE = "UNIVERSE_V1_TOP30_NON_STABLE"
LATER = datetime(2030, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def capture(rel: str) -> dict:
    path = KRAKEN / rel
    if not path.exists():
        pytest.skip(f"shared capture {path} not present")
    return _load(str(path))


@cache
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def capture_date(name: str) -> datetime:
    for entry in capture("aiokraken_cassettes/_index.json"):  # type: ignore[union-attr]
        if entry["file"] == name:
            return parsedate_to_datetime(entry["date"])
    raise KeyError(name)


class Server:
    """MockTransport handler: `routes[path]` is a body (dict) or a list of bodies served in turn."""

    def __init__(self, routes: dict):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = self.routes[request.url.path]
        if isinstance(body, list):
            body = body.pop(0) if len(body) > 1 else body[0]
        if callable(body):
            return body(request)
        return httpx.Response(200, json=body)


def gateway(server: Server, *, attempts: int = 4) -> tuple[Gateway, list[float]]:
    sleeps: list[float] = []
    client = kraken_client("https://api.kraken.test", transport=httpx.MockTransport(server))
    return Gateway("kraken", client, policy=RetryPolicy(max_attempts=attempts), sleep=sleeps.append), sleeps


def ohlc_ref(pair: str, interval: str, symbol: str = "BTC", quote: str = "EUR") -> SeriesRef:
    return SeriesRef(SeriesKey("kraken", "KRAKEN", symbol, quote, interval), pair)


def ohlc_source(server: Server, clock: datetime = LATER, **kw) -> KrakenOHLCSource:
    gw, _ = gateway(server)
    return KrakenOHLCSource(gw, clock=lambda: clock, **kw)


# ---------------------------------------------------------------------------------------------- envelope


def test_client_has_no_auth_and_base_url():
    client = kraken_client("https://api.kraken.com")
    assert str(client.base_url) == "https://api.kraken.com"
    assert not any(h.lower() in ("api-key", "authorization", "x-coinapi-key") for h in client.headers)
    assert INTERVAL_MINUTES["1h"] == 60 and INTERVAL_MINUTES["1w"] == 10080 and len(INTERVAL_MINUTES) == 8


@pytest.mark.parametrize(
    ("errors", "exc"),
    [
        (["EGeneral:Too many requests"], RateLimitedError),
        (["EAPI:Rate limit exceeded"], RateLimitedError),
        (["EService:Unavailable"], TransientError),
        (["EService:Busy"], TransientError),
        (["EQuery:Unknown asset pair"], NotListedError),
        (["EGeneral:Invalid arguments"], ProviderError),
    ],
)
def test_unwrap_maps_error_envelopes(errors, exc):
    with pytest.raises(exc) as info:
        unwrap({"error": errors}, provider="kraken", series="kraken:KRAKEN:BTC-USD:1h", request="GET /0/public/OHLC")
    assert type(info.value) is exc
    text = str(info.value)
    assert errors[0] in text and "provider=kraken" in text and "series=kraken:KRAKEN:BTC-USD:1h" in text
    assert "request=GET /0/public/OHLC" in text


def test_unwrap_success_and_malformed_envelopes():
    assert unwrap({"error": [], "result": {"a": 1}}, provider="kraken") == {"a": 1}
    for body in ([1, 2], {"error": []}, {"error": [], "result": [1]}, {"error": 5, "result": {}}):
        with pytest.raises(BadDataError):
            unwrap(body, provider="kraken")


@pytest.mark.parametrize("name", ["error_EAPI_Invalid_key_private_OpenOrders_2019-10-12.json",
                                  "error_EGeneral_Invalid_arguments_private_Balance_2019-11-25.json"])
def test_real_error_captures_are_provider_errors_not_retried(name):
    body = capture(f"aiokraken_cassettes/{name}")
    server = Server({"/0/public/OHLC": body})
    src = ohlc_source(server)
    with pytest.raises(ProviderError) as info:
        src.fetch(ohlc_ref("XXBTZEUR", "1h"), EPOCH, LATER)
    assert not isinstance(info.value, TransientError)
    assert body["error"][0] in str(info.value)
    assert "request=GET /0/public/OHLC?interval=60&pair=XXBTZEUR" in str(info.value)
    assert len(server.requests) == 1


def test_rate_limit_capture_is_retried_then_succeeds():
    err = capture("issue_logs/error_EGeneral_Too_many_requests_public_OHLC.json")
    ok = capture("aiokraken_cassettes/OHLC_XXBTZEUR_interval60_2020-07-14.json")
    server = Server({"/0/public/OHLC": [err, err, ok]})
    gw, sleeps = gateway(server)
    src = KrakenOHLCSource(gw, clock=lambda: LATER)
    page = src.fetch(ohlc_ref("XXBTZEUR", "1h"), EPOCH, LATER)
    assert page.candles.num_rows == 719
    assert len(server.requests) == 3 and gw.retries_made == 2 and len(sleeps) == 2


def test_rate_limit_capture_gives_up_with_typed_error():
    err = capture("issue_logs/error_EGeneral_Too_many_requests_public_OHLC.json")
    server = Server({"/0/public/OHLC": err})
    gw, _ = gateway(server, attempts=3)
    src = KrakenOHLCSource(gw, clock=lambda: LATER)
    with pytest.raises(RateLimitedError) as info:
        src.fetch(ohlc_ref("XXBTZEUR", "1h", "BTC", "EUR"), EPOCH, LATER)
    text = str(info.value)
    assert "gave up after 3 attempts" in text and "EGeneral:Too many requests" in text
    assert "series=kraken:KRAKEN:BTC-EUR:1h" in text and "request=GET /0/public/OHLC?" in text
    assert len(server.requests) == 3


def test_service_unavailable_is_retried():
    ok = capture("aiokraken_cassettes/OHLC_XXBTZEUR_interval60_2020-07-14.json")
    server = Server({"/0/public/OHLC": [{"error": ["EService:Unavailable"]}, {"error": ["EService:Busy"]}, ok]})
    src = ohlc_source(server)
    assert src.fetch(ohlc_ref("XXBTZEUR", "1h"), EPOCH, LATER).candles.num_rows == 719
    assert len(server.requests) == 3


def test_unknown_asset_pair_is_not_listed():
    server = Server({"/0/public/OHLC": {"error": ["EQuery:Unknown asset pair"]}})
    with pytest.raises(NotListedError, match="EQuery:Unknown asset pair"):
        ohlc_source(server).fetch(ohlc_ref("NOPEUSD", "1h"), EPOCH, LATER)
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------------- AssetPairs


@pytest.fixture(scope="module")
def pairs_2026() -> KrakenAssetPairs:
    return KrakenAssetPairs.from_body(capture("current/AssetPairs_full_2026-01-12.json"))


def test_asset_pairs_2026_map_the_universe(pairs_2026):
    universe = load_universe(UNIVERSE)
    report = pairs_2026.report(universe)
    assert len(report) == 30 * len(universe.quotes)
    usd = {s: k for s, q, k in report if q == "USD"}
    assert len(usd) == 30 and all(usd.values())
    assert usd["BTC"] == "XXBTZUSD" and usd["ETH"] == "XETHZUSD" and usd["SOL"] == "SOLUSD"
    assert usd["XMR"] == "XXMRZUSD" and usd["POL"] == "POLUSD" and usd["KAS"] == "KASUSD"
    cad = {s: k for s, q, k in pairs_2026.report(universe, ["CAD"]) if k}
    assert cad == {"BTC": "XXBTZCAD", "ETH": "XETHZCAD", "XRP": "XXRPZCAD", "SOL": "SOLCAD"}
    assert ("TRX", "CAD", None) in report
    # The packaged universe file was built from the same snapshot: every pair key agrees.
    expected = {(c.symbol, q): v["pair_key"] for c in universe.coins for q, v in c.kraken_pairs.items()}
    assert {(s, q): k for s, q, k in report if k} == expected


def test_asset_pairs_skip_non_online(pairs_2026):
    assert pairs_2026.find("AGLD", "USD") is None
    assert pairs_2026.skipped["AGLDUSD"] == "status cancel_only"
    assert pairs_2026.find("BTC", "USD").key == "XXBTZUSD"  # BTC -> XBT alias without a universe


def test_asset_pairs_2020_schema_without_status_and_dark_pools():
    pairs = KrakenAssetPairs.from_body(capture("aiokraken_cassettes/AssetPairs_all_2020-07-14.json"))
    report = {(s, q): k for s, q, k in pairs.report(load_universe(UNIVERSE))}
    assert report[("BTC", "USD")] == "XXBTZUSD" and report[("BTC", "CAD")] == "XXBTZCAD"
    assert report[("ETH", "CAD")] == "XETHZCAD" and report[("XRP", "CAD")] == "XXRPZCAD"
    assert report[("SOL", "USD")] is None and report[("SOL", "CAD")] is None  # not listed in 2020
    assert pairs.skipped["XXBTZUSD.d"] == "dark pool"
    single = KrakenAssetPairs.from_body(capture("aiokraken_cassettes/AssetPairs_pair=XBTEUR_2020-02-07.json"))
    assert single.find("BTC", "EUR").key == "XXBTZEUR"


def test_asset_pairs_2015_schema_without_wsname():
    pairs = KrakenAssetPairs.from_body(capture("legacy/AssetPairs_legacy_2015.json"))
    report = {(s, q): k for s, q, k in pairs.report(load_universe(UNIVERSE), ["USD", "CAD"])}
    assert report[("BTC", "USD")] == "XXBTZUSD" and report[("LTC", "USD")] == "XLTCZUSD"
    assert report[("ETH", "USD")] is None and report[("BTC", "CAD")] is None
    assert pairs.lookup("XBT", "EUR").key == "XXBTZEUR" and pairs.lookup("XBT", "LTC").key == "XXBTXLTC"


def test_resolve_fetches_asset_pairs_lazily_and_reports_unlisted():
    server = Server({"/0/public/AssetPairs": capture("current/AssetPairs_full_2026-01-12.json")})
    src = ohlc_source(server, universe=load_universe(UNIVERSE))
    ref = src.resolve("btc", "USD", "1h")
    assert ref.key == SeriesKey("kraken", "KRAKEN", "BTC", "USD", "1h") and ref.provider_symbol == "XXBTZUSD"
    assert src.resolve("SOL", "CAD", "1d").provider_symbol == "SOLCAD"
    with pytest.raises(NotListedError) as info:
        src.resolve("TRX", "CAD", "1h")
    assert "TRX/CAD" in str(info.value) and "series=kraken:KRAKEN:TRX-CAD:1h" in str(info.value)
    with pytest.raises(ValueError, match="interval"):
        src.resolve("BTC", "USD", "2h")
    assert len(server.requests) == 1  # AssetPairs fetched once and cached


# ---------------------------------------------------------------------------------------------- OHLC


@pytest.mark.parametrize(("name", "pair", "interval"), [
    ("OHLC_XXBTZEUR_interval1_2020-01-27.json", "XXBTZEUR", "1m"),
    ("OHLC_XXBTZEUR_interval60_2020-07-14.json", "XXBTZEUR", "1h"),
    ("OHLC_XXBTZEUR_interval1440_2020-07-15.json", "XXBTZEUR", "1d"),
    ("OHLC_XETHZCAD_interval1440_2020-07-15.json", "XETHZCAD", "1d"),
])
def test_ohlc_captures_drop_the_open_candle(name, pair, interval):
    body = capture(f"aiokraken_cassettes/{name}")
    rows = body["result"][pair]
    assert len(rows) == 720
    server = Server({"/0/public/OHLC": body})
    src = ohlc_source(server, clock=capture_date(name))
    page = src.fetch(ohlc_ref(pair, interval), EPOCH, LATER)
    table = page.candles
    assert table.schema == CANDLE_SCHEMA and table.num_rows == 719 and page.done
    times = [int(t.timestamp()) for t in table.column("open_time").to_pylist()]
    assert times[0] == rows[0][0] and times[-1] == rows[-2][0] == body["result"]["last"]
    assert rows[-1][0] not in times  # the still-open candle never comes back
    assert table.column("close").to_pylist()[-1] == float(rows[-2][4])
    assert table.column("trade_count").to_pylist()[-1] == rows[-2][7]
    assert page.request["last"] == body["result"]["last"]
    assert page.next_cursor == datetime.fromtimestamp(rows[-1][0], UTC)
    params = server.requests[0].url.params
    assert params["pair"] == pair and params["interval"] == str(INTERVAL_MINUTES[interval]) and "since" not in params


def test_ohlc_ccxt_fixture_with_string_last():
    body = capture("ccxt_fixture/OHLC_XBTUSDT_60_ccxt.json")
    rows = body["result"]["XBTUSDT"]
    # The fixture is a trimmed sample: its `last` names a committed candle its rows leave out, which is
    # a short page (re-requested, then reported); with `last` naming its own newest closed row it is read.
    with pytest.raises(IncompletePageError, match="short page: 6 row"):
        ohlc_source(Server({"/0/public/OHLC": body})).fetch(ohlc_ref("XBTUSDT", "1h", "BTC", "USDT"), EPOCH, LATER)
    body["result"]["last"] = str(rows[-2][0])
    page = ohlc_source(Server({"/0/public/OHLC": body})).fetch(ohlc_ref("XBTUSDT", "1h", "BTC", "USDT"), EPOCH, LATER)
    assert page.candles.num_rows == len(rows) - 1
    assert page.request["last"] == rows[-2][0]


def test_ohlc_drops_rows_not_closed_by_the_clock():
    name = "OHLC_XXBTZEUR_interval60_2020-07-14.json"
    body = capture(f"aiokraken_cassettes/{name}")
    rows = body["result"]["XXBTZEUR"]
    # One second before the second-to-last candle closes: it is still open too.
    clock = datetime.fromtimestamp(rows[-2][0] + 3600 - 1, UTC)
    page = ohlc_source(Server({"/0/public/OHLC": body}), clock=clock).fetch(ohlc_ref("XXBTZEUR", "1h"), EPOCH, LATER)
    assert page.candles.num_rows == 718


def test_ohlc_response_key_may_differ_and_window_is_cut():
    body = capture("aiokraken_cassettes/OHLC_XXBTZEUR_interval60_2020-07-14.json")
    rows = body["result"]["XXBTZEUR"]
    server = Server({"/0/public/OHLC": body})
    cursor = datetime.fromtimestamp(rows[100][0], UTC)
    end = datetime.fromtimestamp(rows[110][0], UTC)
    page = ohlc_source(server).fetch(ohlc_ref("XBTEUR", "1h"), cursor, end)  # altname requested
    times = [int(t.timestamp()) for t in page.candles.column("open_time").to_pylist()]
    assert times == [r[0] for r in rows[100:110]]
    assert server.requests[0].url.params["since"] == str(rows[100][0] - 3600)
    assert page.next_cursor == end and page.done


@pytest.mark.parametrize(("row", "match"), [
    (["1594728000", "1", "1", "1", "1", "1", "1", 1], "time"),
    ([1594728000.5, "1", "1", "1", "1", "1", "1", 1], "time"),
    ([1594728000, "NaN", "1", "1", "1", "1", "1", 1], r"open is .*nan.*not finite"),
    ([1594728000, "1", "1", "-1", "1", "1", "1", 1], r"low is .*-1.0.*> 0"),
    ([1594728000, "1", "1", "1", "1", "1", "-2", 1], "volume"),
    ([1594728000, "1", "1", "1", "1", "1", "1", -1], "count"),
    ([1594728000, "1", None, "1", "1", "1", "1", 1], "not a number"),
    ([1594728000, "1", "1", "1", "1"], "expected"),
    ([1594728030, "1", "1", "1", "1", "1", "1", 1], "grid"),
])
def test_ohlc_malformed_rows_are_bad_data(row, match):
    good = [1594724400, "1", "1", "1", "1", "1", "1", 1]
    open_row = [1594731600, "1", "1", "1", "1", "1", "1", 1]
    body = {"error": [], "result": {"XXBTZEUR": [good, row, open_row], "last": 1594728000}}
    with pytest.raises(BadDataError, match=match) as info:
        ohlc_source(Server({"/0/public/OHLC": body})).fetch(ohlc_ref("XXBTZEUR", "1h"), EPOCH, LATER)
    assert "provider=kraken" in str(info.value) and "request=GET /0/public/OHLC" in str(info.value)


@pytest.mark.parametrize("result", [
    {"XXBTZEUR": [], "XETHZEUR": [], "last": 1},
    {"last": 1},
    {"XXBTZEUR": {"a": 1}, "last": 1},
    {"XXBTZEUR": [], "last": "soon"},
    {"XXBTZEUR": [[1594724400, "1", "1", "1", "1", "1", "1", 1]] * 3, "last": 1},
])
def test_ohlc_malformed_results_are_bad_data(result):
    with pytest.raises(BadDataError):
        ohlc_source(Server({"/0/public/OHLC": {"error": [], "result": result}})).fetch(
            ohlc_ref("XXBTZEUR", "1h"), EPOCH, LATER)


def test_ohlc_earliest_is_first_available_row():
    body = capture("aiokraken_cassettes/OHLC_XXBTZEUR_interval1440_2020-07-15.json")
    server = Server({"/0/public/OHLC": body})
    assert ohlc_source(server).earliest(ohlc_ref("XXBTZEUR", "1d")) == datetime.fromtimestamp(1532649600, UTC)
    assert "since" not in server.requests[0].url.params
    only_open = {"error": [], "result": {"XXBTZEUR": [[1594771200, "1", "1", "1", "1", "1", "1", 1]], "last": 0}}
    assert ohlc_source(Server({"/0/public/OHLC": only_open})).earliest(ohlc_ref("XXBTZEUR", "1d")) is None


def test_ohlc_capabilities():
    caps = KrakenOHLCSource.capabilities
    assert (caps.page_limit, caps.pagination, caps.history, caps.auth_required) == (720, "recent-only", "recent", False)
    assert KrakenOHLCSource.name == "kraken" and set(caps.intervals) == set(INTERVAL_MINUTES)
