"""Commit one page of candles for one series: the only way candles enter the lake.

Steps (deterministic): drop candles not yet closed (they are not final; reported in the manifest),
collapse identical duplicates, compare with the series' current versions over the page's time range,
append new keys as version 1 and changed values as version n+1 with a correction-log entry. Identical
re-deliveries add nothing, so re-running any ingest is idempotent. Corrections are written before the
raw commit and are only trusted once the raw commit naming their batch exists, so a process killed at
any point leaves nothing visible and the next run simply re-fetches the page.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from coinline.errors import BadDataError
from coinline.hashing import table_sha256
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, VALUE_COLUMNS, SeriesKey
from coinline.timeframes import interval_ms

KEY_COLUMNS = ("source", "venue", "symbol", "quote", "interval", "open_time")


@dataclass(frozen=True)
class CommitResult:
    key: SeriesKey
    batch_id: str
    received: int
    inserted: int
    revised: int
    duplicates: int
    not_closed: int
    table_version: int | None   # None when nothing new was committed

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.key.label(), "batch_id": self.batch_id, "received": self.received,
                "inserted": self.inserted, "revised": self.revised, "duplicates": self.duplicates,
                "not_closed": self.not_closed, "table_version": self.table_version}


def _frame(table: pa.Table) -> pd.DataFrame:
    df = table.select(["open_time", *VALUE_COLUMNS]).to_pandas()
    df["open_time"] = table["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
    return df


def _same(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Row-wise equality of candle values, treating two missing trade counts as equal."""
    eq = np.ones(len(a), dtype=bool)
    for c in VALUE_COLUMNS:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if c == "trade_count":
            xn, yn = pd.isna(a[c]).to_numpy(), pd.isna(b[c]).to_numpy()
            eq &= (xn & yn) | (~xn & ~yn & (a[c].fillna(0).to_numpy() == b[c].fillna(0).to_numpy()))
        else:
            eq &= x == y
    return eq


def commit_candles(lake: Lake, candles: pa.Table, *, key: SeriesKey, request: Mapping[str, Any],
                   now: datetime, batch_id: str | None = None) -> CommitResult:
    batch_id = batch_id or uuid.uuid4().hex
    _check_series(candles, key, request)
    received = candles.num_rows
    step = interval_ms(key.interval)
    now_ms = int(now.timestamp() * 1000)

    df = _frame(candles)
    df["_arrival"] = np.arange(len(df))
    closed = (df["open_time"].to_numpy() + step) <= now_ms
    not_closed = int((~closed).sum())
    df = df[closed].sort_values(["open_time", "_arrival"], kind="stable")

    # in-batch duplicates: identical ones collapse, conflicting ones keep the later arrival (logged)
    conflicts = []
    superseded = df.duplicated("open_time", keep="last").to_numpy()
    if superseded.any():
        last = df.drop_duplicates("open_time", keep="last").set_index("open_time")
        early = df[superseded]
        later = last.loc[early["open_time"]].reset_index()
        differ = ~_same(early.reset_index(drop=True), later)
        if differ.any():
            conflicts.append((early[differ].reset_index(drop=True), later[differ].reset_index(drop=True)))
        df = df[~superseded]
    batch_dups = int(superseded.sum())

    existing = _current(lake, key, df)
    existing = existing.rename(columns={c: f"{c}_old" for c in existing.columns if c != "open_time"})
    merged = df.merge(existing, on="open_time", how="left")
    has_old = merged["version_old"].notna().to_numpy()
    old_vals = merged[[f"{c}_old" for c in VALUE_COLUMNS]].rename(columns=lambda c: c[:-4])
    same = np.zeros(len(merged), dtype=bool)
    if has_old.any():
        same[has_old] = _same(merged.loc[has_old, list(VALUE_COLUMNS)].reset_index(drop=True),
                              old_vals[has_old].reset_index(drop=True))
    write = ~(has_old & same)
    revised_mask = has_old & ~same
    out = merged[write].copy()
    out["version"] = np.where(revised_mask[write], merged.loc[write, "version_old"].fillna(0), 0).astype(np.int32) + 1
    duplicates = batch_dups + int((has_old & same).sum())

    if out.empty:
        return CommitResult(key, batch_id, received, 0, 0, duplicates, not_closed, None)

    raw = _raw_table(out, key, batch_id, now)
    revisions = merged[revised_mask]
    corr = _corrections(key, revisions, old_vals[revised_mask], batch_id, now, "revised")
    for early, later in conflicts:
        corr.append(_correction_rows(key, later, early, np.zeros(len(early), np.int32), batch_id, now, "conflict-in-batch"))
    if corr:
        tables.append(lake, tables.CORRECTIONS, pa.concat_tables(corr), {"batch_id": batch_id, "kind": "corrections"})
    t_min, t_max = int(out["open_time"].min()), int(out["open_time"].max())
    manifest = {
        "batch_id": batch_id, "kind": "candles", "series": key.label(), "provider": key.source,
        "request": dict(request), "time_range": [_iso(t_min), _iso(t_max + step)],
        "row_count": raw.num_rows, "content_hash": table_sha256(raw, list(CANDLE_SCHEMA.names) + ["version"]),
        "received": received, "duplicates": duplicates, "revised": int(revised_mask.sum()),
        "not_closed": not_closed, "committed_at": now.isoformat(),
    }
    version = tables.append(lake, tables.RAW, raw, manifest)
    return CommitResult(key, batch_id, received, int((write & ~revised_mask).sum()), int(revised_mask.sum()),
                        duplicates, not_closed, version)


