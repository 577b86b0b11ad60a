"""A backfill through the replay venue's faults ends with exactly the candles of a clean backfill:
transient faults and damaged pages are retried under the one policy (waiting what the provider asked),
a page still empty or short after every retry is an unexplained gap (never `ok`) that a later fetch
closes, bad answers fail only their series with an error naming provider, series and request, and a
rerun completes what a failure left undone. No test races the clock (see conftest)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from coinline.datasets.canonical import committed_corrections, series_candles
from coinline.datasets.materialize import DatasetSpec, refuse_unexplained_gaps
from coinline.datasets.status import coverage
from coinline.errors import QualityGateError
from coinline.ingest import completeness, gaps
from coinline.ingest.backfill import backfill
from coinline.ingest.sync import sync
from coinline.lake import tables
from coinline.providers.base import SeriesKey
from coinline.providers.http import Gateway, RetryPolicy, backoff_delay
from coinline.providers.kraken import KrakenOHLCSource, kraken_client

from .conftest import (
    HISTORY_DAYS,
    NOW,
    PAGE_LIMIT,
    PAIRS,
    UNIVERSE,
    HeldAttempts,
    build_market,
    history_requests,
    history_target,
    lake_candles,
    new_lake,
    page_start,
    stored_keys,
)

BTC = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
SECOND_PAGE = page_start(1)
EXPONENTIAL = [backoff_delay(i, RetryPolicy()) for i in (1, 2)]   # what the gateway waits without a hint
ALL_ATTEMPTS = RetryPolicy().max_attempts
EVERY_WAIT = [backoff_delay(i, RetryPolicy()) for i in range(1, ALL_ATTEMPTS)]


def _series(table: pa.Table, symbol: str) -> pa.Table:
    return table.filter(pa.compute.equal(table["symbol"], symbol))


def _raw_rows(lake) -> int:
    return tables.read(lake, tables.RAW, columns=["open_time"]).num_rows


def test_clean_backfill_stores_every_closed_candle_of_the_venue(universe, clean_candles):
    market = build_market(universe)
    for symbol, quote, interval in PAIRS:
        got = _series(clean_candles, symbol)
        want = market.candles(symbol, quote, interval)
        assert got.num_rows == HISTORY_DAYS * 24
        for col in ("open_time", "open", "high", "low", "close", "volume", "trade_count"):
            assert got[col].equals(want[col]), (symbol, col)
        assert set(got["version"].to_pylist()) == {1}


# --------------------------------------------------------------------------------- transient faults

TRANSIENT = {
    # id: (arm the fault on BTC's second page, the waits the gateway must record)
    "429-burst-with-retry-after": (lambda f, where: f.rate_limit_burst(3, retry_after=7, path=where), [7.0] * 3),
    "5xx": (lambda f, where: f.server_errors(2, status=503, path=where), EXPONENTIAL),
    "timeouts": (lambda f, where: f.timeouts(2, path=where), EXPONENTIAL),   # never answered: see HeldAttempts
    "truncated-bodies": (lambda f, where: f.truncated_bodies(2, path=where), EXPONENTIAL),
    "html-502-page": (lambda f, where: f.html_error(2, status=502, path=where), EXPONENTIAL),
    "malformed-json": (lambda f, where: f.malformed_json(2, path=where), EXPONENTIAL),
    "empty-page": (lambda f, where: f.empty_pages(2, path=where), EXPONENTIAL),
    "short-page": (lambda f, where: f.short_pages(2, path=where), EXPONENTIAL),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_fault_mid_walk_is_retried_and_result_equals_clean_backfill(
        fault, venue, make_source, lake, sleeps, clean_candles):
    arm, expected_waits = TRANSIENT[fault]
    armed = arm(venue.faults, history_target("BTC", SECOND_PAGE))
    source = make_source(transport=HeldAttempts(armed) if armed.kind == "timeout" else None)

    outcomes = backfill(source, lake, PAIRS, now=NOW, progress=False)

    assert [o.status for o in outcomes] == ["ok"] * len(PAIRS), [o.message for o in outcomes]
    assert armed.remaining == 0 and armed.fired == len(expected_waits)
    assert sleeps == expected_waits                      # Retry-After honoured; otherwise exponential
    assert source.gateway.retries_made == len(expected_waits)
    second_page = [r for r in history_requests(venue, "BTC") if r["params"]["time_start"].startswith(
        f"{SECOND_PAGE:%Y-%m-%dT%H}") and r["fault"] is None]
    assert len(second_page) == 1                         # after the failed attempts, one got through
    assert lake_candles(lake).equals(clean_candles)
    assert _raw_rows(lake) == clean_candles.num_rows     # retries wrote nothing twice


# --------------------------------------------------------------------------------- page faults


@pytest.mark.parametrize("fault", ["duplicate_pages", "out_of_order"])
def test_duplicated_or_shuffled_pages_give_exactly_the_clean_candles(
        fault, venue, source, lake, sleeps, clean_candles):
    armed = getattr(venue.faults, fault)(100, path="/history")

    outcomes = backfill(source, lake, PAIRS, now=NOW, progress=False)

    assert [o.status for o in outcomes] == ["ok"] * len(PAIRS)
    assert armed.fired == 3 * len(PAIRS)               # every page of every series was affected
    assert sleeps == []                                  # nothing to retry: the data is still complete
    assert lake_candles(lake).equals(clean_candles)
    assert _raw_rows(lake) == clean_candles.num_rows     # no duplicate key stored, all version 1
    assert committed_corrections(lake).num_rows == 0


@pytest.mark.parametrize("fault", ["empty_pages", "short_pages"])
def test_a_page_empty_or_short_after_every_retry_is_an_unexplained_gap_that_a_rerun_closes(
        fault, venue, make_source, lake, sleeps, universe, clean_candles):
    getattr(venue.faults, fault)(ALL_ATTEMPTS, path=history_target("BTC", SECOND_PAGE))

    first = backfill(make_source(), lake, PAIRS, now=NOW, progress=False)

    by_symbol = {o.symbol: o for o in first}
    btc = by_symbol["BTC"]
    assert btc.status == "incomplete" and btc.inserted == PAGE_LIMIT     # never `ok`
    missing = HISTORY_DAYS * 24 - PAGE_LIMIT
    assert f"[{SECOND_PAGE.isoformat()}, {NOW.isoformat()}) up to {missing} candle(s)" in btc.message
    assert f"gave up after {ALL_ATTEMPTS} attempts: {fault.split('_')[0]} page" in btc.message
    assert sleeps == EVERY_WAIT                                          # retried under the one policy
    assert by_symbol["ETH"].status == by_symbol["TRX"].status == "ok"
    (record,) = completeness.unexplained_records(lake)
    assert (record["symbol"], record["gap_start"], record["gap_end"]) == ("BTC", SECOND_PAGE, NOW)
    assert record["missing_candles"] == missing and "listing of KRAKEN_SPOT_BTC_USD" in record["answer"]
    # named by `gaps` and `status`, and blocking a dataset that covers it
    (gap,) = gaps.detect(lake, BTC)
    assert (gap.status, gap.gap_start, gap.missing_candles) == ("unexplained", SECOND_PAGE.isoformat(), missing)
    assert {c.series: c.missing_candles for c in coverage(lake)}[BTC.label()] == missing
    spec = DatasetSpec(UNIVERSE, "1h", "coinapi", ("USD",))
    with pytest.raises(QualityGateError, match=f"unexplained gap.*{BTC.label()}"):
        refuse_unexplained_gaps(lake, universe, spec)
    refuse_unexplained_gaps(lake, universe, DatasetSpec(UNIVERSE, "1h", "coinapi", ("USD",), end=SECOND_PAGE))

    again = backfill(make_source(), lake, PAIRS, now=NOW, progress=False)   # the fault is spent

    assert [o.status for o in again] == ["ok"] * len(PAIRS)
    assert lake_candles(lake).equals(clean_candles)
    assert _raw_rows(lake) == clean_candles.num_rows
    assert completeness.unexplained_records(lake) == [] and gaps.detect(lake, BTC) == []
    (closed,) = [r for r in completeness.latest_records(lake) if r["symbol"] == "BTC"]
    assert closed["status"] == "closed" and closed["answer"] == f"filled by backfill at {NOW.isoformat()}"
    refuse_unexplained_gaps(lake, universe, spec)


def test_an_empty_first_page_leaves_no_silent_hole(venue, make_source, lake, clean_candles):
    """The issue's case: HTTP 200 with [] for the only page of a series: nothing stored, and still named."""
    venue.faults.empty_pages(ALL_ATTEMPTS, path=history_target("BTC", page_start(0)))

    (btc,) = backfill(make_source(page_limit=100_000), lake, PAIRS[:1], now=NOW, progress=False)

    assert btc.status == "incomplete" and btc.inserted == 0 and btc.pages == 0
    assert stored_keys(lake) == []
    assert [c.series for c in coverage(lake)] == [BTC.label()]       # listed though it holds no candle
    (gap,) = gaps.detect(lake, BTC)
    assert (gap.gap_start, gap.gap_end) == (page_start(0).isoformat(), NOW.isoformat())
    assert gap.missing_candles == HISTORY_DAYS * 24


