"""The generator behind the simulated market: pure, vectorised numpy.

Prices follow a daily log random walk with volatility regimes and a weak pull toward the coin's
reference level, anchored at `ORIGIN_DAY`. Daily candles are then split top-down
(1d -> 4h -> 1h -> 30m -> 15m -> 5m -> 1m); each child level aggregates exactly to its parent
(first open, max high, min low, last close, summed volume units and trade counts), and empty
("no-trade") children are skipped by that aggregation. Random draws come from generators keyed by
(seed, symbol, quote, level, 32-day block), so any value depends only on those keys, never on the
window asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coinline.replay.profiles import AVG_TRADE_USD, FX_LEVEL, QUOTE_SHARE, Profile, crc

LEVELS = ("1d", "4h", "1h", "30m", "15m", "5m", "1m")
SPLIT = (1, 6, 4, 2, 2, 3, 5)                     # children per parent, by level
PER_DAY = (1, 6, 24, 48, 96, 288, 1440)           # candles per day, by level
BLOCK_DAYS = 32
ORIGIN_DAY = 16436                                # 2015-01-01, days since the unix epoch
MIN_TRADES_PER_MINUTE = 4                          # so every 1m candle can be replayed as trades
_REGIME_MULT = np.array([0.6, 1.0, 1.8])
_REGIME_CDF = np.array([0.3, 0.85])               # calm 30%, normal 55%, stressed 15% of switches
_SWITCH_P = 0.03
_PULL = 0.015
_MAX_UNITS = 2**52


@dataclass
class Block:
    """One level's candles for the 32 days of one block. Row r opens at (first + r) * step."""

    first: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    units: np.ndarray      # volume in integer units of 10**-volume_decimals
    count: np.ndarray
    present: np.ndarray    # False: a no-trade interval (no candle)

    def __len__(self) -> int:
        return len(self.open)


def rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, *keys])


def round_to(x: np.ndarray, decimals: int) -> np.ndarray:
    """Round to a decimal grid; the result is the double nearest to the decimal (as float(str) gives)."""
    scale = 10.0**decimals
    return np.round(x * scale) / scale


