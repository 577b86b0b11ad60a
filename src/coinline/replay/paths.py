"""The generator behind the simulated market: pure, vectorised numpy, a martingale by construction.

Hourly log returns are built bottom-up; for each coin

    e = s * (beta * wm * F + sqrt(1 - beta**2) * wc * E)

with F a market factor shared by every coin (cross-coin correlation), E the coin's own shock (both
standard normal), wm / wc Student-t scale mixtures (fat tails; wm is shared, so the largest moves hit
the whole market at once) and s the conditional volatility: the profile's daily sigma times
exp(l / 2 - const), where the log variance l sums a slow part (a daily AR(1), half-life 30 days,
walked from ORIGIN_DAY and interpolated hourly) and a fast part (an hourly AR(1), half-life 6 hours,
each block starting from a stationary state drawn with the block's keys), each part partly
market-wide and partly the coin's own (volatility clustering). Nothing in e depends on past returns
or on the price level, so E[e | past] = 0 and every interval's log returns are martingale differences
(lag-1 autocorrelation zero up to sampling error). There is no pull to a reference level: each coin
sits at its profile level at the start of ANCHOR_BLOCK and walks freely from there, the level of
block b being the anchor level plus the sums of the blocks between (before the anchor, minus: that
walk is pinned at the anchor, so prefer histories after it - the default ones are).

Every minute is an exact Brownian-bridge refinement of its hour (Gaussian given the hour's scales, so
the minutes are i.i.d. increments too, correlated across coins through shared minute draws of the
factor). A quote other than USD multiplies in its USD rate, a plain random walk refined the same way.
A minute candle's high (low) lies an exponential excursion beyond the larger (smaller) of its open
and close. Coarser candles are aggregations of the minutes (first open, max high, min low, last close)
computed from the same numbers through one monotone price map, so every interval agrees exactly
whichever was asked first; 4h and 1d are aggregated from the hours. Volume and trade counts are drawn
per hour (rising with the hour's volatility and |return|) and split exactly over its minutes, in
proportion to how much each moved, when a finer interval is asked for.

Random draws come from generators keyed by (seed, [symbol, [quote,]] stream, 32-day block) - the
market factor's by (seed, stream, block) alone - so any value depends only on those keys, never on
the window asked for.

`POSITIVE_CONTROL` (an explicitly named profile, never the default) plants a known signal: hourly
returns r = (e + theta * e_prev) / sqrt(1 + theta**2), an MA(1) with lag-1 autocorrelation +0.25. Strong on purpose: a control the shipped models cannot find
proves nothing, and at +0.05 they do not (measured: 3 coins x 800 days, 48,000 out-of-sample rows, every
tree family loses ~0.0013 nats/row to the base rate by fitting noise, while an oracle gains only ~0.0012).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coinline.replay.profiles import AVG_TRADE_USD, FX_LEVEL, QUOTE_SHARE, crc, profile

LEVELS = ("1d", "4h", "1h", "30m", "15m", "5m", "1m")
SPLIT = (1, 6, 4, 2, 2, 3, 5)                     # children per parent, by level
PER_DAY = (1, 6, 24, 48, 96, 288, 1440)           # candles per day, by level
MINUTES = tuple(1440 // p for p in PER_DAY)       # minutes per candle, by level
HOUR_LEVEL = LEVELS.index("1h")
BLOCK_DAYS = 32
HOURS = BLOCK_DAYS * 24                           # hours per block
ORIGIN_DAY = 16436                                # 2015-01-01, days since the unix epoch; block 0 starts here
ANCHOR_BLOCK = 100                                # starts 2023-10-06: every coin at its profile level
MIN_TRADES_PER_MINUTE = 4                         # so every 1m candle can be replayed as trades
_MAX_UNITS = 2**52

# volatility: log variance = slow (daily AR(1), interpolated hourly) + fast (hourly AR(1)), each with a
# market-wide and a coin-own part; stationary standard deviations below
_SLOW_PHI = 0.5 ** (1 / 30)                       # half-life 30 days
_FAST_PHI = 0.5 ** (1 / 6)                        # half-life 6 hours
_SLOW_INNOV = math.sqrt(1 - _SLOW_PHI**2)
_FAST_INNOV = math.sqrt(1 - _FAST_PHI**2)
_SD_SLOW_MARKET, _SD_SLOW_COIN = 0.45, 0.25
_SD_FAST_MARKET, _SD_FAST_COIN = 0.30, 0.30
_LOGVAR = _SD_SLOW_MARKET**2 + _SD_SLOW_COIN**2 + _SD_FAST_MARKET**2 + _SD_FAST_COIN**2
_T_DF = 5.0                                       # Student-t degrees of freedom of the hourly shocks
_W_MAX = 4.0                                      # cap on the t scale mixture (at most 4x a normal hour)
FX_SIGMA = {"CAD": 0.004, "USDC": 0.0004}         # daily sigma of the quote's USD rate (a plain random walk)
_INV_SQRT60 = 1.0 / math.sqrt(60.0)
_KFRAC = np.arange(1, 61) / 60.0                  # bridge time of each minute's close within its hour

# generator streams
_K_FACTOR, _K_FACTOR_SLOW, _K_FACTOR_MINUTE = 101, 103, 104
_K_HOUR, _K_SLOW, _K_MINUTE = 1, 3, 4
_K_HILO, _K_VOLUME, _K_SPLIT = 10, 11, 12


@dataclass(frozen=True)
class Dynamics:
    """How hourly returns depend on the past. `lag1` = 0: a martingale (the default market)."""

    name: str
    lag1: float = 0.0

    @property
    def theta(self) -> float:
        """The MA(1) coefficient whose lag-1 autocorrelation theta / (1 + theta**2) is `lag1`."""
        if self.lag1 == 0:
            return 0.0
        return (1 - math.sqrt(1 - 4 * self.lag1**2)) / (2 * self.lag1)


MARTINGALE = Dynamics("martingale")
POSITIVE_CONTROL = Dynamics("positive-control", lag1=0.25)
DYNAMICS = {d.name: d for d in (MARTINGALE, POSITIVE_CONTROL)}


def dynamics(name: str) -> Dynamics:
    try:
        return DYNAMICS[name]
    except KeyError:
        raise ValueError(f"unknown replay market profile {name!r}; known: {', '.join(DYNAMICS)}") from None


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


def split_int(total: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each row's non-negative integer total over its columns in proportion to weights,
    exactly (the row sums equal the totals); zero-weight columns get nothing."""
    total = np.asarray(total, dtype=np.int64)
    wsum = weights.sum(axis=1)
    frac = np.cumsum(weights, axis=1) / np.where(wsum > 0, wsum, 1.0)[:, None]
    cum = np.minimum(np.floor(total[:, None] * frac).astype(np.int64), total[:, None])
    cum[:, -1] = np.where(wsum > 0, total, 0)
    return np.diff(cum, axis=1, prepend=0)


