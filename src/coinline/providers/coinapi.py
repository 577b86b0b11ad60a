"""CoinAPI Market Data REST (v1): historical OHLCV for one exchange's spot pairs.

- Auth: the key travels only in the `X-CoinAPI-Key` header (set by `coinapi_client`); it never appears
  in a URL, a `Page.request` or an error message.
- Listing: `resolve` checks the pair against ONE cached `GET /v1/symbols?filter_exchange_id=<EXCHANGE>`
  call; a pair the exchange does not list raises `NotListedError` (an explicit, reported outcome).
- History: `GET /v1/ohlcv/{symbol_id}/history?period_id&time_start&time_end&limit`, paged by time
  (CoinAPI has no cursor): the next page starts one interval after the newest candle received.
  Empty periods are omitted by CoinAPI, so gaps are normal. HTTP 550 ("no data") is an empty, final page.
- What exists (`listed_candles`): the listing vouches for the candle holding the first trade
  (`data_trade_start`) and the one holding the last (`data_trade_end`), or, where only the dates
  `data_start`/`data_end` are listed, for some candle on each of those days; nothing in between, since
  empty periods are omitted. A page that answers for a window holding a vouched-for candle without it
  (an empty page, or a short one ending before it) contradicts the listing: `IncompletePageError`,
  retried by the gateway, then left to the walk to record as an unexplained gap. So does an EMPTY page
  mid-walk (right after a full page) while the listing's last trade is past its cursor: the walk was
  streaming candles and the listing says more exist. (A pair silent from exactly a page boundary until
  the still-open candle would read the same: rare, and loud, never silent.) The candle holding the last
  trade is only checked once closed: mid-candle, a short final page cannot be told from the real end.
- Every record is parsed strictly (`parse_ohlcv`); anything malformed is a `BadDataError` naming the
  provider, series, request, field and row. Rows are kept as received (ingest sorts and dedupes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any
from urllib.parse import quote as _urlquote

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from coinline.errors import BadDataError, ConfigError, IncompletePageError, NoDataError, NotListedError
from coinline.providers.base import Capabilities, Page, SeriesKey, SeriesRef, candle_table, empty_candles
from coinline.providers.http import Gateway, build_client, describe
from coinline.secrets import Secret, redact
from coinline.timeframes import floor_to_interval, interval_ms, ms, parse_iso_utc, to_utc
from coinline.universe.model import Universe

NAME = "coinapi"

PERIODS = {"1m": "1MIN", "5m": "5MIN", "15m": "15MIN", "30m": "30MIN", "1h": "1HRS", "4h": "4HRS",
           "1d": "1DAY", "1w": "7DAY"}

MAX_LIMIT = 100_000                      # CoinAPI's documented maximum `limit`
SYMBOLS_PATH = "/v1/symbols"
HISTORY_PATH = "/v1/ohlcv/{symbol_id}/history"
EARLIEST_PROBE_START = datetime(2009, 1, 1, tzinfo=UTC)   # before any crypto market existed

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MAX = 2**63 - 1
_FRACTION = re.compile(r"T[^.]*\.(\d+)")
_PRICE_FIELDS = (("price_open", "open"), ("price_high", "high"), ("price_low", "low"), ("price_close", "close"))


def coinapi_client(base_url: str, api_key: Secret, *, transport: httpx.BaseTransport | None = None,
                   timeout: float | None = 30.0) -> httpx.Client:
    """An httpx client for CoinAPI. The key goes into the `X-CoinAPI-Key` header and nowhere else
    (an empty key sends no key header, e.g. against a local replay server). `timeout=None`: none."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["X-CoinAPI-Key"] = api_key.reveal()
    return build_client(base_url, headers=headers, timeout=timeout, transport=transport)


