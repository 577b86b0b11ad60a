"""Backfill and sync through a provider: completeness, resumability, no page requested twice."""

from datetime import timedelta

import pytest

from coinline.datasets.canonical import series_candles
from coinline.errors import CoinlineError, TransientError
from coinline.ingest.backfill import backfill
from coinline.ingest.sync import sync
from coinline.ingest.writer import CommitBuffer
from coinline.lake import tables
from coinline.lake.lease import lease_name
from coinline.providers.base import SeriesKey
from tests.fakes import KEY, T0, FakeSource, candles

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


# --------------------------------------------------------------------------------- batched commits


ETH = SeriesKey("fake", "FAKEX", "ETH", "USD", "1h")
BOTH = [("BTC", "USD", "1h"), ("ETH", "USD", "1h")]


class TwoSeries(FakeSource):
    """FakeSource over BTC and ETH (ETH's candles priced apart); `on_fetch(ref)` runs before each page."""

    def __init__(self, n: int, page_limit: int, on_fetch=None):
        super().__init__(candles(n=n), page_limit=page_limit, listed=(("BTC", "USD"), ("ETH", "USD")))
        self.tables = {"BTC": candles(n=n), "ETH": candles(ETH, n=n, price=2000.0)}
        self.on_fetch = on_fetch

    def fetch(self, ref, cursor, end):
        if self.on_fetch:
            self.on_fetch(ref)
        self.table = self.tables[ref.key.symbol]
        return super().fetch(ref, cursor, end)


def _raw_version(lake) -> int:
    return tables.open_table(lake, tables.RAW).version()


def test_a_backfill_commits_each_series_walk_once_naming_every_page(lake):
    source = TwoSeries(22, page_limit=5)
    outs = backfill(source, lake, BOTH, now=T0 + timedelta(hours=22), progress=False)
    assert [(o.status, o.pages, o.inserted, len(o.batches)) for o in outs] == [("ok", 5, 22, 5)] * 2
    assert _raw_version(lake) == 2                                   # one commit per series, not per page
    manifests = tables.commit_manifests(lake, tables.RAW)
    assert [(m["series"], m["table_version"]) for m in manifests] == [(KEY.label(), 1)] * 5 + [(ETH.label(), 2)] * 5
    assert sum(m["row_count"] for m in manifests) == 44 and lake.list("leases") == []


def test_a_long_walk_commits_whenever_the_buffer_is_full(lake):
    source = FakeSource(candles(n=22), page_limit=5)
    (out,) = backfill(source, lake, PAIRS, now=T0 + timedelta(hours=22), progress=False,
                      buffer=CommitBuffer(lake, max_pages=2))
    assert (out.status, out.pages, out.inserted) == ("ok", 5, 22)
    assert _raw_version(lake) == 3                                   # pages 1-2, 3-4, 5
    assert series_candles(lake, KEY).num_rows == 22


def test_a_sync_cycle_is_one_commit_for_every_series(lake):
    backfill(TwoSeries(30, page_limit=100), lake, BOTH, now=T0 + timedelta(hours=24), progress=False)
    version = _raw_version(lake)
    outs = sync(TwoSeries(30, page_limit=100), lake, BOTH, now=T0 + timedelta(hours=26, minutes=10), progress=False)
    assert [(o.status, o.inserted) for o in outs] == [("ok", 2), ("ok", 2)]
    assert _raw_version(lake) == version + 1
    assert {m["series"] for m in tables.commit_manifests(lake, tables.RAW) if m["table_version"] == version + 1} == {
        KEY.label(), ETH.label()}
    assert lake.list("leases") == []


def test_a_sync_killed_before_its_commit_leaves_nothing_and_the_rerun_completes(lake):
    backfill(TwoSeries(30, page_limit=100), lake, BOTH, now=T0 + timedelta(hours=24), progress=False)
    version = _raw_version(lake)
    later = T0 + timedelta(hours=26, minutes=10)

    def killed_at_eth(ref):
        if ref.key.symbol == "ETH":
            raise KeyboardInterrupt("killed mid-cycle")

    with pytest.raises(KeyboardInterrupt):
        sync(TwoSeries(30, page_limit=100, on_fetch=killed_at_eth), lake, BOTH, now=later, progress=False)
    assert _raw_version(lake) == version and series_candles(lake, KEY).num_rows == 24   # BTC's page not visible
    assert lake.list("leases") == []
    outs = sync(TwoSeries(30, page_limit=100), lake, BOTH, now=later, progress=False)
    assert [(o.inserted, o.duplicates) for o in outs] == [(2, 0), (2, 0)]
    assert series_candles(lake, KEY).num_rows == series_candles(lake, ETH).num_rows == 26


def test_a_series_whose_lease_is_taken_over_before_the_cycle_commit_writes_nothing(lake):
    backfill(TwoSeries(30, page_limit=100), lake, BOTH, now=T0 + timedelta(hours=24), progress=False)

    def steal_btc(ref):
        if ref.key.symbol == "ETH":   # BTC waits for the cycle's commit; another ingester takes its lease
            name = lease_name(KEY)
            lake.write_json(name, {**lake.read_json(name), "holder": "elsewhere:1:x"})

    outs = sync(TwoSeries(30, page_limit=100, on_fetch=steal_btc), lake, BOTH,
                now=T0 + timedelta(hours=26, minutes=10), progress=False)
    assert [o.status for o in outs] == ["lease-held", "ok"] and "taken over" in outs[0].message
    assert (outs[0].inserted, outs[1].inserted) == (0, 2)
    assert series_candles(lake, KEY).num_rows == 24 and series_candles(lake, ETH).num_rows == 26


def test_a_failed_cycle_commit_is_an_error_of_every_series_it_carried(lake, monkeypatch):
    backfill(TwoSeries(30, page_limit=100), lake, BOTH, now=T0 + timedelta(hours=24), progress=False)
    version = _raw_version(lake)

    def refuse(*_args, **_kw):
        raise CoinlineError("raw_candles refused the commit")

    monkeypatch.setattr(tables, "append", refuse)
    outs = sync(TwoSeries(30, page_limit=100), lake, BOTH, now=T0 + timedelta(hours=26, minutes=10), progress=False)
    assert [(o.status, o.message, o.inserted) for o in outs] == [("error", "raw_candles refused the commit", 0)] * 2
    assert _raw_version(lake) == version and lake.list("leases") == []
