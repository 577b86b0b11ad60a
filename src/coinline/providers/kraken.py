"""Kraken Spot public REST: envelope/error mapping, AssetPairs -> universe mapping, recent OHLC.

Endpoints (no auth; `KRAKEN_API_KEY` is unused in this phase), all under `<base_url>/0/public/`:

- `AssetPairs` maps a universe (symbol, quote) to Kraken's pair key by `wsname` ("XBT/USD"; BTC is
  XBT). Keys are legacy X/Z-prefixed (`XXBTZUSD`, `XETHZCAD`) or unprefixed (`SOLUSD`); captures from
  2015 have no `wsname` (the names come from `altname` and the X/Z asset ids then), 2020 has no `status`
  and lists dark-pool `.d` pairs (skipped). Only `status == "online"` (or no status) pairs count.
- `OHLC` returns at most the 720 most recent candles whatever `since` says, and its LAST row is the
  still-open candle: it is always dropped (`KrakenOHLCSource`). Deep history comes from `Trades`
  (`coinline.providers.kraken_trades.KrakenTradesSource`).

Kraken reports API errors as HTTP 200 with a non-empty `error` list; `unwrap` turns them into typed
errors and the Gateway retries the rate-limit/service ones like a 429/5xx. Rows are parsed inside the
gateway's retry loop (`public_get(parse=...)`), so a malformed body, rows repeated or out of order, or a
page contradicting Kraken's own `last` cursor are re-requested under the one `RetryPolicy`, like CoinAPI's.

What exists (`KrakenOHLCSource.listed_candles`): OHLC's `last` is the open time of the newest committed
candle (captures: always the second-to-last row); Kraken vouches for that candle and nothing else (it
keeps only the 720 most recent, and omits no-trade intervals in its CSVs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import numpy as np
import pyarrow as pa

from coinline.errors import (
    BadDataError,
    DamagedAnswerError,
    IncompletePageError,
    NotListedError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from coinline.providers.base import Capabilities, Page, SeriesKey, SeriesRef, candle_table
from coinline.providers.http import Gateway, build_client, describe
from coinline.timeframes import from_ms, interval_seconds, ms
from coinline.universe.model import Universe

KRAKEN_BASE_URL = "https://api.kraken.com"  # host root: request paths carry the /0/public/ prefix
VENUE = "KRAKEN"
INTERVAL_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "1d": 1440, "1w": 10080}
OHLC_PATH = "/0/public/OHLC"
ASSET_PAIRS_PATH = "/0/public/AssetPairs"

# Universe symbol -> Kraken altname where they differ (used when no universe file says so).
SYMBOL_ALIASES = {"BTC": "XBT", "DOGE": "XDG"}

_RATE_LIMIT_ERRORS = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded")
_TRANSIENT_ERRORS = ("EService:Unavailable", "EService:Busy")
_NOT_LISTED_ERRORS = ("EQuery:Unknown asset pair",)


def kraken_client(base_url: str = KRAKEN_BASE_URL, *, transport: httpx.BaseTransport | None = None,
                  timeout: float | None = 30.0) -> httpx.Client:
    """An httpx client for Kraken's public endpoints (no auth headers). `base_url` is the host root,
    e.g. `https://api.kraken.com` or a replay server; paths are `/0/public/...`. The documented API
    base `https://api.kraken.com/0` (KRAKEN_PUBLIC_BASE_URL's default) is accepted too."""
    base_url = base_url.rstrip("/")
    if base_url.endswith("/0"):
        base_url = base_url[:-2]
    return build_client(base_url, timeout=timeout, transport=transport)


def unwrap(body: Any, *, provider: str, series: str = "", request: str = "") -> Mapping[str, Any]:
    """Return `result` of a Kraken envelope `{"error": [...], "result": {...}}` or raise a typed error.

    HTTP-200 errors: rate limits -> RateLimitedError, `EService:Unavailable|Busy` -> TransientError
    (both retried by the Gateway when used as its `check`), `EQuery:Unknown asset pair` ->
    NotListedError, anything else -> ProviderError carrying the error strings."""
    ctx = {"provider": provider, "series": series, "request": request}
    if not isinstance(body, dict):
        raise BadDataError(f"expected a JSON object envelope, got {type(body).__name__}", **ctx)
    errors = body.get("error", [])
    if isinstance(errors, str):
        errors = [errors]
    if not isinstance(errors, list):
        raise BadDataError(f"envelope 'error' is {type(errors).__name__}, expected a list", **ctx)
    if errors:
        text = "; ".join(str(e) for e in errors)
        if any(str(e).startswith(_RATE_LIMIT_ERRORS) for e in errors):
            raise RateLimitedError(f"rate limited: {text}", **ctx)
        if any(str(e).startswith(_TRANSIENT_ERRORS) for e in errors):
            raise TransientError(f"service unavailable: {text}", **ctx)
        if any(str(e).startswith(_NOT_LISTED_ERRORS) for e in errors):
            raise NotListedError(f"not listed: {text}", **ctx)
        raise ProviderError(f"Kraken error: {text}", **ctx)
    result = body.get("result")
    if not isinstance(result, dict):
        raise BadDataError("envelope has no 'result' object", **ctx)
    return result


T = TypeVar("T")


def public_get(gateway: Gateway, path: str, params: Mapping[str, Any] | None = None, *,
               series: str = "", parse: Callable[[Mapping[str, Any], str], T] | None = None) -> tuple[Any, str]:
    """GET a public endpoint through the Gateway, retrying HTTP-200 rate-limit/service errors.
    Returns (result, request description), or (parse(result, request), request) with `parse`: it runs
    inside the gateway's retry loop, so what it raises as damaged (`DamagedAnswerError`) is re-requested."""
    request = describe("GET", path, params)

    def answer(body: Any) -> Any:
        result = unwrap(body, provider=gateway.provider, series=series, request=request)
        return result if parse is None else parse(result, request)

    return gateway.get(path, params, series=series, parse=answer), request


def single_series(result: Mapping[str, Any], *, provider: str, series: str, request: str) -> tuple[str, Any]:
    """The one non-`last` entry of an OHLC/Trades result: (pair key as Kraken spells it, rows)."""
    keys = [k for k in result if k != "last"]
    if len(keys) != 1:
        raise BadDataError(f"expected one pair in result, got {sorted(keys)}", provider=provider,
                           series=series, request=request)
    rows = result[keys[0]]
    if not isinstance(rows, list):
        raise BadDataError(f"rows of {keys[0]} are {type(rows).__name__}, expected a list",
                           provider=provider, series=series, request=request)
    return keys[0], rows


def parse_last(value: Any, *, provider: str, series: str, request: str) -> int | None:
    """`last` is an int (2020 OHLC), a numeric string (ccxt OHLC, Trades nanoseconds) or absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise BadDataError(f"'last' is {value!r}, expected an integer or a digit string", provider=provider,
                       series=series, request=request)


def to_number(value: Any) -> float:
    """A Kraken numeric field (string or JSON number) as float; raises ValueError on anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


# ---------------------------------------------------------------------------------------------- AssetPairs


def _asset_alt(asset_id: str) -> str:
    """Legacy asset ids carry an X (crypto) or Z (fiat) prefix: XXBT -> XBT, ZUSD -> USD."""
    if len(asset_id) == 4 and asset_id[0] in "XZ":
        return asset_id[1:]
    return asset_id


@dataclass(frozen=True)
class PairInfo:
    key: str        # result key, used as `pair=` (XXBTZUSD, SOLUSD)
    altname: str    # XBTUSD
    base: str       # Kraken altname of the base (XBT)
    quote: str      # Kraken altname of the quote (USD)
    status: str | None


class KrakenAssetPairs:
    """Kraken's tradable pairs, indexed by (base altname, quote altname) from `wsname`.

    Accepts the 2015 (no wsname, no status), 2020 (wsname, `.d` dark-pool twins, no status) and 2026
    (status) AssetPairs schemas. Pairs with a status other than "online" and `.d` pairs are left out."""

    def __init__(self, result: Mapping[str, Any], *, provider: str = "kraken", request: str = ""):
        self.pairs: dict[tuple[str, str], PairInfo] = {}
        self.skipped: dict[str, str] = {}  # pair key -> why it is not used (status, dark pool)
        for key in sorted(result):
            info = result[key]
            if not isinstance(info, dict):
                raise BadDataError(f"AssetPairs entry {key!r} is {type(info).__name__}, expected an object",
                                   provider=provider, request=request)
            pair = self._parse(key, info)
            if pair is None:
                continue
            status = pair.status
            if status is not None and status != "online":
                self.skipped[key] = f"status {status}"
                continue
            self.pairs.setdefault((pair.base, pair.quote), pair)

    def _parse(self, key: str, info: Mapping[str, Any]) -> PairInfo | None:
        altname = str(info.get("altname", key))
        if key.endswith(".d") or altname.endswith(".d"):
            self.skipped[key] = "dark pool"
            return None
        status = info.get("status")
        wsname = info.get("wsname")
        if isinstance(wsname, str) and wsname.count("/") == 1:
            base, quote = wsname.split("/")
        else:  # 2015: no wsname -> altname minus the quote's altname, or the de-prefixed asset ids
            quote = _asset_alt(str(info.get("quote", "")))
            if quote and altname.endswith(quote) and len(altname) > len(quote):
                base = altname[: -len(quote)]
            else:
                base = _asset_alt(str(info.get("base", "")))
        if not base or not quote:
            self.skipped[key] = "no base/quote"
            return None
        return PairInfo(key, altname, base.upper(), quote.upper(), None if status is None else str(status))

    @classmethod
    def from_body(cls, body: Any, *, provider: str = "kraken", request: str = "") -> KrakenAssetPairs:
        return cls(unwrap(body, provider=provider, request=request), provider=provider, request=request)

    @classmethod
    def fetch(cls, gateway: Gateway) -> KrakenAssetPairs:
        result, request = public_get(gateway, ASSET_PAIRS_PATH)
        return cls(result, provider=gateway.provider, request=request)

    def lookup(self, base: str, quote: str) -> PairInfo | None:
        """Pair by Kraken altnames (`XBT`, `USD`)."""
        return self.pairs.get((base.upper(), quote.upper()))

    def find(self, symbol: str, quote: str, *, altname: str | None = None) -> PairInfo | None:
        """Pair for a universe symbol: tries `altname` (the universe's Kraken altname), the known alias
        (BTC -> XBT) and the symbol itself."""
        for base in dict.fromkeys(b for b in (altname, SYMBOL_ALIASES.get(symbol.upper()), symbol) if b):
            pair = self.lookup(base, quote)
            if pair is not None:
                return pair
        return None

    def report(self, universe: Universe, quotes: Iterable[str] | None = None) -> list[tuple[str, str, str | None]]:
        """(symbol, quote, pair key or None) for every universe coin and quote: unlisted pairs are an
        explicit outcome (None), never an error."""
        out = []
        for coin in universe.coins:
            for quote in (universe.quotes if quotes is None else tuple(quotes)):
                pair = self.find(coin.symbol, quote, altname=coin.kraken_altname)
                out.append((coin.symbol, quote, pair.key if pair else None))
        return out


# ---------------------------------------------------------------------------------------------- sources


class KrakenSourceBase:
    """What the Kraken sources share: the Gateway, the (lazily fetched) AssetPairs and `resolve`."""

    name = "kraken"

    def __init__(self, gateway: Gateway, *, universe: Universe | None = None,
                 asset_pairs: KrakenAssetPairs | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.gateway = gateway
        self.universe = universe
        self._asset_pairs = asset_pairs
        self.clock = clock

    @property
    def asset_pairs(self) -> KrakenAssetPairs:
        if self._asset_pairs is None:
            self._asset_pairs = KrakenAssetPairs.fetch(self.gateway)
        return self._asset_pairs

    def resolve(self, symbol: str, quote: str, interval: str) -> SeriesRef:
        if interval not in INTERVAL_MINUTES:
            raise ValueError(f"Kraken has no {interval!r} interval; known: {', '.join(INTERVAL_MINUTES)}")
        key = SeriesKey(self.name, VENUE, symbol.upper(), quote.upper(), interval)
        altname = None
        if self.universe is not None:
            altname = next((c.kraken_altname for c in self.universe.coins if c.symbol == key.symbol), None)
        pair = self.asset_pairs.find(key.symbol, key.quote, altname=altname)
        if pair is None:
            raise NotListedError(f"Kraken lists no online {key.symbol}/{key.quote} pair", provider=self.gateway.provider,
                                 series=key.label(), request=describe("GET", ASSET_PAIRS_PATH, None))
        return SeriesRef(key, pair.key, {"altname": pair.altname, "wsname": f"{pair.base}/{pair.quote}"})


def parse_ohlc_rows(rows: list, key: SeriesKey, *, provider: str, request: str) -> dict[str, np.ndarray]:
    """Validate Kraken OHLC rows `[time, o, h, l, c, vwap, volume, count]` into arrays (seconds)."""
    n = len(rows)
    t = np.empty(n, np.int64)
    vals = np.empty((n, 5), np.float64)  # open high low close volume
    cnt = np.empty(n, np.int64)
    for i, row in enumerate(rows):
        def bad(msg: str, i: int = i) -> BadDataError:
            return BadDataError(f"OHLC row {i}: {msg}", provider=provider, series=key.label(), request=request)

        if not isinstance(row, list) or len(row) < 8:
            raise bad(f"expected [time, o, h, l, c, vwap, volume, count], got {row!r:.120}")
        time, count = row[0], row[7]
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time) \
                or time < 0 or time != int(time):
            raise bad(f"time {time!r} is not a non-negative integer of seconds")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise bad(f"count {count!r} is not a non-negative integer")
        try:
            vals[i] = [to_number(row[j]) for j in (1, 2, 3, 4, 6)]
            to_number(row[5])
        except ValueError as exc:
            raise bad(str(exc)) from None
        t[i], cnt[i] = int(time), count
    if n > 1 and not np.all(np.diff(t) > 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise DamagedAnswerError(f"OHLC row {i}: time {int(t[i])} is not after the previous row (unsorted or "
                                 f"duplicate)", provider=provider, series=key.label(), request=request)
    return {"time": t, "open": vals[:, 0], "high": vals[:, 1], "low": vals[:, 2], "close": vals[:, 3],
            "volume": vals[:, 4], "count": cnt}


class KrakenOHLCSource(KrakenSourceBase):
    """Kraken's recent candles (`GET /0/public/OHLC`): at most the 720 most recent per interval.

    One request gives everything there is, so `fetch` always returns `done=True`. The open candle (the
    last row, always present) is never returned; nor is any row whose close time is after `clock()`."""

    name = "kraken"
    capabilities = Capabilities(page_limit=720, pagination="recent-only", history="recent", auth_required=False,
                                intervals=tuple(INTERVAL_MINUTES), requests_per_second=1.0)

    def __init__(self, gateway: Gateway, **kw: Any):
        super().__init__(gateway, **kw)
        self._last: dict[SeriesKey, int] = {}   # newest `last` Kraken sent per series (unix seconds)

    def listed_candles(self, ref: SeriesRef) -> list[tuple[datetime, datetime]]:
        """What Kraken says exists: the committed candle at the newest `last` it sent for this series
        (none before the first request). Ranges [lo, hi) each holding one candle."""
        last = self._last.get(ref.key)
        if last is None:
            return []
        step = interval_seconds(ref.key.interval)
        return [(from_ms(last * 1000), from_ms((last + step) * 1000))]

    def _get(self, ref: SeriesRef, since: int | None) -> tuple[dict[str, np.ndarray], int | None, dict, str]:
        key = ref.key
        params: dict[str, Any] = {"pair": ref.provider_symbol, "interval": INTERVAL_MINUTES[key.interval]}
        if since is not None and since > 0:
            params["since"] = since
        step = interval_seconds(key.interval)

        def parse(result: Mapping[str, Any], request: str) -> tuple[dict[str, np.ndarray], int | None]:
            ctx = {"provider": self.gateway.provider, "series": key.label(), "request": request}
            _, rows = single_series(result, **ctx)
            last = parse_last(result.get("last"), **ctx)
            arrays = parse_ohlc_rows(rows, key, provider=self.gateway.provider, request=request)
            # the candle rules first (every row but the open one): a rule-breaking row is bad data, not
            # a page to re-request
            closed = slice(0, max(len(rows) - 1, 0))
            candle_table(key, arrays["time"][closed] * 1000, *(arrays[c][closed] for c in ("open", "high", "low", "close",
                         "volume")), arrays["count"][closed], where=request)
            self._check_last(arrays["time"], last, params.get("since"), step, ctx)
            return arrays, last

        (arrays, last), request = public_get(self.gateway, OHLC_PATH, params, series=key.label(), parse=parse)
        if last is not None:
            self._last[key] = last
        # The last row is the still-open candle (Kraken always sends it): never final.
        now = ms(self.clock()) // 1000
        n = len(arrays["time"])
        keep = np.zeros(n, bool)
        keep[: max(n - 1, 0)] = True
        keep &= arrays["time"] + step <= now
        arrays = {k: v[keep] for k, v in arrays.items()}
        return arrays, last, {"endpoint": OHLC_PATH, **params}, request

    def _check_last(self, times: np.ndarray, last: int | None, since: int | None, step: int,
                    ctx: dict[str, str]) -> None:
        """Raise IncompletePageError when Kraken's own `last` (its newest committed candle, closed by
        the clock and after `since`) is not among the rows followed by the open candle: an empty page,
        or one cut short before the candle Kraken vouches for."""
        if last is None or last <= 0 or (since is not None and last <= since) \
                or last + step > ms(self.clock()) // 1000:
            return
        if (times[:-1] == last).any():
            return
        first = since + step if since is not None else last    # the page is re-requested or dropped whole
        raise IncompletePageError(
            f"{'empty' if not len(times) else 'short'} page: {len(times)} row(s) but Kraken's last={last} says "
            f"the candle at {from_ms(last * 1000).isoformat()} is committed", missing_from=from_ms(first * 1000),
            missing_until=from_ms((last + step) * 1000), **ctx)

    def fetch(self, ref: SeriesRef, cursor: datetime, end: datetime) -> Page:
        """Closed candles with cursor <= open_time < end among the (at most 720) Kraken still serves.

        `since` is sent as cursor minus one interval (Kraken's `since` is exclusive). `next_cursor` is
        where the next poll should start: the open time after the newest closed candle Kraken returned,
        kept within [cursor, end]."""
        key = ref.key
        step = interval_seconds(key.interval)
        start_s, end_s = -(-ms(cursor) // 1000), -(-ms(end) // 1000)
        arrays, last, req, request = self._get(ref, start_s - step)
        t = arrays["time"]
        # Every closed row is checked against the candle rules, then the window is cut.
        table = candle_table(key, t * 1000, arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                             arrays["volume"], arrays["count"], where=request)
        table = table.filter(pa.array((t >= start_s) & (t < end_s)))
        resume = int(t[-1]) + step if len(t) else start_s
        resume = min(max(resume, start_s), max(end_s, start_s))
        if last is not None:
            req["last"] = last
        return Page(table, req, from_ms(resume * 1000), True)

    def earliest(self, ref: SeriesRef) -> datetime | None:
        """Open time of the oldest closed candle Kraken serves now (one plain OHLC call, no `since`).
        Kraken keeps only the 720 most recent candles, so this moves forward with time: it is the
        earliest *available here*, not the pair's listing date (use `KrakenTradesSource` for that)."""
        arrays, *_ = self._get(ref, None)
        return from_ms(int(arrays["time"][0]) * 1000) if len(arrays["time"]) else None
