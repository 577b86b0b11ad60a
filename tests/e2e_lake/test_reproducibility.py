"""A dataset's identity is its content: the same candles give the same SHA-256 however they were
ingested (page size, duplicated or shuffled pages, series order, head after tail), a changed candle
gives a different one, and a dataset altered after materialization is refused on load."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coinline.datasets.materialize import DatasetSpec, load_dataset, materialize
from coinline.errors import QualityGateError
from coinline.ingest.backfill import SeriesOutcome, backfill, ingest_range
from coinline.ingest.sync import sync
from coinline.replay import ReplayServer

from .conftest import NOW, UNIVERSE, SleepRecorder, build_market, build_source, lake_candles, new_lake

HISTORY_DAYS = 10                    # 240 candles per series: a page limit of 97 needs 3 pages
PAIRS = [("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("TRX", "USD", "1h")]
SPEC = DatasetSpec(UNIVERSE, "1h", "coinapi", ("USD",))   # USD series have no gaps: gap_tolerance 0 holds


@pytest.fixture
def market(universe):
    return build_market(universe, history_days=HISTORY_DAYS)


def _materialize(lake, universe, spec: DatasetSpec = SPEC, now=NOW):
    return materialize(lake, universe, spec, gap_tolerance=0, now=now)


@pytest.fixture(scope="module")
def clean(universe, tmp_path_factory):
    """The reference: one fault-free backfill with CoinAPI's maximum page size, materialized."""
    with ReplayServer(build_market(universe, history_days=HISTORY_DAYS)) as server:
        src = build_source(server, universe, SleepRecorder(), page_limit=100_000)
        lake = new_lake(tmp_path_factory.mktemp("repro-clean") / "lake")
        assert {o.status for o in backfill(src, lake, PAIRS, now=NOW, progress=False)} == {"ok"}
        src.gateway.client.close()
    return lake, _materialize(lake, universe)


def test_reference_dataset_holds_every_candle_of_every_series(clean):
    _lake, dataset = clean
    assert dataset.row_count == len(PAIRS) * HISTORY_DAYS * 24
    assert dataset.series_count == len(PAIRS)
    assert [s["rows"] for s in dataset.manifest["series"]] == [HISTORY_DAYS * 24] * len(PAIRS)


def test_hash_is_the_same_with_small_pages_and_duplicated_shuffled_pages(
        venue, make_source, tmp_path, universe, clean):
    # one page fault per request: BTC pages duplicated, ETH pages shuffled, TRX one then the others
    venue.faults.duplicate_pages(100, path="KRAKEN_SPOT_BTC_USD/history")
    venue.faults.out_of_order(100, path="KRAKEN_SPOT_ETH_USD/history")
    venue.faults.duplicate_pages(1, path="KRAKEN_SPOT_TRX_USD/history")
    venue.faults.out_of_order(100, path="KRAKEN_SPOT_TRX_USD/history")
    lake = new_lake(tmp_path / "lake")

    outcomes = backfill(make_source(page_limit=97), lake, PAIRS, now=NOW, progress=False)

    assert [o.pages for o in outcomes] == [3] * len(PAIRS)
    assert sum(o.duplicates for o in outcomes) > 0                   # the faults really fired
    fired = [(f["kind"], f["target"].split("_SPOT_")[1][:3]) for f in venue.faults.fired]
    assert fired == [("duplicate", "BTC")] * 3 + [("out_of_order", "ETH")] * 3 + [
        ("duplicate", "TRX")] + [("out_of_order", "TRX")] * 2
    dataset = _materialize(lake, universe)
    assert dataset.content_hash == clean[1].content_hash
    assert dataset.dataset_id == clean[1].dataset_id


