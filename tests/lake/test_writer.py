"""The writer: idempotent appends, versions plus correction-log entries, closed candles only."""

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from coinline.datasets.canonical import committed_corrections, series_candles
from coinline.errors import BadDataError
from coinline.ingest.writer import commit_candles
from coinline.lake import open_lake, tables
from coinline.providers.base import SeriesKey, candle_table
from tests.fakes import KEY, T0, candles

NOW = T0 + timedelta(days=30)



def test_recommitting_the_same_page_adds_nothing(lake):
    first = commit_candles(lake, candles(n=24), key=KEY, request={}, now=NOW)
    again = commit_candles(lake, candles(n=24), key=KEY, request={}, now=NOW)
    assert (first.inserted, again.inserted, again.duplicates) == (24, 0, 24)
    assert again.table_version is None
    assert series_candles(lake, KEY).num_rows == 24


def test_revised_candle_becomes_new_version_with_correction_entry(lake):
    commit_candles(lake, candles(n=5), key=KEY, request={}, now=NOW)
    revised = candles(n=5, price=100.0)
    close = revised["close"].to_numpy().copy()
    close[2] *= 1.01
    revised = revised.set_column(revised.schema.get_field_index("close"), "close", pa.array(close))
    result = commit_candles(lake, revised, key=KEY, request={"why": "late"}, now=NOW)
    assert (result.inserted, result.revised, result.duplicates) == (0, 1, 4)
    view = series_candles(lake, KEY)
    assert view["close"].to_numpy()[2] == pytest.approx(close[2])
    assert view["version"].to_pylist() == [1, 1, 2, 1, 1]
    log = committed_corrections(lake).to_pylist()
    assert len(log) == 1
    entry = log[0]
    assert (entry["old_version"], entry["new_version"], entry["reason"]) == (1, 2, "revised")
    assert entry["old_close"] == pytest.approx(102.5) and entry["new_close"] == pytest.approx(close[2])
    assert entry["batch_id"] == result.batch_id


def test_candles_not_yet_closed_are_not_stored(lake):
    now = T0 + timedelta(hours=3, minutes=30)  # candles 0..2 closed, candle 3 is open
    result = commit_candles(lake, candles(n=4), key=KEY, request={}, now=now)
    assert (result.inserted, result.not_closed) == (3, 1)


def test_conflicting_duplicates_in_one_page_keep_the_later_and_log_the_earlier(lake):
    page = candles(n=3)
    later = candles(n=1, price=500.0)
    result = commit_candles(lake, pa.concat_tables([page, later]), key=KEY, request={}, now=NOW)
    assert result.inserted == 3
    assert series_candles(lake, KEY)["open"].to_pylist()[0] == 500.0
    (entry,) = committed_corrections(lake).to_pylist()
    assert entry["reason"] == "conflict-in-batch" and entry["old_open"] == 100.0


def test_page_of_another_series_is_refused(lake):
    other = SeriesKey("fake", "FAKEX", "ETH", "USD", "1h")
    with pytest.raises(BadDataError, match="symbol"):
        commit_candles(lake, candles(other, n=2), key=KEY, request={}, now=NOW)


def test_out_of_order_and_duplicated_pages_give_the_same_canonical_rows(lake, tmp_path):
    rows = candles(n=20)
    shuffled = rows.take(pa.array(np.random.default_rng(1).permutation(20)))
    other = open_lake(f"file://{tmp_path}/other")
    tables.ensure_tables(other)
    commit_candles(lake, rows, key=KEY, request={}, now=NOW)
    commit_candles(other, shuffled.slice(0, 12), key=KEY, request={}, now=NOW)
    commit_candles(other, pa.concat_tables([shuffled.slice(8), shuffled.slice(0, 3)]), key=KEY, request={}, now=NOW)
    cols = ["open_time", "open", "high", "low", "close", "volume", "trade_count"]
    assert series_candles(lake, KEY).select(cols).equals(series_candles(other, KEY).select(cols))


def test_batch_manifest_is_committed_with_the_rows(lake):
    result = commit_candles(lake, candles(n=6), key=KEY, request={"endpoint": "/x", "limit": 6}, now=NOW)
    (manifest,) = tables.commit_manifests(lake, tables.RAW)
    assert manifest["batch_id"] == result.batch_id
    assert manifest["request"] == {"endpoint": "/x", "limit": 6}
    assert manifest["row_count"] == 6 and len(manifest["content_hash"]) == 64
    assert manifest["time_range"] == [T0.isoformat(), (T0 + timedelta(hours=6)).isoformat()]


def test_corrections_of_a_batch_that_never_committed_stay_invisible(lake, monkeypatch):
    commit_candles(lake, candles(n=3), key=KEY, request={}, now=NOW)
    real_append = tables.append

    def crash_on_raw(lk, name, data, metadata):
        if name == tables.RAW:
            raise KeyboardInterrupt("killed between the correction log and the raw commit")
        return real_append(lk, name, data, metadata)

    monkeypatch.setattr(tables, "append", crash_on_raw)
    with pytest.raises(KeyboardInterrupt):
        commit_candles(lake, candles(n=3, price=300.0), key=KEY, request={}, now=NOW)
    monkeypatch.setattr(tables, "append", real_append)
    assert committed_corrections(lake).num_rows == 0
    assert series_candles(lake, KEY)["open"].to_pylist() == [100.0, 101.0, 102.0]
    # the rerun of the killed page commits normally
    rerun = commit_candles(lake, candles(n=3, price=300.0), key=KEY, request={}, now=NOW)
    assert rerun.revised == 3 and committed_corrections(lake).num_rows == 3


def test_invalid_prices_never_reach_the_lake():
    with pytest.raises(BadDataError, match="close is nan"):
        candle_table(KEY, [0], [1.0], [1.0], [1.0], [float("nan")], [1.0], where="GET /x")
