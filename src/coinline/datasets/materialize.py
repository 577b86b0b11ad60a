"""Materialize a training dataset: canonical candles of a universe for one interval and source, pinned to
Delta table versions, validated by the quality gate, written with a content hash and lineage manifest.

Dataset identity is its content: the same rows give the same SHA-256 however they were ingested
(order, batching, retries) and however they were built (from scratch, or from the previous dataset of
the same spec with only the changed series re-derived: `datasets.incremental`); the manifest records how
to rebuild it (table versions, code version), how it was built (`build`) and the SHA-256 of its data file
(`data_sha256`, so the next build can trust it as a base without re-hashing every row).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import coinline
from coinline.datasets import incremental
from coinline.datasets.canonical import committed_corrections
from coinline.errors import QualityGateError
from coinline.hashing import table_sha256
from coinline.ingest.gaps import known_gaps
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import CANDLE_SCHEMA, SeriesKey
from coinline.universe.model import Universe

HASHED_COLUMNS = list(CANDLE_SCHEMA.names)


@dataclass(frozen=True)
class DatasetSpec:
    universe_version: str
    interval: str
    source: str
    quotes: tuple[str, ...] = ("USD", "USDC", "CAD")
    start: datetime | None = None   # inclusive window on open_time; None = from the first candle
    end: datetime | None = None     # exclusive; None = through the last stored candle


@dataclass(frozen=True)
class Dataset:
    dataset_id: str
    content_hash: str
    row_count: int
    series_count: int
    path: str
    manifest: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "content_hash": self.content_hash, "rows": self.row_count,
                "series": self.series_count, "path": self.path}


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"coinline {coinline.__version__}" + (f" ({sha})" if sha else "")


def dataset_series(lake: Lake, universe: Universe, spec: DatasetSpec) -> list[SeriesKey]:
    symbols = set(universe.symbols())
    return [k for k, _n, _f, _l in tables.series_in(lake)
            if k.source == spec.source and k.interval == spec.interval and k.symbol in symbols
            and k.quote in spec.quotes]


def materialize(lake: Lake, universe: Universe, spec: DatasetSpec, *, gap_tolerance: int, now: datetime,
                full: bool = False, progress: bool = False) -> Dataset:
    """Build (or find again) the dataset of `spec` from the lake as it is, in proportion to what changed since
    the last build of the same spec (`datasets.incremental`; `full` ignores it). Quality: the raw suite over
    the batches not validated yet, then either the canonical suite over every row (a full build) or the
    whole-series invariants (an incremental one: the rows that changed are rows of batches that just passed
    the raw suite). Raises QualityGateError when a batch failed, a gap is unexplained, or a check fails."""
    # Great Expectations is slow to import; keep it off the CLI's start path
    from coinline.quality.invariants import invariants_result, profiles_of_parts
    from coinline.quality.lake_checks import validate_new_batches
    from coinline.quality.suites import validate_candles

    raw = validate_new_batches(lake, progress=progress)
    raw_version = raw.version
    keys = dataset_series(lake, universe, spec)
    refuse_unexplained_gaps(lake, universe, spec)
    if not keys:
        raise QualityGateError(f"no stored series for source={spec.source} interval={spec.interval} "
                               f"universe={spec.universe_version}; run `coinline backfill` first")
    labels = {k.label() for k in keys}
    batches = sorted({m["batch_id"] for m in tables.commit_manifests(lake, tables.RAW)
                      if m.get("series") in labels and m["table_version"] <= raw_version})
    bad = sorted(set(batches) & raw.failed)
    if bad:
        raise QualityGateError(f"{len(bad)} input batch(es) failed the raw quality suite, e.g. {bad[0]} "
                               f"(results under quality/raw/); materialization blocked")
    base = None if full else incremental.find_base(lake, spec, raw_version=raw_version)
    build = (incremental.incremental_build(lake, base, keys, spec, raw_version=raw_version, progress=progress)
             if base is not None else None)
    build = build or incremental.full_build(lake, keys, spec, raw_version=raw_version, progress=progress)
    gaps = known_gaps(lake)
    data = build.table()
    if build.base is None:
        result = validate_candles(data, stage="canonical", known_gaps=gaps, gap_tolerance=gap_tolerance)
    else:
        result = invariants_result(profiles_of_parts(build.parts), known_gaps=gaps, gap_tolerance=gap_tolerance,
                                   parameters={"base": build.base.dataset_id,
                                               "new_batches": len(set(batches) - build.base.batches)})
    # the base's rows unchanged: its verified hash and stored bytes are this dataset's (same id)
    content_hash = build.base.manifest["content_hash"] if build.unchanged else table_sha256(data, HASHED_COLUMNS)
    dataset_id = f"{spec.universe_version}.{spec.interval}.{spec.source}.{content_hash[:16]}"
    lake.write_json(f"quality/datasets/{dataset_id}.json", result.to_dict())
    if not result.success:
        raise QualityGateError(f"quality gate failed for dataset {dataset_id}: {result.summary()} "
                               f"(results: quality/datasets/{dataset_id}.json)")
    blob = None if build.unchanged else incremental.data_bytes(data)
    data_sha256 = build.base.data_sha256 if blob is None else hashlib.sha256(blob).hexdigest()
    corrections = committed_corrections(lake, raw_version=raw_version)
    manifest = {
        "dataset_id": dataset_id,
        "content_hash": content_hash,
        "hash_algorithm": incremental.HASH_ALGORITHM,
        "hashed_columns": HASHED_COLUMNS,
        "row_order": ["symbol", "quote", "interval", "open_time", "source", "venue"],
        "spec": incremental.spec_dict(spec),
        "row_count": data.num_rows,
        "series": _series_summary(data),
        "inputs": {
            "raw_candles_version": raw_version,
            "corrections_version": tables.open_table(lake, tables.CORRECTIONS).version(),
            "corrections_applied": corrections.num_rows,
            "known_gaps_version": tables.open_table(lake, tables.GAPS).version(),
            "batches": batches,
        },
        "quality": {"suite": result.suite, "success": result.success, "results": f"quality/datasets/{dataset_id}.json"},
        "build": build.summary(),
        "data_sha256": data_sha256,
        "code_version": code_version(),
        "created_at": now.isoformat(),
    }
    path = f"datasets/{dataset_id}"
    if blob is not None:
        lake.write_bytes(f"{path}/data.parquet", blob)
    lake.write_json(f"{path}/manifest.json", manifest)  # the manifest names the data: written last
    incremental.record_latest(lake, spec, dataset_id)
    return Dataset(dataset_id, content_hash, data.num_rows, len(keys), lake.uri(path), manifest)


def refuse_unexplained_gaps(lake: Lake, universe: Universe, spec: DatasetSpec) -> None:
    """Raise QualityGateError when a recorded unexplained gap (candles the provider vouches for and did
    not deliver; `coinline.ingest.completeness`) lies in a series and window of the dataset, stored
    candles or not: the dataset would silently lack them. Interior holes are the quality suite's job."""
    from coinline.ingest.completeness import unexplained_records

    symbols = set(universe.symbols())
    blocking = [r for r in unexplained_records(lake)
                if r["source"] == spec.source and r["interval"] == spec.interval and r["symbol"] in symbols
                and r["quote"] in spec.quotes and (spec.end is None or r["gap_start"] < spec.end)
                and (spec.start is None or r["gap_end"] > spec.start)]
    if blocking:
        r = blocking[0]
        label = SeriesKey(*(r[c] for c in tables.SERIES_COLUMNS)).label()
        raise QualityGateError(
            f"{len(blocking)} unexplained gap(s) block the dataset, e.g. {label} [{r['gap_start'].isoformat()}, "
            f"{r['gap_end'].isoformat()}) ({r['missing_candles']} candle(s)): {r['answer'][:300]}; "
            f"`coinline gaps` lists them, a backfill, sync or `coinline gaps --retry` that fills one closes it")


