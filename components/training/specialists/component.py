"""train_specialists: the per-coin specialists of a prepared run (`coinline.training.stages.
train_specialists_step`): XGBoost, LightGBM, Random Forest, LSTM and Transformer on every walk-forward
fold and horizon, one Ray task per coin, on the Ray cluster at `ray_address` (else RAY_ADDRESS; else a Ray
inside the pod, over its CPUs)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.image import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, packages_to_install=[], install_kfp_package=False)
def train_specialists(
    object_store_url: str,
    prepared: Input[Artifact],
    specialists: Output[Model],
    workers: int = 0,
    ray_address: str = "",
) -> int:
    """`prepared`: prepare_training's output. Returns the number of coins trained. `specialists` describes where the models and out-of-fold
    predictions are kept (metadata `lake_uri`); the deployable models are written with the run."""
    import json

    from coinline.step_env import artifact_field, step_lake, use_ray
    from coinline.training import stages

    run_id = artifact_field(prepared.path, "run_id")
    settings, lake = step_lake(object_store_url, COINLINE_TRAIN_WORKERS=workers)
    use_ray(ray_address)
    coins = stages.train_specialists_step(lake, run_id, workers=settings.train_workers or None)
    with open(specialists.path, "w") as f:
        json.dump({"run_id": run_id, "coins": coins}, f, indent=1)
    specialists.metadata.update({"run_id": run_id, "coins": len(coins),
                                 "lake_uri": lake.uri(stages.work_path(run_id, "specialists"))})
    return len(coins)
