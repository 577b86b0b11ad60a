"""Component functions called directly (in-process), for the paths a local DAG run does not take."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import Artifact, Dataset, Model

from coinline.errors import CoinlineError
from components.training.ensemble.component import build_ensemble
from components.training.prepare.component import prepare_training


def _artifact(kind, path, body=None):
    if body is not None:
        path.write_text(json.dumps(body))
    return kind(uri=str(path))


def test_a_training_step_run_out_of_order_names_the_step_it_needs(tmp_path):
    ensemble = _artifact(Model, tmp_path / "ensemble")
    with pytest.raises(CoinlineError, match="prepared"):
        build_ensemble.python_func(object_store_url=f"file://{tmp_path}/lake",
                                   specialists=_artifact(Model, tmp_path / "s", {"run_id": "run-x"}),
                                   regime_model=_artifact(Model, tmp_path / "r", {"run_id": "run-x"}),
                                   ensemble=ensemble, workers=1)
    assert not (tmp_path / "ensemble").exists()


def test_artifacts_of_two_different_runs_are_not_stacked_together(tmp_path):
    with pytest.raises(CoinlineError, match="specialists of run run-a and a regime model of run run-b"):
        build_ensemble.python_func(object_store_url=f"file://{tmp_path}/lake",
                                   specialists=_artifact(Model, tmp_path / "s", {"run_id": "run-a"}),
                                   regime_model=_artifact(Model, tmp_path / "r", {"run_id": "run-b"}),
                                   ensemble=_artifact(Model, tmp_path / "e"), workers=1)


def test_an_input_artifact_without_the_id_it_must_carry_is_named(tmp_path):
    with pytest.raises(CoinlineError, match=r"input artifact .*/s names no 'run_id'"):
        build_ensemble.python_func(object_store_url=f"file://{tmp_path}/lake",
                                   specialists=_artifact(Model, tmp_path / "s", {"coins": []}),
                                   regime_model=_artifact(Model, tmp_path / "r", {"run_id": "run-b"}),
                                   ensemble=_artifact(Model, tmp_path / "e"), workers=1)


def test_a_bad_train_config_names_the_setting(tmp_path):
    with pytest.raises(CoinlineError, match=r"train_config_json: unknown setting folds\.n_fold"):
        prepare_training.python_func(object_store_url=f"file://{tmp_path}/lake",
                                     dataset=_artifact(Dataset, tmp_path / "manifest", {"dataset_id": "ds-x"}),
                                     prepared=_artifact(Artifact, tmp_path / "prepared"),
                                     train_config_json='{"folds": {"n_fold": 3}}', workers=1)
