"""coinline.quality.lake_checks: the raw suite runs once over all new batches together (each batch still its own
series), a bad batch is found and stored on its own, validation resumes where it stopped, and the canonical
invariants catch a gap anywhere, proving dense series from the log alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coinline.ingest.writer import commit_candles
from coinline.lake import open_lake, tables
from coinline.providers.base import SeriesKey, candle_table
from coinline.quality.lake_checks import STATE, raw_result_name, validate_lake, validate_new_batches

HOUR = 3_600_000
BASE_MS = 1_704_067_200_000          # 2024-01-01T00:00:00Z
NOW = datetime(2024, 3, 1, tzinfo=UTC)
BTC = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
ETH = SeriesKey("coinapi", "KRAKEN", "ETH", "USD", "1h")


@pytest.fixture
def lake(tmp_path):
    lake = open_lake(f"file://{tmp_path}/lake")
    tables.ensure_tables(lake)
    return lake


def commit(lake, key: SeriesKey, first: int, n: int, *, high: float = 101.0, close: float = 100.5,
           skip: tuple[int, ...] = ()) -> str:
    """Commit hours first..first+n-1 of `key` (less `skip`) as one batch; returns its batch id."""
    hours = [h for h in range(first, first + n) if h not in skip]
    k = len(hours)
    t = candle_table(key, [BASE_MS + h * HOUR for h in hours], [100.0] * k, [high] * k, [99.0] * k, [close] * k,
                     [1.0] * k, [3] * k)
    result = commit_candles(lake, t, key=key, request={"test": f"{key.symbol} {first}+{n}"}, now=NOW)
    assert result.table_version is not None
    return result.batch_id


def stored(lake, batch_id: str) -> dict:
    return lake.read_json(raw_result_name(batch_id))


def test_new_batches_are_validated_in_one_run_and_each_keeps_a_result(lake):
    batches = [commit(lake, key, 10 * i, 10) for i in range(3) for key in (BTC, ETH)]
    raw = validate_new_batches(lake)

    assert len(raw.results) == 1 and raw.results[0].success           # one suite run for six batches
    assert raw.results[0].row_count == 60 and raw.results[0].series_count == 6   # each batch its own series
    assert raw.failed == frozenset() and raw.validated == frozenset(batches)
    assert raw.version == tables.open_table(lake, tables.RAW).version()
    for b in batches:
        doc = stored(lake, b)
        assert doc["success"] and doc["row_count"] == 10 and doc["group"]["batches"] == 6
        assert doc["series"] in (BTC.label(), ETH.label())
    assert lake.read_json(STATE) == {"raw_candles_version": raw.version, "failed": []}

    again = validate_new_batches(lake)                                # nothing new: nothing read or run
    assert (again.results, again.validated, again.version) == ([], frozenset(), raw.version)


def test_a_revision_in_a_later_batch_is_not_a_duplicate_key(lake):
    first = commit(lake, BTC, 0, 5)
    second = commit(lake, BTC, 2, 1, close=100.7)                     # a revised candle: version 2 of hour 2
    raw = validate_new_batches(lake)
    assert raw.failed == frozenset() and len(raw.results) == 1
    assert stored(lake, first)["success"] and stored(lake, second)["success"]


def test_a_bad_batch_among_many_is_found_and_stored_on_its_own(lake):
    good = [commit(lake, key, 10 * i, 10) for i in range(4) for key in (BTC, ETH)]
    bad = commit(lake, ETH, 3, 1, high=90.0, close=100.7)            # an old hour revised, high below close
    raw = validate_new_batches(lake)

    assert raw.failed == frozenset({bad})
    assert sum(r.row_count for r in raw.results) == 81               # every row decided by exactly one run
    assert [r.success for r in raw.results].count(False) == 1
    doc = stored(lake, bad)
    assert not doc["success"] and "group" not in doc and doc["row_count"] == 1
    failing = [c for c in doc["checks"] if not c["success"]]
    assert {c["name"] for c in failing} == {"ohlc.high_ge_close", "ohlc.high_ge_open", "ohlc.high_ge_low"}
    assert all(c["series"] == [ETH.label()] for c in failing)       # its own label, not the group's tag
    assert all(stored(lake, b)["success"] for b in good)
    assert lake.read_json(STATE)["failed"] == [bad]


def test_validate_reports_an_earlier_failure_on_every_run(lake):
    commit(lake, BTC, 0, 10)
    bad = commit(lake, BTC, 10, 1, high=90.0)
    first = validate_lake(lake, gap_tolerance=0)
    second = validate_lake(lake, gap_tolerance=0)
    for results in (first, second):
        raw = [r for r in results if r.suite == "candles.raw" and not r.success]
        assert len(raw) == 1 and raw[0].row_count == 1, [r.summary() for r in results]
    assert lake.read_json(STATE)["failed"] == [bad]


def test_validation_resumes_from_results_stored_before_the_state_was_recorded(lake):
    commit(lake, BTC, 0, 10)
    validate_new_batches(lake)
    lake.delete(STATE)
    commit(lake, BTC, 10, 10)
    raw = validate_new_batches(lake)
    assert len(raw.validated) == 1 and raw.results[0].row_count == 10


def test_a_gap_anywhere_is_caught_and_dense_series_are_proven_from_the_log(lake):
    commit(lake, BTC, 0, 10)
    commit(lake, BTC, 10, 10)
    commit(lake, ETH, 0, 10, skip=(4, 5))                            # two hours missing in an old batch
    commit(lake, ETH, 10, 10)

    (raw, canonical) = validate_lake(lake, gap_tolerance=0)
    assert raw.success and not canonical.success
    assert canonical.suite == "candles.canonical.invariants"
    gap = canonical.check("gaps.within_tolerance")
    assert gap.series == (ETH.label(),) and gap.examples == (2.0,)
    assert canonical.parameters["series_from_log"] == 1              # BTC from file statistics, ETH from rows
    assert canonical.row_count == 38
    assert lake.read_json("quality/canonical/coinapi.json")["success"] is False

    (canonical,) = validate_lake(lake, gap_tolerance=2)               # nothing new: only the invariants
    assert canonical.success, canonical.summary()


def test_revisions_do_not_count_as_candles_or_hide_a_gap(lake):
    commit(lake, BTC, 0, 10, skip=(6,))
    commit(lake, BTC, 2, 1, close=100.7)                              # 10 raw rows, 9 candles, one missing
    (_raw, canonical) = validate_lake(lake, gap_tolerance=0)
    assert canonical.row_count == 9 and canonical.parameters["series_from_log"] == 0
    assert canonical.check("gaps.within_tolerance").examples == (1.0,)