def ar1(eta: np.ndarray, phi: float, x0: float = 0.0, chunk: int = 256) -> np.ndarray:
    """x[t] = phi * x[t-1] + eta[t], starting from x[-1] = x0; vectorised in fixed chunks."""
    out = np.empty(len(eta))
    pw = phi ** np.arange(1, chunk + 1)
    x = x0
    for a in range(0, len(eta), chunk):
        e = eta[a:a + chunk]
        p = pw[:len(e)]
        seg = p * (x + np.cumsum(e / p))
        out[a:a + len(e)] = seg
        x = float(seg[-1])
    return out


def uniform_pair(g: np.random.Generator, high: np.ndarray, low: np.ndarray) -> None:
    """Fill `high` and `low` (float32) with independent uniforms in (0, 1) on a grid of 4096 from one
    float32 draw of 24 random bits: its high 12 bits and its low 12 bits."""
    g.random(dtype=np.float32, out=high)
    high *= np.float32(4096.0)                    # exact: j + k / 4096 for 12-bit integers j, k
    np.floor(high, out=low)
    np.subtract(high, low, out=high)              # k / 4096
    np.subtract(np.float32(1.0 - 0.5 / 4096), high, out=high)
    low += np.float32(0.5)
    low *= np.float32(1 / 4096)


