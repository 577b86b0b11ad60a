"""train_models: one training run on a materialized dataset (`coinline.training.run.train`): features,
look-ahead check, regime model, tuning, per-coin specialists, ensemble, walk-forward evaluation and
simulation. The run id is derived from its inputs, so the same dataset and config give the same run."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def train_models(
    object_store_url: str,
    dataset_id: str,
    run_metrics: Output[Artifact],
    run_manifest: Output[Model],
    interval: str = "1h",
    quote: str = "USD",
    symbols: str = "",
    until: str = "",
    train_config_json: str = "",
    workers: int = 0,
) -> NamedTuple("Trained", [("run_id", str)]):
    """`train_config_json`: TrainConfig overrides, the JSON that COINLINE_TRAIN_CONFIG names as a file
    (empty: the defaults). `workers`: Ray workers (0: one per CPU of the pod, 1: in-process). `until`:
    ISO time, train and evaluate on candles up to it only. `run_metrics` is the run's metrics.json;
    `run_manifest` its manifest (artifacts and their hashes stay in the lake under `runs/<run_id>/`)."""
    import json
    import os
    import tempfile
    from collections import namedtuple

    from coinline.lake import open_lake
    from coinline.logs import setup_logging
    from coinline.settings import load_settings
    from coinline.timeframes import parse_iso_utc
    from coinline.training.config import load_train_config
    from coinline.training.run import train

    settings = load_settings(dotenv=None, env={
        **os.environ, "OBJECT_STORE_URL": object_store_url, "COINLINE_SYMBOLS": symbols,
        "COINLINE_TRAIN_WORKERS": str(workers)})
    setup_logging(settings.secrets())
    lake = open_lake(settings.object_store_url, endpoint_url=settings.object_store_endpoint_url,
                     access_key=settings.object_store_access_key_id,
                     secret_key=settings.object_store_secret_access_key, region=settings.object_store_region)
    with tempfile.TemporaryDirectory() as tmp:
        path = ""
        if train_config_json.strip():
            path = os.path.join(tmp, "train_config.json")
            with open(path, "w") as f:
                f.write(train_config_json)
        cfg = load_train_config(path)
    run = train(lake, dataset_id, cfg, symbols=list(settings.symbols) or None,
                until=parse_iso_utc(until) if until else None, quote=quote, interval=interval,
                workers=settings.train_workers or None)
    with open(run_metrics.path, "wb") as f:
        f.write(lake.read_bytes(f"runs/{run.run_id}/metrics.json"))
    with open(run_manifest.path, "w") as f:
        json.dump(run.manifest, f, indent=1, sort_keys=True, default=str)
    lake_uri = lake.uri(f"runs/{run.run_id}")
    run_metrics.metadata.update({"run_id": run.run_id, "dataset_id": dataset_id, "lake_uri": lake_uri})
    run_manifest.metadata.update({"run_id": run.run_id, "dataset_id": dataset_id, "lake_uri": lake_uri})
    out = namedtuple("Trained", ["run_id"])
    return out(run.run_id)
