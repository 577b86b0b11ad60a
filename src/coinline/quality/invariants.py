"""Whole-series invariants of the canonical view, computed in numpy from each series' open times (or, for a
series whose Delta files prove it dense, from the log's file statistics alone) instead of running the Great
Expectations suite over all history again.

Row checks (schema, nulls, OHLC, prices, volume, grid, interval) are the raw suite's: it runs once on every
ingest batch (`lake_checks.validate_new_batches`), and every canonical row is a row of a batch that passed
it. What no single batch can see is the series as a whole; that is what these checks cover, with the names
and result shape of the canonical suite's checks so stored results read the same:

- unique.natural_key   no open_time twice in a series;
- order.series_time    open_time never goes back within a series (in table order);
- order.canonical      series follow each other in canonical order (symbol, quote, interval; one pair's
                       series from several sources by time), as the suite's `order.canonical`;
- grid.aligned         every open_time on the epoch-anchored interval grid;
- gaps.within_tolerance per series, candles missing on the grid between the first and last open_time and
                       not covered by known gaps are <= gap_tolerance (counted as the suite counts them).

`expectation` of each check is "coinline.invariant": Great Expectations did not run it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from coinline.providers.base import SeriesKey
from coinline.quality.results import MAX_EXAMPLES, CheckResult, QualityResult
from coinline.quality.suites import KEY_COLUMNS, _grid_points_below, _time_ns, merge_spans
from coinline.timeframes import interval_ms

SUITE = "candles.canonical.invariants"
EXPECTATION = "coinline.invariant"
_NS_PER_MS = 1_000_000
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class SeriesProfile:
    """What the invariants need of one series: its rows and first/last open_time (ns), the steps that go
    back (ms), the open times of rows whose open_time occurs twice, the off-grid offsets (ms), and the runs
    of missing grid slots `holes` ([lo, hi) in ns)."""

    key: SeriesKey
    rows: int
    first_ns: int | None
    last_ns: int | None
    backward_steps_ms: np.ndarray = field(default_factory=lambda: _EMPTY)
    repeated_ns: np.ndarray = field(default_factory=lambda: _EMPTY)
    off_grid_ms: np.ndarray = field(default_factory=lambda: _EMPTY)
    holes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    from_log: bool = False   # built from the log's file statistics (`dense_profile`), no row read

    @property
    def missing(self) -> int:
        """Grid slots missing between the first and last open_time."""
        step = step_ns(self.key.interval)
        return int(((self.holes[:, 1] - self.holes[:, 0]) // step).sum()) if step and len(self.holes) else 0


def step_ns(interval: str) -> int:
    """The interval's length in ns; 0 for an interval name the grid does not know."""
    try:
        return interval_ms(interval) * _NS_PER_MS
    except (ValueError, TypeError):
        return 0


