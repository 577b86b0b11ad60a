"""`coinline doctor` on S3: a damaged newest log entry is named in one line when the table opens, and
repaired (quarantined, placeholder, rows re-committed) with every committed row back."""

from datetime import timedelta

import pytest

from coinline.datasets.canonical import series_candles
from coinline.doctor import doctor
from coinline.errors import DamagedTableError
from coinline.hashing import table_sha256
from coinline.ingest.writer import commit_candles
from coinline.lake import integrity, tables
from tests.fakes import KEY, T0, candles

pytestmark = pytest.mark.s3
NOW = T0 + timedelta(days=30)
VALUES = ["open_time", "open", "high", "low", "close", "volume", "trade_count", "version"]


def _content(lake) -> tuple[int, str]:
    rows = series_candles(lake, KEY)
    return rows.num_rows, table_sha256(rows, VALUES)


@pytest.mark.parametrize("cut", [0, 150])
def test_doctor_repairs_a_damaged_newest_entry_on_s3(s3_lake, cut):
    for i in range(3):
        commit_candles(s3_lake, candles(n=24, start=T0 + timedelta(hours=24 * i)), key=KEY, request={}, now=NOW)
    committed = _content(s3_lake)
    version = tables.open_table(s3_lake, tables.RAW).version()
    entry = integrity.entry_name(tables.RAW, version)
    s3_lake.write_bytes(entry, s3_lake.read_bytes(entry)[:cut])
    with pytest.raises(DamagedTableError, match=f"{version:020d}.json is .*coinline doctor"):
        _content(s3_lake)
    report = doctor(s3_lake, now=NOW, repair=True)
    assert report["healthy"] and report["problems"] == []
    assert _content(s3_lake) == committed
    assert doctor(s3_lake, now=NOW)["problems"] == []
