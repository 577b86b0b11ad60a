"""Build a dataset's rows in proportion to what changed: from the previous dataset of the same spec (its
base), re-deriving only the series whose raw rows changed since the base's raw_candles version.

What changed is read from the Delta log: a series' raw files now versus at the base's version.
- no new file and none gone: the base's rows of the series stand;
- only new files, and none of their open times is in the base's rows (new candles: what a sync appends):
  the series is the base's rows plus the canonical view of the new rows. That is exactly what a full
  rebuild gives: every raw row at such an open time is new, and the highest version among them wins;
- anything else (a revision of a stored candle, files rewritten by compaction, a file gone): the series
  is rebuilt from raw, as a full build does.
Rows, their order and so the content hash are those of a full rebuild (a test compares them byte for byte).

The base is found through `datasets/_latest/<spec digest>.json`, written after each build, and used only
when its data checks out (the SHA-256 of its bytes recorded in its manifest, else its content hash) and
the log still reaches its raw_candles version; otherwise the build is a full one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError
from tqdm import tqdm

from coinline.datasets.canonical import CANONICAL_SCHEMA, canonical_order, latest_versions
from coinline.hashing import table_sha256
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, SeriesKey

log = logging.getLogger("coinline")

HASH_ALGORITHM = "sha256/coinline-canonical-rows-v1"


@dataclass(frozen=True)
class Base:
    """A verified earlier dataset of the same spec: its rows per series and the raw version it read."""

    dataset_id: str
    manifest: dict[str, Any]
    parts: dict[SeriesKey, pa.Table]
    raw_version: int
    batches: frozenset[str]
    data_sha256: str


@dataclass
class Build:
    """The rows of a dataset, one table per series in canonical order, and how each series was obtained."""

    parts: list[pa.Table]
    mode: str                                   # "full" or "incremental"
    base: Base | None = None
    series: dict[str, list[str]] = field(default_factory=lambda: {"reused": [], "appended": [], "rebuilt": []})

    @property
    def unchanged(self) -> bool:
        """Every series is the base's, and the base has no other series: the base's rows, as they are."""
        return (self.base is not None and not self.series["appended"] and not self.series["rebuilt"]
                and len(self.series["reused"]) == len(self.base.parts))

    def table(self) -> pa.Table:
        parts = [p for p in self.parts if p.num_rows]
        return pa.concat_tables(parts).combine_chunks() if parts else CANDLE_SCHEMA.empty_table()

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "base": self.base.dataset_id if self.base else None,
                **{f"series_{k}": len(v) for k, v in self.series.items()}}


def spec_dict(spec: Any) -> dict[str, Any]:
    """The spec as the manifest records it (JSON types, datetimes as ISO strings)."""
    doc = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(spec).items()}
    return json.loads(json.dumps(doc))


def latest_name(spec: Any) -> str:
    digest = hashlib.sha256(json.dumps(spec_dict(spec), sort_keys=True).encode()).hexdigest()[:24]
    return f"datasets/_latest/{digest}.json"


def record_latest(lake: Lake, spec: Any, dataset_id: str) -> None:
    """Name `dataset_id` the base of the next build of `spec` (a hint: any complete dataset is a valid base)."""
    lake.write_json(latest_name(spec), {"dataset_id": dataset_id, "spec": spec_dict(spec)})


def data_bytes(table: pa.Table) -> bytes:
    """The dataset's Parquet file. Dictionary encoding only where values repeat (the series key columns):
    tried on every float column it is mostly wasted work (measured: a third of the write time at 1M rows)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=list(tables.SERIES_COLUMNS))
    return buf.getvalue()


def find_base(lake: Lake, spec: Any, *, raw_version: int) -> Base | None:
    """The last dataset built for `spec`, when it can serve as a base (see the module doc), else None."""
    pointer = lake.read_json(latest_name(spec))
    dataset_id = (pointer or {}).get("dataset_id")
    manifest = lake.read_json(f"datasets/{dataset_id}/manifest.json") if dataset_id else None
    if manifest is None:
        return None
    inputs = manifest.get("inputs") or {}
    if (manifest.get("spec") != spec_dict(spec) or manifest.get("hash_algorithm") != HASH_ALGORITHM
            or manifest.get("hashed_columns") != list(CANDLE_SCHEMA.names)
            or not isinstance(inputs.get("raw_candles_version"), int) or inputs["raw_candles_version"] > raw_version):
        return None
    data = lake.read_bytes(f"datasets/{dataset_id}/data.parquet")
    if data is None:
        return None
    table = pq.read_table(io.BytesIO(data)).cast(CANDLE_SCHEMA)
    digest = hashlib.sha256(data).hexdigest()
    if manifest.get("data_sha256") != digest and (
            table_sha256(table, manifest["hashed_columns"]) != manifest.get("content_hash")):
        log.warning("dataset %s: data does not match its manifest; not used as a base (full build)", dataset_id)
        return None
    parts = _split(table, manifest.get("series") or [])
    if parts is None:
        return None
    return Base(dataset_id, manifest, parts, inputs["raw_candles_version"], frozenset(inputs.get("batches") or []),
                digest)


