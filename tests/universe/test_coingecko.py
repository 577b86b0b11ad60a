"""CoinGecko adapter: auth headers, paging, strict parsing, 429 handling. No network (MockTransport)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from coinline.errors import BadDataError, ConfigError, ProviderError, RateLimitedError
from coinline.providers.coingecko import (
    COINGECKO_RETRY_POLICY,
    MarketRow,
    coingecko_client,
    coingecko_gateway,
    fetch_markets,
    parse_markets,
)
from coinline.providers.http import Gateway, RetryPolicy
from coinline.secrets import Secret

SHARED = Path(__file__).resolve().parents[3] / "shared"
CG = SHARED / "data" / "api" / "coingecko"
BASE = "https://api.coingecko.com/api/v3"
KEY = "CG-sup3rs3cr3tK3y"


def capture(name: str) -> bytes:
    path = CG / "captured" / name
    if not path.is_file():
        pytest.skip(f"shared capture {path} is not available")
    return path.read_bytes()


def row(i: int, **over) -> dict:
    base = {"id": f"coin-{i:03d}", "symbol": f"c{i}", "name": f"Coin {i}", "current_price": 1.5 + i,
            "market_cap": 1e9 - i * 1e6, "market_cap_rank": i, "total_volume": 1e6,
            "last_updated": "2025-03-04T14:45:50.155Z"}
    base.update(over)
    return base


class Recorder:
    """A MockTransport handler replaying queued responses and recording requests."""

    def __init__(self, *responses: httpx.Response | object):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if callable(item):
            return item(request)
        return item


def make_gateway(handler, *, tier="demo", key=KEY, sleeps: list[float] | None = None,
                 policy: RetryPolicy = COINGECKO_RETRY_POLICY) -> Gateway:
    client = coingecko_client(BASE, Secret(key), tier, transport=httpx.MockTransport(handler))
    sink = sleeps if sleeps is not None else []
    return coingecko_gateway(client, policy=policy, sleep=sink.append)


def json_response(body, status=200, headers=None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"content-type": "application/json", **(headers or {})})


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tier", "header", "other"), [("demo", "x-cg-demo-api-key", "x-cg-pro-api-key"),
                                                       ("pro", "x-cg-pro-api-key", "x-cg-demo-api-key")])
def test_key_goes_in_the_tier_header_never_the_url(tier, header, other):
    rec = Recorder(json_response([]))
    fetch_markets(make_gateway(rec, tier=tier))
    (req,) = rec.requests
    assert req.headers[header] == KEY
    assert other not in req.headers
    assert KEY not in str(req.url)
    assert "api_key" not in str(req.url)
    assert req.url.path == "/api/v3/coins/markets"


def test_blank_key_sends_no_key_header():
    rec = Recorder(json_response([]))
    fetch_markets(make_gateway(rec, key=""))
    (req,) = rec.requests
    assert "x-cg-demo-api-key" not in req.headers and "x-cg-pro-api-key" not in req.headers


def test_unknown_tier_is_a_config_error():
    with pytest.raises(ConfigError, match="UNIVERSE_SOURCE_API_TIER"):
        coingecko_client(BASE, Secret(KEY), "enterprise")  # type: ignore[arg-type]


def test_key_never_in_exception_text():
    body = {"status": {"error_code": 10002, "error_message": "API Key Missing"}}
    rec = Recorder(json_response(body, status=401))
    with pytest.raises(ProviderError) as info:
        fetch_markets(make_gateway(rec))
    text = str(info.value) + repr(info.value) + info.value.request
    assert "HTTP 401" in text and "API Key Missing" in text
    assert KEY not in text
    assert "provider=coingecko" in text


# --- parsing the real captures ----------------------------------------------------------------


def test_real_top30_capture_parses_and_is_sorted_by_market_cap_not_position():
    rec = Recorder(json_response(capture("coins_markets_usd_top30_2025-03-04.json")))
    rows = fetch_markets(make_gateway(rec))
    assert len(rec.requests) == 1  # 30 < 250: a short first page ends paging
    q = parse_qs(rec.requests[0].url.query.decode())
    assert q == {"vs_currency": ["usd"], "order": ["market_cap_desc"], "per_page": ["250"], "page": ["1"]}
    assert len(rows) == 30 and all(isinstance(r, MarketRow) for r in rows)
    caps = [r.market_cap for r in rows]
    assert caps == sorted(caps, reverse=True)
    btc = rows[0]
    assert (btc.id, btc.symbol, btc.name, btc.market_cap_rank) == ("bitcoin", "btc", "Bitcoin", 1)
    assert isinstance(btc.current_price, float) and btc.current_price == 79847.0
    assert btc.last_updated is not None and btc.last_updated.isoformat() == "2025-03-04T14:45:50.155000+00:00"
    ids = [r.id for r in rows]
    # CoinGecko ranks shiba-inu 22, sui 23, the-open-network 24, but their caps order them the other way
    assert ids.index("the-open-network") < ids.index("sui") < ids.index("shiba-inu")
    shib = rows[ids.index("shiba-inu")]
    assert shib.market_cap_rank == 22 and shib.current_price == pytest.approx(1.231e-05)


def test_real_ids5_capture_parses():
    rows = parse_markets(json.loads(capture("coins_markets_usd_ids5_2023-01-02.json")))
    assert [r.id for r in rows] == ["bitcoin", "ethereum", "tether", "usd-coin", "binancecoin"]
    assert rows[3].name == "USD Coin" and rows[3].current_price == pytest.approx(1.001)


# --- paging -----------------------------------------------------------------------------------


def paged_handler(rows: list[dict], per_page: int):
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        assert int(request.url.params["per_page"]) == per_page
        return json_response(rows[(page - 1) * per_page: page * per_page])
    return handler


def test_paging_stops_on_a_short_page():
    rows = [row(i) for i in range(1, 6)]
    rec = Recorder(paged_handler(rows, 2))
    got = fetch_markets(make_gateway(rec), per_page=2, max_pages=10)
    assert [int(r.url.params["page"]) for r in rec.requests] == [1, 2, 3]
    assert [r.id for r in got] == [f"coin-{i:03d}" for i in range(1, 6)]


def test_paging_full_last_page_then_empty_page():
    rec = Recorder(paged_handler([row(i) for i in range(1, 5)], 2))
    got = fetch_markets(make_gateway(rec), per_page=2, max_pages=10)
    assert len(rec.requests) == 3 and len(got) == 4


def test_paging_respects_max_pages_and_dedupes_ids_that_moved_between_pages():
    rows = [row(i) for i in range(1, 9)]
    rows[2] = dict(rows[1])  # coin-002 shows up again on page 2 (the ranking moved)
    rec = Recorder(paged_handler(rows, 2))
    got = fetch_markets(make_gateway(rec), per_page=2, max_pages=3)
    assert len(rec.requests) == 3
    assert [r.id for r in got] == ["coin-001", "coin-002", "coin-004", "coin-005", "coin-006"]


def test_rank_ties_break_by_id_and_null_caps_sort_last():
    rows = [row(1, id="zeta", market_cap=5.0), row(2, id="alpha", market_cap=5.0),
            row(3, id="nocap", market_cap=None, market_cap_rank=None), row(4, id="big", market_cap=9.0)]
    got = fetch_markets(make_gateway(Recorder(json_response(rows))))
    assert [r.id for r in got] == ["big", "alpha", "zeta", "nocap"]
    assert got[-1].market_cap is None and got[-1].market_cap_rank is None


def test_bad_per_page_is_rejected():
    with pytest.raises(ConfigError, match="per_page"):
        fetch_markets(make_gateway(Recorder(json_response([]))), per_page=251)


# --- strict parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("over", "field"), [
    ({"market_cap": "1000"}, "market_cap"),
    ({"current_price": True}, "current_price"),
    ({"market_cap_rank": 2.5}, "market_cap_rank"),
    ({"total_volume": -1}, "total_volume"),
    ({"symbol": 7}, "symbol"),
    ({"name": ""}, "name"),
    ({"last_updated": "yesterday"}, "last_updated"),
])
def test_wrong_types_raise_bad_data_naming_provider_request_row_and_field(over, field):
    rows = [row(1), row(2, id="broken-coin", **over)]
    with pytest.raises(BadDataError) as info:
        fetch_markets(make_gateway(Recorder(json_response(rows))))
    text = str(info.value)
    assert "provider=coingecko" in text
    assert "/coins/markets" in text and "page=1" in text
    assert "broken-coin" in text and repr(field) in text
    assert KEY not in text


def test_missing_id_and_non_array_bodies_are_bad_data():
    with pytest.raises(BadDataError, match="'id' is missing"):
        parse_markets([{"symbol": "x", "name": "X"}])
    with pytest.raises(BadDataError, match="JSON array"):
        parse_markets({"coins": []})


def test_error_envelope_with_http_200_is_a_provider_error():
    body = json.loads(capture("error_429_rate_limit_body.json"))
    with pytest.raises(ProviderError, match="exceeded the Rate Limit"):
        fetch_markets(make_gateway(Recorder(json_response(body))))


# --- 429 handling (by the Gateway) ------------------------------------------------------------


def test_429_json_body_with_retry_after_is_retried_after_the_hint():
    body = capture("error_429_rate_limit_body.json")
    rec = Recorder(json_response(body, status=429, headers={"retry-after": "119"}),
                   json_response([row(1), row(2)]))
    sleeps: list[float] = []
    gateway = make_gateway(rec, sleeps=sleeps)
    got = fetch_markets(gateway)
    assert [r.id for r in got] == ["coin-001", "coin-002"]
    assert sleeps == [119.0]  # the provider's hint, not the exponential schedule
    assert gateway.retries_made == 1 and len(rec.requests) == 2


def test_429_retries_are_bounded_and_the_error_names_the_request():
    body = capture("error_429_rate_limit_body.json")
    rec = Recorder(json_response(body, status=429, headers={"retry-after": "3"}))
    sleeps: list[float] = []
    with pytest.raises(RateLimitedError) as info:
        fetch_markets(make_gateway(rec, sleeps=sleeps, policy=RetryPolicy(max_attempts=3, max_delay=130)))
    assert sleeps == [3.0, 3.0] and len(rec.requests) == 3
    assert "gave up after 3 attempts" in str(info.value)
    assert "provider=coingecko" in str(info.value) and KEY not in str(info.value)


CLOUDFLARE_429 = (b"<!DOCTYPE html><html><head><title>Access denied | api.coingecko.com used Cloudflare"
                  b"</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>")


def test_html_429_page_is_retried_with_backoff_then_raises():
    rec = Recorder(httpx.Response(429, content=CLOUDFLARE_429, headers={"content-type": "text/html"}))
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=3, base_delay=2.0, max_delay=130.0)
    with pytest.raises(RateLimitedError) as info:
        fetch_markets(make_gateway(rec, sleeps=sleeps, policy=policy))
    assert sleeps == [2.0, 4.0]  # no retry-after on the HTML page: exponential backoff
    assert "<html" not in str(info.value).lower() and KEY not in str(info.value)


def test_html_429_then_success_recovers():
    rec = Recorder(httpx.Response(429, content=CLOUDFLARE_429, headers={"content-type": "text/html"}),
                   json_response([row(1)]))
    got = fetch_markets(make_gateway(rec, sleeps=[]))
    assert [r.id for r in got] == ["coin-001"]


def test_html_page_with_http_200_is_bad_data():
    rec = Recorder(httpx.Response(200, content=CLOUDFLARE_429, headers={"content-type": "text/html"}))
    with pytest.raises(BadDataError, match="HTML page"):
        fetch_markets(make_gateway(rec))
