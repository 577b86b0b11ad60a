"""Component functions called directly (in-process), for the paths a local DAG run does not take."""

from __future__ import annotations

import logging

import pytest
from kfp.dsl import Artifact

from coinline.errors import CoinlineError
from components.training.ensemble.component import build_ensemble
from components.training.prepare.component import prepare_training


@pytest.fixture
def quiet_logging(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # components set up logging; undo it after
    monkeypatch.setattr(root, "level", root.level)


def test_a_training_step_run_out_of_order_names_the_step_it_needs(tmp_path, quiet_logging):
    ensemble = Artifact(uri=str(tmp_path / "ensemble"))
    with pytest.raises(CoinlineError, match="prepared"):
        build_ensemble.python_func(object_store_url=f"file://{tmp_path}/lake", run_id="run-x", ensemble=ensemble,
                                   workers=1)
    assert not (tmp_path / "ensemble").exists()


def test_a_bad_train_config_names_the_setting(tmp_path, quiet_logging):
    tuning = Artifact(uri=str(tmp_path / "tuning"))
    with pytest.raises(CoinlineError, match=r"train_config_json: unknown setting folds\.n_fold"):
        prepare_training.python_func(object_store_url=f"file://{tmp_path}/lake", dataset_id="ds-x", tuning=tuning,
                                     train_config_json='{"folds": {"n_fold": 3}}', workers=1)