def normals32(g: np.random.Generator, n: int) -> np.ndarray:
    """n standard normals (float32, Box-Muller: cheaper here than the ziggurat)."""
    m = (n + 1) // 2
    v, w = np.empty(m, np.float32), np.empty(m, np.float32)
    uniform_pair(g, v, w)
    r = np.log(v, out=v)                          # log, not log1p: float32 log1p is slow
    r *= np.float32(-2.0)
    np.sqrt(r, out=r)
    w *= np.float32(2 * np.pi)
    return np.concatenate([r * np.cos(w), r * np.sin(w)])[:n]


def bridge(z: np.ndarray) -> np.ndarray:
    """In place: (60, hours) standard normal minute increments to Brownian-bridge values at each
    minute's close, zero at the hour's start and (exactly) at its end, unit variance per minute."""
    for k in range(1, 60):
        np.add(z[k], z[k - 1], out=z[k])
    z[:59] -= _KCOL32[:59] * z[59]
    z[59] = 0.0
    return z


def aggregate(blk: Block, g: int) -> Block:
    """Candles of g consecutive rows of `blk` combined (first open, max high, min low, last close,
    summed units and counts), skipping rows that are not present."""
    rows = len(blk) // g
    units = blk.units.reshape(rows, g).sum(axis=1)
    count = blk.count.reshape(rows, g).sum(axis=1)
    if blk.present.all():
        return Block(blk.first // g, blk.open[::g], blk.high.reshape(rows, g).max(axis=1),
                     blk.low.reshape(rows, g).min(axis=1), blk.close[g - 1::g], units, count, np.ones(rows, bool))
    pg = blk.present.reshape(rows, g)
    keep = pg.any(axis=1)
    r = np.arange(rows)
    o = blk.open.reshape(rows, g)[r, pg.argmax(axis=1)]
    c = blk.close.reshape(rows, g)[r, g - 1 - pg[:, ::-1].argmax(axis=1)]
    h = np.where(keep, np.where(pg, blk.high.reshape(rows, g), 0.0).max(axis=1), o)
    lw = np.where(keep, np.where(pg, blk.low.reshape(rows, g), np.inf).min(axis=1), o)
    return Block(blk.first // g, o, h, lw, c, units, count, keep)


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make: Callable):
        hit = self.get(key)
        if hit is not None:
            self.move_to_end(key)
            return hit
        val = make()
        self[key] = val
        if len(self) > self.size:
            self.popitem(last=False)
        return val


@dataclass
class _Series:
    """A log-price process: a coin's USD price or a quote's USD rate."""

    name: str
    key: int
    sigma_h: float        # hourly sigma
    level: float          # price at the anchor
    beta: float           # loading on the market factor (0 for FX)
    coin: bool            # stochastic volatility, fat tails and the factor (FX: a plain random walk)


@dataclass
class _Shocks:
    """One block of a series' hourly martingale returns and their conditional scales."""

    e: np.ndarray         # hourly log returns of the martingale
    a: np.ndarray         # conditional sd of the factor part
    b: np.ndarray         # conditional sd of the own part
    var: np.ndarray       # conditional variance of e (a**2 + b**2)


