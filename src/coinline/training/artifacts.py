"""Everything a run leaves behind, under `runs/<run_id>/` in the lake, tied together by a manifest of
content hashes: config (+hash), dataset hash, seeds, folds, metric package, out-of-fold predictions,
simulation, models (the last fold's, i.e. the deployable ones; every fold model's hash is listed)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pyarrow.parquet as pq

from coinline.datasets.materialize import code_version
from coinline.jsonsafe import json_bytes
from coinline.lake.store import Lake
from coinline.training.config import TrainConfig


def write_run(lake: Lake, run_id: str, *, cfg: TrainConfig, dataset: dict, metrics: dict, results: list,
              regime, tuning: dict, frames: dict) -> dict[str, Any]:
    from coinline.training.run import as_table

    base = f"runs/{run_id}"
    files: dict[str, bytes] = {
        "config.json": json_bytes({"config": cfg.to_dict(), "config_hash": cfg.config_hash()}),
        "metrics.json": json_bytes(metrics),
        "folds.json": json_bytes({r.symbol: r.folds for r in results}),
        "tuning.json": json_bytes(tuning["log"]),
        "simulation.json": json_bytes(metrics["simulation"]),
        "models/regime.bin": regime.final_model,
    }
    table = as_table(results, frames, cfg)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    files["predictions/oof.parquet"] = buf.getvalue()
    for r in results:
        for name, blob in sorted(r.final_models.items()):
            files[f"models/{r.symbol}/{name.replace('/', '_h_')}.bin"] = blob
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    # the parquet file carries writer metadata; hash its rows instead for the content identity
    from coinline.hashing import table_sha256

    hashes["predictions/oof.parquet"] = "rows:" + table_sha256(table)
    for name, data in files.items():
        lake.write_bytes(f"{base}/{name}", data)
    manifest = {
        "run_id": run_id,
        "dataset_id": dataset["dataset_id"],
        "dataset_hash": dataset["content_hash"],
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "code_version": code_version(),
        "artifacts": hashes,
        "fold_model_hashes": {r.symbol: r.model_hashes for r in results},
        "content_hash": hashlib.sha256(json_bytes(hashes)).hexdigest(),
    }
    lake.write_json(f"{base}/manifest.json", manifest)  # written last: it names everything above
    return manifest
