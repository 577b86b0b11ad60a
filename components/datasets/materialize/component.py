"""materialize_dataset: build one hashed training dataset for an interval
(`coinline.datasets.materialize.materialize`): canonical candles pinned to Delta table versions, gated by
the quality suites, written to `datasets/<id>/` in the lake with its lineage manifest."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def materialize_dataset(
    object_store_url: str,
    interval: str,
    manifest: Output[Dataset],
    source: str = "coinapi",
    quotes: str = "USD,USDC,CAD",
    universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE",
    gap_tolerance: int = 0,
    now: str = "",
) -> NamedTuple("Materialized", [("dataset_id", str), ("content_hash", str)]):
    """`manifest` is the dataset's lineage manifest (the data stays in the lake, at metadata `lake_uri`)."""
    import json
    from collections import namedtuple
    from datetime import UTC, datetime
    from pathlib import Path

    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.step_env import step_lake
    from coinline.timeframes import parse_iso_utc
    from coinline.universe import load_universe

    settings, lake = step_lake(object_store_url, COINLINE_INTERVALS=interval, COINLINE_QUOTES=quotes,
                               TRAINING_UNIVERSE_VERSION=universe_version, COINLINE_GAP_TOLERANCE=gap_tolerance)
    universe = load_universe(settings.training_universe_version, Path(settings.universe_dir))
    spec = DatasetSpec(settings.training_universe_version, interval, source, tuple(settings.quotes))
    clock = parse_iso_utc(now) if now else datetime.now(UTC)
    dataset = materialize(lake, universe, spec, gap_tolerance=settings.gap_tolerance, now=clock)
    with open(manifest.path, "w") as f:
        json.dump(dataset.manifest, f, indent=1, sort_keys=True)
    manifest.metadata.update({"dataset_id": dataset.dataset_id, "content_hash": dataset.content_hash,
                              "rows": dataset.row_count, "series": dataset.series_count, "lake_uri": dataset.path})
    out = namedtuple("Materialized", ["dataset_id", "content_hash"])
    return out(dataset.dataset_id, dataset.content_hash)
