"""Content hashes over rows, never over file bytes (Parquet writer metadata varies between versions).

The encoding is canonical per column, in a fixed column order: name and type, then the values
(timestamps as int64 milliseconds, floats as IEEE-754 little-endian with -0.0 folded into 0.0,
integers with their validity mask, strings as a dictionary plus int32 codes). Two tables with the
same rows in the same order hash the same however they were chunked, batched or written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _column_bytes(col: pa.ChunkedArray | pa.Array) -> list[bytes]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    if pa.types.is_timestamp(t):
        # milliseconds already: the same int64 values, no cast (a page hashes 13 columns; casts dominated)
        arr = arr.view(pa.int64()) if t.unit == "ms" else arr.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        enc = pc.dictionary_encode(arr)
        words = enc.dictionary.to_pylist()
        codes = (enc.indices if arr.null_count == 0 else enc.indices.fill_null(-1)).to_numpy(
            zero_copy_only=False).astype("<i4")
        return ["\x1f".join(words).encode(), codes.tobytes()]
    full = arr.null_count == 0      # no nulls: all-valid mask, nothing to fill
    valid = b"\x01" * len(arr) if full else np.asarray(arr.is_valid(), dtype=np.uint8).tobytes()
    if pa.types.is_floating(t):
        values = (arr if full else arr.fill_null(0.0)).to_numpy(zero_copy_only=False).astype("<f8") + 0.0
        return [valid, values.tobytes()]
    if pa.types.is_integer(t):
        values = (arr if full else arr.fill_null(0)).to_numpy(zero_copy_only=False).astype("<i8")
        return [valid, values.tobytes()]
    if pa.types.is_boolean(t):
        return [valid, (arr if full else arr.fill_null(False)).to_numpy(zero_copy_only=False).astype(np.uint8).tobytes()]
    raise TypeError(f"no canonical encoding for column type {t}")


def table_sha256(table: pa.Table, columns: Sequence[str] | None = None) -> str:
    """SHA-256 over the canonical encoding of `columns` (default: all) of every row, in row order."""
    h = hashlib.sha256()
    h.update(f"rows={table.num_rows};".encode())
    for name in columns or table.column_names:
        col = table[name]
        h.update(f"col={name}:{col.type};".encode())
        for part in _column_bytes(col):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()
