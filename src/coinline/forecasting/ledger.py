"""The `forecasts` ledger: a Delta table, append-only and create-only per key
(model_set, symbol, quote, interval, horizon, decision_time).

A write is one Delta MERGE that inserts only the rows whose key is absent (`when_not_matched_insert_all`),
so re-running a forecast adds nothing and two forecasters racing on the same rows cannot both insert them:
Delta's optimistic concurrency fails the second commit, which is retried against the new version. Rows are
never updated or deleted; scores are derived later by joining realized candles.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError

from coinline.forecasting.schema import FORECASTS_SCHEMA, KEY_COLUMNS
from coinline.lake import tables
from coinline.lake.store import Lake

FORECASTS = "forecasts"
_RETRIES = 5


def ensure_ledger(lake: Lake) -> None:
    if not DeltaTable.is_deltatable(lake.uri(FORECASTS), storage_options=lake.storage_options):
        DeltaTable.create(lake.uri(FORECASTS), FORECASTS_SCHEMA, mode="ignore", storage_options=lake.storage_options,
                          configuration=tables.TABLE_CONFIG)


def as_ledger_table(rows: pd.DataFrame, *, role: str, batch_id: str, now: datetime) -> pa.Table:
    df = rows.copy()
    df["role"] = role
    df["batch_id"] = batch_id
    df["created_at"] = pd.Timestamp(now).tz_convert("UTC")
    for c in ("decision_time", "forecast_time", "target_time", "created_at"):
        df[c] = pd.to_datetime(df[c], utc=True).dt.as_unit("us")
    table = pa.Table.from_pandas(df[list(FORECASTS_SCHEMA.names)], preserve_index=False)
    return table.cast(FORECASTS_SCHEMA)


def record(lake: Lake, rows: pd.DataFrame, *, role: str, now: datetime, request: dict | None = None) -> dict:
    """Insert the forecasts whose key is new; returns {"batch_id", "offered", "inserted"}."""
    ensure_ledger(lake)
    batch_id = f"fc-{uuid.uuid4().hex[:16]}"
    if rows.empty:
        return {"batch_id": batch_id, "offered": 0, "inserted": 0}
    data = as_ledger_table(rows, role=role, batch_id=batch_id, now=now)
    sets = sorted(set(data["model_set"].to_pylist()))
    meta = {"batch_id": batch_id, "role": role, "model_sets": sets, "rows": data.num_rows,
            "decision_times": [str(min(data["decision_time"].to_pylist())), str(max(data["decision_time"].to_pylist()))],
            "request": request or {}}
    predicate = " AND ".join(f"t.{c} = s.{c}" for c in KEY_COLUMNS)
    for attempt in range(_RETRIES):
        dt = DeltaTable(lake.uri(FORECASTS), storage_options=lake.storage_options)
        try:
            result = (dt.merge(data, predicate=predicate, source_alias="s", target_alias="t",
                               commit_properties=CommitProperties(custom_metadata={
                                   tables.META_KEY: json.dumps(meta, sort_keys=True, default=str)}))
                      .when_not_matched_insert_all().execute())
            return {"batch_id": batch_id, "offered": data.num_rows,
                    "inserted": int(result.get("num_target_rows_inserted", 0))}
        except CommitFailedError:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def read(lake: Lake, *, since: datetime | None = None, model_sets: list[str] | None = None) -> pd.DataFrame:
    """Ledger rows (decision_time >= since), in key order."""
    if not DeltaTable.is_deltatable(lake.uri(FORECASTS), storage_options=lake.storage_options):
        return FORECASTS_SCHEMA.empty_table().to_pandas()
    dt = DeltaTable(lake.uri(FORECASTS), storage_options=lake.storage_options)
    filters = []
    if since is not None:
        filters.append(("decision_time", ">=", pd.Timestamp(since).tz_convert("UTC")))
    if model_sets:
        filters.append(("model_set", "in", list(model_sets)))
    table = dt.to_pyarrow_table(filters=filters or None)
    df = table.to_pandas()
    return df.sort_values(list(KEY_COLUMNS), kind="mergesort").reset_index(drop=True)
