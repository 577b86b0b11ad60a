"""Kraken deep history: candles aggregated from `GET /0/public/Trades` pages.

Kraken's OHLC endpoint only serves the 720 most recent candles; its trade history goes back to the
pair's listing. `Trades?pair=<key>&since=<ns>` returns up to 1000 trades after `since` (a nanosecond
timestamp, exclusive) and `last`, the nanosecond cursor of the next page. Rows are
`[price str, volume str, time float s, side, ordertype, misc, trade_id, ...]` (trailing elements
optional; very old rows have no trade_id, then the arrival order breaks ties).

Cursor semantics of `KrakenTradesSource.fetch(ref, cursor, end)`:

- it reads trades from `cursor` (rounded up to the interval grid) and aggregates them into candles
  (open = first, close = last trade in (time, trade_id) order, high/low = max/min price, volume = sum,
  trade_count = number of trades);
- it returns only COMPLETE candles: a candle [t, t+interval) is complete once a trade at or after
  t+interval has been seen, or, when Kraken has no more trades (an empty page), once
  t+interval <= clock() - settle. The candle still open is never returned. Intervals without trades
  produce no candle (nothing is filled);
- `next_cursor` is the open time of the first incomplete candle, so the next fetch re-reads only that
  candle's trades (at most one page more than strictly needed) and never a complete candle again;
  `done` is True once every candle with open_time < end is complete (then `next_cursor` is `end`
  rounded up to the grid).

A fetch follows `last` page after page until every wanted candle is complete, Kraken has no more
trades, or `max_pages_per_fetch` pages were read (provided the fetch made progress). Trades of
complete candles are aggregated and dropped after every page, so memory holds at most one
incomplete candle's trades; a candle needing more than `max_pages_per_fetch` pages (e.g. a week of
BTC) is folded into a running partial candle every `max_pages_per_fetch` pages and the fetch goes on
until it completes, so every fetch makes progress with bounded memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from coinline.errors import BadDataError, DamagedAnswerError, IncompletePageError
from coinline.providers.base import Capabilities, Page, SeriesKey, SeriesRef, candle_table, empty_candles
from coinline.providers.http import Gateway
from coinline.providers.kraken import (
    INT64_MAX,
    INTERVAL_MINUTES,
    MAX_TIME_S,
    KrakenAssetPairs,
    KrakenSourceBase,
    number_column,
    parse_last,
    public_get,
    single_series,
    to_number,
)
from coinline.timeframes import from_ms, interval_seconds, ms
from coinline.universe.model import Universe

TRADES_PATH = "/0/public/Trades"
TRADES_PAGE_LIMIT = 1000
AGG_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "trade_count"]


@dataclass
class Trades:
    """Parsed trade rows: time in float unix seconds, trade ids (or arrival order when absent)."""

    time: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    trade_id: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    def take(self, mask: np.ndarray) -> Trades:
        return Trades(self.time[mask], self.price[mask], self.volume[mask], self.trade_id[mask])

    @staticmethod
    def concat(parts: list[Trades]) -> Trades:
        if not parts:
            return Trades(np.empty(0), np.empty(0), np.empty(0), np.empty(0, np.int64))
        return Trades(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("time", "price", "volume", "trade_id")))


def parse_trade_rows(rows: list, *, provider: str, series: str, request: str, seq_start: int = 0) -> Trades:
    """Validate Kraken Trades rows `[price, volume, time, side, ordertype, misc, trade_id?, ...]`.

    A page as Kraken sends it is converted column-wise (`_trade_columns_fast`); anything that path does
    not positively recognise as valid goes to the row-by-row parser (`_trade_columns_by_row`), which
    accepts it or raises BadDataError naming the row, as always. Rows without a trade id get their
    arrival order from `seq_start` instead."""
    trades = _trade_columns_fast(rows, seq_start)
    if trades is None:
        trades = _trade_columns_by_row(rows, provider=provider, series=series, request=request, seq_start=seq_start)
    return trades


def _trade_columns_fast(rows: list, seq_start: int) -> Trades | None:
    """The trades of a page of plainly valid rows, converted column-wise; None where anything is not
    plainly valid (the row parser then gives the error, or the same trades).

    The subset taken: every row a list, all of one length (6, or more with a trade id), time an exact
    int or float, finite, 0..MAX_TIME_S; price and volume strings or numbers `to_number` accepts (same
    values, `number_column`), price finite and > 0, volume finite and >= 0; trade ids exact ints in int64."""
    try:
        return _trade_columns_fast_or_none(rows, seq_start)
    except (TypeError, ValueError, OverflowError):
        return None


def _trade_columns_fast_or_none(rows: list, seq_start: int) -> Trades | None:
    if not rows or set(map(type, rows)) != {list}:
        return None
    lengths = set(map(len, rows))
    if len(lengths) != 1 or min(lengths) < 6:
        return None
    width = lengths.pop()
    cells = list(chain.from_iterable(rows))       # row-major; column j is cells[j::width]
    times = cells[2::width]
    if not set(map(type, times)) <= {int, float}:
        return None
    time = np.array(times, dtype=np.float64)       # OverflowError for an int past the float range
    numbers = number_column(tuple(cells[0::width] + cells[1::width]))   # price and volume, one conversion
    if numbers is None:
        return None
    price, volume = numbers.reshape(2, len(rows))
    with np.errstate(invalid="ignore"):
        plain = (np.isfinite(time) & (time >= 0) & (time <= MAX_TIME_S) & np.isfinite(price) & (price > 0)
                 & np.isfinite(volume) & (volume >= 0))
    if not plain.all():
        return None
    if width > 6:
        ids = cells[6::width]
        if set(map(type, ids)) != {int}:
            return None
        trade_id = np.array(ids, dtype=np.int64)         # OverflowError past int64
    else:
        trade_id = np.arange(seq_start, seq_start + len(rows), dtype=np.int64)
    return Trades(time, price, volume, trade_id)


def _trade_columns_by_row(rows: list, *, provider: str, series: str, request: str, seq_start: int = 0) -> Trades:
    """The reference parser: one row at a time, raising BadDataError at the first fault."""
    n = len(rows)
    time, price, volume = np.empty(n), np.empty(n), np.empty(n)
    tid = np.arange(seq_start, seq_start + n, dtype=np.int64)
    for i, row in enumerate(rows):
        def bad(msg: str, i: int = i) -> BadDataError:
            return BadDataError(f"Trades row {i}: {msg}", provider=provider, series=series, request=request)

        if not isinstance(row, list) or len(row) < 6:
            raise bad(f"expected [price, volume, time, side, ordertype, misc, trade_id], got {row!r:.120}")
        t = row[2]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (isinstance(t, int) or math.isfinite(t)) \
                or t < 0:
            raise bad(f"time {t!r:.40} is not a non-negative number of seconds")
        if t > MAX_TIME_S:
            raise bad(f"time {t!r:.40} is after the year 9999 (not unix seconds)")
        try:
            p, v = to_number(row[0]), to_number(row[1])
        except ValueError as exc:
            raise bad(str(exc)) from None
        if not (math.isfinite(p) and p > 0):
            raise bad(f"price {row[0]!r:.40} (must be finite and > 0)")
        if not (math.isfinite(v) and v >= 0):
            raise bad(f"volume {row[1]!r:.40} (must be finite and >= 0)")
        if len(row) > 6:
            if isinstance(row[6], bool) or not isinstance(row[6], int):
                raise bad(f"trade_id {row[6]!r:.40} is not an integer")
            if not -INT64_MAX - 1 <= row[6] <= INT64_MAX:
                raise bad(f"trade_id {row[6]!r:.40} is out of the int64 range")
            tid[i] = row[6]
        time[i], price[i], volume[i] = t, p, v
    return Trades(time, price, volume, tid)


def _check_trade_ids(rows: list, trades: Trades, after_id: int | None, ctx: dict[str, str]) -> int | None:
    """Where every row carries a trade id, no id may repeat one of this page or reach back to the page
    before (`after_id`, its newest id): a repeated trade would be counted twice in its candle.
    Returns the page's newest trade id (None when the rows carry no ids)."""
    if not len(trades) or min(map(len, rows)) <= 6:
        return None
    ids = np.sort(trades.trade_id)
    repeated = ids[1:][np.diff(ids) == 0]
    if repeated.size:
        raise DamagedAnswerError(f"Trades page repeats trade id {int(repeated[0])}", **ctx)
    if after_id is not None and int(ids[0]) <= after_id:
        raise DamagedAnswerError(f"Trades page repeats trades of the page before (id {int(ids[0])} <= {after_id})",
                                 **ctx)
    return int(ids[-1])


