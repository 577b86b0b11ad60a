"""Completeness is checked, not assumed: the stored series is compared with what the provider says
exists (`listed_candles`); a shortfall is an unexplained gap (outcome `incomplete`), recorded once,
closed by the walk that fills it, and versioned in `known_gaps`."""

from dataclasses import dataclass
from datetime import timedelta

from coinline.ingest import completeness, gaps
from coinline.ingest.backfill import backfill
from coinline.ingest.completeness import Missing, covered, merge
from coinline.ingest.sync import sync
from coinline.lake import tables
from tests.fakes import T0, FakeSource, candles

PAIRS = [("BTC", "USD", "1h")]
H = timedelta(hours=1)
NOW = T0 + 12 * H


@dataclass
class ListingSource(FakeSource):
    """A FakeSource whose listing vouches for candles at the given hours after T0."""

    vouched: tuple[int, ...] = ()

    def listed_candles(self, ref):
        return [(T0 + h * H, T0 + (h + 1) * H) for h in self.vouched]


def test_merge_joins_overlapping_ranges_keeping_the_first_reason_given():
    a, b, c = Missing(T0 + 2 * H, T0 + 5 * H, "page"), Missing(T0, T0 + 3 * H, "listing"), Missing(T0 + 7 * H, T0 + 8 * H, "x")
    assert merge([a, b, c]) == [Missing(T0, T0 + 5 * H, "page"), c]
    assert merge([Missing(T0, T0, "empty")]) == []


def test_covered_needs_the_union_of_walked_ranges_to_span_the_whole_range():
    assert covered(T0 + H, T0 + 4 * H, [(T0, T0 + 2 * H), (T0 + 2 * H, T0 + 5 * H)])
    assert not covered(T0 + H, T0 + 4 * H, [(T0, T0 + 2 * H), (T0 + 3 * H, T0 + 5 * H)])
    assert not covered(T0 + H, T0 + 4 * H, [])


def test_a_walk_that_ends_before_a_vouched_candle_is_incomplete_and_recorded_once(lake):
    short = ListingSource(candles(n=6), page_limit=50, vouched=(0, 11))   # the provider stops early

    (out,) = backfill(short, lake, PAIRS, now=NOW, progress=False)

    assert out.status == "incomplete" and out.inserted == 6
    assert f"[{(T0 + 6 * H).isoformat()}, {NOW.isoformat()}) up to 6 candle(s)" in out.message
    assert "fake says a candle exists in" in out.message
    (record,) = completeness.unexplained_records(lake)
    assert (record["gap_start"], record["gap_end"], record["missing_candles"]) == (T0 + 6 * H, NOW, 6)
    versions = tables.open_table(lake, tables.GAPS).version()
    (again,) = sync(short, lake, PAIRS, now=NOW, progress=False)
    assert again.status == "incomplete"
    assert tables.open_table(lake, tables.GAPS).version() == versions        # the same gap: no new record
    assert [g.status for g in gaps.detect(lake, short.resolve("BTC", "USD", "1h").key)] == ["unexplained"]


def test_the_walk_that_fills_the_gap_closes_it_and_the_record_is_kept(lake):
    backfill(ListingSource(candles(n=6), page_limit=50, vouched=(11,)), lake, PAIRS, now=NOW, progress=False)
    complete = ListingSource(candles(n=12), page_limit=50, vouched=(11,))

    (out,) = sync(complete, lake, PAIRS, now=NOW, progress=False)

    assert out.status == "ok" and out.inserted == 6
    assert completeness.unexplained_records(lake) == []
    statuses = [r["status"] for r in tables.read(lake, tables.GAPS, time_column="gap_start").to_pylist()]
    assert sorted(statuses) == ["closed", "unexplained"]                     # versioned, never deleted
    (latest,) = completeness.latest_records(lake)
    assert latest["answer"] == f"filled by sync at {NOW.isoformat()}"


def test_sources_that_vouch_for_nothing_are_never_incomplete(lake):
    (out,) = backfill(FakeSource(candles(n=6), page_limit=50), lake, PAIRS, now=NOW, progress=False)
    assert out.status == "ok" and completeness.latest_records(lake) == []


def test_a_vouched_candle_not_closed_yet_is_not_required(lake):
    (out,) = backfill(ListingSource(candles(n=12), page_limit=50, vouched=(12,)), lake, PAIRS, now=NOW,
                      progress=False)
    assert out.status == "ok"