def times_ns(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """int64 ns since the epoch of a timestamp column of any unit (canonical open_time has no nulls)."""
    return _time_ns(column)[0]


def profile(key: SeriesKey, t: np.ndarray) -> SeriesProfile:
    """The profile of one series from its open times in table order (int64 ns)."""
    t = np.asarray(t, dtype=np.int64)
    if len(t) == 0:
        return SeriesProfile(key, 0, None, None)
    d = np.diff(t)
    s = np.sort(t) if (d < 0).any() else t   # canonical rows come sorted: no sort, no hashing unique
    twice = np.zeros(len(s), dtype=bool)  # every row whose open_time occurs more than once, as the suite counts
    twice[:-1] |= s[1:] == s[:-1]
    twice[1:] |= s[1:] == s[:-1]
    step = step_ns(key.interval)
    off = t % step if step else np.zeros(len(t), dtype=np.int64)
    holes = np.zeros((0, 2), dtype=np.int64)
    if step:
        floored = (s // step) * step   # the suite floors to the grid: off-grid rows are grid.aligned's
        slots = floored[np.concatenate([[True], floored[1:] != floored[:-1]])]
        run = np.diff(slots)
        m = run > step
        holes = np.stack([slots[:-1][m] + step, slots[1:][m]], axis=1)
    return SeriesProfile(key, len(t), int(t.min()), int(t.max()), backward_steps_ms=d[d < 0] / _NS_PER_MS,
                         repeated_ns=s[twice], off_grid_ms=off[off != 0] / _NS_PER_MS, holes=holes)


def dense_profile(key: SeriesKey, first_ns: int, last_ns: int) -> SeriesProfile:
    """The profile of a series known (from the log's file statistics) to hold every grid slot from first to
    last once, in order."""
    step = step_ns(key.interval)
    return SeriesProfile(key, (last_ns - first_ns) // step + 1, first_ns, last_ns, from_log=True)


def profiles_of_parts(parts: Iterable[pa.Table]) -> list[SeriesProfile]:
    """Profiles of per-series tables (each one series, in table order), e.g. the parts of a dataset."""
    out = []
    for part in parts:
        if part.num_rows:
            key = SeriesKey(*(part[c][0].as_py() for c in KEY_COLUMNS))
            out.append(profile(key, times_ns(part["open_time"])))
    return out


def invariants_result(profiles: Sequence[SeriesProfile], *, known_gaps: pa.Table | None, gap_tolerance: int,
                      parameters: Mapping[str, Any] | None = None) -> QualityResult:
    """The invariant checks over series profiles given in table order, as one QualityResult."""
    if isinstance(gap_tolerance, bool) or not isinstance(gap_tolerance, int | np.integer) or gap_tolerance < 0:
        raise ValueError(f"gap_tolerance must be an int >= 0, got {gap_tolerance!r}")
    rows = sum(p.rows for p in profiles)
    n = len(profiles)
    gaps = _gaps_by_key(known_gaps)
    unexplained = [_unexplained(p, gaps.get(p.key)) for p in profiles]
    order_bad = [p for prev, p in zip(profiles, profiles[1:], strict=False) if not _follows(prev, p)]

    def per_row(name: str, values_of, description: str, columns: tuple[str, ...], examples_of=None) -> CheckResult:
        """A check that counts offending rows (`values_of(p)`, one value per row) over every series."""
        offending = [(p, values_of(p)) for p in profiles if len(values_of(p))]
        show = examples_of or (lambda p, v: v.tolist())
        return _check(name, columns, description, rows, sum(len(v) for _, v in offending),
                      [x for p, v in offending for x in show(p, v)[:MAX_EXAMPLES]], [p for p, _ in offending])

    checks = (
        per_row("unique.natural_key", lambda p: p.repeated_ns,
                "no open_time occurs twice in a series (examples: the repeated open_time)",
                ("source", "venue", "symbol", "quote", "interval", "open_time"),
                examples_of=lambda p, v: [_iso(x) for x in np.unique(v).tolist()]),
        per_row("order.series_time", lambda p: p.backward_steps_ms,
                "open_time minus the previous open_time of the same series (ms) is >= 0",
                ("open_time",)),
        _check("order.canonical", ("open_time",),
               "series follow each other in canonical order (symbol, quote, interval, then open_time)",
               max(n - 1, 0), len(order_bad), [-1.0] * len(order_bad), order_bad),
        per_row("grid.aligned", lambda p: p.off_grid_ms,
                "open_time modulo the interval (ms; epoch-anchored UTC grid) is 0", ("open_time",)),
        _check("gaps.within_tolerance", ("unexplained_missing",),
               "per series, candles missing on the interval grid between its first and last open_time and "
               "not covered by known_gaps are <= gap_tolerance", n,
               sum(u > gap_tolerance for u in unexplained),
               [float(u) for u in unexplained if u > gap_tolerance],
               [p for p, u in zip(profiles, unexplained, strict=True) if u > gap_tolerance]),
    )
    params: dict[str, Any] = {"stage": "canonical", "gap_tolerance": int(gap_tolerance),
                              "known_gaps": 0 if known_gaps is None else known_gaps.num_rows,
                              "missing": sum(p.missing for p in profiles),
                              "unexplained_missing": int(sum(unexplained))}
    params.update(parameters or {})
    return QualityResult(suite=SUITE, success=all(c.success for c in checks), checks=checks, row_count=rows,
                         series_count=n, parameters=params)


def _check(name: str, columns: tuple[str, ...], description: str, elements: int, unexpected: int,
           examples: list[Any], offending: Sequence[SeriesProfile]) -> CheckResult:
    labels = list(dict.fromkeys(p.key.label() for p in offending))
    return CheckResult(name=name, expectation=EXPECTATION, columns=columns, description=description,
                       success=unexpected == 0, element_count=elements, unexpected_count=int(unexpected),
                       examples=tuple(examples[:MAX_EXAMPLES]), series=tuple(labels[:MAX_EXAMPLES]))


def _follows(prev: SeriesProfile, cur: SeriesProfile) -> bool:
    """The suite's `order.canonical` at a series boundary: a later (symbol, quote, interval), or the same
    one (another source of the pair) starting at or after the previous series' last open_time."""
    a = (prev.key.symbol, prev.key.quote, prev.key.interval)
    b = (cur.key.symbol, cur.key.quote, cur.key.interval)
    if b != a:
        return b > a
    return prev.last_ns is None or cur.first_ns is None or cur.first_ns >= prev.last_ns


def _unexplained(p: SeriesProfile, gaps: tuple[np.ndarray, np.ndarray] | None) -> int:
    step = step_ns(p.key.interval)
    if not step or not len(p.holes):
        return 0
    if gaps is None:
        return p.missing
    starts, ends = gaps
    lo, hi = p.holes[:, 0], p.holes[:, 1]
    explained = _grid_points_below(hi, starts, ends, step) - _grid_points_below(lo, starts, ends, step)
    return p.missing - int(np.maximum(explained, 0).sum())


def _gaps_by_key(known_gaps: pa.Table | None) -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]:
    """Merged, sorted known gaps [start, end) in ns per series."""
    if known_gaps is None or known_gaps.num_rows == 0:
        return {}
    gs, ge = times_ns(known_gaps["gap_start"]), times_ns(known_gaps["gap_end"])
    spans: dict[SeriesKey, list[tuple[int, int]]] = {}
    for i, key in enumerate(zip(*(known_gaps[c].to_pylist() for c in KEY_COLUMNS), strict=True)):
        if ge[i] > gs[i]:
            spans.setdefault(SeriesKey(*key), []).append((int(gs[i]), int(ge[i])))
    return merge_spans(spans)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()
