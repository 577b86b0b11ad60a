"""Trades synthesised from 1m candles, so that grouping them by minute gives the candles back.

Each candle with n trades (n >= 4) replays as: the first trade at the open, the last at the close,
one interior trade at the high and one at the low, the others in between; volumes are positive
integers of 10**-volume_decimals units summing exactly to the candle's volume (exact with Decimal;
a float sum is within ~1e-12 relative). Trade k of n in the minute starting at t happens at
t + (2k + 1) * 30 s / n (ns resolution). Uniforms come from a hash of the trade id: deterministic
and independent of which page asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MINUTE_NS = 60_000_000_000


@dataclass
class TradeRows:
    price: np.ndarray
    volume_units: np.ndarray
    time_ns: np.ndarray
    buy: np.ndarray
    limit: np.ndarray
    trade_id: np.ndarray
    price_decimals: int = 2
    volume_decimals: int = 8

    def __len__(self) -> int:
        return len(self.price)

    def take(self, sel) -> TradeRows:
        arrays = {f: getattr(self, f)[sel] for f in _ARRAYS}
        return TradeRows(**arrays, price_decimals=self.price_decimals, volume_decimals=self.volume_decimals)

    @staticmethod
    def concat(parts: list[TradeRows]) -> TradeRows:
        parts = [p for p in parts if len(p)] or parts[:1]
        if not parts:
            return empty()
        cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAYS}
        return TradeRows(**cols, price_decimals=parts[0].price_decimals, volume_decimals=parts[0].volume_decimals)

    def kraken_rows(self) -> list[list]:
        """Kraken's row shape: [price, volume, time, "b"/"s", "m"/"l", "", trade_id]."""
        pd_, vd = self.price_decimals, self.volume_decimals
        return [[f"{p:.{pd_}f}", format_units(int(u), vd), int(t) / 1e9, "b" if b else "s", "l" if lim else "m", "", int(i)]
                for p, u, t, b, lim, i in zip(self.price, self.volume_units, self.time_ns, self.buy, self.limit,
                                              self.trade_id, strict=True)]


_ARRAYS = ("price", "volume_units", "time_ns", "buy", "limit", "trade_id")


def empty() -> TradeRows:
    f, i, b = np.empty(0), np.empty(0, np.int64), np.empty(0, bool)
    return TradeRows(f, i, i, b, b, i)


def format_units(units: int, decimals: int, width: int = 8) -> str:
    """Integer units of 10**-decimals as a decimal string with `width` fraction digits (exact)."""
    whole, frac = divmod(units, 10**decimals)
    digits = f"{frac:0{decimals}d}" if decimals else ""
    return f"{whole}.{digits.ljust(width, '0')}"


def hash_u01(keys: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of the keys, as uniforms in [0, 1)."""
    x = keys.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def synthesize(minute: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
               units: np.ndarray, count: np.ndarray, first_id: np.ndarray, price_decimals: int,
               volume_decimals: int, *, salt: int) -> TradeRows:
    """Trades for the given minutes (count 0 = no trades). `first_id` is each minute's first trade id."""
    n = count.astype(np.int64)
    total = int(n.sum())
    if total == 0:
        e = empty()
        e.price_decimals, e.volume_decimals = price_decimals, volume_decimals
        return e
    with np.errstate(over="ignore"):
        grp = np.repeat(np.arange(len(n)), n)
        starts = np.cumsum(n) - n
        k = np.arange(total) - starts[grp]
        nn = n[grp]
        tid = first_id[grp] + k
        uh = hash_u01(minute.astype(np.uint64) * np.uint64(2), salt)
        ul = hash_u01(minute.astype(np.uint64) * np.uint64(2) + np.uint64(1), salt)
        u = [hash_u01(tid.astype(np.uint64) * np.uint64(4) + np.uint64(j), salt ^ 0x5BD1E995) for j in range(4)]
    safe = np.maximum(n, 4)
    kh = 1 + np.floor(uh * (safe - 2)).astype(np.int64)
    kl = 1 + (kh + np.floor(ul * (safe - 3)).astype(np.int64)) % (safe - 2)
    scale = 10.0**price_decimals
    price = np.clip(np.round((lo[grp] + u[0] * (h[grp] - lo[grp])) * scale) / scale, lo[grp], h[grp])
    price = np.where(k == kh[grp], h[grp], price)
    price = np.where(k == kl[grp], lo[grp], price)
    price = np.where(k == 0, o[grp], price)
    price = np.where(k == nn - 1, c[grp], price)
    # volumes: 1 unit each plus an exact proportional split of the rest
    w = -np.log(u[1] + 1e-12)
    cw = np.cumsum(w)
    offset = np.where(starts > 0, cw[np.maximum(starts - 1, 0)], 0.0)
    gsum = cw[starts + n - 1] - offset
    frac = (cw - offset[grp]) / gsum[grp]
    extra = (units - n)[grp]
    cum = np.minimum(np.floor(extra * frac).astype(np.int64), extra)
    cum = np.where(k == nn - 1, extra, cum)
    prev = np.concatenate([[0], cum[:-1]])
    vol = 1 + cum - np.where(k == 0, 0, prev)
    t = minute[grp].astype(np.int64) * _MINUTE_NS + ((2 * k + 1) * _MINUTE_NS) // (2 * nn)
    prev_price = np.concatenate([[0.0], price[:-1]])
    buy = np.where(k == 0, u[2] < 0.5, (price > prev_price) | ((price == prev_price) & (u[2] < 0.5)))
    return TradeRows(price, vol.astype(np.int64), t, buy, u[3] < 0.55, tid.astype(np.int64),
                     price_decimals, volume_decimals)