# --------------------------------------------------------------------------------- non-transient faults

PERMANENT = {
    "html-200-page": (lambda f, where: f.html_error(1, status=200, path=where), "HTML page instead of JSON"),
    "malformed-json-every-time": (lambda f, where: f.malformed_json(ALL_ATTEMPTS, path=where),
                                  f"gave up after {ALL_ATTEMPTS} attempts: malformed JSON"),
}


@pytest.mark.parametrize("fault", list(PERMANENT))
def test_bad_answer_fails_only_its_series_naming_the_request_and_a_rerun_completes(
        fault, venue, make_source, lake, sleeps, clean_candles):
    arm, what = PERMANENT[fault]
    arm(venue.faults, history_target("BTC", SECOND_PAGE))

    first = backfill(make_source(), lake, PAIRS, now=NOW, progress=False)

    by_symbol = {o.symbol: o for o in first}
    failed = by_symbol["BTC"]
    assert failed.status == "error"
    assert what in failed.message
    assert "provider=coinapi" in failed.message
    assert f"series={BTC.label()}" in failed.message
    assert "request=GET /v1/ohlcv/KRAKEN_SPOT_BTC_USD/history?" in failed.message
    assert f"time_start={SECOND_PAGE:%Y-%m-%dT%H}%3A00%3A00Z" in failed.message
    retried = "every-time" in fault                     # damaged: retried to the limit; HTML: never
    assert sleeps == (EVERY_WAIT if retried else [])
    assert len([r for r in history_requests(venue, "BTC") if r["fault"]]) == (ALL_ATTEMPTS if retried else 1)
    # the page committed before the failure and the other series are intact
    assert series_candles(lake, BTC).equals(_series(clean_candles, "BTC").slice(0, PAGE_LIMIT))
    assert by_symbol["ETH"].status == by_symbol["TRX"].status == "ok"
    others = lake_candles(lake).filter(pa.compute.not_equal(lake_candles(lake)["symbol"], "BTC"))
    assert others.equals(clean_candles.filter(pa.compute.not_equal(clean_candles["symbol"], "BTC")))

    before = len(history_requests(venue))
    again = backfill(make_source(), lake, PAIRS, now=NOW, progress=False)

    assert [o.status for o in again] == ["ok"] * len(PAIRS)
    rerun = history_requests(venue)[before:]
    assert [r["params"]["time_start"][:13] for r in rerun] == [  # resumes at the failed page, no refetch
        f"{page_start(1):%Y-%m-%dT%H}", f"{page_start(2):%Y-%m-%dT%H}"]
    assert sum(o.duplicates for o in again) == 0
    assert lake_candles(lake).equals(clean_candles)
    assert _raw_rows(lake) == clean_candles.num_rows


