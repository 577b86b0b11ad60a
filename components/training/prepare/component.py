"""prepare_training: the first step of a training run (`coinline.training.stages.prepare_run`): features
from the materialized dataset, the run id (derived from dataset hash, config, symbols, cut-off), the
look-ahead check and the seeded hyperparameter search. Later steps take the run id."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.image import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, packages_to_install=[], install_kfp_package=False)
def prepare_training(
    object_store_url: str,
    dataset: Input[Dataset],
    prepared: Output[Artifact],
    interval: str = "1h",
    quote: str = "USD",
    symbols: str = "",
    until: str = "",
    train_config_json: str = "",
    workers: int = 0,
) -> NamedTuple("Prepared", [("run_id", str)]):
    """`train_config_json`: TrainConfig overrides (the JSON `COINLINE_TRAIN_CONFIG` names as a file; empty:
    the defaults). `workers`: Ray workers for the search (0: one per CPU, 1: in-process). `until`: ISO
    time, train and evaluate on candles up to it only. `dataset`: materialize_dataset's manifest. `prepared`:
the run id, every tuning trial and the chosen parameters (the input of the training steps)."""
    import json
    from collections import namedtuple

    from coinline.step_env import artifact_field, step_lake
    from coinline.timeframes import parse_iso_utc
    from coinline.training import stages
    from coinline.training.config import train_config_from_json

    settings, lake = step_lake(object_store_url, COINLINE_SYMBOLS=symbols, COINLINE_TRAIN_WORKERS=workers)
    cfg = train_config_from_json(train_config_json)
    dataset_id = artifact_field(dataset.path, "dataset_id")
    run_id, tuning_log = stages.prepare_run(lake, dataset_id, cfg, symbols=list(settings.symbols) or None,
                                until=parse_iso_utc(until) if until else None, quote=quote, interval=interval,
                                workers=settings.train_workers or None)
    with open(prepared.path, "w") as f:
        json.dump({"run_id": run_id, "dataset_id": dataset_id, "config_hash": cfg.config_hash(),
                   "tuning": tuning_log}, f, indent=1, sort_keys=True, default=str)
    prepared.metadata.update({"run_id": run_id, "dataset_id": dataset_id, "config_hash": cfg.config_hash()})
    return namedtuple("Prepared", ["run_id"])(run_id)