@dataclass
class Hours:
    """One block of a series' hours: `logp` the HOURS + 1 log prices at hour starts (the last equals
    the next block's first exactly), `step` each hour's log return as served, `e` the martingale
    part, `a`/`b` the conditional sds of its factor and own parts, `var` its variance."""

    logp: np.ndarray
    step: np.ndarray
    e: np.ndarray
    a: np.ndarray
    b: np.ndarray
    var: np.ndarray

    def __post_init__(self):
        self.step32, self.a32, self.b32 = (v.astype(np.float32) for v in (self.step, self.a, self.b))


@dataclass
class _Factor:
    f: np.ndarray         # hourly factor shocks
    wm: np.ndarray        # hourly market t scales
    fast: np.ndarray      # market fast log-variance component


def beta_of(symbol: str) -> float:
    """Loading on the market factor: 0.85 for BTC and ETH, 0.70-0.80 for the others."""
    if symbol in ("BTC", "ETH"):
        return 0.85
    return 0.70 + (crc(symbol) % 11) / 100


def _t_scale(g: np.random.Generator) -> np.ndarray:
    """Student-t scale mixtures for a block's hours (unit mean square, capped)."""
    return np.minimum(np.sqrt((_T_DF - 2) / (2 * g.standard_gamma(_T_DF / 2, HOURS))), _W_MAX)