def _series_summary(data: pa.Table) -> list[dict[str, Any]]:
    if data.num_rows == 0:
        return []
    grouped = data.group_by(["symbol", "quote", "interval", "source", "venue"], use_threads=False).aggregate(
        [("open_time", "min"), ("open_time", "max"), ("open_time", "count")])
    rows = sorted(grouped.to_pylist(), key=lambda r: (r["symbol"], r["quote"], r["interval"], r["source"], r["venue"]))
    return [{"symbol": r["symbol"], "quote": r["quote"], "interval": r["interval"], "source": r["source"],
             "venue": r["venue"], "first": r["open_time_min"].isoformat(), "last": r["open_time_max"].isoformat(),
             "rows": r["open_time_count"]} for r in rows]


def load_dataset(lake: Lake, dataset_id: str, *, verify: bool = True) -> tuple[pa.Table, dict[str, Any]]:
    """Read a dataset back; with `verify`, recompute its hash and refuse a mismatch."""
    manifest = lake.read_json(f"datasets/{dataset_id}/manifest.json")
    if manifest is None:
        raise FileNotFoundError(f"dataset {dataset_id} has no manifest in {lake.root}")
    data = pq.read_table(lake.path(f"datasets/{dataset_id}/data.parquet"), filesystem=lake.fs)
    if verify and table_sha256(data, manifest["hashed_columns"]) != manifest["content_hash"]:
        raise QualityGateError(f"dataset {dataset_id}: content hash mismatch (data altered after materialization)")
    return data, manifest