# --------------------------------------------------------------------------------- listing


def test_pairs_the_venue_does_not_list_are_explicit_not_listed_outcomes(venue, source, lake):
    pairs = [("BTC", "USD", "1h"), ("TRX", "CAD", "1h"), ("TRX", "USDC", "1h")]

    outcomes = backfill(source, lake, pairs, now=NOW, progress=False)

    assert [(o.symbol, o.quote, o.status) for o in outcomes] == [
        ("BTC", "USD", "ok"), ("TRX", "CAD", "not-listed"), ("TRX", "USDC", "not-listed")]
    assert "KRAKEN does not list TRX/CAD" in outcomes[1].message
    assert "KRAKEN_SPOT_TRX_CAD" in outcomes[1].message
    assert history_requests(venue, "TRX") == []
    assert [k.symbol for k, *_ in tables.series_in(lake)] == ["BTC"]


# --------------------------------------------------------------------------------- late revisions


def test_late_revision_is_versioned_once_with_a_correction_log_entry(market, venue, make_source, lake):
    pairs = PAIRS[:2]
    backfill(make_source(page_limit=100_000), lake, pairs, now=NOW, progress=False)
    revised_at = NOW - timedelta(hours=5)
    revision = market.revise("BTC", "USD", "1h", revised_at, factor=1.02)
    later = NOW + timedelta(hours=3, minutes=10)
    market.set_now(later)                                # three more candles close

    outcomes = sync(make_source(), lake, pairs, now=later, lookback=24, progress=False)

    assert [(o.symbol, o.inserted, o.revised) for o in outcomes] == [("BTC", 3, 1), ("ETH", 3, 0)]
    corrections = committed_corrections(lake).to_pylist()
    assert len(corrections) == 1
    (entry,) = corrections
    assert (entry["symbol"], entry["quote"], entry["interval"]) == ("BTC", "USD", "1h")
    assert entry["open_time"] == revised_at
    assert (entry["old_version"], entry["new_version"]) == (1, 2)
    assert (entry["old_close"], entry["new_close"]) == (revision.old_close, revision.new_close)
    assert entry["new_close"] != entry["old_close"]
    assert entry["reason"] == "revised"
    assert entry["detected_at"] == later
    assert entry["batch_id"] in outcomes[0].batches

    btc = series_candles(lake, BTC)
    at = btc.filter(pa.compute.equal(btc["open_time"], pa.scalar(revised_at, btc["open_time"].type)))
    assert at["close"].to_pylist() == [revision.new_close]
    assert at["version"].to_pylist() == [2]
    versions = np.asarray(btc["version"])
    assert (versions == 1).sum() == btc.num_rows - 1
    assert btc.num_rows == HISTORY_DAYS * 24 + 3

    raw_version = tables.open_table(lake, tables.RAW).version()
    requests = len(venue.requests)
    again = sync(make_source(), lake, pairs, now=later, lookback=24, progress=False)

    assert [(o.inserted, o.revised, o.pages) for o in again] == [(0, 0, 0), (0, 0, 0)]
    assert [r for r in venue.requests[requests:] if r["path"].endswith("/history")] == []  # nothing closed
    assert tables.open_table(lake, tables.RAW).version() == raw_version
    assert committed_corrections(lake).num_rows == 1


