"""coinline.quality.invariants: the whole-series checks that replace a Great Expectations run over all history
find the same defects as the canonical suite's checks of the same name, with the same counts and examples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from coinline.providers.base import SeriesKey
from coinline.quality import validate_candles
from coinline.quality.invariants import (
    SUITE,
    dense_profile,
    invariants_result,
    profile,
    profiles_of_parts,
    times_ns,
)
from coinline.quality.lake_checks import dense_span
from tests.quality.test_suites import (
    BASE_MS,
    BTC_1D,
    BTC_1H,
    ETH_1H,
    ETH_EUR,
    all_rows,
    candles,
    find,
    gaps,
    hole_span,
    rows_with_hole,
    table,
    ts,
)

INVARIANTS = {"unique.natural_key", "order.series_time", "order.canonical", "grid.aligned", "gaps.within_tolerance"}
HOUR_NS = 3_600_000_000_000


def blocks(t: pa.Table) -> list[pa.Table]:
    """The table cut into runs of rows of one series, in table order."""
    keys = list(zip(*(t[c].to_pylist() for c in ("source", "venue", "symbol", "quote", "interval")), strict=True))
    cuts = [0] + [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]] + [len(keys)]
    return [t.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)]


def both(rows: list[dict], known=None, tolerance: int = 0):
    t = table(rows)
    suite = validate_candles(t, stage="canonical", known_gaps=known, gap_tolerance=tolerance)
    inv = invariants_result(profiles_of_parts(blocks(t)), known_gaps=known, gap_tolerance=tolerance)
    return suite, inv


def swapped() -> list[dict]:
    rows = all_rows()
    j = find(rows, BTC_1H, 20)
    rows[j], rows[j + 1] = rows[j + 1], rows[j]
    return rows


def duplicated() -> list[dict]:
    rows = all_rows()
    j = find(rows, ETH_1H, 10)
    rows.insert(j + 1, dict(rows[j], volume=99.0))
    return rows


def off_grid() -> list[dict]:
    rows = all_rows()
    j = find(rows, ETH_1H, 5)
    rows[j] = dict(rows[j], open_time=ts(BASE_MS + 5 * 3_600_000 + 1_000))
    return rows


def misordered() -> list[dict]:
    return [r for key in (ETH_1H, BTC_1H, BTC_1D, ETH_EUR) for r in candles(key)]


def two_holes() -> list[dict]:
    rows = all_rows()
    for key, first, count in ((BTC_1D, 4, 2), (ETH_EUR, 30, 1)):
        j = find(rows, key, first)
        del rows[j:j + count]
    return rows


a, b = hole_span()
CASES = {
    "clean": (all_rows(), None, 0),
    "hole": (rows_with_hole(), None, 0),
    "hole within tolerance": (rows_with_hole(), None, 3),
    "hole explained": (rows_with_hole(), gaps((BTC_1H, a, b)), 0),
    "hole partly explained": (rows_with_hole(), gaps((BTC_1H, a, b - 3_600_000)), 0),
    "known gap of another series": (rows_with_hole(), gaps((ETH_1H, a, b)), 0),
    "holes in two series": (two_holes(), None, 0),
    "swapped candles": (swapped(), None, 0),
    "duplicate key": (duplicated(), None, 0),
    "off-grid candle": (off_grid(), None, 0),
    "series out of canonical order": (misordered(), None, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invariants_fail_exactly_as_the_canonical_suite(case):
    rows, known, tolerance = CASES[case]
    suite, inv = both(rows, known, tolerance)
    assert inv.suite == SUITE
    assert {c.name for c in inv.checks} == INVARIANTS
    assert {c.name for c in inv.failures()} == {c.name for c in suite.failures()} & INVARIANTS, (
        suite.summary(), inv.summary())
    for c in inv.failures():
        s = suite.check(c.name)
        assert c.unexpected_count == s.unexpected_count, c.name
        assert set(c.series) == set(s.series), c.name
        if c.name in ("gaps.within_tolerance", "order.series_time", "grid.aligned"):
            assert c.examples == s.examples, c.name


def test_a_defect_somewhere_fails_and_names_the_series():
    _, inv = both(rows_with_hole(), None, 0)
    assert not inv.success
    gap = inv.check("gaps.within_tolerance")
    assert gap.series == (BTC_1H.label(),) and gap.examples == (3.0,)
    assert inv.parameters["unexplained_missing"] == 3 and inv.row_count == len(rows_with_hole())
    assert "gaps.within_tolerance" in inv.summary()


def test_a_dense_profile_is_a_series_without_holes():
    key = BTC_1H
    t = np.arange(BASE_MS, BASE_MS + 10 * 3_600_000, 3_600_000, dtype=np.int64) * 1_000_000
    from_rows, from_log = profile(key, t), dense_profile(key, int(t[0]), int(t[-1]))
    assert (from_log.rows, from_log.first_ns, from_log.last_ns, from_log.missing) == (
        from_rows.rows, from_rows.first_ns, from_rows.last_ns, from_rows.missing) == (10, t[0], t[-1], 0)
    assert from_log.from_log and not from_rows.from_log


def files(*spans: tuple[int, int, int, str, str]) -> pa.Table:
    """A file index: (first hour, last hour, rows, min batch_id, max batch_id) per file."""
    t = pa.timestamp("us", tz="UTC")
    return pa.table({
        "num_records": pa.array([s[2] for s in spans], pa.int64()),
        "min.open_time": pa.array([ts(BASE_MS + s[0] * 3_600_000) for s in spans], t),
        "max.open_time": pa.array([ts(BASE_MS + s[1] * 3_600_000) for s in spans], t),
        "min.batch_id": [s[3] for s in spans], "max.batch_id": [s[4] for s in spans]})


def test_file_statistics_prove_a_series_dense_only_when_they_can():
    start = BASE_MS * 1_000_000
    # back to back and overlapping (a revision batch re-covers hours 8..9) single-batch files
    assert dense_span(files((0, 9, 10, "a", "a"), (10, 19, 10, "b", "b"), (8, 9, 2, "c", "c")), HOUR_NS) == (
        start, start + 19 * HOUR_NS)
    assert dense_span(files((0, 9, 10, "a", "a"), (11, 19, 9, "b", "b")), HOUR_NS) is None   # hour 10 missing
    assert dense_span(files((0, 9, 9, "a", "a")), HOUR_NS) is None                           # a hole inside
    assert dense_span(files((0, 9, 10, "a", "b")), HOUR_NS) is None      # two batches: rows may repeat a key
    assert dense_span(files((0, 9, 10, "a", "a")), 0) is None                                 # unknown interval


def test_times_of_any_unit_are_nanoseconds():
    col = pa.array([ts(BASE_MS)], pa.timestamp("us", tz="UTC"))
    assert times_ns(col).tolist() == [BASE_MS * 1_000_000]
    assert times_ns(col.cast(pa.timestamp("ms", tz="UTC"))).tolist() == [BASE_MS * 1_000_000]


def test_bad_tolerance_is_a_programmer_error():
    with pytest.raises(ValueError, match="gap_tolerance"):
        invariants_result([profile(SeriesKey("s", "v", "X", "USD", "1h"), np.zeros(0, np.int64))],
                          known_gaps=None, gap_tolerance=-1)
