"""Gaps are detected on the grid, retried explicitly, and recorded with the provider's answer;
nothing is ever forward-filled."""

from datetime import timedelta

from coinline.datasets.canonical import series_candles
from coinline.ingest import gaps
from coinline.ingest.backfill import backfill
from tests.fakes import T0, FakeSource, candles

PAIRS = [("BTC", "USD", "1h")]
NOW = T0 + timedelta(hours=12)



def test_missing_candles_are_detected_with_their_extent(lake):
    source = FakeSource(candles(n=12, skip=(4, 5, 9)), page_limit=50)
    backfill(source, lake, PAIRS, now=NOW, progress=False)
    key = source.resolve("BTC", "USD", "1h").key
    found = gaps.detect(lake, key)
    assert [(g.gap_start, g.missing_candles, g.status) for g in found] == [
        ((T0 + timedelta(hours=4)).isoformat(), 2, "unexplained"),
        ((T0 + timedelta(hours=9)).isoformat(), 1, "unexplained"),
    ]


def test_retry_records_what_the_provider_still_lacks_and_never_fills(lake):
    source = FakeSource(candles(n=12, skip=(4, 5)), page_limit=50)
    backfill(source, lake, PAIRS, now=NOW, progress=False)
    key = source.resolve("BTC", "USD", "1h").key
    source.calls.clear()
    (gap,) = gaps.retry(source, lake, key, now=NOW)
    assert source.calls == [(T0 + timedelta(hours=4), T0 + timedelta(hours=6))]
    assert gap.status == "known" and "returned 0 new candle" in gap.answer
    assert series_candles(lake, key).num_rows == 10  # no forward fill
    (record,) = gaps.known_gaps(lake, key).to_pylist()
    assert record["missing_candles"] == 2 and record["status"] == "open"
    # a second retry does not re-request a known gap
    source.calls.clear()
    assert [g.status for g in gaps.retry(source, lake, key, now=NOW)] == ["known"] and source.calls == []


def test_late_candles_fill_a_gap_on_retry(lake):
    holey = FakeSource(candles(n=12, skip=(7,)), page_limit=50)
    backfill(holey, lake, PAIRS, now=NOW, progress=False)
    key = holey.resolve("BTC", "USD", "1h").key
    complete = FakeSource(candles(n=12), page_limit=50)
    (gap,) = gaps.retry(complete, lake, key, now=NOW)
    assert gap.status == "filled" and "1 new candle" in gap.answer
    assert gaps.detect(lake, key) == [] and series_candles(lake, key).num_rows == 12
