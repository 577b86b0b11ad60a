"""evaluate_run: a run's out-of-sample metric package (`coinline.training.stages.evaluate_step`): per
coin x horizon x model and the ensemble, against base-rate, momentum and random-walk baselines, chance
tests, Holm-corrected pooled skill, hindcast and forward checks. Pooled skill surfaces as KFP Metrics."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def evaluate_run(
    object_store_url: str,
    ensemble: Input[Model],
    evaluation: Output[Artifact],
    skill: Output[Metrics],
) -> bool:
    """`ensemble`: build_ensemble's output. Returns whether any (horizon, model) beat the base rate after the Holm correction."""
    from coinline.jsonsafe import json_bytes
    from coinline.step_env import artifact_field, step_lake
    from coinline.training import stages

    run_id = artifact_field(ensemble.path, "run_id")
    _, lake = step_lake(object_store_url)
    metrics = stages.evaluate_step(lake, run_id)
    pooled = metrics.get("skill", {})
    for _key, v in sorted(pooled.get("by_model", {}).items()):
        name = f"h{v['horizon']}_{v['model']}"
        for key in ("log_loss", "accuracy", "brier"):
            if isinstance(v["oos"].get(key), int | float):
                skill.log_metric(f"{name}_oos_{key}", float(v["oos"][key]))
        if isinstance(v.get("p_value_holm"), int | float):
            skill.log_metric(f"{name}_p_holm", float(v["p_value_holm"]))
    with open(evaluation.path, "wb") as f:
        f.write(json_bytes(metrics))
    evaluation.metadata.update({"run_id": run_id, "any_significant": bool(pooled.get("any_significant", False))})
    return bool(pooled.get("any_significant", False))