def _split(table: pa.Table, series: list[dict[str, Any]]) -> dict[SeriesKey, pa.Table] | None:
    """The base's rows per series, cut by the manifest's per-series row counts (rows are in that order)."""
    if sum(s["rows"] for s in series) != table.num_rows:
        return None
    parts, at = {}, 0
    for s in series:
        key = SeriesKey(*(s[c] for c in tables.SERIES_COLUMNS))
        parts[key] = table.slice(at, s["rows"])
        at += s["rows"]
    return parts


def full_build(lake: Lake, keys: list[SeriesKey], spec: Any, *, raw_version: int, progress: bool = False) -> Build:
    """Every series from raw: the canonical view at `raw_version`."""
    index = tables.file_index(lake, tables.RAW, raw_version)
    parts = [_from_raw(lake, k, spec, index) for k in _bar(canonical_order(keys), "canonical series", progress)]
    build = Build(parts, "full")
    build.series["rebuilt"] = [k.label() for k, p in zip(canonical_order(keys), parts, strict=True) if p.num_rows]
    return build


def incremental_build(lake: Lake, base: Base, keys: list[SeriesKey], spec: Any, *, raw_version: int,
                      progress: bool = False) -> Build | None:
    """The base's rows, with each changed series updated or rebuilt; None when the log no longer reaches
    the base's version (then only a full build can say what changed)."""
    now_index = tables.file_index(lake, tables.RAW, raw_version)
    try:
        base_index = tables.file_index(lake, tables.RAW, base.raw_version)
    except DeltaError:
        return None
    now_files, base_files = _paths_by_series(now_index), _paths_by_series(base_index)
    build = Build([], "incremental", base)
    empty = CANDLE_SCHEMA.empty_table()
    for key in _bar(canonical_order(keys), "changed series", progress):
        old = base.parts.get(key, empty)
        new = now_files.get(key, set()) - base_files.get(key, set())
        if base_files.get(key, set()) - now_files.get(key, set()):
            part, how = _from_raw(lake, key, spec, now_index), "rebuilt"
        elif not new:
            part, how = old, "reused"
        else:
            fresh = _rows_in_files(lake, key, spec, now_index, new)
            if fresh.num_rows == 0:
                part, how = old, "reused"
            elif old.num_rows == 0 or pc.min(fresh["open_time"]).as_py() > pc.max(old["open_time"]).as_py():
                part, how = pa.concat_tables([old, fresh]), "appended"     # after the last: already in order
            elif pc.any(pc.is_in(fresh["open_time"], value_set=old["open_time"].combine_chunks())).as_py():
                part, how = _from_raw(lake, key, spec, now_index), "rebuilt"
            else:
                part, how = pa.concat_tables([old, fresh]).sort_by("open_time"), "appended"
        build.parts.append(part)
        if part.num_rows:
            build.series[how].append(key.label())
    return build


def _from_raw(lake: Lake, key: SeriesKey, spec: Any, index: pa.Table) -> pa.Table:
    """`canonical.series_candles` on the given file index (one log read for every series), data columns."""
    raw = tables.read(lake, tables.RAW, series=key, start=spec.start, end=spec.end,
                      columns=list(CANONICAL_SCHEMA.names), index=index)
    return latest_versions(raw).cast(CANONICAL_SCHEMA).select(CANDLE_SCHEMA.names).cast(CANDLE_SCHEMA)


def _rows_in_files(lake: Lake, key: SeriesKey, spec: Any, index: pa.Table, paths: set[str]) -> pa.Table:
    """The canonical view of the series' rows in just these files (the files committed since the base)."""
    chosen = index.filter(pc.is_in(index["path"], value_set=pa.array(sorted(paths), pa.string())))
    return _from_raw(lake, key, spec, chosen)


def _paths_by_series(index: pa.Table) -> dict[SeriesKey, set[str]]:
    cols = [index[f"partition.{c}"].to_pylist() for c in tables.SERIES_COLUMNS]
    out: dict[SeriesKey, set[str]] = {}
    for path, *key in zip(index["path"].to_pylist(), *cols, strict=True):
        out.setdefault(SeriesKey(*key), set()).add(path)
    return out


def _bar(items: list, desc: str, progress: bool) -> Iterable:
    return tqdm(items, desc=desc, unit="series", disable=None if progress else True)