def bucket_of(time_s: np.ndarray, interval: str) -> np.ndarray:
    """Open time (unix seconds) of the candle each trade falls in; a trade at t+interval opens the next."""
    step = interval_seconds(interval)
    secs = np.floor(time_s).astype(np.int64)
    return secs - secs % step


def aggregate_trades(trades: Trades, interval: str) -> pd.DataFrame:
    """Candles from trades: columns open_time (ms), open, high, low, close, volume, trade_count, sorted.
    Each candle depends only on its own trades, so aggregating page by page equals one shot.

    Trades are put in (time, trade_id) order, so each candle's trades are one contiguous run: open and
    close are the run's first and last price, high/low its max/min, volume its sum (`reduceat` over the
    runs). That sum is the one pandas' grouped sum computed here before (pandas 3 sums sorted groups
    without NaN with `np.add.reduceat`), so stored volumes do not change in the last digit (which would
    read as a revision); the property tests compare with that groupby bit for bit."""
    if not len(trades):
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("open_time", "trade_count") else "float64")
                             for c in AGG_COLUMNS})
    order = np.lexsort((trades.trade_id, trades.time))
    t = trades.take(order)
    bucket = bucket_of(t.time, interval)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(bucket)]
    return pd.DataFrame({
        "open_time": bucket[starts] * 1000, "open": t.price[starts], "high": np.maximum.reduceat(t.price, starts),
        "low": np.minimum.reduceat(t.price, starts), "close": t.price[ends - 1],
        "volume": np.add.reduceat(t.volume, starts),
        "trade_count": (ends - starts).astype(np.int64),
    }, columns=AGG_COLUMNS)


