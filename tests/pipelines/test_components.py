"""Component functions called directly (in-process), for the paths a local DAG run does not take."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import Artifact, Dataset, Metrics, Model

from coinline.errors import CoinlineError
from components.forecasting.forecast.component import forecast_cycle
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


def test_the_forecast_step_runs_one_forecast_cycle_and_writes_its_summary(tmp_path, monkeypatch):
    """forecast_cycle maps its parameters onto `coinline.forecasting.service.forecast_cycle` (symbols from the
    parameter, else the universe; the training config from its JSON; the pinned clock) and writes the
    library's JSON-safe summary, without the predicted frames."""
    from datetime import UTC, datetime

    from coinline.forecasting import service
    from coinline.lake.store import Lake
    from coinline.training.config import TrainConfig, train_config_from_json

    calls = []

    def fake_cycle(lake, *, cfg, quote, interval, source, symbols, now):
        calls.append(dict(lake=lake, cfg=cfg, quote=quote, interval=interval, source=source, symbols=symbols,
                          now=now))
        sets = [{"model_set": "baseline:climatology", "role": "champion", "rows": 4, "inserted": 4,
                 "skipped": {"SOL": "SOL: no stored candle"}, "forecast_time": "2026-01-15 00:00:00+00:00"},
                {"model_set": "run-shadow", "role": "shadow", "rows": 2, "inserted": 0, "skipped": {},
                 "forecast_time": "2026-01-15 00:00:00+00:00"}]
        return {"at": now.isoformat(), "sets": sets, "batches": [object()]}

    monkeypatch.setattr(service, "forecast_cycle", fake_cycle)
    forecasts, summary = Artifact(uri=str(tmp_path / "forecasts")), Metrics(uri=str(tmp_path / "summary"))
    config = '{"tune": {"trials": 0}}'
    champion = forecast_cycle.python_func(object_store_url=f"file://{tmp_path}/lake", forecasts=forecasts,
                                          summary=summary, symbols="btc,ETH", quote="USDC", interval="4h",
                                          train_config_json=config, now="2026-01-15T00:30:00Z")
    assert champion == "baseline:climatology"
    [call] = calls
    assert isinstance(call["lake"], Lake) and str(tmp_path / "lake") in call["lake"].uri("")
    assert call["cfg"] == train_config_from_json(config) != TrainConfig()
    assert (call["quote"], call["interval"], call["source"]) == ("USDC", "4h", "coinapi")
    assert call["symbols"] == ["BTC", "ETH"]
    assert call["now"] == datetime(2026, 1, 15, 0, 30, tzinfo=UTC)
    written = json.loads((tmp_path / "forecasts").read_text())
    assert "batches" not in written and [s["model_set"] for s in written["sets"]] == ["baseline:climatology",
                                                                                      "run-shadow"]
    assert forecasts.metadata["champion"] == "baseline:climatology" and forecasts.metadata["inserted"] == 4
    assert summary.metadata == {"champion_rows": 4, "champion_inserted": 4, "champion_skipped_coins": 1,
                                "shadow_sets": 1, "shadow_rows": 2}

    calls.clear()  # no symbols: the whole universe of the pinned version
    forecast_cycle.python_func(object_store_url=f"file://{tmp_path}/lake", forecasts=forecasts, summary=summary)
    assert len(calls[0]["symbols"]) > 10 and calls[0]["cfg"] == TrainConfig()
