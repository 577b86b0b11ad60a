"""Run the quality suites over the lake and keep their results next to the data.

Raw suite: every committed ingest batch, once; its result is stored at `quality/raw/<batch_id>.json`.
Canonical suite: the canonical view of every stored series (run by `materialize` for its dataset).
A batch whose raw suite failed blocks any dataset that would include it.
"""

from __future__ import annotations

import pyarrow as pa

from coinline.datasets.canonical import canonical_candles
from coinline.ingest.gaps import known_gaps
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.quality.results import QualityResult
from coinline.quality.suites import validate_candles


def raw_result_name(batch_id: str) -> str:
    return f"quality/raw/{batch_id}.json"


def validate_new_batches(lake: Lake) -> list[QualityResult]:
    """Validate every committed raw batch that has no stored result yet (one read per series)."""
    done = {name.rsplit("/", 1)[-1].removesuffix(".json") for name in lake.list("quality/raw")}
    pending: dict[str, set[str]] = {}
    for m in tables.commit_manifests(lake, tables.RAW):
        if m.get("kind") == "candles" and m["batch_id"] not in done:
            pending.setdefault(m["series"], set()).add(m["batch_id"])
    results = []
    keys = {k.label(): k for k, *_ in tables.series_in(lake)}
    for label, batch_ids in sorted(pending.items()):
        rows = tables.read(lake, tables.RAW, series=keys[label])
        # Delta stores microseconds; the suites check the canonical millisecond type
        rows = rows.set_column(rows.schema.get_field_index("open_time"), "open_time",
                               rows["open_time"].cast(pa.timestamp("ms", tz="UTC")))
        for batch_id in sorted(batch_ids):
            batch = rows.filter(rows["batch_id"].to_numpy(zero_copy_only=False) == batch_id)
            result = validate_candles(batch, stage="raw")
            lake.write_json(raw_result_name(batch_id), {"batch_id": batch_id, "series": label, **result.to_dict()})
            results.append(result)
    return results


def failed_batches(lake: Lake, batch_ids: set[str]) -> list[str]:
    failed = []
    for batch_id in sorted(batch_ids):
        stored = lake.read_json(raw_result_name(batch_id))
        if stored is None or not stored.get("success", False):
            failed.append(batch_id)
    return failed


def validate_lake(lake: Lake, *, gap_tolerance: int) -> list[QualityResult]:
    """`coinline validate`: raw suite over new batches, canonical suite over every stored series."""
    results = validate_new_batches(lake)
    by_source: dict[str, list] = {}
    for k, *_ in tables.series_in(lake):
        by_source.setdefault(k.source, []).append(k)
    gaps = known_gaps(lake)
    for source, keys in sorted(by_source.items()):  # canonical order is per source
        canonical = validate_candles(canonical_candles(lake, keys), stage="canonical", known_gaps=gaps,
                                     gap_tolerance=gap_tolerance)
        lake.write_json(f"quality/canonical/{source.replace(':', '-')}.json", canonical.to_dict())
        results.append(canonical)
    return results