# --------------------------------------------------------------------------------- Kraken: the same policy


def _kraken(venue, universe, sleeps) -> KrakenOHLCSource:
    gateway = Gateway("kraken", kraken_client(venue.kraken_url, timeout=None), policy=RetryPolicy(), sleep=sleeps)
    return KrakenOHLCSource(gateway, universe=universe, clock=lambda: NOW)


KRAKEN_BTC = [("BTC", "USD", "1h")]
KRAKEN_FAULTS = ["malformed_json", "duplicate_pages", "out_of_order", "empty_pages", "short_pages"]


@pytest.mark.parametrize("fault", KRAKEN_FAULTS)
def test_kraken_damaged_pages_are_retried_like_coinapi_and_then_succeed(fault, venue, universe, sleeps, tmp_path):
    clean_lake = new_lake(tmp_path / "clean")
    (clean,) = sync(_kraken(venue, universe, sleeps), clean_lake, KRAKEN_BTC, now=NOW, progress=False)
    assert clean.status == "ok" and clean.inserted == 719 and sleeps == []
    armed = getattr(venue.faults, fault)(2, provider="kraken", path="/OHLC")
    lake = new_lake(tmp_path / "faulty")
    source = _kraken(venue, universe, sleeps)

    (outcome,) = sync(source, lake, KRAKEN_BTC, now=NOW, progress=False)

    assert outcome.status == "ok", outcome.message
    assert armed.fired == 2 and sleeps == EXPONENTIAL and source.gateway.retries_made == 2
    assert lake_candles(lake).equals(lake_candles(clean_lake))


def test_kraken_page_empty_after_every_retry_is_an_unexplained_gap_closed_by_the_next_sync(
        venue, universe, sleeps, lake):
    venue.faults.empty_pages(ALL_ATTEMPTS, provider="kraken", path="/OHLC")

    (first,) = sync(_kraken(venue, universe, sleeps), lake, KRAKEN_BTC, now=NOW, progress=False)

    assert first.status == "incomplete" and "empty page" in first.message and "last=" in first.message
    assert sleeps == EVERY_WAIT
    (record,) = completeness.unexplained_records(lake)
    assert (record["source"], record["symbol"], record["gap_end"]) == ("kraken", "BTC", NOW)

    (again,) = sync(_kraken(venue, universe, sleeps), lake, KRAKEN_BTC, now=NOW, progress=False)

    assert again.status == "ok" and again.inserted == 719
    assert completeness.unexplained_records(lake) == []
