"""Content hashes depend on rows and their order only, never on chunking or file bytes."""

import pyarrow as pa

from coinline.hashing import table_sha256
from tests.fakes import candles


def test_same_rows_hash_the_same_however_chunked():
    t = candles(n=50)
    rechunked = pa.concat_tables([t.slice(0, 7), t.slice(7, 30), t.slice(37)])
    assert rechunked.column(0).num_chunks == 3
    assert table_sha256(t) == table_sha256(rechunked)


def test_any_changed_value_changes_the_hash():
    t = candles(n=5)
    close = t["close"].to_pylist()
    close[3] += 1e-9
    changed = t.set_column(t.schema.get_field_index("close"), "close", pa.array(close))
    assert table_sha256(t) != table_sha256(changed)


def test_row_order_is_part_of_the_hash_and_negative_zero_is_canonical():
    t = pa.table({"x": pa.array([0.0, 1.0])})
    assert table_sha256(t) == table_sha256(pa.table({"x": pa.array([-0.0, 1.0])}))
    assert table_sha256(t) != table_sha256(pa.table({"x": pa.array([1.0, 0.0])}))


def test_null_and_zero_trade_counts_differ():
    a = pa.table({"n": pa.array([0, 1], pa.int64())})
    b = pa.table({"n": pa.array([None, 1], pa.int64())})
    assert table_sha256(a) != table_sha256(b)
