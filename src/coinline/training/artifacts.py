"""Everything a run leaves behind, under `runs/<run_id>/` in the lake, tied together by a manifest of
content hashes: config (+hash), dataset hash, seeds, folds, metric package, out-of-fold predictions,
simulation, models (the last fold's, i.e. the deployable ones; every fold model's hash is listed)."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pyarrow.parquet as pq

from coinline.datasets.materialize import code_version
from coinline.lake.store import Lake
from coinline.training.config import TrainConfig


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, default=_default, allow_nan=False) + "\n").encode()


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _clean(obj: Any) -> Any:
    """NaN/inf -> None so metric JSON is strict and stable."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_run(lake: Lake, run_id: str, *, cfg: TrainConfig, dataset: dict, metrics: dict, results: list,
              regime, tuning: dict, frames: dict) -> dict[str, Any]:
    from coinline.training.run import as_table

    base = f"runs/{run_id}"
    files: dict[str, bytes] = {
        "config.json": _json_bytes({"config": cfg.to_dict(), "config_hash": cfg.config_hash()}),
        "metrics.json": _json_bytes(_clean(metrics)),
        "folds.json": _json_bytes({r.symbol: r.folds for r in results}),
        "tuning.json": _json_bytes(_clean(tuning["log"])),
        "simulation.json": _json_bytes(_clean(metrics["simulation"])),
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
        "content_hash": hashlib.sha256(_json_bytes(hashes)).hexdigest(),
    }
    lake.write_json(f"{base}/manifest.json", manifest)  # written last: it names everything above
    return manifest