def test_hash_is_the_same_when_series_and_ranges_arrive_in_another_order(
        make_source, tmp_path, universe, clean):
    source = make_source(page_limit=100_000)
    lake = new_lake(tmp_path / "lake")
    mid = NOW - timedelta(days=HISTORY_DAYS // 2)
    for symbol, quote, interval in reversed(PAIRS):
        ref = source.resolve(symbol, quote, interval)
        tail = SeriesOutcome(ref.key.label(), symbol, quote, interval, "ok")
        ingest_range(source, lake, ref, mid, NOW, tail, now=NOW)          # the newer half first ...
        assert tail.inserted == HISTORY_DAYS * 12
    heads = backfill(source, lake, list(reversed(PAIRS)), now=NOW, progress=False)   # ... then the head

    assert [o.inserted for o in heads] == [HISTORY_DAYS * 12] * len(PAIRS)
    assert all(o.duplicates == 0 for o in heads)
    assert lake_candles(lake).equals(lake_candles(clean[0]))
    assert _materialize(lake, universe).content_hash == clean[1].content_hash


def test_same_inputs_twice_give_an_identical_content_hash_and_data(make_source, tmp_path, universe, clean):
    lake = new_lake(tmp_path / "lake")
    backfill(make_source(page_limit=100_000), lake, PAIRS, now=NOW, progress=False)

    dataset = _materialize(lake, universe)

    reference = clean[0].read_json(f"datasets/{clean[1].dataset_id}/manifest.json")
    manifest = lake.read_json(f"datasets/{dataset.dataset_id}/manifest.json")
    assert manifest["content_hash"] == reference["content_hash"]
    assert manifest["dataset_id"] == reference["dataset_id"]
    assert manifest["series"] == reference["series"] and manifest["row_count"] == reference["row_count"]
    assert (lake.read_bytes(f"datasets/{dataset.dataset_id}/data.parquet")
            == clean[0].read_bytes(f"datasets/{clean[1].dataset_id}/data.parquet"))


def test_a_revised_candle_changes_the_hash_and_nothing_else_does(market, make_source, tmp_path, universe, clean):
    lake = new_lake(tmp_path / "lake")
    backfill(make_source(page_limit=100_000), lake, PAIRS, now=NOW, progress=False)
    window = DatasetSpec(UNIVERSE, "1h", "coinapi", ("USD",), end=NOW)   # the candles closed by NOW
    before = _materialize(lake, universe, window)
    assert before.content_hash == clean[1].content_hash

    later = NOW + timedelta(hours=2)
    market.set_now(later)
    sync(make_source(), lake, PAIRS, now=later, lookback=24, progress=False)   # new candles, no revision
    unchanged = _materialize(lake, universe, window, now=later)
    assert unchanged.content_hash == before.content_hash

    revision = market.revise("ETH", "USD", "1h", NOW - timedelta(hours=4), factor=0.99)
    market.set_now(later + timedelta(hours=1))
    (_, eth, _) = sync(make_source(), lake, PAIRS, now=later + timedelta(hours=1), lookback=24, progress=False)
    assert eth.revised == 1
    revised = _materialize(lake, universe, window, now=later)

    assert revised.content_hash != before.content_hash
    assert revised.row_count == before.row_count
    assert revised.manifest["inputs"]["corrections_applied"] == 1
    data, _ = load_dataset(lake, revised.dataset_id)
    at = data.filter(pa.compute.and_(pa.compute.equal(data["symbol"], "ETH"), pa.compute.equal(
        data["open_time"], pa.scalar(NOW - timedelta(hours=4), data["open_time"].type))))
    assert at["close"].to_pylist() == [revision.new_close]


def test_load_with_verify_refuses_a_dataset_whose_data_was_altered(clean):
    lake, dataset = clean
    data, manifest = load_dataset(lake, dataset.dataset_id, verify=True)
    assert data.num_rows == dataset.row_count and manifest["content_hash"] == dataset.content_hash

    path = lake.path(f"datasets/{dataset.dataset_id}/data.parquet")
    original = lake.read_bytes(f"datasets/{dataset.dataset_id}/data.parquet")
    close = data["close"].to_pylist()
    close[100] = close[100] * 1.0001
    pq.write_table(data.set_column(data.schema.get_field_index("close"), "close", pa.array(close)), path)
    try:
        with pytest.raises(QualityGateError, match="content hash mismatch"):
            load_dataset(lake, dataset.dataset_id, verify=True)
        tampered, _ = load_dataset(lake, dataset.dataset_id, verify=False)
        assert tampered["close"][100].as_py() == close[100]
    finally:
        lake.write_bytes(f"datasets/{dataset.dataset_id}/data.parquet", original)  # module fixture: restore
