"""The provider contract: the canonical candle schema, series keys, pages and the source protocol.

Every adapter (CoinAPI, Kraken, file importers, ...) returns candles as a `pyarrow.Table` with exactly
`CANDLE_SCHEMA`, built by `candle_table`, which also enforces the rules every candle must satisfy
(finite positive prices, finite non-negative volume, UTC open times on the interval grid).
Generic code reads `Capabilities` instead of asking which provider it talks to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from coinline.errors import BadDataError
from coinline.timeframes import interval_ms

UTC_MS = pa.timestamp("ms", tz="UTC")

CANDLE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("venue", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("quote", pa.string(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("open_time", UTC_MS, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("trade_count", pa.int64(), nullable=True),
    ]
)
PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume", "trade_count")


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One stored series. The natural key of a candle is (series key, open_time)."""

    source: str
    venue: str
    symbol: str
    quote: str
    interval: str

    def label(self) -> str:
        return f"{self.source}:{self.venue}:{self.symbol}-{self.quote}:{self.interval}"


@dataclass(frozen=True)
class SeriesRef:
    """A series as a provider addresses it (e.g. CoinAPI `KRAKEN_SPOT_BTC_USD`, Kraken `XXBTZUSD`)."""

    key: SeriesKey
    provider_symbol: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, as data. Generic code reads this instead of branching on names."""

    page_limit: int                      # most candles (or trades) one request returns
    pagination: Literal["time", "cursor", "recent-only"]
    history: Literal["full", "recent"]   # "recent": only the last `page_limit` candles exist
    auth_required: bool
    intervals: tuple[str, ...]
    requests_per_second: float | None = None


@dataclass(frozen=True)
class Page:
    """One provider answer, normalized. `request` holds the request parameters (never secrets)."""

    candles: pa.Table
    request: Mapping[str, Any]
    next_cursor: datetime | None  # where the next request starts; None when the series is exhausted
    done: bool


class CandleSource(Protocol):
    """A provider of historical candles. Time-paginated: fetch(ref, cursor, end) -> Page."""

    name: str
    capabilities: Capabilities

    def resolve(self, symbol: str, quote: str, interval: str) -> SeriesRef:
        """Map a universe pair to the provider's series, or raise NotListedError."""
        ...

    def earliest(self, ref: SeriesRef) -> datetime | None:
        """Earliest open time the provider has for this series (None when it has none)."""
        ...

    def fetch(self, ref: SeriesRef, cursor: datetime, end: datetime) -> Page:
        """Candles with cursor <= open_time < end, at most one request's worth."""
        ...


def empty_candles() -> pa.Table:
    return CANDLE_SCHEMA.empty_table()


def candle_table(
    key: SeriesKey,
    open_time_ms: Sequence[int] | np.ndarray,
    open: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    low: Sequence[float] | np.ndarray,
    close: Sequence[float] | np.ndarray,
    volume: Sequence[float] | np.ndarray,
    trade_count: Sequence[int | None] | np.ndarray | None = None,
    *,
    where: str = "",
) -> pa.Table:
    """Build a canonical candle table and enforce the candle rules.

    `where` names the provider request or file so a violation reads e.g.
    "close is NaN at row 17 (open_time 2024-01-01T05:00:00Z) [provider=coinapi ...]".
    Raises BadDataError; never drops or repairs a row.
    """
    n = len(open_time_ms)
    times = np.asarray(open_time_ms, dtype=np.int64)
    cols: dict[str, np.ndarray] = {}
    for name, values in (("open", open), ("high", high), ("low", low), ("close", close), ("volume", volume)):
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadDataError(f"{name} is not numeric ({exc})", provider=key.source, series=key.label(),
                               request=where) from None
        if len(arr) != n:
            raise BadDataError(f"{name} has {len(arr)} values for {n} open times", provider=key.source,
                               series=key.label(), request=where)
        cols[name] = arr
    _check_rules(key, times, cols, where)
    if trade_count is None:
        tc = pa.nulls(n, pa.int64())
    else:
        try:  # infer, then cast safely: 1.5 or 2**64 must fail, not be silently truncated
            raw = pa.array(trade_count)
            if not (pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type) or pa.types.is_null(raw.type)):
                raise TypeError(f"values of type {raw.type}")
            tc = raw.cast(pa.int64(), safe=True)
        except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            raise BadDataError(f"trade_count is not integer ({exc})", provider=key.source, series=key.label(),
                               request=where) from None
        if len(tc) != n:
            raise BadDataError(f"trade_count has {len(tc)} values for {n} open times", provider=key.source,
                               series=key.label(), request=where)
    return pa.Table.from_arrays(
        [
            *(_constant(text, n) for text in (key.source, key.venue, key.symbol, key.quote, key.interval)),
            pa.array(times, pa.int64()).cast(UTC_MS),
            *(pa.array(cols[c]) for c in ("open", "high", "low", "close", "volume")),
            tc,
        ],
        schema=CANDLE_SCHEMA,
    )


def _constant(text: str, n: int) -> pa.Array:
    """A string column of `n` copies of `text`, built by Arrow (no Python list of n strings)."""
    return pa.repeat(pa.scalar(text, pa.string()), n)


def _check_rules(key: SeriesKey, times: np.ndarray, cols: dict[str, np.ndarray], where: str) -> None:
    def fail(message: str, row: int) -> None:
        when = np.datetime64(int(times[row]), "ms").astype(str) + "Z" if len(times) > row else "?"
        raise BadDataError(f"{message} at row {row} (open_time {when})", provider=key.source,
                           series=key.label(), request=where)

    step = interval_ms(key.interval)
    off_grid = np.flatnonzero(times % step != 0)
    if off_grid.size:
        fail(f"open_time is not on the {key.interval} grid", int(off_grid[0]))
    for name in PRICE_COLUMNS:
        arr = cols[name]
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            fail(f"{name} is {float(arr[bad[0]])!r} (not finite)", int(bad[0]))
        bad = np.flatnonzero(arr <= 0)
        if bad.size:
            fail(f"{name} is {float(arr[bad[0]])!r} (prices must be > 0)", int(bad[0]))
    vol = cols["volume"]
    bad = np.flatnonzero(~np.isfinite(vol) | (vol < 0))
    if bad.size:
        fail(f"volume is {float(vol[bad[0]])!r} (must be finite and >= 0)", int(bad[0]))