def iso_z(ts: datetime) -> str:
    """A UTC time as CoinAPI takes it: `2024-01-01T00:00:00Z` (fraction only when there is one)."""
    ts = to_utc(ts)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def period_id(interval: str) -> str:
    try:
        return PERIODS[interval]
    except KeyError:
        raise ConfigError(f"interval {interval!r} is not served by CoinAPI here; known: {', '.join(PERIODS)}") from None


# --------------------------------------------------------------------------------------------- parsing


def parse_ohlcv(body: Any, key: SeriesKey, *, where: str = "", secrets: tuple[Secret, ...] = ()) -> pa.Table:
    """Parse a `/v1/ohlcv/.../history` body into a canonical candle table, strictly.

    Required per record: `time_period_start` (ISO-8601 string on the interval grid), `price_open`,
    `price_high`, `price_low`, `price_close`, `volume_traded` (JSON numbers, never null);
    `trades_count` is optional/nullable (a non-negative integer when present);
    `time_period_end`, when present, must be one interval after the start (catches a wrong period).
    Anything else raises BadDataError naming the field and row; candle rules (finite positive prices,
    finite non-negative volume, grid) are enforced by `candle_table`. Never drops or repairs a row.
    Values quoted from the body are redacted of `secrets` (a provider could echo the key back).

    Two paths, one result: a page as CoinAPI sends it is parsed column-wise (`_columns_fast`); anything
    that path does not positively recognise as valid, it hands to the record-by-record parser
    (`_columns_by_row`), which accepts or rejects it, with the error naming field and row, as always.
    """

    def bad(message: str) -> BadDataError:
        return BadDataError(redact(message, secrets), provider=key.source, series=key.label(), request=where)

    if not isinstance(body, list):
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise bad(f"provider answered an error instead of OHLCV records: {body['error'][:200]!r}")
        raise bad(f"expected a JSON array of OHLCV records, got {type(body).__name__}")
    step_ms = interval_ms(key.interval)
    columns = _columns_fast(body, step_ms)
    if columns is None:
        columns = _columns_by_row(body, key, step_ms, bad)
    times, open_, high, low, close, volume, counts = columns
    return candle_table(key, times, open_, high, low, close, volume, counts, where=where)


_Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]


def _columns_by_row(body: list, key: SeriesKey, step_ms: int, bad) -> _Columns:
    """The reference parser: one record at a time, raising BadDataError at the first fault."""
    n = len(body)
    times = np.empty(n, dtype=np.int64)
    values = {col: np.empty(n, dtype=np.float64) for _, col in (*_PRICE_FIELDS, ("volume_traded", "volume"))}
    counts: list[int | None] = []
    for row, rec in enumerate(body):
        if not isinstance(rec, dict):
            raise bad(f"row {row} is a JSON {type(rec).__name__}, expected an object")
        times[row] = _time_ms(rec, "time_period_start", row, bad)
        end = rec.get("time_period_end")
        if end is not None and _time_ms(rec, "time_period_end", row, bad) != times[row] + step_ms:
            raise bad(f"time_period_end {end!r} is not one {key.interval} after time_period_start "
                      f"{rec['time_period_start']!r} at row {row} (wrong period?)")
        for field_name, col in (*_PRICE_FIELDS, ("volume_traded", "volume")):
            values[col][row] = _number(rec, field_name, row, bad)
        counts.append(_count(rec, "trades_count", row, bad))
    return (times, values["open"], values["high"], values["low"], values["close"], values["volume"], counts)


# -- the column-wise fast path ---------------------------------------------------------------------
#
# It accepts a strict subset of what `_columns_by_row` accepts and, on that subset, yields the same
# columns. The subset: every record a dict; both times `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` in ASCII digits,
# one width per column (CoinAPI's 7 fractional digits, or none, or 3, ...), a real calendar date and
# time, every fractional digit below the millisecond 0, each present end one interval after its start;
# the prices and volume plain ints/floats (ints within 2**53, so pyarrow takes them exactly; finite or
# not, > 0 or not: those candle rules are `candle_table`'s, the same call on both paths); trades_count
# an int in 0..2**63-1, null or absent. Anything else (a time zone offset, whitespace, a boolean, a huge
# int, any error at all) makes it return None and the record-by-record parser decide, so what is
# accepted, and every error message, is exactly that parser's. `body` is JSON as `json.loads` returns
# it (dict, list, str, int, float, bool, None).

