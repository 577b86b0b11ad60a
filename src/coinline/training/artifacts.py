"""Everything a run leaves behind, under `runs/<run_id>/` in the lake, tied together by a manifest of
content hashes: config (+hash), dataset hash, seeds, folds, metric package, out-of-fold predictions,
simulation, models (the last fold's, i.e. the deployable ones; every fold model's hash is listed), and
`modelset.json`: what `coinline.forecasting.modelset` needs to load the run as a model set that forecasts
(per coin and horizon the model files, the combiner's meta-learner, feature names, baselines, risk scale)."""

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
              regime, tuning: dict, frames: dict, quote: str, interval: str) -> dict[str, Any]:
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
            files[model_file(r.symbol, name)] = blob
        if r.final_meta:
            files[f"models/{r.symbol}/meta.bin"] = r.final_meta
        for h, blob in sorted(r.horizon_meta.items()):
            if blob:
                files[meta_file(r.symbol, h)] = blob
    files["modelset.json"] = json_bytes(modelset_doc(run_id, cfg, dataset, results, frames, regime,
                                                     quote=quote, interval=interval, metrics=metrics))
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


MODELSET_FORMAT = "coinline-modelset-v1"


def model_file(symbol: str, name: str) -> str:
    """Where the last fold's model `name` ("h/family") of a coin lives inside the run."""
    return f"models/{symbol}/{name.replace('/', '_h_')}.bin"


def meta_file(symbol: str, h: int) -> str:
    """Where a coin's combiner at a horizon other than the primary lives inside the run (the last fold's
    meta-learner: base rate, mean or one member); the primary horizon's is `models/<symbol>/meta.bin`."""
    return f"models/{symbol}/meta-h{h}.bin"


def modelset_doc(run_id: str, cfg: TrainConfig, dataset: dict, results: list, frames: dict, regime, *,
                 quote: str, interval: str, metrics: dict | None = None) -> dict[str, Any]:
    """The run as a model set: which files predict which (coin, horizon), and what serving needs beside them.
    A horizon other than the primary names its combiner's meta-learner under "meta" (absent in sets stored
    before it existed: those serve the mean of the horizon's models)."""
    spec = dataset.get("spec", {})
    coins: dict[str, Any] = {}
    for r in results:
        horizons = {}
        for h, stats in sorted(r.serving.items()):
            fams = sorted(name.split("/", 1)[1] for name in r.final_models if name.split("/", 1)[0] == str(h))
            if not fams:
                continue
            meta = {"meta": meta_file(r.symbol, h)} if r.horizon_meta.get(h) else {}
            horizons[str(h)] = {**stats, "families": fams,
                                "models": {f: model_file(r.symbol, f"{h}/{f}") for f in fams}, **meta}
        coins[r.symbol] = {
            "feature_names": list(frames[r.symbol].feature_names),
            "horizons": horizons,
            "meta": f"models/{r.symbol}/meta.bin" if r.final_meta else None,
            "last_test_fold": r.folds["folds"][-1]["test"] if r.folds.get("folds") else None,
        }
    return {
        "format": MODELSET_FORMAT,
        "run_id": run_id,
        "quote": quote,
        "interval": interval,
        "source": spec.get("source"),
        "dataset_id": dataset["dataset_id"],
        "dataset_hash": dataset["content_hash"],
        "dataset_start": spec.get("start"),
        "symbols": sorted(frames),
        "horizons": list(cfg.horizons),
        "primary_horizon": cfg.primary_horizon,
        "regime": "models/regime.bin" if regime.final_model else None,
        "coins": coins,
        "evidence": (metrics or {}).get("horizons", {}).get("served", {}),
    }
