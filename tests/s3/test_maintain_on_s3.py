"""`coinline maintain` on a real S3 server: compaction, a VACUUM that keeps what a pinned version reads (the
data files are listed and deleted through the object store), a log cleanup that loses no commit record, and a
second run that changes nothing."""

from datetime import timedelta

import pytest

from coinline.datasets.canonical import series_candles
from coinline.hashing import table_sha256
from coinline.ingest.writer import commit_candles
from coinline.lake import maintain as mt
from coinline.lake import tables
from tests.fakes import KEY, T0, candles

pytestmark = pytest.mark.s3
NOW = T0 + timedelta(days=30)


def test_maintain_on_s3_keeps_the_pinned_version_and_is_idempotent(s3_lake):
    day = candles(n=24 * 8)
    for i in range(4):
        commit_candles(s3_lake, day.slice(24 * i, 24), key=KEY, request={"day": i}, now=NOW)
    pinned = tables.open_table(s3_lake, tables.RAW).version()
    expected = table_sha256(series_candles(s3_lake, KEY, raw_version=pinned), ["open_time", "close", "version"])
    s3_lake.write_json("datasets/d1/manifest.json", {"dataset_id": "d1", "inputs": {
        "raw_candles_version": pinned, "corrections_version": 0, "known_gaps_version": 0}})
    for i in range(4, 8):
        commit_candles(s3_lake, day.slice(24 * i, 24), key=KEY, request={"day": i}, now=NOW)

    manifests = tables.commit_manifests(s3_lake, tables.RAW)
    first = mt.maintain(s3_lake, now=NOW, retention_hours=0)
    raw = next(t for t in first["tables"] if t["table"] == tables.RAW)
    # the log: cleaned through the object store, every commit's record archived, the pinned version checkpointed
    assert raw["log"]["entries_deleted"] > 0 and raw["log"]["pinned_checkpoints_written"] == [pinned]
    assert tables.commit_manifests(s3_lake, tables.RAW) == manifests
    assert (raw["before"]["active_files"], raw["after"]["active_files"]) == (8, 1)
    assert raw["vacuum"]["files"] == 4 and raw["vacuum"]["kept_for_pins"] == 4   # days 4-7 go; days 0-3 are pinned
    assert raw["after"]["stored_files"] == 1 + 4 == len(mt.stored_files(s3_lake, tables.RAW))
    got = table_sha256(series_candles(s3_lake, KEY, raw_version=pinned), ["open_time", "close", "version"])
    assert got == expected and series_candles(s3_lake, KEY).num_rows == 24 * 8
    second = mt.maintain(s3_lake, now=NOW + timedelta(hours=1), retention_hours=0)
    assert not second["changed"] and len(s3_lake.list(mt.RECORDS)) == 2
