"""The canonical view: for every natural key the highest version in `raw_candles`, in canonical order
(symbol, quote, interval, open_time, source, venue). A deterministic function of the raw table at a
given Delta version, so any dataset can be rebuilt and its hash checked."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, SeriesKey

CANONICAL_SCHEMA = pa.schema([*CANDLE_SCHEMA, pa.field("version", pa.int32(), False)])


def latest_versions(raw: pa.Table) -> pa.Table:
    """Keep the highest version of each open_time in ONE series' raw rows, sorted by open_time."""
    if raw.num_rows == 0:
        return raw
    times = raw["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
    versions = raw["version"].to_numpy()
    order = np.lexsort((versions, times))
    t_sorted = times[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = t_sorted[1:] != t_sorted[:-1]
    return raw.take(pa.array(order[last]))


def series_candles(lake: Lake, key: SeriesKey, *, start: datetime | None = None, end: datetime | None = None,
                   raw_version: int | None = None) -> pa.Table:
    raw = tables.read(lake, tables.RAW, series=key, start=start, end=end, version=raw_version,
                      columns=list(CANONICAL_SCHEMA.names))
    return latest_versions(raw).cast(CANONICAL_SCHEMA)


def canonical_order(keys: list[SeriesKey]) -> list[SeriesKey]:
    return sorted(keys, key=lambda k: (k.symbol, k.quote, k.interval, k.source, k.venue))


def canonical_candles(lake: Lake, keys: list[SeriesKey], *, start: datetime | None = None,
                      end: datetime | None = None, raw_version: int | None = None) -> pa.Table:
    parts = [series_candles(lake, k, start=start, end=end, raw_version=raw_version) for k in canonical_order(keys)]
    parts = [p for p in parts if p.num_rows]
    return pa.concat_tables(parts) if parts else CANONICAL_SCHEMA.empty_table()


def committed_corrections(lake: Lake, *, raw_version: int | None = None) -> pa.Table:
    """Correction-log entries whose batch committed to raw_candles (others belong to killed runs)."""
    corr = tables.read(lake, tables.CORRECTIONS)
    if corr.num_rows == 0:
        return corr
    committed = {m["batch_id"] for m in tables.commit_manifests(lake, tables.RAW)
                 if raw_version is None or m["table_version"] <= raw_version}
    mask = pa.array([b in committed for b in corr["batch_id"].to_pylist()])
    corr = corr.filter(mask)
    return corr.sort_by([(c, "ascending") for c in ("symbol", "quote", "interval", "source", "venue", "open_time", "new_version")])
