"""The writer: idempotent appends, versions plus correction-log entries, closed candles only."""

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from coinline.datasets.canonical import committed_corrections, series_candles
from coinline.errors import BadDataError, LeaseHeldError
from coinline.ingest import writer
from coinline.ingest.writer import NOTHING_STORED, UNKNOWN, CommitBuffer, commit_candles, stored_until
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

    def crash_on_raw(lk, name, data, metadata, **kwargs):
        if name == tables.RAW:
            raise KeyboardInterrupt("killed between the correction log and the raw commit")
        return real_append(lk, name, data, metadata, **kwargs)

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


# --------------------------------------------------------------------------------- batched commits


def _raw_version(lake) -> int:
    return tables.open_table(lake, tables.RAW).version()


def test_buffered_pages_are_one_commit_naming_every_page_and_invisible_before_it(lake):
    before = _raw_version(lake)
    buffer = CommitBuffer(lake)
    ids = [buffer.add(candles(start=T0 + timedelta(hours=8 * i), n=8), key=KEY, request={"page": i}, now=NOW)
           for i in range(3)]
    assert _raw_version(lake) == before and series_candles(lake, KEY).num_rows == 0   # nothing visible yet
    results = buffer.flush()
    assert [r.batch_id for r in results] == ids and [r.inserted for r in results] == [8, 8, 8]
    assert {r.table_version for r in results} == {before + 1} == {_raw_version(lake)}   # one commit
    manifests = tables.commit_manifests(lake, tables.RAW)
    assert [(m["batch_id"], m["request"], m["row_count"], m["table_version"]) for m in manifests] == [
        (ids[i], {"page": i}, 8, before + 1) for i in range(3)]
    assert [m["time_range"][0] for m in manifests] == [(T0 + timedelta(hours=8 * i)).isoformat() for i in range(3)]
    assert series_candles(lake, KEY).num_rows == 24 and buffer.pages == 0


def test_a_page_overlapping_an_earlier_one_in_the_same_commit_is_deduplicated_and_versioned(lake):
    buffer = CommitBuffer(lake)
    buffer.add(candles(n=10), key=KEY, request={}, now=NOW)
    overlap = candles(n=15).slice(5)                                 # hours 5..14, hour 7 revised
    close = overlap["close"].to_numpy().copy()
    close[2] += 1.0
    overlap = overlap.set_column(overlap.schema.get_field_index("close"), "close", pa.array(close))
    second = buffer.add(overlap, key=KEY, request={}, now=NOW)
    first_result, second_result = buffer.flush()
    assert (first_result.inserted, first_result.duplicates) == (10, 0)
    assert (second_result.inserted, second_result.revised, second_result.duplicates) == (5, 1, 4)
    view = series_candles(lake, KEY)
    assert view.num_rows == 15 and view["version"].to_pylist() == [1] * 7 + [2] + [1] * 7
    assert view["close"].to_numpy()[7] == pytest.approx(close[2])
    (entry,) = committed_corrections(lake).to_pylist()
    assert (entry["batch_id"], entry["old_version"], entry["new_version"]) == (second, 1, 2)


def test_pages_after_the_stored_end_read_nothing_and_overlaps_read_only_their_range(lake, monkeypatch):
    commit_candles(lake, candles(n=48), key=KEY, request={}, now=NOW)
    reads = []
    real_read = tables.read

    def counted(lk, name, **kw):
        reads.append((name, kw.get("start"), kw.get("end")))
        return real_read(lk, name, **kw)

    monkeypatch.setattr(tables, "read", counted)
    appended = commit_candles(lake, candles(n=72).slice(48), key=KEY, request={}, now=NOW)
    assert appended.inserted == 24 and reads == []                   # a pure append compares with nothing
    again = commit_candles(lake, candles(n=84).slice(60), key=KEY, request={}, now=NOW)
    assert (again.inserted, again.duplicates) == (12, 12)
    assert reads == [(tables.RAW, T0 + timedelta(hours=60), T0 + timedelta(hours=71, milliseconds=1))]
    assert series_candles(lake, KEY).num_rows == 84


def test_the_stored_end_is_read_from_the_log_at_the_commit_not_when_a_page_was_buffered(lake, tmp_path):
    buffer = CommitBuffer(lake)
    buffer.add(candles(n=12), key=KEY, request={}, now=NOW)
    other = open_lake(f"file://{tmp_path}/lake")       # another writer commits the same candles meanwhile
    assert commit_candles(other, candles(n=12), key=KEY, request={}, now=NOW).inserted == 12
    (result,) = buffer.flush()
    assert (result.inserted, result.duplicates, result.table_version) == (0, 12, None)
    assert series_candles(lake, KEY).num_rows == 12