def _merge_partial(partial: pd.DataFrame, rest: pd.DataFrame) -> pd.DataFrame:
    """Fold a partial candle (earlier trades of one candle) into the aggregation of its later trades."""
    row = partial.iloc[0]
    if not (rest["open_time"] == row["open_time"]).any():
        return pd.concat([partial, rest], ignore_index=True).sort_values("open_time", ignore_index=True)
    rest = rest.copy()
    i = rest.index[rest["open_time"] == row["open_time"]][0]
    rest.loc[i, "open"] = row["open"]
    rest.loc[i, "high"] = max(row["high"], rest.loc[i, "high"])
    rest.loc[i, "low"] = min(row["low"], rest.loc[i, "low"])
    rest.loc[i, "volume"] = row["volume"] + rest.loc[i, "volume"]
    rest.loc[i, "trade_count"] = row["trade_count"] + rest.loc[i, "trade_count"]
    return rest


class KrakenTradesSource(KrakenSourceBase):
    """Full Kraken history as candles aggregated from public trades (see the module doc for cursors)."""

    name = "kraken-trades"
    capabilities = Capabilities(page_limit=TRADES_PAGE_LIMIT, pagination="cursor", history="full",
                                auth_required=False, intervals=tuple(INTERVAL_MINUTES), requests_per_second=1.0)

    def __init__(self, gateway: Gateway, *, universe: Universe | None = None,
                 asset_pairs: KrakenAssetPairs | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_pages_per_fetch: int = 50, settle: timedelta = timedelta(seconds=10)):
        super().__init__(gateway, universe=universe, asset_pairs=asset_pairs, clock=clock)
        if max_pages_per_fetch < 1:
            raise ValueError("max_pages_per_fetch must be >= 1")
        self.max_pages_per_fetch = max_pages_per_fetch
        self.settle = settle

    def _page(self, ref: SeriesRef, since: int, seq: int,
              after_id: int | None = None) -> tuple[Trades, int | None, str, int | None]:
        """One Trades page after `since`, parsed and checked inside the gateway's retry loop.

        What Kraken says exists: `last` is the time of the newest trade it sent (captures, replay), so an
        EMPTY page whose `last` moved past `since` contradicts itself (IncompletePageError), and a page
        repeating a trade id of the page before (`after_id`) or one of its own is damaged
        (DamagedAnswerError: the repeat would be counted twice); both are re-requested. Returns the
        trades, `last`, the request and the page's newest trade id (None when rows carry no ids)."""
        series = ref.key.label()

        def parse(result, request: str) -> tuple[Trades, int | None, int | None]:
            ctx = {"provider": self.gateway.provider, "series": series, "request": request}
            _, rows = single_series(result, **ctx)
            last = parse_last(result.get("last"), **ctx)
            trades = parse_trade_rows(rows, seq_start=seq, **ctx)
            if len(trades) and (last is None or last <= since):
                raise BadDataError(f"Trades cursor did not advance (since={since}, last={last})", **ctx)
            if not len(trades) and last is not None and last > since:
                step_ms = interval_seconds(ref.key.interval) * 1000
                until = (last // 1_000_000 // step_ms + 1) * step_ms
                raise IncompletePageError(f"empty page but Kraken's last={last} says trades exist after since={since}",
                                          missing_from=from_ms((since + 1) // 1_000_000 // step_ms * step_ms),
                                          missing_until=from_ms(until), **ctx)
            return trades, last, _check_trade_ids(rows, trades, after_id, ctx)

        (trades, last, newest_id), request = public_get(self.gateway, TRADES_PATH, {"pair": ref.provider_symbol, "since": since},
                                             series=series, parse=parse)
        return trades, last, request, newest_id

    def fetch(self, ref: SeriesRef, cursor: datetime, end: datetime) -> Page:
        key: SeriesKey = ref.key
        step_ms = interval_seconds(key.interval) * 1000
        start_ms = -(-ms(cursor) // step_ms) * step_ms   # candles open on the grid: round the cursor up
        end_grid_ms = -(-ms(end) // step_ms) * step_ms   # close time of the last candle with open < end
        first_since = max(start_ms * 1_000_000 - 1, 0)   # `since` is exclusive: include trades at start
        req: dict[str, Any] = {"endpoint": TRADES_PATH, "pair": ref.provider_symbol, "since": first_since, "pages": 0}
        if start_ms >= end_grid_ms:
            return Page(empty_candles(), req, from_ms(start_ms), True)

        since, seq, pages, pages_held = first_since, 0, 0, 0
        horizon_ms: int | None = None        # trades are known complete before this instant
        held: list[Trades] = []              # trades of candles not yet complete
        partial: pd.DataFrame | None = None  # earlier trades of the one incomplete candle, folded
        done_frames: list[pd.DataFrame] = []
        request = ""
        after_id: int | None = None          # newest trade id read so far (ids repeat nowhere)
        while True:
            trades, last, request, newest_id = self._page(ref, since, seq, after_id)
            after_id = newest_id if newest_id is not None else after_id
            pages += 1
            pages_held += 1
            seq += len(trades)
            exhausted = not len(trades)
            if exhausted:
                now_ms = ms(self.clock() - self.settle)
                horizon_ms = now_ms if horizon_ms is None else max(horizon_ms, now_ms)
            else:
                since = int(last)  # type: ignore[arg-type]  # checked in _page
                newest = int(math.floor(float(trades.time.max()) * 1000))
                horizon_ms = newest if horizon_ms is None else max(horizon_ms, newest)
                keep = (trades.time * 1000 >= start_ms) & (trades.time * 1000 < end_grid_ms)
                if keep.any():
                    held.append(trades.take(keep))
            # Candles whose close time is <= the horizon (and <= end) are complete: aggregate, drop trades.
            limit_ms = min(horizon_ms, end_grid_ms)
            complete_before = limit_ms - limit_ms % step_ms  # candles opening before this are complete
            if held:
                buf = Trades.concat(held)
                mask = bucket_of(buf.time, key.interval) * 1000 < complete_before
                if mask.any():
                    agg = aggregate_trades(buf.take(mask), key.interval)
                    if partial is not None and int(partial["open_time"].iloc[0]) < complete_before:
                        agg, partial = _merge_partial(partial, agg), None
                    done_frames.append(agg)
                rest = buf.take(~mask)
                held = [rest] if len(rest) else []
            if partial is not None and int(partial["open_time"].iloc[0]) < complete_before:
                done_frames.append(partial)
                partial = None
            progressed = complete_before > start_ms
            if exhausted or horizon_ms >= end_grid_ms or (progressed and pages >= self.max_pages_per_fetch):
                break
            if pages_held >= self.max_pages_per_fetch and held:
                # One candle spans more pages than we hold at once: fold its trades into a partial.
                agg = aggregate_trades(Trades.concat(held), key.interval)
                partial = agg if partial is None else _merge_partial(partial, agg)
                held, pages_held = [], 0

        next_ms = max(start_ms, min(complete_before, end_grid_ms))
        req.update(pages=pages, last=since, last_request=request)
        frames = [f for f in done_frames if len(f)]
        if frames:
            agg = pd.concat(frames, ignore_index=True)
            agg = agg[(agg["open_time"] >= start_ms) & (agg["open_time"] < ms(end))]
            table = candle_table(key, agg["open_time"].to_numpy(np.int64), agg["open"].to_numpy(),
                                 agg["high"].to_numpy(), agg["low"].to_numpy(), agg["close"].to_numpy(),
                                 agg["volume"].to_numpy(), agg["trade_count"].to_numpy(np.int64), where=request)
        else:
            table = empty_candles()
        return Page(table, req, from_ms(next_ms), next_ms >= end_grid_ms)

    def earliest(self, ref: SeriesRef) -> datetime | None:
        """Open time of the candle holding the pair's first trade (`Trades?since=0`), None if none."""
        trades, *_ = self._page(ref, 0, 0)
        if not len(trades):
            return None
        first = int(bucket_of(np.array([trades.time.min()]), ref.key.interval)[0])
        return datetime.fromtimestamp(first, tz=UTC)
