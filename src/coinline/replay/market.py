"""`SimulatedMarket`: a deterministic market for the replay venue.

Which pairs exist follows the universe's Kraken pairs (every coin lists USD; USDC and CAD only where
Kraken has them). USD history starts `history_days` before the construction time, USDC/CAD
`cad_usdc_history_days` before, floored to the interval. A candle exists once it has closed at `now`.
Prices are a martingale built bottom-up from one-minute candles (see `paths`); coarser intervals
aggregate the finer ones exactly. Non-USD series carry a few fixed no-trade gaps (`missing`); `revise`
applies late corrections (candles only; trades replay the original 1m candles).

`market_profile="positive-control"` (never the default) plants a known signal instead - hourly log
returns with lag-1 autocorrelation +0.25 - so that a test can show the pipeline finds what is there.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from coinline.errors import NotListedError
from coinline.providers.base import SeriesKey, candle_table
from coinline.replay.paths import BLOCK_DAYS, LEVELS, ORIGIN_DAY, PER_DAY, dynamics, round_to
from coinline.replay.profiles import Profile, crc, profile
from coinline.replay.store import SeriesStore
from coinline.replay.trades import TradeRows, synthesize
from coinline.timeframes import from_ms, interval_seconds, ms, to_utc
from coinline.universe.model import Universe

INTERVALS = LEVELS
SOURCE, VENUE = "replay", "REPLAY"


@dataclass
class CandleArrays:
    """Candles as numpy columns (open times in unix ms)."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trade_count: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    def take(self, sel) -> CandleArrays:
        return CandleArrays(*(getattr(self, f.name)[sel] for f in fields(self)))


@dataclass(frozen=True)
class Revision:
    symbol: str
    quote: str
    interval: str
    open_time: datetime
    factor: float
    old_close: float
    new_close: float
    revised_at: datetime