class Model:
    """The hourly and minute-level processes of one market (one seed and dynamics), with caches.
    Not thread-safe (the market calls it under its lock): minute grids live in reused buffers."""

    def __init__(self, seed: int, dyn: Dynamics = MARTINGALE):
        self.seed, self.dyn = seed, dyn
        self._series: dict[str, _Series] = {}
        self._slow: dict[str, np.ndarray] = {}
        self._levels: dict[str, dict[int, float]] = {}
        self._factors = _LRU(256)
        self._factor_bridges = _LRU(48)
        self._shocks = _LRU(256)
        self._hours = _LRU(256)
        self._bridges = _LRU(96)
        self._buffers: dict[str, np.ndarray] = {}

    def buffer(self, name: str) -> np.ndarray:
        """A reused (60, HOURS) float32 work array (fresh large arrays cost page faults)."""
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = np.empty((60, HOURS), np.float32)
        return buf

    # ---- series ------------------------------------------------------------------------------------
    def coin(self, symbol: str) -> _Series:
        s = self._series.get(symbol)
        if s is None:
            prof = profile(symbol)
            s = _Series(symbol, crc(symbol), prof.sigma / math.sqrt(24), prof.level, beta_of(symbol), True)
            self._series[symbol] = s
        return s

    def fx(self, quote: str) -> _Series:
        name = f"FX:{quote}"
        s = self._series.get(name)
        if s is None:
            s = _Series(name, crc(name), FX_SIGMA.get(quote, 0.002) / math.sqrt(24), FX_LEVEL.get(quote, 1.0),
                        0.0, False)
            self._series[name] = s
        return s

    # ---- volatility --------------------------------------------------------------------------------
    def _slow_walk(self, name: str, keys: tuple[int, ...], sd: float, b: int) -> np.ndarray:
        """A daily AR(1) from ORIGIN_DAY (stationary start) covering at least blocks 0..b and a day,
        extended a block at a time from its last value (the same whatever was asked first)."""
        have = self._slow.get(name)
        need = (b + 1) * BLOCK_DAYS + 1
        if have is None or len(have) < need:
            parts = [have] if have is not None else []
            k = 0 if have is None else len(have) // BLOCK_DAYS
            x = 0.0 if have is None else float(have[-1])
            while k * BLOCK_DAYS < need + 8 * BLOCK_DAYS:
                eta = sd * rng(self.seed, *keys, k + 1).standard_normal(BLOCK_DAYS)
                if k == 0:                                   # day 0: a stationary draw
                    seg = np.concatenate([eta[:1], ar1(_SLOW_INNOV * eta[1:], _SLOW_PHI, float(eta[0]))])
                else:
                    seg = ar1(_SLOW_INNOV * eta, _SLOW_PHI, x)
                parts.append(seg)
                x = float(seg[-1])
                k += 1
            have = np.concatenate(parts)
            self._slow[name] = have
        return have

    def _slow_hours(self, name: str, keys: tuple[int, ...], sd: float, b: int) -> np.ndarray:
        days = self._slow_walk(name, keys, sd, b)[b * BLOCK_DAYS: (b + 1) * BLOCK_DAYS + 1]
        frac = np.arange(24) / 24.0
        return (days[:-1, None] + frac * (days[1:] - days[:-1])[:, None]).reshape(-1)

    @staticmethod
    def _fast(g: np.random.Generator, sd: float) -> np.ndarray:
        """The fast AR(1) over one block, from a stationary state drawn with the block's keys (its
        half-life is hours: a block's first hours forget where the last block ended)."""
        eta = sd * g.standard_normal(HOURS + 1)
        return ar1(_FAST_INNOV * eta[1:], _FAST_PHI, float(eta[0]))

    def factor(self, b: int) -> _Factor:
        def make() -> _Factor:
            g = rng(self.seed, _K_FACTOR, b + 1)
            f = g.standard_normal(HOURS)
            wm = _t_scale(g)
            fast = self._fast(g, _SD_FAST_MARKET)
            slow = self._slow_hours("market", (_K_FACTOR_SLOW,), _SD_SLOW_MARKET, b)
            return _Factor(f, wm, slow + fast)
        return self._factors.get_or(b, make)

    # ---- hourly ------------------------------------------------------------------------------------
    def _shock(self, s: _Series, b: int) -> _Shocks:
        def make() -> _Shocks:
            g = rng(self.seed, s.key, _K_HOUR, b + 1)
            own = g.standard_normal(HOURS)
            if not s.coin:
                sd = np.full(HOURS, s.sigma_h)
                return _Shocks(sd * own, np.zeros(HOURS), sd, sd * sd)
            wc = _t_scale(g)
            fac = self.factor(b)
            logvar = fac.fast + self._slow_hours(s.name, (s.key, _K_SLOW), _SD_SLOW_COIN, b) + self._fast(
                g, _SD_FAST_COIN)
            sd = s.sigma_h * np.exp(0.5 * logvar - _LOGVAR / 4)
            a = sd * s.beta * fac.wm
            bb = sd * math.sqrt(1 - s.beta**2) * wc
            return _Shocks(a * fac.f + bb * own, a, bb, a * a + bb * bb)
        return self._shocks.get_or((s.name, b), make)

    def _steps(self, s: _Series, b: int) -> tuple[_Shocks, np.ndarray]:
        """The block's shocks and its hourly log returns as served (the positive control's MA(1))."""
        sh = self._shock(s, b)
        th = self.dyn.theta if s.coin else 0.0
        if th == 0.0:
            return sh, sh.e
        prev = self._shock(s, b - 1).e[-1] if b > 0 else 0.0
        lagged = np.concatenate([[prev], sh.e[:-1]])
        return sh, (sh.e + th * lagged) / math.sqrt(1 + th * th)

    def _level(self, s: _Series, b: int) -> float:
        """Log price at the start of block b: the anchor level plus (minus) the block sums between."""
        chain = self._levels.get(s.name)
        if chain is None:
            chain = self._levels[s.name] = {ANCHOR_BLOCK: math.log(s.level)}
        if b in chain:
            return chain[b]
        if b > ANCHOR_BLOCK:
            k = max(chain)
            while k < b:
                chain[k + 1] = chain[k] + float(np.cumsum(self._steps(s, k)[1])[-1])
                k += 1
        else:
            k = min(chain)
            while k > b:
                chain[k - 1] = chain[k] - float(np.cumsum(self._steps(s, k - 1)[1])[-1])
                k -= 1
        return chain[b]

    def hours(self, s: _Series, b: int) -> Hours:
        def make() -> Hours:
            sh, step = self._steps(s, b)
            logp = np.empty(HOURS + 1)
            logp[0] = self._level(s, b)
            logp[1:] = logp[0] + np.cumsum(step)
            logp[HOURS] = self._level(s, b + 1)
            return Hours(logp, np.diff(logp), sh.e, sh.a, sh.b, sh.var)
        return self._hours.get_or((s.name, b), make)

    # ---- minutes -----------------------------------------------------------------------------------
    def _factor_bridge(self, b: int) -> np.ndarray:
        return self._factor_bridges.get_or(b, lambda: bridge(
            normals32(rng(self.seed, _K_FACTOR_MINUTE, b + 1), HOURS * 60).reshape(60, HOURS)))

    def _bridge(self, s: _Series, b: int) -> np.ndarray:
        return self._bridges.get_or((s.name, b), lambda: bridge(
            normals32(rng(self.seed, s.key, _K_MINUTE, b + 1), HOURS * 60).reshape(60, HOURS)))

    def _offsets(self, s: _Series, b: int, out: np.ndarray) -> Hours:
        """Into `out` (60, HOURS), float32: each minute's close as a log offset from its hour's open,
        the exact Brownian-bridge refinement of the hour (the last row only approximates the next
        hour's open, which is served from `Hours.logp` itself)."""
        h = self.hours(s, b)
        tmp = self.buffer("tmp")
        np.multiply(self._bridge(s, b), h.b32, out=out)
        if s.coin:
            out += np.multiply(self._factor_bridge(b), h.a32, out=tmp)
        out *= np.float32(_INV_SQRT60)
        out += np.multiply(_KCOL32, h.step32, out=tmp)
        return h

    def path(self, symbol: str, quote: str, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Hours]:
        """A pair's block: HOURS + 1 hour-open log prices (float64), the (60, HOURS) float32 minute-close
        offsets from them (a reused buffer), each hour's per-minute sd (float32) and the coin's hours."""
        x = self.buffer("x")
        h = self._offsets(self.coin(symbol), b, x)
        logp, var = h.logp, h.var
        if quote != "USD":
            fx = self.buffer("fx")
            fh = self._offsets(self.fx(quote), b, fx)
            x += fx
            logp, var = logp + fh.logp, var + fh.var
        return logp, x, np.sqrt(var / 60.0).astype(np.float32), h


