"""`SeriesStore`: generated blocks of every (symbol, quote, level), kept in an LRU bounded by rows,
plus the generator state behind them and the fixed no-trade gaps."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from coinline.replay import paths
from coinline.replay.paths import BLOCK_DAYS, HOUR_LEVEL, LEVELS, MINUTES, ORIGIN_DAY, PER_DAY, SPLIT, Block
from coinline.replay.profiles import crc
from coinline.timeframes import interval_seconds

_BLOCK_FIELDS = ("open", "high", "low", "close", "units", "count", "present")
_BLOCK_MINUTES = BLOCK_DAYS * 1440


class SeriesStore:
    """`start_idx(quote, interval)` gives the listing start index; `now0_s` the construction time,
    which fixes where gaps fall."""

    def __init__(self, seed: int, start_idx: Callable[[str, str], int], now0_s: int, cache_rows: int,
                 dyn: paths.Dynamics = paths.MARTINGALE):
        self.seed = seed
        self.model = paths.Model(seed, dyn)
        self._start_idx = start_idx
        self._now0_s = now0_s
        self._blocks: OrderedDict[tuple, Block] = OrderedDict()
        self._rows, self._max_rows = 0, cache_rows
        self._gens: dict[tuple[str, str], paths.PairGenerator] = {}
        self._gaps: dict[tuple[str, str, int], np.ndarray] = {}
        self._absent: dict[tuple[str, str], np.ndarray] = {}

    def generator(self, symbol: str, quote: str) -> paths.PairGenerator:
        key = (symbol, quote)
        if key not in self._gens:
            self._gens[key] = paths.PairGenerator(self.model, symbol, quote)
        return self._gens[key]

    def raw(self, symbol: str, quote: str, level: int, lo: int, hi: int) -> Block:
        """Generated rows lo <= index < hi of one level (present or not), across blocks."""
        per = PER_DAY[level]
        parts = []
        a = lo
        while a < hi:
            blk = self._block(symbol, quote, level, (a // per - ORIGIN_DAY) // BLOCK_DAYS)
            end = min(hi, blk.first + len(blk))
            sl = slice(a - blk.first, end - blk.first)
            parts.append(Block(a, *(getattr(blk, f)[sl] for f in _BLOCK_FIELDS)))
            a = end
        if len(parts) == 1:
            return parts[0]
        if not parts:
            f, i = np.empty(0), np.empty(0, np.int64)
            return Block(lo, f, f, f, f, i, i, np.empty(0, bool))
        return Block(lo, *(np.concatenate([getattr(p, f) for p in parts]) for f in _BLOCK_FIELDS))

    def _block(self, symbol: str, quote: str, level: int, b: int) -> Block:
        key = (symbol, quote, level, b)
        blk = self._blocks.get(key)
        if blk is not None:
            self._blocks.move_to_end(key)
            return blk
        if level < HOUR_LEVEL:                   # 4h and 1d: from the hours (computed once, from the minutes)
            blk = paths.aggregate(self._block(symbol, quote, HOUR_LEVEL, b), MINUTES[level] // 60)
        else:
            blk = self.generator(symbol, quote).block(level, b, lambda k: self.present(symbol, quote, k))
        self._blocks[key] = blk
        self._rows += len(blk)
        while self._rows > self._max_rows and len(self._blocks) > 1:
            _, old = self._blocks.popitem(last=False)
            self._rows -= len(old)
        return blk

    def present(self, symbol: str, quote: str, b: int) -> np.ndarray | None:
        """The minutes of block b that trade (None: all of them)."""
        key = (symbol, quote)
        if key not in self._absent:
            self._absent[key] = self.missing_idx(symbol, quote, len(LEVELS) - 1)
        absent = self._absent[key]
        first = (ORIGIN_DAY + b * BLOCK_DAYS) * 1440
        lo, hi = np.searchsorted(absent, [first, first + _BLOCK_MINUTES])
        if lo == hi:
            return None
        mask = np.ones(_BLOCK_MINUTES, bool)
        mask[absent[lo:hi] - first] = False
        return mask

    def own_gaps(self, symbol: str, quote: str, level: int) -> np.ndarray:
        """Gap candles introduced at `level` (indices at that level): 1-3 per level in CAD series,
        one per level <= 1h in the USDC series of about a third of the coins, none in USD."""
        key = (symbol, quote, level)
        if key not in self._gaps:
            self._gaps[key] = self._choose_gaps(symbol, quote, level)
        return self._gaps[key]

    def _choose_gaps(self, symbol: str, quote: str, level: int) -> np.ndarray:
        g = paths.rng(self.seed, crc(symbol), crc(quote), 77, level)
        if quote == "CAD":
            n_gaps = 1 + int(g.integers(3))
        elif quote != "USD" and level >= 2 and crc(symbol) % 3 == 0:
            n_gaps = 1
        else:
            return np.empty(0, np.int64)
        iv = LEVELS[level]
        lo = self._start_idx(quote, iv)
        now_idx = self._now0_s // interval_seconds(iv)
        span, m = now_idx - lo, SPLIT[level]
        if span < 40:
            return np.empty(0, np.int64)
        gaps: list[int] = []
        used: set[int] = set()
        for k in range(n_gaps):          # the first gap falls among the newest ~600 candles
            for _ in range(50):
                a = max(lo + span // 10, now_idx - 600) if k == 0 else lo + span // 10
                i = int(g.integers(a, now_idx - 3))
                length = int(g.integers(1, max(2, m)))      # never a whole parent
                if level > 0:
                    i = (i // m) * m + min(i % m, m - length)
                parent = i // m if level > 0 else i // 4
                if parent not in used:
                    used.add(parent)
                    gaps.extend(range(i, i + length))
                    break
        return np.array(sorted(gaps), dtype=np.int64)

    def missing_idx(self, symbol: str, quote: str, level: int) -> np.ndarray:
        """All absent slots of `level`: its own gaps and every coarser gap expanded to this level."""
        out = []
        for k in range(level + 1):
            own = self.own_gaps(symbol, quote, k)
            f = PER_DAY[level] // PER_DAY[k]
            out.append((own[:, None] * f + np.arange(f)[None, :]).reshape(-1))
        return np.unique(np.concatenate(out))