def walk(seed: int, key: int, days: int, level: float, sigma: float, regimes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Log prices at the start of each day from ORIGIN_DAY (days + 1 points) and the regime
    multiplier of each day. Prefix-stable: a longer walk starts with the same values."""
    blocks = days // BLOCK_DAYS + 1
    draws = [rng(seed, key, 1, b) for b in range(blocks)]
    z = np.concatenate([g.standard_normal(BLOCK_DAYS) for g in draws])
    draws = [rng(seed, key, 2, b) for b in range(blocks)]
    u = np.concatenate([g.random((BLOCK_DAYS, 2)) for g in draws])
    target = np.log(level)
    logp = np.empty(days + 1)
    mult = np.ones(days)
    x, state = target, 1
    for t in range(days):
        if regimes and u[t, 0] < _SWITCH_P:
            state = int(np.searchsorted(_REGIME_CDF, u[t, 1]))
        m = _REGIME_MULT[state] if regimes else 1.0
        mult[t] = m
        logp[t] = x
        x = x + _PULL * (target - x) + sigma * m * z[t]
    logp[days] = x
    return logp, mult


class PairGenerator:
    """Generates the blocks of one (symbol, quote) pair at every level."""

    def __init__(self, seed: int, symbol: str, quote: str, prof: Profile):
        self.seed, self.symbol, self.quote, self.prof = seed, symbol, quote, prof
        self.keys = (crc(symbol), crc(quote))
        self.pdec = prof.price_decimals
        self.vdec = prof.volume_decimals
        self.tick = 10.0 ** -self.pdec

    def _rng(self, level: int, block: int) -> np.random.Generator:
        return rng(self.seed, *self.keys, 10 + level, block)

    def top(self, block: int, usd_logp: np.ndarray, quote_logp: np.ndarray, mult: np.ndarray,
            gaps: np.ndarray) -> Block:
        """Daily candles of one block. `*_logp` hold BLOCK_DAYS + 1 day-start log prices."""
        z = self._rng(0, block).standard_normal((BLOCK_DAYS, 4))
        p = np.maximum(round_to(np.exp(quote_logp), self.pdec), self.tick)
        o, c = p[:-1], p[1:]
        s = self.prof.sigma * mult * 0.6
        top, bot = np.maximum(o, c), np.minimum(o, c)
        h = np.maximum(round_to(top * np.exp(np.abs(z[:, 0]) * s), self.pdec), top)
        lo = np.minimum(np.maximum(round_to(bot * np.exp(-np.abs(z[:, 1]) * s), self.pdec), self.tick), bot)
        turnover = (self.prof.usd_volume * QUOTE_SHARE.get(self.quote, 0.05)
                    * np.exp(0.35 * z[:, 2]) * (0.5 + 0.5 * mult))
        count = (MIN_TRADES_PER_MINUTE * 1440
                 + np.round(turnover / AVG_TRADE_USD.get(self.quote, 500.0) * np.exp(0.25 * z[:, 3]))).astype(np.int64)
        units = np.round(turnover / np.exp(usd_logp[:-1]) * 10.0**self.vdec)
        units = np.clip(units, count, _MAX_UNITS).astype(np.int64)
        first = (ORIGIN_DAY + block * BLOCK_DAYS)
        present = ~np.isin(np.arange(first, first + BLOCK_DAYS), gaps)
        return Block(first, o, h, lo, c, units, count, present)

    def child(self, parent: Block, level: int, block: int, gaps: np.ndarray) -> Block:
        """Split every parent candle of `parent` into SPLIT[level] children of `level`."""
        m, n = SPLIT[level], len(parent)
        g = self._rng(level, block)
        z = g.standard_normal((4, n, m))
        u = g.random((3, n, m))
        first = parent.first * m
        empty = np.repeat(~parent.present, m).reshape(n, m)
        if len(gaps):
            empty |= np.isin(np.arange(first, first + n * m), gaps).reshape(n, m)
        full = ~empty
        ne = full.sum(axis=1)
        o, h, lo, c = parent.open, parent.high, parent.low, parent.close
        lo_o, lo_c = np.log(o), np.log(c)
        s = np.log(h / lo) / (1.5 * np.sqrt(m)) + 1e-6
        # a Brownian bridge from log(open) to log(close), flat across empty children
        step = z[0] * s[:, None] * full
        cum = np.cumsum(step, axis=1)
        w = np.cumsum(full, axis=1) / np.maximum(ne, 1)[:, None]
        path = lo_o[:, None] + cum - w * cum[:, -1:] + w * (lo_c - lo_o)[:, None]
        p = np.clip(round_to(np.exp(path), self.pdec), lo[:, None], h[:, None])
        p[:, -1] = c
        co = np.concatenate([o[:, None], p[:, :-1]], axis=1)
        cc = p
        top, bot = np.maximum(co, cc), np.minimum(co, cc)
        ch = np.minimum(np.maximum(round_to(top * np.exp(np.abs(z[1]) * s[:, None] * 0.5), self.pdec), top), h[:, None])
        cl = np.maximum(np.minimum(round_to(bot * np.exp(-np.abs(z[2]) * s[:, None] * 0.5), self.pdec), bot), lo[:, None])
        rows = np.arange(n)
        ch[rows, _pick(u[0, :, 0], full)] = h
        cl[rows, _pick(u[1, :, 0], full)] = lo
        minutes = 1440 // PER_DAY[level]
        mins = MIN_TRADES_PER_MINUTE * minutes * full.astype(np.int64)
        activity = -np.log(u[2] + 1e-12) * full          # busy children get more trades and more volume
        count = mins + split_int(np.where(ne > 0, parent.count - mins.sum(axis=1), 0), activity)
        units = count + split_int(np.where(ne > 0, parent.units - count.sum(axis=1), 0),
                                  (count - mins + 1) * np.exp(0.3 * z[3]) * full)
        return Block(first, *(a.reshape(-1) for a in (co, ch, cl, cc, units, count, full)))


def _pick(u: np.ndarray, full: np.ndarray) -> np.ndarray:
    """For each row, the column of a uniformly chosen non-empty child."""
    ne = full.sum(axis=1)
    k = np.floor(u * np.maximum(ne, 1))
    return np.argmax(np.cumsum(full, axis=1) > k[:, None], axis=1)


def split_int(total: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each row's non-negative integer total over its columns in proportion to weights,
    exactly (the row sums equal the totals); zero-weight columns get nothing."""
    total = np.asarray(total, dtype=np.int64)
    wsum = weights.sum(axis=1)
    frac = np.cumsum(weights, axis=1) / np.where(wsum > 0, wsum, 1.0)[:, None]
    cum = np.minimum(np.floor(total[:, None] * frac).astype(np.int64), total[:, None])
    cum[:, -1] = np.where(wsum > 0, total, 0)
    return np.diff(cum, axis=1, prepend=0)


def quote_log_path(seed: int, symbol: str, quote: str, usd_logp: np.ndarray, fx_logp: np.ndarray | None,
                   start_day: int) -> np.ndarray:
    """Day-start log prices in `quote` for the points starting at `start_day` (offset from ORIGIN_DAY):
    the USD path, times the CAD/USD rate for CAD, plus a small per-quote basis."""
    if quote == "USD":
        return usd_logp
    n = len(usd_logp)
    b0, b1 = start_day // BLOCK_DAYS, (start_day + n - 1) // BLOCK_DAYS
    basis = np.concatenate([rng(seed, crc(symbol), crc(quote), 3, b).standard_normal(BLOCK_DAYS)
                            for b in range(b0, b1 + 1)])
    off = start_day - b0 * BLOCK_DAYS
    out = usd_logp + 0.0008 * basis[off:off + n]
    if fx_logp is not None:
        out = out + fx_logp
    elif quote in FX_LEVEL:
        out = out + np.log(FX_LEVEL[quote])
    return out