def test_stored_until_is_the_last_stored_open_time_and_unknown_without_statistics(lake):
    assert stored_until(tables.file_index(lake, tables.RAW), KEY) == NOTHING_STORED
    commit_candles(lake, candles(n=5), key=KEY, request={}, now=NOW)
    commit_candles(lake, candles(start=T0 + timedelta(hours=5), n=5), key=KEY, request={}, now=NOW)
    index = tables.file_index(lake, tables.RAW)
    assert stored_until(index, KEY) == int((T0 + timedelta(hours=9)).timestamp() * 1000)
    assert stored_until(index, SeriesKey("fake", "FAKEX", "ETH", "USD", "1h")) == NOTHING_STORED
    no_stats = index.set_column(index.schema.get_field_index("max.open_time"), "max.open_time",
                                pa.array([None] + index["max.open_time"].to_pylist()[1:], index["max.open_time"].type))
    assert stored_until(no_stats, KEY) == UNKNOWN


def test_without_statistics_every_candle_is_compared(lake, monkeypatch):
    commit_candles(lake, candles(n=10), key=KEY, request={}, now=NOW)
    monkeypatch.setattr(writer, "stored_until", lambda index, key: UNKNOWN)
    result = commit_candles(lake, candles(n=12), key=KEY, request={}, now=NOW)
    assert (result.inserted, result.duplicates) == (2, 10)
    assert series_candles(lake, KEY).num_rows == 12


def test_pages_of_a_series_whose_lease_was_lost_are_dropped_not_written(lake):
    class Lost:
        def renew(self):
            raise LeaseHeldError("lease leases/x.json was taken over by other:1:x; stop writing")

    other = SeriesKey("fake", "FAKEX", "ETH", "USD", "1h")
    buffer = CommitBuffer(lake)
    buffer.add(candles(n=4), key=KEY, request={}, now=NOW, lease=Lost())
    buffer.add(candles(other, n=4), key=other, request={}, now=NOW)
    (kept,) = buffer.flush()
    assert kept.key == other and kept.inserted == 4
    assert "taken over" in buffer.lost[KEY]
    assert [k for k, *_ in tables.series_in(lake)] == [other]


def test_a_buffer_is_full_at_its_page_row_or_time_limit():
    now = [0.0]
    by_pages = CommitBuffer(None, max_pages=2, max_rows=100, max_seconds=60, clock=lambda: now[0])
    by_pages.add(candles(n=3), key=KEY, request={}, now=NOW)
    assert not by_pages.full()
    by_pages.add(candles(n=3), key=KEY, request={}, now=NOW)
    assert by_pages.full()
    by_rows = CommitBuffer(None, max_pages=10, max_rows=5, max_seconds=60, clock=lambda: now[0])
    by_rows.add(candles(n=5), key=KEY, request={}, now=NOW)
    assert by_rows.full()
    by_time = CommitBuffer(None, max_pages=10, max_rows=100, max_seconds=60, clock=lambda: now[0])
    assert not by_time.full()                                       # empty: never
    by_time.add(candles(n=1), key=KEY, request={}, now=NOW)
    now[0] = 59.0
    assert not by_time.full()
    now[0] = 60.0
    assert by_time.full() and by_time.discard(KEY) == 1 and not by_time.full()


def test_commits_written_before_batching_still_read_as_one_manifest_each(lake):
    raw = candles(n=2).append_column("version", pa.array([1, 1], pa.int32()))
    raw = raw.append_column("batch_id", pa.array(["old"] * 2)).append_column(
        "ingested_at", pa.array([NOW] * 2, tables.TS))
    tables.append(lake, tables.RAW, raw, {"batch_id": "old", "kind": "candles", "series": KEY.label(), "row_count": 2})
    buffer = CommitBuffer(lake)
    new = [buffer.add(candles(start=T0 + timedelta(hours=2 + i), n=1), key=KEY, request={}, now=NOW) for i in range(2)]
    buffer.flush()
    assert [(m["batch_id"], m["table_version"]) for m in tables.commit_manifests(lake, tables.RAW)] == [
        ("old", 1), (new[0], 2), (new[1], 2)]
    assert tables.page_manifests({"kind": "gaps"}) == [{"kind": "gaps"}] and tables.page_manifests("x") == []


def test_one_commit_of_many_pages_keeps_the_rows_of_each_series_in_page_order(lake):
    keys = [KEY, *(SeriesKey("fake", "FAKEX", s, "USD", "1h") for s in ("ETH", "SOL"))]
    buffer = CommitBuffer(lake)
    start = 0
    for n in (1,) * 8:   # delta-rs spreads the record batches of a table over its threads (measured: reordered)
        for key in keys:
            buffer.add(candles(key, start=T0 + timedelta(hours=start), n=n), key=key, request={}, now=T0 + timedelta(days=400))
        start += n
    buffer.flush()
    for key in keys:
        times = tables.read(lake, tables.RAW, series=key, columns=["open_time"])["open_time"].cast(pa.int64()).to_numpy()
        assert len(times) == start and (np.diff(times) > 0).all()