_NUMBER_FIELDS = ("price_open", "price_high", "price_low", "price_close", "volume_traded")
_NONE_TYPE = type(None)
_TRADES_COUNT = itemgetter("trades_count")
_FAST_RECORD = pa.struct([("time_period_start", pa.string()), ("time_period_end", pa.string()),
                          *((name, pa.float64()) for name in _NUMBER_FIELDS), ("trades_count", pa.int64())])
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DATE_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)   # YYYY MM DD HH MM SS
_DATE_PUNCT = (4, 7, 10, 13, 16)                                     # - - T : :


def _time_layout(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(digit positions, punctuation positions, punctuation bytes) of a `...SS[.fff...]Z` of `width`."""
    if width == 20:                      # 2024-01-01T00:00:00Z
        digits, punct, chars = _DATE_DIGITS, (*_DATE_PUNCT, 19), "--T::Z"
    elif 22 <= width <= 30:              # 2024-01-01T00:00:00.0000000Z: 1..9 fractional digits
        digits, punct, chars = (*_DATE_DIGITS, *range(20, width - 1)), (*_DATE_PUNCT, 19, width - 1), "--T::.Z"
    else:
        return None
    return (np.array(digits, dtype=np.intp), np.array(punct, dtype=np.intp),
            np.frombuffer(chars.encode("ascii"), dtype=np.uint8))


_TIME_LAYOUTS = {w: layout for w in range(20, 31) if (layout := _time_layout(w)) is not None}


def _iso_ms_column(texts: pa.Array) -> np.ndarray | None:
    """Unix ms of each of `texts` (a string array without nulls) when ALL are in one fast-path layout
    and `_time_ms` would accept them; else None."""
    n = len(texts)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if texts.null_count or texts.type != pa.string():
        return None
    _validity, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[texts.offset:texts.offset + n + 1]
    width = int(offsets[1] - offsets[0])
    layout = _TIME_LAYOUTS.get(width)
    if layout is None or not (np.diff(offsets) == width).all():
        return None
    raw = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(n, width)
    digit_at, punct_at, punct = layout
    if not (raw[:, punct_at] == punct).all():             # also rules out any non-ASCII byte there
        return None
    d = raw[:, digit_at] - np.uint8(48)                   # wraps around below b"0"
    if not (d <= 9).all():
        return None
    d = d.astype(np.int64)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    fraction = d[:, 14:]                                  # 0..9 digits
    if fraction.shape[1] > 3 and fraction[:, 3:].any():  # not on a whole millisecond
        return None
    millis = np.zeros(n, dtype=np.int64)
    for i in range(min(3, fraction.shape[1])):
        millis += fraction[:, i] * (100, 10, 1)[i]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))
    valid = ((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
             & (hour <= 23) & (minute <= 59) & (second <= 59))
    if not valid.all():
        return None
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return (((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis


def _columns_fast(body: list, step_ms: int) -> _Columns | None:
    """The columns of a page of plainly valid records, converted column-wise; None where anything is
    not plainly valid (the record-by-record parser then gives the error, or the same columns)."""
    try:
        return _columns_fast_or_none(body, step_ms)
    except (KeyError, TypeError, ValueError, ArithmeticError, pa.ArrowException):
        return None


def _columns_fast_or_none(body: list, step_ms: int) -> _Columns | None:
    if not set(map(type, body)) <= {dict}:
        return None
    # pyarrow would take a trades_count of 4.0 (and a price of true) silently: check what it cannot tell
    try:
        count_kinds = set(map(type, map(_TRADES_COUNT, body)))
    except KeyError:                                      # optional: absent on some record
        count_kinds = set(map(type, [rec.get("trades_count") for rec in body]))
    if not count_kinds <= {int, _NONE_TYPE}:
        return None
    # one pass in C++: absent keys and nulls become nulls; a str, list or dict where a number is due,
    # an int beyond 2**53 (not exact as a double) or one beyond int64 raises
    records = pa.array(body, type=_FAST_RECORD)
    if not isinstance(records, pa.StructArray):           # chunked: over 2 GiB of strings
        return None
    start, end, *numbers, trade_count = records.flatten()
    times = _iso_ms_column(start)
    if times is None:
        return None
    if end.null_count < len(end):
        if end.null_count:
            present = end.is_valid().to_numpy(zero_copy_only=False)
            end_ms, expected = _iso_ms_column(end.drop_null()), times[present] + step_ms
        else:
            end_ms, expected = _iso_ms_column(end), times + step_ms
        if end_ms is None or not np.array_equal(end_ms, expected):
            return None
    values = []
    for name, column in zip(_NUMBER_FIELDS, numbers, strict=True):
        if column.null_count:
            return None
        arr = column.to_numpy()
        maybe_bool = np.flatnonzero((arr == 0.0) | (arr == 1.0))   # where True/False would have landed
        if any(type(body[row][name]) is bool for row in maybe_bool.tolist()):
            return None
        values.append(arr)
    if trade_count.null_count < len(trade_count) and pc.min(trade_count).as_py() < 0:
        return None
    return (times, *values, trade_count)


def _time_ms(rec: dict, field_name: str, row: int, bad) -> int:
    if field_name not in rec:
        raise bad(f"field {field_name} is missing at row {row}")
    value = rec[field_name]
    if not isinstance(value, str):
        raise bad(f"field {field_name} is {_kind(value)}, expected an ISO-8601 string, at row {row}")
    try:
        ts = parse_iso_utc(value)
        micros = (ts - _EPOCH) // timedelta(microseconds=1)
    except (ValueError, OverflowError):
        raise bad(f"field {field_name} is not an ISO-8601 UTC time ({value[:40]!r}) at row {row}") from None
    fraction = _FRACTION.search(value)
    if micros % 1000 or (fraction and fraction.group(1)[3:].strip("0")):
        raise bad(f"field {field_name} {value[:40]!r} is not on a whole millisecond at row {row}")
    return micros // 1000


def _number(rec: dict, field_name: str, row: int, bad) -> float:
    if field_name not in rec:
        raise bad(f"field {field_name} is missing at row {row}")
    value = rec[field_name]
    if value is None:
        raise bad(f"field {field_name} is null at row {row}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"field {field_name} is {_kind(value)}, expected a number, at row {row}")
    try:
        return float(value)
    except OverflowError:
        raise bad(f"field {field_name} is too large for a float at row {row}") from None


def _count(rec: dict, field_name: str, row: int, bad) -> int | None:
    value = rec.get(field_name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"field {field_name} is {_kind(value)}, expected an integer or null, at row {row}")
    if not 0 <= value <= _INT64_MAX:
        raise bad(f"field {field_name} is {_int_text(value)} (must be a non-negative int64) at row {row}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, int):
        return f"a number ({_int_text(value)})"
    if isinstance(value, float):
        return f"a number ({value!r})" if math.isfinite(value) else repr(value)
    return f"a JSON {type(value).__name__}"


def _int_text(value: int) -> str:
    """An int for a message; huge ones are summarised (str() of a 5000-digit int raises)."""
    return str(value) if abs(value) < 10**30 else f"an integer of about {'-' if value < 0 else ''}10^{value.bit_length() * 0.30103:.0f}"


def _listing_time(value: Any) -> datetime | None:
    """`data_start` is a date (`2019-10-30`), `data_trade_start` a full ISO time; None when unusable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        return parse_iso_utc(text)
    except (ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------------------------- source


class CoinAPISource:
    """CoinAPI historical OHLCV for one exchange's spot pairs (default KRAKEN). Implements CandleSource."""

    name = NAME

    def __init__(self, gateway: Gateway, universe: Universe, *, exchange_id: str = "KRAKEN",
                 page_limit: int = MAX_LIMIT):
        if not isinstance(page_limit, int) or isinstance(page_limit, bool) or not 1 <= page_limit <= MAX_LIMIT:
            raise ConfigError(f"CoinAPI page_limit must be an integer in 1..{MAX_LIMIT}, got {page_limit!r}")
        if not exchange_id or not exchange_id.strip():
            raise ConfigError("HIST_MARKET_DATA_EXCHANGE is empty; CoinAPI needs an exchange id (e.g. KRAKEN)")
        self.gateway = gateway
        self.universe = universe
        self.exchange_id = exchange_id.strip().upper()
        self.page_limit = page_limit
        self.capabilities = Capabilities(page_limit=page_limit, pagination="time", history="full",
                                         auth_required=True, intervals=tuple(PERIODS))
        self._listing: dict[str, Mapping[str, Any]] | None = None
        self._full_until: dict[SeriesKey, datetime] = {}   # where a walk continues after a full page
        self._secrets = tuple(Secret(v) for k, v in gateway.client.headers.items()
                              if k.lower() in ("x-coinapi-key", "authorization") and v)

    # -- listing ------------------------------------------------------------------------------------

    def listing(self) -> Mapping[str, Mapping[str, Any]]:
        """symbol_id -> CoinAPI symbol record for this exchange; fetched once, then cached."""
        if self._listing is None:
            params = {"filter_exchange_id": self.exchange_id}
            where = describe("GET", SYMBOLS_PATH, params)
            try:
                body, _ = self.gateway.get_json(SYMBOLS_PATH, params)
            except NoDataError:
                body = []
            if not isinstance(body, list):
                raise BadDataError(f"expected a JSON array of symbols, got {type(body).__name__}",
                                   provider=NAME, request=where)
            listing: dict[str, Mapping[str, Any]] = {}
            for row, rec in enumerate(body):
                if not isinstance(rec, dict) or not isinstance(rec.get("symbol_id"), str):
                    raise BadDataError(f"symbol record without a string symbol_id at row {row}",
                                       provider=NAME, request=where)
                listing[rec["symbol_id"]] = rec
            self._listing = listing
        return self._listing

    def symbol_id(self, symbol: str, quote: str) -> str:
        coin = self.universe.coin(symbol)  # ConfigError naming the symbol when unknown
        return f"{self.exchange_id}_SPOT_{coin.coinapi_asset_id.upper()}_{quote.strip().upper()}"

    def resolve(self, symbol: str, quote: str, interval: str) -> SeriesRef:
        pid = period_id(interval)
        coin = self.universe.coin(symbol)
        quote = quote.strip().upper()
        symbol_id = self.symbol_id(coin.symbol, quote)
        key = SeriesKey(source=NAME, venue=self.exchange_id, symbol=coin.symbol, quote=quote, interval=interval)
        record = self.listing().get(symbol_id)
        if record is None:
            raise NotListedError(f"{self.exchange_id} does not list {coin.symbol}/{quote} on CoinAPI "
                                 f"(no symbol {symbol_id})", provider=NAME, series=key.label(),
                                 request=describe("GET", SYMBOLS_PATH, {"filter_exchange_id": self.exchange_id}))
        extra = {"symbol_id": symbol_id, "period_id": pid}
        for name in ("symbol_type", "data_start", "data_end", "data_trade_start", "data_trade_end",
                     "symbol_id_exchange"):
            if record.get(name) is not None:
                extra[name] = record[name]
        return SeriesRef(key=key, provider_symbol=symbol_id, extra=extra)

    # -- history ------------------------------------------------------------------------------------

    def earliest(self, ref: SeriesRef) -> datetime | None:
        """From the listing's `data_start`/`data_trade_start` (floored to the interval grid) when
        present; otherwise one `limit=1` history request from 2009."""
        # data_trade_start (when listed) is when candles begin; data_start is only a date, so a floor of it
        # would make every rerun re-request the empty hours between midnight and the first candle
        trade_start = _listing_time(ref.extra.get("data_trade_start"))
        start = trade_start or _listing_time(ref.extra.get("data_start"))
        if start is not None:
            return floor_to_interval(start, ref.key.interval)
        path, params = self._history_request(ref, EARLIEST_PROBE_START, None, 1)
        try:
            body, _ = self.gateway.get_json(path, params, series=ref.key.label())
        except NoDataError:
            return None
        table = parse_ohlcv(body, ref.key, where=describe("GET", path, params), secrets=self._secrets)
        if table.num_rows == 0:
            return None
        first = int(np.min(table.column("open_time").cast(pa.int64()).to_numpy()))
        return _EPOCH + timedelta(milliseconds=first)

    def listed_candles(self, ref: SeriesRef) -> list[tuple[datetime, datetime]]:
        """What the listing says exists, as ranges [lo, hi) each holding at least one candle: the
        candle holding `data_trade_start` and the one holding `data_trade_end` (exact times), else some
        candle on the day `data_start` / `data_end` (dates only). Nothing in between is vouched for:
        CoinAPI omits periods without trades."""
        step = timedelta(milliseconds=interval_ms(ref.key.interval))
        out = []
        for exact, day in (("data_trade_start", "data_start"), ("data_trade_end", "data_end")):
            when = _listing_time(ref.extra.get(exact))
            if when is not None:
                lo = floor_to_interval(when, ref.key.interval)
                out.append((lo, lo + step))
                continue
            date = _listing_time(ref.extra.get(day))
            if date is not None:
                date = date.replace(hour=0, minute=0, second=0, microsecond=0)
                out.append((floor_to_interval(date, ref.key.interval), date + timedelta(days=1)))
        return out

    def fetch(self, ref: SeriesRef, cursor: datetime, end: datetime) -> Page:
        """Candles with cursor <= open_time < end, one request. The page is checked against the listing
        (`listed_candles`) inside the gateway's retry loop, so an empty or short page is re-requested."""
        cursor, end = to_utc(cursor), to_utc(end)
        path, params = self._history_request(ref, cursor, end, self.page_limit)
        request: dict[str, Any] = {"endpoint": path, "symbol_id": ref.provider_symbol, **params}
        if cursor >= end:
            return Page(empty_candles(), {**request, "answer": "empty range, not requested"}, None, True)
        where = describe("GET", path, params)

        mid_walk = self._full_until.get(ref.key) == cursor

        def parse(body: Any) -> Page:
            page, received = self._page(ref, body, cursor, end, request, where)
            self._check_listed(ref, page, received, cursor, end, where)
            if mid_walk and received == 0:
                self._check_mid_walk(ref, cursor, end, where)
            return page

        try:
            page = self.gateway.get(path, params, series=ref.key.label(), parse=parse)
        except NoDataError:
            return Page(empty_candles(), {**request, "answer": "550 no data"}, None, True)
        if page.done or page.next_cursor is None:
            self._full_until.pop(ref.key, None)
        else:
            self._full_until[ref.key] = page.next_cursor
        return page

    def _check_mid_walk(self, ref: SeriesRef, cursor: datetime, end: datetime, where: str) -> None:
        """An empty page right after a full one, while the listing's last trade (`data_trade_end`, else
        the `data_end` day) is at or past the cursor: IncompletePageError for [cursor, end)."""
        last_trade = _listing_time(ref.extra.get("data_trade_end"))
        if last_trade is None:
            day = _listing_time(ref.extra.get("data_end"))
            last_trade = day + timedelta(days=1) - timedelta(milliseconds=1) if day is not None else None
        if last_trade is None or last_trade < cursor:
            return
        raise IncompletePageError(
            f"empty page mid-walk: no candle in [{iso_z(cursor)}, {iso_z(end)}) right after a full page, but the "
            f"{self.exchange_id} listing of {ref.provider_symbol} has trades until {iso_z(last_trade)}",
            missing_from=cursor, missing_until=end, provider=NAME, series=ref.key.label(), request=where)

    def _page(self, ref: SeriesRef, body: Any, cursor: datetime, end: datetime, request: dict[str, Any],
              where: str) -> tuple[Page, int]:
        """The page of one history answer, cut to [cursor, end), and how many rows were received."""
        table = parse_ohlcv(body, ref.key, where=where, secrets=self._secrets)
        received = table.num_rows
        times = table.column("open_time").cast(pa.int64()).to_numpy()
        lo, hi = ms(cursor), ms(end)
        keep = (times >= lo) & (times < hi)
        all_times = times
        if not keep.all():
            table = table.filter(pa.array(keep))
            times = times[keep]
        if table.num_rows == 0:
            if received >= self.page_limit and (all_times < lo).any():
                # a full page, all before the cursor: time_start was ignored and paging cannot progress
                raise BadDataError(f"none of the {received} rows is in [{iso_z(cursor)}, {iso_z(end)}) "
                                   f"and some are before time_start (was it ignored?)",
                                   provider=NAME, series=ref.key.label(), request=where)
            return Page(table, request, None, True), received
        next_cursor = _EPOCH + timedelta(milliseconds=int(times.max()) + interval_ms(ref.key.interval))
        done = received < self.page_limit or next_cursor >= end
        return Page(table, request, next_cursor, done), received

    def _check_listed(self, ref: SeriesRef, page: Page, received: int, cursor: datetime, end: datetime,
                      where: str) -> None:
        """Raise IncompletePageError when the page answers for a listed candle it does not hold.

        A page of fewer than `page_limit` rows answers for all of [cursor, end); a full one only up to
        its newest candle. Each listed range inside that answered window must hold a returned candle.
        The error bounds the missing candles by [cursor, end of the last unmet listed range)."""
        times = page.candles.column("open_time").cast(pa.int64()).to_numpy()
        step = interval_ms(ref.key.interval)
        answered = ms(end) if received < self.page_limit or not len(times) else int(times.max()) + step
        unmet = [(lo, hi) for lo, hi in self.listed_candles(ref)
                 if ms(lo) >= ms(cursor) and ms(hi) <= answered
                 and not ((times >= ms(lo)) & (times < ms(hi))).any()]
        if not unmet:
            return
        lo, hi = min(unmet)
        raise IncompletePageError(
            f"{'empty' if not len(times) else 'short'} page: {len(times)} candle(s) in [{iso_z(cursor)}, "
            f"{iso_z(end)}) but the {self.exchange_id} listing of {ref.provider_symbol} says one exists in "
            f"[{iso_z(lo)}, {iso_z(hi)})",
            missing_from=cursor,             # the page is re-requested or dropped whole: none of it is kept
            missing_until=min(max(to_utc(h) for _, h in unmet), end),
            provider=NAME, series=ref.key.label(), request=where)

    def _history_request(self, ref: SeriesRef, start: datetime, end: datetime | None,
                         limit: int) -> tuple[str, dict[str, Any]]:
        path = HISTORY_PATH.format(symbol_id=_urlquote(ref.provider_symbol, safe=""))
        params: dict[str, Any] = {"period_id": period_id(ref.key.interval), "time_start": iso_z(start)}
        if end is not None:
            params["time_end"] = iso_z(end)
        params["limit"] = limit
        return path, params
