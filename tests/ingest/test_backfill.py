"""Backfill and sync through a provider: completeness, resumability, no page requested twice."""

from datetime import timedelta

from coinline.datasets.canonical import series_candles
from coinline.errors import TransientError
from coinline.ingest.backfill import backfill
from coinline.ingest.sync import sync
from tests.fakes import T0, FakeSource, candles

PAIRS = [("BTC", "USD", "1h")]



def test_backfill_stores_every_candle_with_minimal_requests(lake):
    source = FakeSource(candles(n=22), page_limit=5)
    (out,) = backfill(source, lake, PAIRS, now=T0 + timedelta(hours=22), progress=False)
    assert out.status == "ok" and out.inserted == 22
    assert len(source.calls) == 5  # ceil(22 / 5)
    assert series_candles(lake, source.resolve("BTC", "USD", "1h").key).num_rows == 22


def test_unlisted_pair_is_an_explicit_outcome(lake):
    source = FakeSource(candles(n=3))
    outs = backfill(source, lake, [("BTC", "USD", "1h"), ("BTC", "CAD", "1h")], now=T0 + timedelta(hours=3), progress=False)
    assert [(o.quote, o.status) for o in outs] == [("USD", "ok"), ("CAD", "not-listed")]
    assert "not listed" in outs[1].message


def test_interrupted_backfill_resumes_without_refetching(lake):
    table = candles(n=20)
    flaky = FakeSource(table, page_limit=5)
    real_fetch = flaky.fetch

    def fail_third(ref, cursor, end):
        if len(flaky.calls) == 2:
            flaky.calls.append((cursor, end))
            raise TransientError("connection reset", provider="fake")
        return real_fetch(ref, cursor, end)

    flaky.fetch = fail_third
    (first,) = backfill(flaky, lake, PAIRS, now=T0 + timedelta(hours=20), progress=False)
    assert first.status == "error" and first.inserted == 10
    resumed = FakeSource(table, page_limit=5)
    (second,) = backfill(resumed, lake, PAIRS, now=T0 + timedelta(hours=20), progress=False)
    assert second.status == "ok" and second.inserted == 10 and second.duplicates == 0
    assert resumed.calls[0][0] == T0 + timedelta(hours=10)


def test_sync_appends_only_newly_closed_candles_and_rerun_makes_no_request(lake):
    source = FakeSource(candles(n=30), page_limit=100)
    backfill(source, lake, PAIRS, now=T0 + timedelta(hours=24), progress=False)
    source.calls.clear()
    (out,) = sync(source, lake, PAIRS, now=T0 + timedelta(hours=26, minutes=10), progress=False)
    assert out.inserted == 2 and source.calls == [(T0 + timedelta(hours=24), T0 + timedelta(hours=26))]
    source.calls.clear()
    (again,) = sync(source, lake, PAIRS, now=T0 + timedelta(hours=26, minutes=50), progress=False)
    assert again.inserted == 0 and source.calls == []


def test_sync_of_a_series_never_backfilled_says_so(lake):
    (out,) = sync(FakeSource(candles(n=3)), lake, PAIRS, now=T0 + timedelta(hours=3), progress=False)
    assert out.status == "needs-backfill"


def test_follow_polls_on_the_interval_cadence_and_appends_each_new_candle(lake):
    from coinline.ingest.sync import follow

    source = FakeSource(candles(n=40), page_limit=100)
    backfill(source, lake, PAIRS, now=T0 + timedelta(hours=24), progress=False)
    clock = [T0 + timedelta(hours=24, minutes=10)]
    slept, cycles = [], []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    follow(source, lake, PAIRS, clock=lambda: clock[0], sleep=sleep, grace_s=5, max_cycles=3,
           on_cycle=lambda outs: cycles.append(sum(o.inserted for o in outs)))
    assert cycles == [0, 1, 1]  # nothing new at first, then each newly closed hour
    assert slept == [50 * 60 + 5, 60 * 60]  # wakes just after each close (plus the grace)
    assert series_candles(lake, source.resolve("BTC", "USD", "1h").key).num_rows == 26
