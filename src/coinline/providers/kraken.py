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
from itertools import chain
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
    """A Kraken numeric field (string or JSON number) as float; raises ValueError on anything else
    (an integer beyond the float range included, which `float` would raise as OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r:.80} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{value!r:.40} is too large for a float") from None


# Unix seconds of 9999-12-31T23:59:59Z: a later time is no Kraken time, and its milliseconds or
# nanoseconds would overflow int64 further on.
MAX_TIME_S = 253_402_300_799
INT64_MAX = 2**63 - 1
NUMBER_TYPES = frozenset({str, int, float})   # what `to_number` takes, as exact JSON types


def number_column(values: tuple) -> np.ndarray | None:
    """`to_number` over a whole column at once, or None where it might not agree.

    Exact JSON types only (a bool, None or list would be taken by numpy as 1.0, NaN or a new axis).
    A column of plain decimal strings (Kraken's "30243.4") is parsed by Arrow (`_decimal_strings`);
    anything else by numpy, which converts each str with Python's own `float`, and ints and floats as
    `float` does. Either way the values are `to_number`'s; a value `float` refuses makes numpy raise,
    and the caller then falls back to its row-by-row parser, which names the row."""
    kinds = set(map(type, values))
    if not kinds <= NUMBER_TYPES:
        return None
    if kinds == {str}:
        parsed = _decimal_strings(values)
        if parsed is not None:
            return parsed
    return np.array(values, dtype=np.float64)


_DECIMAL_BYTES = np.zeros(256, dtype=bool)
_DECIMAL_BYTES[np.frombuffer(b"0123456789.-", dtype=np.uint8)] = True


def _decimal_strings(values: tuple) -> np.ndarray | None:
    """Floats of strings made only of ASCII digits, '.' and '-', parsed in one Arrow cast; None when a
    string holds any other character or Arrow refuses one (numpy then decides, as `float` would).

    On these characters Arrow's parser and Python's `float` accept the same strings and, both being
    correctly rounded, give the same double (checked by the property tests); whitespace, '_', '+',
    exponents, "nan"/"inf" and non-ASCII digits, where they could differ, never reach Arrow's cast.
    About 3x faster than numpy's per-string conversion."""
    texts = pa.array(values, pa.string())
    _validity, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[: len(texts) + 1]
    if data_buf is not None and not _DECIMAL_BYTES[np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]]].all():
        return None
    try:
        return texts.cast(pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        return None


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
    """Validate Kraken OHLC rows `[time, o, h, l, c, vwap, volume, count]` into arrays (seconds).

    A page as Kraken sends it is converted column-wise (`_ohlc_columns_fast`); anything that path does
    not positively recognise as valid goes to the row-by-row parser (`_ohlc_columns_by_row`), which
    accepts it or raises BadDataError naming the row, as always. Then rows repeated or out of order
    (a damaged page, re-requested) raise DamagedAnswerError."""
    arrays = _ohlc_columns_fast(rows)
    if arrays is None:
        arrays = _ohlc_columns_by_row(rows, key, provider=provider, request=request)
    t = arrays["time"]
    if len(t) > 1:
        behind = np.flatnonzero(t[1:] <= t[:-1])
        if behind.size:
            i = int(behind[0]) + 1
            raise DamagedAnswerError(f"OHLC row {i}: time {int(t[i])} is not after the previous row (unsorted or "
                                     f"duplicate)", provider=provider, series=key.label(), request=request)
    return arrays


_OHLC_ROW_LEN = 8


def _ohlc_columns_fast(rows: list) -> dict[str, np.ndarray] | None:
    """The arrays of a page of plainly valid rows, converted column-wise; None where anything is not
    plainly valid (the row parser then gives the error, or the same arrays).

    The subset taken: every row a list of exactly 8, time and count exact ints in range (time
    0..MAX_TIME_S, count 0..INT64_MAX), the six numeric fields strings or numbers `to_number` accepts.
    Values are converted exactly as the row parser converts them (`number_column`)."""
    try:
        return _ohlc_columns_fast_or_none(rows)
    except (TypeError, ValueError, OverflowError):
        return None


def _ohlc_columns_fast_or_none(rows: list) -> dict[str, np.ndarray] | None:
    if not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {_OHLC_ROW_LEN}:
        return None
    n = len(rows)
    cells = list(chain.from_iterable(rows))     # row-major; column j is cells[j::8]
    time, count = cells[0::_OHLC_ROW_LEN], cells[_OHLC_ROW_LEN - 1::_OHLC_ROW_LEN]
    if set(map(type, time)) != {int} or set(map(type, count)) != {int}:
        return None
    t, cnt = np.array(time, dtype=np.int64), np.array(count, dtype=np.int64)   # OverflowError past int64
    if t.min() < 0 or t.max() > MAX_TIME_S or cnt.min() < 0:
        return None
    # o, h, l, c, vwap, volume as one column of 6n values: one conversion instead of six
    values = number_column(tuple(chain.from_iterable(cells[j::_OHLC_ROW_LEN] for j in range(1, 7))))
    if values is None:
        return None
    open_, high, low, close, _vwap, volume = values.reshape(6, n)   # vwap: checked to be a number, not kept
    return {"time": t, "open": open_, "high": high, "low": low, "close": close, "volume": volume, "count": cnt}


def _ohlc_columns_by_row(rows: list, key: SeriesKey, *, provider: str, request: str) -> dict[str, np.ndarray]:
    """The reference parser: one row at a time, raising BadDataError at the first fault."""
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
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not _finite(time) \
                or time < 0 or time != int(time):
            raise bad(f"time {time!r:.40} is not a non-negative integer of seconds")
        if time > MAX_TIME_S:
            raise bad(f"time {time!r:.40} is after the year 9999 (not unix seconds)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise bad(f"count {count!r:.40} is not a non-negative integer")
        if count > INT64_MAX:
            raise bad(f"count {count!r:.40} is out of the int64 range")
        try:
            vals[i] = [to_number(row[j]) for j in (1, 2, 3, 4, 6)]
            to_number(row[5])
        except ValueError as exc:
            raise bad(str(exc)) from None
        t[i], cnt[i] = int(time), count
    return {"time": t, "open": vals[:, 0], "high": vals[:, 1], "low": vals[:, 2], "close": vals[:, 3],
            "volume": vals[:, 4], "count": cnt}


def _finite(value: int | float) -> bool:
    """math.isfinite for a JSON number; an int is finite however large (isfinite would overflow)."""
    return isinstance(value, int) or math.isfinite(value)


def parse_ohlc_result(result: Mapping[str, Any], key: SeriesKey, *, provider: str,
                      request: str) -> tuple[dict[str, np.ndarray], int | None, pa.Table]:
    """One OHLC `result`: (arrays of every row, `last`, candle table of the closed rows).

    The candle rules are checked on every row but the last (the still-open candle) here, so a
    rule-breaking row is bad data, not a page to re-request."""
    ctx = {"provider": provider, "series": key.label(), "request": request}
    _, rows = single_series(result, **ctx)
    last = parse_last(result.get("last"), **ctx)
    arrays = parse_ohlc_rows(rows, key, provider=provider, request=request)
    closed = slice(0, max(len(rows) - 1, 0))
    table = candle_table(key, arrays["time"][closed] * 1000, *(arrays[c][closed] for c in ("open", "high", "low",
                         "close", "volume")), arrays["count"][closed], where=request)
    return arrays, last, table


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

    def _get(self, ref: SeriesRef, since: int | None) -> tuple[dict[str, np.ndarray], pa.Table, int | None, dict, str]:
        """One OHLC request: the closed rows as arrays and as a candle table (the still-open last row and
        any row not closed by `clock()` left out), `last`, the request parameters and its description."""
        key = ref.key
        params: dict[str, Any] = {"pair": ref.provider_symbol, "interval": INTERVAL_MINUTES[key.interval]}
        if since is not None and since > 0:
            params["since"] = since
        step = interval_seconds(key.interval)

        def parse(result: Mapping[str, Any], request: str) -> tuple[dict[str, np.ndarray], int | None, pa.Table]:
            arrays, last, table = parse_ohlc_result(result, key, provider=self.gateway.provider, request=request)
            ctx = {"provider": self.gateway.provider, "series": key.label(), "request": request}
            self._check_last(arrays["time"], last, params.get("since"), step, ctx)
            return arrays, last, table

        (arrays, last, table), request = public_get(self.gateway, OHLC_PATH, params, series=key.label(), parse=parse)
        if last is not None:
            self._last[key] = last
        # The last row is the still-open candle (Kraken always sends it): never final. Times are strictly
        # increasing (checked), so the rows closed by the clock are a prefix of the others.
        now = ms(self.clock()) // 1000
        closed = arrays["time"][: max(len(arrays["time"]) - 1, 0)]
        n = int(np.searchsorted(closed, now - step, side="right"))
        arrays = {k: v[:n] for k, v in arrays.items()}
        return arrays, table.slice(0, n), last, {"endpoint": OHLC_PATH, **params}, request

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
        arrays, table, last, req, _request = self._get(ref, start_s - step)
        t = arrays["time"]
        # Every closed row was checked against the candle rules; the window is cut from the sorted times.
        lo, hi = np.searchsorted(t, [start_s, end_s], side="left")
        table = table.slice(int(lo), int(max(hi - lo, 0)))
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
