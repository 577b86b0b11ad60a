"""simulate_run: the deterministic trading simulation of a run's ensemble signals (`coinline.training.
stages.simulate_step`: signal at bar close, fill at the next open, fees and slippage, position and
exposure caps), then the run's artifacts and manifest under `runs/<run_id>/` in the lake."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def simulate_run(
    object_store_url: str,
    evaluation: Input[Artifact],
    simulation: Output[Metrics],
    run_metrics: Output[Artifact],
    run_manifest: Output[Model],
) -> str:
    """`evaluation`: evaluate_run's output. Returns the run id once the run is written. `run_metrics` is its metrics.json, `run_manifest` its
    manifest (every artifact's hash; the artifacts stay in the lake under `runs/<run_id>/`)."""
    import json

    from coinline.step_env import artifact_field, step_lake
    from coinline.training import stages

    run_id = artifact_field(evaluation.path, "run_id")
    _, lake = step_lake(object_store_url)
    run = stages.simulate_step(lake, run_id)
    sim = run.metrics.get("simulation", {})
    for key in ("total_return", "sharpe", "max_drawdown", "turnover", "hit_rate", "n_trades"):
        if isinstance(sim.get(key), int | float) and not isinstance(sim.get(key), bool):
            simulation.log_metric(f"simulation_{key}", float(sim[key]))
    with open(run_metrics.path, "wb") as f:
        f.write(lake.read_bytes(f"runs/{run_id}/metrics.json"))
    with open(run_manifest.path, "w") as f:
        json.dump(run.manifest, f, indent=1, sort_keys=True, default=str)
    lake_uri = lake.uri(f"runs/{run_id}")
    for artifact in (run_metrics, run_manifest):
        artifact.metadata.update({"run_id": run_id, "dataset_id": run.manifest.get("dataset_id", ""),
                                  "lake_uri": lake_uri})
    return run_id
