"""CoinGecko v3 adapter: the market snapshot the universe refresh ranks (`GET /coins/markets`).

Contract (shared/data/api/CONTRACTS.md section 3):
- Auth: demo key in header `x-cg-demo-api-key`, pro key in `x-cg-pro-api-key`. Keys travel only in
  headers (never the `x_cg_*_api_key` query parameters), so request descriptions never carry them.
- Paging: plain page numbers, no total count; stop when a page returns fewer than `per_page` rows.
- Order: the captured order is not strictly by `market_cap_rank`; rank is never derived from position.
  `fetch_markets` returns rows sorted by market cap (descending, ties by id).
- Errors: 429 (JSON `{"status": {"error_code": 429, ...}}` with `retry-after`, or a Cloudflare HTML
  page) is a `RateLimitedError` mapped and retried by `Gateway`; other HTTP errors are `ProviderError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

from coinline.errors import BadDataError, ConfigError, ProviderError
from coinline.providers.http import Gateway, RetryPolicy, build_client, describe
from coinline.secrets import Secret
from coinline.timeframes import parse_iso_utc

PROVIDER = "coingecko"
MARKETS_PATH = "/coins/markets"
MAX_PER_PAGE = 250
KEY_HEADERS: Mapping[str, str] = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
DEFAULT_BASE_URLS: Mapping[str, str] = {
    "demo": "https://api.coingecko.com/api/v3",
    "pro": "https://pro-api.coingecko.com/api/v3",
}
# CoinGecko's 429 says `retry-after: 119`; the generic policy caps waits at 60 s, which would retry
# into the same rate-limit window. Waits up to 130 s honour the provider's hint.
COINGECKO_RETRY_POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=130.0)


def coingecko_client(base_url: str, api_key: Secret, tier: Literal["demo", "pro"], *,
                     transport: httpx.BaseTransport | None = None, timeout: float = 30.0) -> httpx.Client:
    """An httpx client for CoinGecko. The key goes in the tier's header (never a query parameter);
    a blank key sends no key header (keyless public access)."""
    if tier not in KEY_HEADERS:
        raise ConfigError(f"UNIVERSE_SOURCE_API_TIER={tier!r} is not one of {sorted(KEY_HEADERS)}")
    if not isinstance(api_key, Secret):
        raise ConfigError("UNIVERSE_SOURCE_API_KEY must be passed as a Secret")
    headers = {"accept": "application/json"}
    if api_key:
        headers[KEY_HEADERS[tier]] = api_key.reveal()
    return build_client(base_url, headers=headers, timeout=timeout, transport=transport)


def coingecko_gateway(client: httpx.Client, *, policy: RetryPolicy = COINGECKO_RETRY_POLICY,
                      sleep: Callable[[float], None] = time.sleep) -> Gateway:
    """A `Gateway` for CoinGecko with a retry policy that honours its long `retry-after` hints."""
    return Gateway(PROVIDER, client, policy=policy, sleep=sleep)


@dataclass(frozen=True)
class MarketRow:
    """One `/coins/markets` row, the fields the universe refresh needs. Nullable where CoinGecko
    sends nulls (new or dead listings); never ranked by position."""

    id: str
    symbol: str                    # lower-case as CoinGecko sends it; not unique across ids
    name: str
    market_cap_rank: int | None
    market_cap: float | None
    current_price: float | None
    total_volume: float | None
    last_updated: datetime | None  # UTC


def market_sort_key(row: MarketRow) -> tuple[int, float, str]:
    """Market cap descending (missing caps last), ties by id: a total, deterministic order."""
    cap = row.market_cap
    return (1, 0.0, row.id) if cap is None else (0, -cap, row.id)


def fetch_markets(gateway: Gateway, *, vs_currency: str = "usd", per_page: int = MAX_PER_PAGE,
                  max_pages: int = 4) -> list[MarketRow]:
    """Page `/coins/markets` by market cap until a short page (or `max_pages`); parse strictly.

    Returns rows sorted by market cap descending, ties by id; an id seen on two pages (the ranking
    moved between requests) is kept once, from its first page."""
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ConfigError(f"per_page={per_page} must be within 1..{MAX_PER_PAGE} (CoinGecko's limit)")
    if max_pages < 1:
        raise ConfigError(f"max_pages={max_pages} must be >= 1")
    rows: dict[str, MarketRow] = {}
    for page in range(1, max_pages + 1):
        params = {"vs_currency": vs_currency, "order": "market_cap_desc", "per_page": per_page, "page": page}
        body, _ = gateway.get_json(MARKETS_PATH, params, series="coins/markets")
        page_rows = parse_markets(body, request=describe("GET", MARKETS_PATH, params))
        for row in page_rows:
            rows.setdefault(row.id, row)
        if len(page_rows) < per_page:
            break
    return sorted(rows.values(), key=market_sort_key)


def parse_markets(body: Any, *, request: str = "") -> list[MarketRow]:
    """Strictly parse a `/coins/markets` body. Wrong shapes or types raise `BadDataError` naming the
    provider, the request and the row id and field."""
    if isinstance(body, dict):
        status = body.get("status")
        message = body.get("error") or (status.get("error_message") if isinstance(status, dict) else None)
        if message:
            raise ProviderError(f"error envelope instead of market rows: {str(message)[:200]}",
                                provider=PROVIDER, request=request)
    if not isinstance(body, list):
        raise BadDataError(f"expected a JSON array of market rows, got {type(body).__name__}",
                           provider=PROVIDER, request=request)
    return [_parse_row(raw, i, request) for i, raw in enumerate(body)]


def _parse_row(raw: Any, index: int, request: str) -> MarketRow:
    def fail(message: str) -> BadDataError:
        return BadDataError(f"row {index} (id {ident!r}): {message}", provider=PROVIDER, request=request)

    ident: Any = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(raw, dict):
        raise fail(f"expected an object, got {type(raw).__name__}")

    def text(field: str) -> str:
        value = raw.get(field)
        if not isinstance(value, str) or not value.strip():
            raise fail(f"field {field!r} must be a non-empty string, got {value!r}")
        return value

    def number(field: str, *, integer: bool = False) -> Any:
        value = raw.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"field {field!r} must be a number or null, got {type(value).__name__} {value!r}")
        if integer:
            if isinstance(value, float) and not value.is_integer():
                raise fail(f"field {field!r} must be an integer, got {value!r}")
            if value < 1:
                raise fail(f"field {field!r} must be >= 1, got {value!r}")
            return int(value)
        try:
            as_float = float(value)
        except OverflowError:   # an int past the float range: math.isfinite would raise it too
            raise fail(f"field {field!r} must be finite and >= 0, got an integer of {len(str(value))} digits") from None
        if not math.isfinite(as_float) or as_float < 0:
            raise fail(f"field {field!r} must be finite and >= 0, got {value!r}")
        return as_float

    for required in ("id", "symbol", "name"):
        if required not in raw:
            raise fail(f"field {required!r} is missing")
    row_id, symbol, name = text("id"), text("symbol"), text("name")
    updated_raw = raw.get("last_updated")
    updated: datetime | None = None
    if updated_raw is not None:
        if not isinstance(updated_raw, str):
            raise fail(f"field 'last_updated' must be an ISO-8601 string or null, got {updated_raw!r}")
        try:
            updated = parse_iso_utc(updated_raw)
        except ValueError:
            raise fail(f"field 'last_updated' is not ISO-8601 UTC: {updated_raw!r}") from None
    return MarketRow(
        id=row_id,
        symbol=symbol,
        name=name,
        market_cap_rank=number("market_cap_rank", integer=True),
        market_cap=number("market_cap"),
        current_price=number("current_price"),
        total_volume=number("total_volume"),
        last_updated=updated,
    )