def _iso(ms_value: int) -> str:
    return pd.Timestamp(ms_value, unit="ms", tz="UTC").isoformat()


def _check_series(candles: pa.Table, key: SeriesKey, request: Mapping[str, Any]) -> None:
    if candles.schema.names != CANDLE_SCHEMA.names:
        raise BadDataError(f"page columns {candles.schema.names} do not match the canonical schema",
                           provider=key.source, series=key.label(), request=str(dict(request)))
    for col in ("source", "venue", "symbol", "quote", "interval"):
        values = set(candles[col].unique().to_pylist())
        if values - {getattr(key, col)}:
            raise BadDataError(f"page holds {col}={sorted(values)} for series {key.label()}",
                               provider=key.source, series=key.label(), request=str(dict(request)))


def _current(lake: Lake, key: SeriesKey, df: pd.DataFrame) -> pd.DataFrame:
    """Latest stored version of each key in the page's time range."""
    cols = ["open_time", "version", *VALUE_COLUMNS]
    if df.empty:
        return pd.DataFrame(columns=cols)
    lo = pd.Timestamp(int(df["open_time"].min()), unit="ms", tz="UTC").to_pydatetime()
    hi = pd.Timestamp(int(df["open_time"].max()), unit="ms", tz="UTC").to_pydatetime() + timedelta(milliseconds=1)
    stored = tables.read(lake, tables.RAW, series=key, start=lo, end=hi, columns=cols)
    if stored.num_rows == 0:
        return pd.DataFrame(columns=cols).astype({"open_time": "int64", "version": "float64"})
    cur = _frame(stored)
    cur["version"] = stored["version"].to_numpy()
    cur = cur.sort_values(["open_time", "version"]).drop_duplicates("open_time", keep="last")
    return cur[cols]


def _raw_table(out: pd.DataFrame, key: SeriesKey, batch_id: str, now: datetime) -> pa.Table:
    n = len(out)
    cols = {c: pa.array([getattr(key, c)] * n, pa.string()) for c in ("source", "venue", "symbol", "quote", "interval")}
    cols["open_time"] = pa.array(out["open_time"].to_numpy(np.int64)).cast(pa.timestamp("ms", tz="UTC"))
    for c in ("open", "high", "low", "close", "volume"):
        cols[c] = pa.array(out[c].to_numpy(np.float64))
    cols["trade_count"] = pa.array(out["trade_count"].astype("Int64"), pa.int64())
    cols["version"] = pa.array(out["version"].to_numpy(np.int32))
    cols["batch_id"] = pa.array([batch_id] * n, pa.string())
    cols["ingested_at"] = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


def _corrections(key, revisions: pd.DataFrame, old: pd.DataFrame, batch_id, now, reason) -> list[pa.Table]:
    if revisions.empty:
        return []
    return [_correction_rows(key, revisions.reset_index(drop=True), old.reset_index(drop=True),
                             revisions["version_old"].to_numpy().astype(np.int32), batch_id, now, reason)]


def _correction_rows(key, new: pd.DataFrame, old: pd.DataFrame, old_version: np.ndarray, batch_id, now, reason) -> pa.Table:
    n = len(new)
    cols: dict[str, pa.Array] = {c: pa.array([getattr(key, c)] * n, pa.string())
                                 for c in ("source", "venue", "symbol", "quote", "interval")}
    cols["open_time"] = pa.array(new["open_time"].to_numpy(np.int64)).cast(pa.timestamp("ms", tz="UTC"))
    cols["old_version"] = pa.array(old_version.astype(np.int32))
    cols["new_version"] = pa.array((old_version + 1).astype(np.int32))
    for prefix, frame in (("old", old), ("new", new)):
        for c in VALUE_COLUMNS:
            typ = pa.int64() if c == "trade_count" else pa.float64()
            values = frame[c].astype("Int64") if c == "trade_count" else frame[c].to_numpy(np.float64)
            cols[f"{prefix}_{c}"] = pa.array(values, typ)
    cols["batch_id"] = pa.array([batch_id] * n, pa.string())
    cols["detected_at"] = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
    cols["reason"] = pa.array([reason] * n, pa.string())
    return pa.table(cols)
