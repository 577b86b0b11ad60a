"""The staged run (the Kubeflow components' path) is the same run as `train`: byte-identical artifacts,
each step needs the one before it, and the step results are scratch that can be cleared afterwards."""

import json

import pytest

from coinline.errors import CoinlineError
from coinline.training import stages
from coinline.training.run import train
from tests.training.conftest import fast_config


def _staged(lake, dataset_id, cfg, workers=1, keep_work=False):
    run_id = stages.prepare_run(lake, dataset_id, cfg, workers=workers).run_id
    coins = stages.train_specialists_step(lake, run_id, workers=workers)
    regime_metrics = stages.train_global_step(lake, run_id)
    weights = stages.ensemble_step(lake, run_id, workers=workers)
    stages.evaluate_step(lake, run_id)
    return stages.simulate_step(lake, run_id, keep_work=keep_work), coins, regime_metrics, weights


def test_a_staged_run_writes_exactly_what_train_writes(lake, rw_dataset):
    cfg = fast_config(families=("lightgbm", "lstm"))
    whole = train(lake, rw_dataset, cfg, workers=1)
    whole_files = {n: lake.read_bytes(n) for n in lake.list(f"runs/{whole.run_id}/")}
    for name in whole_files:
        lake.delete(name)
    staged, coins, regime_metrics, weights = _staged(lake, rw_dataset, cfg)
    assert staged.run_id == whole.run_id
    staged_files = {n: lake.read_bytes(n) for n in lake.list(f"runs/{staged.run_id}/")}
    assert sorted(staged_files) == sorted(whole_files)
    differing = [n for n in whole_files if staged_files[n] != whole_files[n]]
    assert differing == []
    assert coins == staged.metrics["symbols"] == sorted(weights)
    assert regime_metrics == staged.metrics["regime"]
    assert staged.manifest["content_hash"] == whole.manifest["content_hash"]
    assert not any(n.startswith("work/") for n in staged.manifest["artifacts"])
    assert lake.list(f"work/{staged.run_id}/") == [], "step results are deleted once the run is written"
    again = stages.simulate_step(lake, staged.run_id)  # a retried last step finds the run written
    assert again.manifest == staged.manifest and again.metrics == json.loads(staged_files[f"runs/{staged.run_id}/metrics.json"])


def test_a_step_without_its_input_names_the_missing_step(lake, rw_dataset):
    run_id = stages.prepare_run(lake, rw_dataset, fast_config(families=("lightgbm",)), workers=1).run_id
    stages.train_global_step(lake, run_id)
    with pytest.raises(CoinlineError, match="specialists"):
        stages.ensemble_step(lake, run_id, workers=1)
    with pytest.raises(CoinlineError, match="no manifest yet"):
        stages.clear_work(lake, run_id)
    assert lake.list(f"work/{run_id}/")  # nothing was deleted


def test_step_results_are_cleared_only_after_the_run_is_written(lake, rw_dataset):
    run, *_ = _staged(lake, rw_dataset, fast_config(families=("lightgbm",)), keep_work=True)
    assert len(lake.list(f"work/{run.run_id}/")) == len(stages.STEPS)
    assert stages.clear_work(lake, run.run_id) == len(stages.STEPS)
    assert lake.list(f"work/{run.run_id}/") == []
    assert lake.read_bytes(f"runs/{run.run_id}/manifest.json") is not None
