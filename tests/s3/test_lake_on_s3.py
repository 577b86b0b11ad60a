"""The lake on a real S3 server: Delta commits, create-only leases, datasets, all through one Lake."""

from datetime import timedelta

import pytest

from coinline.datasets.canonical import committed_corrections, series_candles
from coinline.errors import ConfigError, LeaseHeldError
from coinline.ingest.backfill import backfill
from coinline.ingest.sync import sync
from coinline.ingest.writer import commit_candles
from coinline.lake import open_lake, tables
from coinline.lake.lease import series_lease
from coinline.lake.store import AlreadyExists
from coinline.secrets import Secret
from tests.fakes import KEY, T0, FakeSource, candles

pytestmark = pytest.mark.s3
NOW = T0 + timedelta(days=2)


def test_commits_versions_and_corrections_round_trip_on_s3(s3_lake):
    commit_candles(s3_lake, candles(n=24), key=KEY, request={}, now=NOW)
    again = commit_candles(s3_lake, candles(n=24), key=KEY, request={}, now=NOW)
    assert again.inserted == 0
    result = commit_candles(s3_lake, candles(n=2, price=150.0), key=KEY, request={}, now=NOW)
    assert result.revised == 2
    view = series_candles(s3_lake, KEY)
    assert view.num_rows == 24 and view["open"].to_pylist()[:2] == [150.0, 151.0]
    assert committed_corrections(s3_lake).num_rows == 2
    assert [m["row_count"] for m in tables.commit_manifests(s3_lake, tables.RAW)] == [24, 2]


def test_a_backfill_and_a_sync_cycle_commit_once_each_on_s3(s3_lake):
    source = FakeSource(candles(n=30), page_limit=5)
    (out,) = backfill(source, s3_lake, [("BTC", "USD", "1h")], now=T0 + timedelta(hours=24), progress=False)
    assert (out.status, out.pages, out.inserted) == ("ok", 5, 24)
    assert tables.open_table(s3_lake, tables.RAW).version() == 1          # five pages, one commit
    (synced,) = sync(source, s3_lake, [("BTC", "USD", "1h")], now=T0 + timedelta(hours=26, minutes=10),
                     lookback=3, progress=False)
    assert (synced.inserted, synced.duplicates) == (2, 3)                 # the lookback compared, not re-added
    manifests = tables.commit_manifests(s3_lake, tables.RAW)
    assert [m["table_version"] for m in manifests] == [1] * 5 + [2] and sum(m["row_count"] for m in manifests) == 26
    assert series_candles(s3_lake, KEY).num_rows == 26 and s3_lake.list("leases") == []


def test_create_only_and_leases_are_exclusive_on_s3(s3_lake):
    s3_lake.create_only("objects/once.json", {"a": 1})
    with pytest.raises(AlreadyExists):
        s3_lake.create_only("objects/once.json", {"a": 2})
    assert s3_lake.read_json("objects/once.json") == {"a": 1}
    with series_lease(s3_lake, KEY):
        with pytest.raises(LeaseHeldError):
            with series_lease(s3_lake, KEY):
                pass


def test_wrong_credentials_are_a_clear_config_error_without_the_secret(s3_endpoint):
    with pytest.raises(ConfigError, match="OBJECT_STORE_SECRET_ACCESS_KEY") as info:
        open_lake("s3://coinline-test/denied", endpoint_url=s3_endpoint, access_key=Secret("minioadmin"),
                  secret_key=Secret("wrong-secret-4d1c"))
    assert "wrong-secret-4d1c" not in str(info.value)
