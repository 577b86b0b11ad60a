"""Materialization in proportion to what changed: a build after new candles starts from the previous dataset of
the same spec and re-derives only the series that changed, and still gives exactly the dataset a full rebuild
from scratch gives (same hash, same id, byte-identical data); the quality gate still catches what it caught."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coinline.datasets.materialize import DatasetSpec, load_dataset, materialize
from coinline.errors import QualityGateError
from coinline.ingest.backfill import backfill
from coinline.ingest.sync import sync
from coinline.ingest.writer import commit_candles
from coinline.providers.base import SeriesKey, candle_table
from coinline.replay import ReplayServer

from .conftest import NOW, UNIVERSE, SleepRecorder, build_market, build_source, new_lake

HISTORY_DAYS = 10
PAIRS = [("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("TRX", "USD", "1h")]
LABELS = [f"coinapi:KRAKEN:{s}-USD:1h" for s in ("BTC", "ETH", "TRX")]
SPEC = DatasetSpec(UNIVERSE, "1h", "coinapi", ("USD",))
BTC = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
ETH = SeriesKey("coinapi", "KRAKEN", "ETH", "USD", "1h")


@pytest.fixture
def market(universe):
    return build_market(universe, history_days=HISTORY_DAYS)


@pytest.fixture
def based(make_source, tmp_path, universe):
    """A backfilled lake and its first (full) dataset."""
    lake = new_lake(tmp_path / "lake")
    assert {o.status for o in backfill(make_source(page_limit=100_000), lake, PAIRS, now=NOW, progress=False)} == {"ok"}
    first = build(lake, universe)
    assert first.manifest["build"]["mode"] == "full"
    return lake, first


def build(lake, universe, now=NOW, **kw):
    return materialize(lake, universe, SPEC, gap_tolerance=kw.pop("gap_tolerance", 0), now=now, **kw)


def data_bytes(lake, dataset) -> bytes:
    return lake.read_bytes(f"datasets/{dataset.dataset_id}/data.parquet")


def test_a_build_after_new_candles_equals_a_full_rebuild_from_scratch(market, make_source, based, universe,
                                                                       tmp_path):
    lake, first = based
    later = NOW + timedelta(hours=3)
    market.set_now(later)
    assert [o.inserted for o in sync(make_source(), lake, PAIRS, now=later, lookback=24, progress=False)] == [3] * 3

    grown = build(lake, universe, later)
    assert grown.manifest["build"] == {"mode": "incremental", "base": first.dataset_id, "series_reused": 0,
                                       "series_appended": 3, "series_rebuilt": 0}
    assert grown.row_count == first.row_count + 9 and grown.content_hash != first.content_hash
    assert grown.manifest["quality"]["suite"] == "candles.canonical.invariants"
    stored = data_bytes(lake, grown)

    fresh = build_market(universe, history_days=HISTORY_DAYS)     # from scratch: the same market, at `later`
    fresh.set_now(later)
    with ReplayServer(fresh) as server:
        src = build_source(server, universe, SleepRecorder(), page_limit=100_000)
        scratch = new_lake(tmp_path / "scratch")
        assert {o.status for o in backfill(src, scratch, PAIRS, now=later, progress=False)} == {"ok"}
        src.gateway.client.close()
    rebuilt = build(scratch, universe, later)
    assert rebuilt.manifest["build"]["mode"] == "full"
    assert (rebuilt.dataset_id, rebuilt.content_hash, rebuilt.row_count) == (
        grown.dataset_id, grown.content_hash, grown.row_count)
    assert data_bytes(scratch, rebuilt) == stored
    assert rebuilt.manifest["series"] == grown.manifest["series"]

    again = build(lake, universe, later, full=True)                    # a full rebuild in the same lake
    assert again.manifest["build"]["mode"] == "full" and again.content_hash == grown.content_hash
    assert data_bytes(lake, again) == stored
    table, manifest = load_dataset(lake, grown.dataset_id, verify=True)
    assert table.num_rows == grown.row_count and manifest["data_sha256"] == again.manifest["data_sha256"]


def test_a_revised_candle_rebuilds_only_its_series(market, make_source, based, universe):
    lake, first = based
    market.revise("ETH", "USD", "1h", NOW - timedelta(hours=4), factor=0.99)
    later = NOW + timedelta(hours=1)
    market.set_now(later)
    (btc, eth, trx) = sync(make_source(), lake, PAIRS, now=later, lookback=24, progress=False)
    assert eth.revised == 1 and (btc.inserted, eth.inserted, trx.inserted) == (1, 1, 1)

    grown = build(lake, universe, later)
    assert grown.manifest["build"] == {"mode": "incremental", "base": first.dataset_id, "series_reused": 0,
                                       "series_appended": 2, "series_rebuilt": 1}
    full = build(lake, universe, later, full=True)
    assert (full.content_hash, full.row_count) == (grown.content_hash, grown.row_count)


def test_nothing_new_finds_the_same_dataset_without_rewriting_its_data(based, universe, monkeypatch):
    lake, first = based
    written: list[str] = []
    original = lake.write_bytes
    monkeypatch.setattr(lake, "write_bytes", lambda name, data: (written.append(name), original(name, data)))

    same = build(lake, universe)
    assert (same.dataset_id, same.content_hash) == (first.dataset_id, first.content_hash)
    assert same.manifest["build"]["series_reused"] == 3 and same.manifest["build"]["mode"] == "incremental"
    assert not [n for n in written if n.endswith("data.parquet")]
    assert load_dataset(lake, same.dataset_id, verify=True)[0].num_rows == first.row_count


def test_a_base_whose_data_was_altered_is_not_used(based, universe):
    lake, first = based
    table, _ = load_dataset(lake, first.dataset_id)
    close = table["close"].to_pylist()
    close[5] *= 1.01
    path = lake.path(f"datasets/{first.dataset_id}/data.parquet")
    pq.write_table(table.set_column(table.schema.get_field_index("close"), "close", pa.array(close)), path)

    again = build(lake, universe)
    assert again.manifest["build"]["mode"] == "full"
    assert again.content_hash == first.content_hash          # rebuilt from raw: the true rows again
    assert load_dataset(lake, again.dataset_id, verify=True)[0].num_rows == first.row_count


def candle(key: SeriesKey, at: datetime, *, high: float = 101.0) -> pa.Table:
    ms = int(at.timestamp() * 1000)
    return candle_table(key, [ms], [100.0], [high], [99.0], [100.5], [1.0], [3])


def test_a_hole_or_a_bad_candle_in_new_batches_is_still_caught(based, universe):
    lake, _first = based
    committed = datetime(2026, 6, 2, tzinfo=UTC)
    commit_candles(lake, candle(BTC, NOW + timedelta(hours=2)), key=BTC, request={"test": "hole"}, now=committed)
    with pytest.raises(QualityGateError, match=r"gaps\.within_tolerance.*BTC-USD"):
        build(lake, universe, committed)                              # two hours missing before the new one
    ok = build(lake, universe, committed, gap_tolerance=2)
    assert ok.manifest["build"]["series_appended"] == 1 and ok.manifest["quality"]["success"]

    commit_candles(lake, candle(ETH, NOW, high=90.0), key=ETH, request={"test": "ohlc"}, now=committed)
    with pytest.raises(QualityGateError, match="raw quality suite"):
        build(lake, universe, committed, gap_tolerance=2)


def test_series_whose_files_were_compacted_are_rebuilt_from_raw(market, make_source, based, universe):
    from coinline.lake import tables
    from coinline.lake.maintain import maintain

    lake, first = based
    later = NOW + timedelta(hours=2)
    market.set_now(later)
    sync(make_source(), lake, PAIRS, now=later, lookback=24, progress=False)
    before = set(tables.file_index(lake, tables.RAW, first.manifest["inputs"]["raw_candles_version"])["path"].to_pylist())
    maintain(lake, now=later, retention_hours=0)                        # two files per series -> one
    assert not before & set(tables.file_index(lake, tables.RAW)["path"].to_pylist())

    grown = build(lake, universe, later)
    assert grown.manifest["build"] == {"mode": "incremental", "base": first.dataset_id, "series_reused": 0,
                                       "series_appended": 0, "series_rebuilt": 3}
    full = build(lake, universe, later, full=True)
    assert (full.content_hash, full.row_count) == (grown.content_hash, first.row_count + 6)