class SimulatedMarket:
    """Deterministic candles for every listed (symbol, quote, interval in 1m..1d)."""

    def __init__(self, universe: Universe, *, seed: int, now: datetime, history_days: int = 800,
                 cad_usdc_history_days: int = 400, cache_rows: int = 4_000_000,
                 market_profile: str = "martingale"):
        self.universe = universe
        self.dynamics = dynamics(market_profile)
        self.seed = int(seed)
        self.now = to_utc(now)
        self.history_days = history_days
        self.cad_usdc_history_days = cad_usdc_history_days
        self.revisions: list[Revision] = []
        self._now0 = self.now
        self._lock = threading.RLock()
        self._store = SeriesStore(self.seed, self._start_idx, int(self.now.timestamp()), cache_rows,
                                  self.dynamics)
        self._overlay: dict[tuple[str, str, str], dict[int, tuple[float, float, float]]] = {}
        self._start_idx("USD", "1d"), self._start_idx("CAD", "1d")     # fail early on a too-deep history

    # ---- listing -------------------------------------------------------------------------------
    def pairs(self) -> list[tuple[str, str]]:
        """Listed (symbol, quote) pairs in universe order."""
        return [(c.symbol, q) for c in self.universe.coins for q in self.quotes_of(c.symbol)]

    def quotes_of(self, symbol: str) -> list[str]:
        """USD always; other quotes where the coin has a Kraken pair and the universe names the quote."""
        coin = self.universe.coin(symbol)
        return ["USD"] + [q for q in coin.kraken_pairs if q != "USD" and q in self.universe.quotes]

    def is_listed(self, symbol: str, quote: str) -> bool:
        try:
            return quote.upper() in self.quotes_of(symbol)
        except Exception:
            return False

    def listing_start(self, symbol: str, quote: str, interval: str) -> datetime:
        _, q = self._check(symbol, quote, interval)
        return from_ms(self._start_idx(q, interval) * interval_seconds(interval) * 1000)

    def profile(self, symbol: str) -> Profile:
        return profile(symbol.upper())

    def price_decimals(self, symbol: str) -> int:
        return self.profile(symbol).price_decimals

    def volume_decimals(self, symbol: str) -> int:
        return self.profile(symbol).volume_decimals

    def set_now(self, now: datetime) -> None:
        """Move the clock; candles that close by `now` appear."""
        with self._lock:
            self.now = to_utc(now)

    # ---- candles -------------------------------------------------------------------------------
    def candles(self, symbol: str, quote: str, interval: str, start: datetime | None = None,
                end: datetime | None = None) -> pa.Table:
        """Closed candles with start <= open_time < end, as a canonical CANDLE_SCHEMA table."""
        a = self.arrays(symbol, quote, interval, start, end)
        key = SeriesKey(SOURCE, VENUE, symbol.upper(), quote.upper(), interval)
        return candle_table(key, a.open_time, a.open, a.high, a.low, a.close, a.volume, a.trade_count,
                            where="replay market")

    def arrays(self, symbol: str, quote: str, interval: str, start: datetime | None = None,
               end: datetime | None = None, *, limit: int | None = None) -> CandleArrays:
        """Like `candles` as numpy columns; `limit` keeps the first rows only (and stops early)."""
        with self._lock:
            s, q = self._check(symbol, quote, interval)
            step_ms = interval_seconds(interval) * 1000
            lo, hi = self._start_idx(q, interval), self._open_idx(interval)
            if start is not None:
                lo = max(lo, -(-ms(start) // step_ms))
            if end is not None:
                hi = min(hi, -(-ms(end) // step_ms))
            return self._collect(s, q, interval, lo, hi, limit)

    def recent(self, symbol: str, quote: str, interval: str, n: int) -> CandleArrays:
        """The newest `n` closed candles."""
        with self._lock:
            s, q = self._check(symbol, quote, interval)
            lo0, hi, span = self._start_idx(q, interval), self._open_idx(interval), n
            while True:
                lo = max(lo0, hi - span)
                a = self._collect(s, q, interval, lo, hi, None)
                if len(a) >= n or lo <= lo0:
                    return a.take(slice(max(0, len(a) - n), None))
                span *= 2

    def open_candle(self, symbol: str, quote: str, interval: str) -> dict | None:
        """The still-open candle at `now` with partial values (what Kraken shows as its last row)."""
        with self._lock:
            s, q = self._check(symbol, quote, interval)
            step_ms = interval_seconds(interval) * 1000
            idx = self._open_idx(interval)
            full = self._collect(s, q, interval, idx, idx + 1, None) if idx >= self._start_idx(q, interval) else None
            if full is None or not len(full):
                return None
            frac = (ms(self.now) - idx * step_ms) / step_ms
            dec, vd = self.price_decimals(s), self.volume_decimals(s)
            o, h, lo, c = (float(getattr(full, f)[0]) for f in ("open", "high", "low", "close"))
            pc, ph, pl = (float(x) for x in round_to(np.array([
                o * (c / o) ** frac, max(o, o * (c / o) ** frac) + (h - max(o, c)) * frac,
                min(o, o * (c / o) ** frac) - (min(o, c) - lo) * frac]), dec))
            units = int(round(float(full.volume[0]) * 10**vd) * frac)
            return {"open_time": int(full.open_time[0]), "open": o, "high": max(o, pc, ph),
                    "low": max(lo, min(o, pc, pl)), "close": pc, "volume": units / 10**vd,
                    "trade_count": int(int(full.trade_count[0]) * frac)}

    def missing(self, symbol: str, quote: str, interval: str) -> list[datetime]:
        """Open times of the no-trade gaps (candles that do not exist) among closed slots."""
        with self._lock:
            s, q = self._check(symbol, quote, interval)
            idx = self._store.missing_idx(s, q, LEVELS.index(interval))
            lo, hi = self._start_idx(q, interval), self._open_idx(interval)
            step_ms = interval_seconds(interval) * 1000
            return [from_ms(int(i) * step_ms) for i in idx if lo <= i < hi]

    def revise(self, symbol: str, quote: str, interval: str, open_time: datetime, factor: float = 1.01) -> Revision:
        """Correct one closed candle: close *= factor (rounded), high/low widened to stay consistent."""
        with self._lock:
            s, q = self._check(symbol, quote, interval)
            step_ms = interval_seconds(interval) * 1000
            t = ms(open_time)
            got = self.arrays(s, q, interval, from_ms(t), from_ms(t + step_ms))
            if not len(got) or int(got.open_time[0]) != t:
                raise ValueError(f"no closed {s}-{q} {interval} candle opens at {open_time.isoformat()}")
            old = float(got.close[0])
            new = float(round_to(np.array([old * factor]), self.price_decimals(s))[0])
            high, low = max(float(got.high[0]), new), min(float(got.low[0]), new)
            self._overlay.setdefault((s, q, interval), {})[t // step_ms] = (high, low, new)
            rev = Revision(s, q, interval, from_ms(t), factor, old, new, self.now)
            self.revisions.append(rev)
            return rev

    # ---- trades --------------------------------------------------------------------------------
    def trades(self, symbol: str, quote: str, since_ns: int | None = None, limit: int = 1000) -> tuple[TradeRows, int]:
        """Trades replaying the closed 1m candles: with `since_ns` the first `limit` after it
        (exclusive), else the newest `limit`. Returns (trades, last_ns)."""
        with self._lock:
            s, q = self._check(symbol, quote, "1m")
            lo0, hi = self._start_idx(q, "1m"), self._open_idx("1m")
            if since_ns is None:
                span = 64
                while True:
                    lo = max(lo0, hi - span)
                    rows = self._trades_between(s, q, lo, hi)
                    if len(rows) >= limit or lo <= lo0:
                        rows = rows.take(slice(max(0, len(rows) - limit), None))
                        break
                    span *= 4
            else:
                lo, parts, got = max(lo0, since_ns // 60_000_000_000), [], 0
                while lo < hi and got < limit:
                    chunk_hi = min(hi, (lo // 1440 + 1) * 1440)
                    part = self._trades_between(s, q, lo, chunk_hi)
                    parts.append(part.take(part.time_ns > since_ns))
                    got += len(parts[-1])
                    lo = chunk_hi
                rows = TradeRows.concat(parts).take(slice(0, limit))
            if len(rows):
                return rows, int(rows.time_ns[-1])
            return rows, since_ns if since_ns is not None else ms(self.now) * 1_000_000

    def _trades_between(self, s: str, q: str, lo: int, hi: int) -> TradeRows:
        """Trades of the 1m candles lo <= index < hi; trade ids count trades from the listing day."""
        gen = self._store.generator(s, q)
        start_day = self._start_idx(q, "1d")
        parts = []
        for day in range(lo // 1440, (hi - 1) // 1440 + 1) if hi > lo else ():
            m = self._store.raw(s, q, 6, day * 1440, (day + 1) * 1440)
            daily = self._store.raw(s, q, 0, start_day, day)
            base = int((daily.count * daily.present).sum())
            count = m.count * m.present
            first_id = base + np.cumsum(count) - count + 1
            sl = slice(max(lo, day * 1440) - day * 1440, min(hi, (day + 1) * 1440) - day * 1440)
            parts.append(synthesize(
                np.arange(day * 1440, (day + 1) * 1440, dtype=np.int64)[sl], m.open[sl], m.high[sl], m.low[sl],
                m.close[sl], m.units[sl], count[sl], first_id[sl], gen.pdec, gen.vdec,
                salt=crc(f"{self.seed}:{s}:{q}")))
        return TradeRows.concat(parts)

    # ---- internals -----------------------------------------------------------------------------
    def _check(self, symbol: str, quote: str, interval: str) -> tuple[str, str]:
        if interval not in LEVELS:
            raise ValueError(f"replay market has no interval {interval!r}; known: {', '.join(LEVELS)}")
        if not self.is_listed(symbol, quote):
            raise NotListedError(f"{symbol}-{quote} is not listed on the replay venue", provider=SOURCE,
                                 series=f"{symbol}-{quote}:{interval}")
        return symbol.upper(), quote.upper()

    def _start_idx(self, quote: str, interval: str) -> int:
        days = self.history_days if quote.upper() == "USD" else self.cad_usdc_history_days
        t = int((self._now0 - timedelta(days=days)).timestamp())
        if t // 86400 < ORIGIN_DAY:
            raise ValueError("replay market history cannot start before 2015-01-01")
        return t // interval_seconds(interval)

    def _open_idx(self, interval: str) -> int:
        """Index of the candle open at `now` = one past the newest closed candle."""
        return int(self.now.timestamp()) // interval_seconds(interval)

    def _collect(self, s: str, q: str, interval: str, lo: int, hi: int, limit: int | None) -> CandleArrays:
        """Present candles lo <= index < hi, block by block (stopping once `limit` are found)."""
        level = LEVELS.index(interval)
        per = PER_DAY[level]
        step_ms = interval_seconds(interval) * 1000
        scale = 10.0 ** self.volume_decimals(s)
        out: list[CandleArrays] = []
        got, a = 0, lo
        while a < hi and (limit is None or got < limit):
            b = min(hi, (ORIGIN_DAY + ((a // per - ORIGIN_DAY) // BLOCK_DAYS + 1) * BLOCK_DAYS) * per)
            raw = self._store.raw(s, q, level, a, b)
            keep = raw.present
            out.append(CandleArrays(np.arange(a, b, dtype=np.int64)[keep] * step_ms, raw.open[keep], raw.high[keep],
                                    raw.low[keep], raw.close[keep], raw.units[keep] / scale, raw.count[keep]))
            got += len(out[-1])
            a = b
        if out:
            res = CandleArrays(*(np.concatenate([getattr(p, f.name) for p in out]) for f in fields(CandleArrays)))
        else:
            f, i = np.empty(0), np.empty(0, np.int64)
            res = CandleArrays(i, f, f, f, f, f, i)
        if limit is not None:
            res = res.take(slice(0, limit))
        self._apply_overlay(s, q, interval, res, step_ms)
        return res

    def _apply_overlay(self, s: str, q: str, interval: str, a: CandleArrays, step_ms: int) -> None:
        over = self._overlay.get((s, q, interval))
        if not over or not len(a):
            return
        idx = a.open_time // step_ms
        for i, (h, lo, c) in over.items():
            pos = int(np.searchsorted(idx, i))
            if pos < len(idx) and idx[pos] == i:
                a.high[pos], a.low[pos], a.close[pos] = h, lo, c