_KCOL32 = _KFRAC.astype(np.float32)[:, None]


class PairGenerator:
    """Generates the blocks of one (symbol, quote) pair at every level from its minutes.

    Served prices are `price(log)`, one monotone map (exp, round to the tick, floor at a tick). A
    minute's close is `logp[h] + x` (the hour's last minute: `logp[h + 1]`), its open the previous
    close, its high `max(price(logp[h] + hx), open, close)` with hx >= the open and close offsets,
    its low likewise. A coarser candle is computed from the same numbers with max/min, which commute
    with the monotone map, so it equals the aggregation of its minutes exactly."""

    def __init__(self, model: Model, symbol: str, quote: str):
        self.model, self.symbol, self.quote = model, symbol, quote
        prof = profile(symbol)
        self.prof = prof
        self.keys = (crc(symbol), crc(quote))
        self.pdec = prof.price_decimals
        self.vdec = prof.volume_decimals
        self.tick = 10.0 ** -self.pdec

    def _rng(self, stream: int, block: int) -> np.random.Generator:
        return rng(self.model.seed, *self.keys, stream, block + 1)

    def price(self, logp: np.ndarray) -> np.ndarray:
        """Log prices to quoted prices: one monotone map, so max/min commute with it."""
        return np.maximum(round_to(np.exp(logp), self.pdec), self.tick)

    def _hilo(self, b: int, x: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """High and low offsets of every minute (reused buffers): beyond the larger (smaller) of its
        open and close by an exponential excursion of 0.4 minute sd on average."""
        m = self.model
        hx, lx, up, down = m.buffer("hx"), m.buffer("lx"), m.buffer("u"), m.buffer("low")
        uniform_pair(self._rng(_K_HILO, b), up, down)
        scale = np.float32(-0.4) * sd
        np.maximum(x[0], np.float32(0.0), out=hx[0])
        np.maximum(x[:-1], x[1:], out=hx[1:])
        hx += np.multiply(np.log(up, out=up), scale, out=up)
        np.minimum(x[0], np.float32(0.0), out=lx[0])
        np.minimum(x[:-1], x[1:], out=lx[1:])
        lx -= np.multiply(np.log(down, out=down), scale, out=down)
        return hx, lx

    @staticmethod
    def _moved(x: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """|close - open| of every minute in minute sds, (HOURS, 60)."""
        d = np.empty_like(x)
        d[0] = x[0]
        np.subtract(x[1:], x[:-1], out=d[1:])
        np.abs(d, out=d)
        d /= sd
        return d.T

    def hour_volume(self, b: int, hours: Hours, n_present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Volume units and trade counts of each hour of block b (0 for an hour without trades):
        USD turnover rising with the hour's volatility and its |return|, with log-normal noise."""
        z = self._rng(_K_VOLUME, b).standard_normal((2, HOURS))
        sd = np.sqrt(hours.var)
        base = self.prof.usd_volume * QUOTE_SHARE.get(self.quote, 0.05) / 24
        turnover = (base * (0.5 + 0.5 * sd / self.model.coin(self.symbol).sigma_h)
                    * (0.6 + 0.45 * np.abs(hours.e) / sd) * np.exp(0.3 * z[0] - 0.045))
        extra = np.round(turnover / AVG_TRADE_USD.get(self.quote, 500.0) * np.exp(0.25 * z[1] - 0.03125))
        units = np.round(turnover / np.exp(hours.logp[:-1]) * 10.0**self.vdec)
        live = np.full(HOURS, 60, np.int64) if n_present is None else n_present.astype(np.int64)
        count = MIN_TRADES_PER_MINUTE * live + extra.astype(np.int64) * (live > 0)
        units = np.clip(units, count, _MAX_UNITS).astype(np.int64) * (live > 0)
        return units, count

    def minute_volume(self, b: int, moved: np.ndarray, pm: np.ndarray | None, units_h: np.ndarray,
                      count_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each hour's units and trades split exactly over its present minutes, busier where the minute
        moved more (`moved`, (HOURS, 60): |close - open| in minute sds) and by chance. (HOURS, 60)."""
        u = self._rng(_K_SPLIT, b).random((2, HOURS, 60), dtype=np.float32)
        live = np.ones((HOURS, 60), np.int64) if pm is None else pm.reshape(HOURS, 60).astype(np.int64)
        mins = MIN_TRADES_PER_MINUTE * live
        act = (np.float32(0.25) + moved) * -np.log(np.float32(1.0) - u[0]) * live
        count = mins + split_int(count_h - mins.sum(axis=1), act)
        weight = (count - mins + 1) * np.exp(np.float32(0.6) * u[1] - np.float32(0.3)) * live
        units = count + split_int(units_h - count_h, weight)
        return units, count

    def block(self, level: int, b: int, present: Callable[[int], np.ndarray | None]) -> Block:
        """Block b at `level`, aggregated from its minutes."""
        pm = present(b)
        before = present(b - 1) if b > 0 else None
        if pm is not None or (before is not None and not before[-1]):
            return self._gappy_block(level, b, np.ones(HOURS * 60, bool) if pm is None else pm, present)
        m = MINUTES[level]
        logp, x, sd, hours = self.model.path(self.symbol, self.quote, b)
        hx, lx = self._hilo(b, x, sd)
        units_h, count_h = self.hour_volume(b, hours, None)
        base = logp[:-1]
        mm = min(m, 60)                                   # minutes per candle within the hour
        k = 60 // mm                                      # candles per hour
        close_log = base + x[mm - 1::mm]                  # (k, HOURS)
        close_log[-1] = logp[1:]
        c = self.price(close_log.T.reshape(-1))
        o = np.empty_like(c)
        o[0] = self.price(logp[:1])[0]
        o[1:] = c[:-1]
        hlog = (base + hx.reshape(k, mm, HOURS).max(axis=1)).T.reshape(-1)
        llog = (base + lx.reshape(k, mm, HOURS).min(axis=1)).T.reshape(-1)
        h = np.maximum(self.price(hlog), np.maximum(o, c))
        lw = np.minimum(self.price(llog), np.minimum(o, c))
        day0 = ORIGIN_DAY + b * BLOCK_DAYS
        if m >= 60:
            hourly = Block(day0 * 24, o, h, lw, c, units_h, count_h, np.ones(HOURS, bool))
            return hourly if m == 60 else aggregate(hourly, m // 60)
        um, cm = self.minute_volume(b, self._moved(x, sd), None, units_h, count_h)
        units, count = um.reshape(-1, m).sum(axis=1), cm.reshape(-1, m).sum(axis=1)
        return Block(day0 * PER_DAY[level], o, h, lw, c, units, count, np.ones(len(o), bool))

    def _carry(self, b: int, present: Callable[[int], np.ndarray | None]) -> float | None:
        """The log close of the last present minute before block b (None: nothing trades before it)."""
        while b > 0:
            b -= 1
            pm = present(b)
            idx = np.flatnonzero(pm) if pm is not None else np.array([HOURS * 60 - 1])
            if len(idx):
                h, k = divmod(int(idx[-1]), 60)
                logp, x, _, _ = self.model.path(self.symbol, self.quote, b)
                return float(logp[h + 1]) if k == 59 else float(logp[h] + x[k, h])
        return None

    def _gappy_block(self, level: int, b: int, pm: np.ndarray, present: Callable[[int], np.ndarray | None]) -> Block:
        """A block with no-trade minutes: minute candles first (a minute after a gap opens at the last
        traded close: no trades, no price), then masked aggregation."""
        logp, x, sd, hours = self.model.path(self.symbol, self.quote, b)
        hx, lx = self._hilo(b, x, sd)
        base = logp[:-1]
        close = base + x
        close[-1] = logp[1:]
        close = close.T.reshape(-1)
        hi = (base + hx).T.reshape(-1)
        lo = (base + lx).T.reshape(-1)
        moved = self._moved(x, sd)                  # fresh: the buffers may be reused by _carry below
        n = len(close)
        opn = np.empty(n)
        opn[0] = logp[0]
        opn[1:] = close[:-1]
        prev = present(b - 1) if b > 0 else None
        resume = np.flatnonzero(pm & ~np.concatenate([[True if prev is None else bool(prev[-1])], pm[:-1]]))
        if len(resume):
            last = np.maximum.accumulate(np.where(pm, np.arange(n), -1))
            for i in resume:
                j = int(last[i - 1]) if i > 0 else -1
                carried = float(close[j]) if j >= 0 else self._carry(b, present)
                if carried is not None:
                    opn[i] = carried
        o, c = self.price(opn), self.price(close)
        h = np.maximum(self.price(hi), np.maximum(o, c))
        lw = np.minimum(self.price(lo), np.minimum(o, c))
        units_h, count_h = self.hour_volume(b, hours, pm.reshape(HOURS, 60).sum(axis=1))
        um, cm = self.minute_volume(b, moved, pm, units_h, count_h)
        minutes = Block((ORIGIN_DAY + b * BLOCK_DAYS) * 1440, o, h, lw, c, um.reshape(-1), cm.reshape(-1), pm)
        m = MINUTES[level]
        return minutes if m == 1 else aggregate(minutes, m)
