"""build_ensemble: the leakage-safe stacked meta-learner of each coin (`coinline.training.stages.
ensemble_step`): fitted on out-of-fold specialist predictions of earlier folds only, gated by the regime
posteriors; then each coin's metric package, one Ray task per coin (on the cluster at `ray_address` when
set, as train_specialists). Needs both train_specialists and train_global_models."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.image import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, packages_to_install=[], install_kfp_package=False)
def build_ensemble(
    object_store_url: str,
    specialists: Input[Model],
    regime_model: Input[Model],
    ensemble: Output[Model],
    workers: int = 0,
    ray_address: str = "",
) -> int:
    """`specialists`, `regime_model`: the outputs of train_specialists and train_global_models (of the same
    run). Returns the number of coins with an ensemble. `ensemble` holds the stacking weights per coin."""
    import json

    from coinline.errors import CoinlineError
    from coinline.jsonsafe import clean
    from coinline.step_env import artifact_field, step_lake, use_ray
    from coinline.training import stages

    run_id = artifact_field(specialists.path, "run_id")
    if artifact_field(regime_model.path, "run_id") != run_id:
        raise CoinlineError(f"specialists of run {run_id} and a regime model of run "
                            f"{artifact_field(regime_model.path, 'run_id')} cannot be stacked together")
    settings, lake = step_lake(object_store_url, COINLINE_TRAIN_WORKERS=workers)
    use_ray(ray_address)
    weights = stages.ensemble_step(lake, run_id, workers=settings.train_workers or None)
    with open(ensemble.path, "w") as f:
        json.dump(clean({"run_id": run_id, "stacking_weights": weights}), f, indent=1, sort_keys=True)
    stacked = sum(1 for w in weights.values() if w)
    ensemble.metadata.update({"run_id": run_id, "coins": stacked,
                              "lake_uri": lake.uri(stages.work_path(run_id, "ensemble"))})
    return stacked
