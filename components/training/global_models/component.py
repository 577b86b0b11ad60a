"""train_global_models: the global regime classifier of a prepared run (`coinline.training.stages.
train_global_step`): trend / range / high-vol / stress from causal market-wide rules, multinomial
posteriors fitted walk-forward; its out-of-sample posteriors gate the specialists in the ensemble."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.image import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, packages_to_install=[], install_kfp_package=False)
def train_global_models(
    object_store_url: str,
    prepared: Input[Artifact],
    regime_metrics: Output[Metrics],
    regime_model: Output[Model],
) -> None:
    """`prepared`: prepare_training's output. `regime_metrics`: the out-of-sample regime scores (the score penalizes false transitions) and label
    counts; `regime_model` describes where the model is kept (the deployable one is written with the run)."""
    import json

    from coinline.jsonsafe import clean
    from coinline.step_env import artifact_field, step_lake
    from coinline.training import stages

    run_id = artifact_field(prepared.path, "run_id")
    _, lake = step_lake(object_store_url)
    metrics = clean(stages.train_global_step(lake, run_id))
    for key, value in sorted(metrics.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            regime_metrics.log_metric(f"regime_{key}", float(value))
    with open(regime_model.path, "w") as f:
        json.dump({"run_id": run_id, "metrics": metrics}, f, indent=1, sort_keys=True)
    regime_model.metadata.update({"run_id": run_id, "lake_uri": lake.uri(stages.work_path(run_id, "regime"))})
