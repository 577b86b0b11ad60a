"""Whole DAGs run locally with kfp.local, on the offline replay venue, configured only through pipeline
parameters (the env-equivalent of COINLINE_SYMBOLS=BTC,ETH COINLINE_QUOTES=USD
COINLINE_REPLAY_HISTORY_DAYS=60 and a tmp file:// OBJECT_STORE_URL). As the Vertex samples' e2e test does,
every output that the compiled spec declares for an executed task must exist and be non-empty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coinline.forecasting import ledger as forecast_ledger
from coinline.lake import open_lake
from pipelines import backfill_pipeline, full_pipeline, sync_pipeline
from pipelines.compile import COMPILED
from tests.pipelines.conftest import init_local

NOW = "2026-01-15T00:00:00Z"   # pins every step's clock: the replay venue serves the same market to each pod
TINY_TRAINING = json.dumps({
    "families": ["lightgbm"], "horizons": [1, 4], "max_history_bars": None, "tune": {"trials": 0},
    "folds": {"n_folds": 2, "test_bars": 200, "min_train_bars": 600},
    "features": {"short": 6, "medium": 24, "long": 72}})
DATA = dict(symbols="BTC,ETH", quotes="USD", intervals=["1h"], venue="replay", replay_history_days=60,
            group_size=1, now=NOW)
TASKS_PER_GROUP = ("backfill-history", "retry-gaps", "sync-candles")


def run_dir(root: Path, pipeline: str) -> Path:
    runs = sorted(root.glob(f"{pipeline}-*"))
    assert len(runs) == 1, runs
    return runs[0]


def executor_outputs(spec_name: str) -> dict[str, dict]:
    """Task folder name -> the outputs its component declares (artifacts and parameters)."""
    doc = next(yaml.safe_load_all((COMPILED / f"{spec_name}.yaml").read_text()))
    return {name.removeprefix("comp-"): comp.get("outputDefinitions", {})
            for name, comp in doc["components"].items() if "executorLabel" in comp}


def assert_outputs_complete(run: Path, spec_name: str) -> dict[str, list[dict]]:
    """Every declared output of every executed task exists and is non-empty; returns each task's executor
    outputs (one per execution: loop iterations run a task once per item)."""
    executed: dict[str, list[dict]] = {}
    for task, declared in executor_outputs(spec_name).items():
        for folder in sorted(run.rglob(task)):
            out = json.loads((folder / "executor_output.json").read_text())
            for name, artifact in declared.get("artifacts", {}).items():
                meta = out["artifacts"][name]["artifacts"][0]
                if artifact["artifactType"]["schemaTitle"] == "system.Metrics":
                    assert meta["metadata"], f"{folder.name}: metrics {name} logged nothing"
                else:
                    path = folder / name
                    assert path.is_file() and path.stat().st_size > 0, f"{folder}: {name} missing or empty"
            for name in declared.get("parameters", {}):
                value = out["parameterValues"][name]
                assert value not in (None, "", []), f"{folder}: output {name} is empty"
            executed.setdefault(task, []).append(out)
    return executed


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("full")
    root = init_local(base / "pipeline_root")
    lake_url = f"file://{base}/lake"
    full_pipeline(object_store_url=lake_url, train_config_json=TINY_TRAINING, train_workers=1, **DATA)
    return root, lake_url


def test_full_pipeline_runs_every_step_and_every_output_is_non_empty(full_run):
    root, _lake = full_run
    executed = assert_outputs_complete(run_dir(root, "coinline-full"), "full")
    # report-html-2 is the oversight report of the promotion-disabled branch (dsl.Else): not taken here
    assert set(executed) == set(executor_outputs("full")) - {"report-html-2"}, "a step of the DAG did not run"
    assert executed["plan-run"][0]["parameterValues"]["Output"] == ["BTC", "ETH"]
    for task in TASKS_PER_GROUP:
        assert len(executed[task]) == 2, f"{task} should run once per coin group"
    assert executed["validate-lake"][0]["parameterValues"]["Output"] is True
    assert executed["notify-status"][0]["parameterValues"]["Output"] == "SUCCEEDED"


def test_full_pipeline_leaves_a_dataset_a_run_and_a_status_record_in_the_lake(full_run):
    root, lake_url = full_run
    run = run_dir(root, "coinline-full")
    lake = open_lake(lake_url)
    materialized = json.loads(next(run.rglob("materialize-dataset/executor_output.json")).read_text())
    dataset_id = materialized["parameterValues"]["dataset_id"]
    manifest = lake.read_json(f"datasets/{dataset_id}/manifest.json")
    assert manifest["content_hash"] == materialized["parameterValues"]["content_hash"]
    assert {s["symbol"] for s in manifest["series"]} == {"BTC", "ETH"}
    assert {s["quote"] for s in manifest["series"]} == {"USD"}
    prepared = json.loads(next(run.rglob("prepare-training/executor_output.json")).read_text())
    run_id = prepared["parameterValues"]["run_id"]
    simulated = json.loads(next(run.rglob("simulate-run/executor_output.json")).read_text())
    assert simulated["parameterValues"]["Output"] == run_id
    metrics = lake.read_json(f"runs/{run_id}/metrics.json")
    assert metrics["dataset_id"] == dataset_id
    assert json.loads(next(run.rglob("simulate-run/run_metrics")).read_text()) == metrics
    prepared_doc = json.loads(next(run.rglob("prepare-training/prepared")).read_text())
    assert (prepared_doc["run_id"], prepared_doc["dataset_id"]) == (run_id, dataset_id)
    evaluation = json.loads(next(run.rglob("evaluate-run/evaluation")).read_text())
    assert evaluation["skill"] == metrics["skill"] and "simulation" not in evaluation
    assert lake.read_json(f"runs/{run_id}/manifest.json")["dataset_hash"] == manifest["content_hash"]
    report = next(run.rglob("report-metrics/report")).read_text()
    assert run_id in report and "| horizon | model |" in report
    html = next(run.rglob("report-html/report")).read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and run_id in html
    decision = json.loads(next(run.rglob("promote-run/decision")).read_text())
    promoted = json.loads(next(run.rglob("promote-run/executor_output.json")).read_text())
    assert decision["run_id"] == run_id and decision["outcome"] in ("PROMOTE", "REJECT")
    decision_id = decision["decision"]["decision_id"]
    assert promoted["parameterValues"] == {"outcome": decision["outcome"], "decision_id": decision_id}
    assert lake.read_json(f"decisions/{decision_id}.json")["decision"] == decision["outcome"]
    summary = next(run.rglob("promote-run/summary")).read_text()
    assert f"# Promotion decision: {decision['outcome']}" in summary
    assert all(code in summary for code in decision["decision"]["reason_codes"])
    assert decision_id in html, "the oversight report runs after the promotion and shows its decision"
    records = [lake.read_json(n) for n in lake.list("reports/pipelines/coinline-full")]
    assert [r["state"] for r in records] == ["SUCCEEDED"]


def test_sync_after_backfill_adds_nothing_new_then_forecasts_with_the_champion(full_run):
    root, lake_url = full_run
    sync_pipeline(object_store_url=lake_url, **DATA)
    run = run_dir(root, "coinline-sync")
    executed = assert_outputs_complete(run, "sync")
    assert set(executed) == set(executor_outputs("sync")), "a step of the DAG did not run"
    outcomes = executed["sync-candles"] + executed["sync-candles-2"]  # the same component used twice
    assert len(outcomes) == 4  # historical provider and Kraken, per coin group
    assert [o["parameterValues"]["Output"] for o in outcomes] == [0, 0, 0, 0]
    # the forecast step: the promoted run, or the declared baseline when the full run's gates rejected it
    decision = json.loads(next(run_dir(root, "coinline-full").rglob("promote-run/decision")).read_text())
    champion = decision["run_id"] if decision["outcome"] == "PROMOTE" else "baseline:climatology"
    [forecast] = executed["forecast-cycle"]
    assert forecast["parameterValues"]["Output"] == champion
    cycle = json.loads(next(run.rglob("forecast-cycle/forecasts")).read_text())
    first = cycle["sets"][0]
    assert (first["model_set"], first["role"], first["skipped"]) == (champion, "champion", {})
    assert first["rows"] > 0 and first["inserted"] == first["rows"]
    assert first["forecast_time"].startswith("2026-01-15T00:00")  # the newest candle closed at NOW
    ledger = forecast_ledger.read(open_lake(lake_url), model_sets=[champion])
    assert len(ledger) == first["rows"] and set(ledger["symbol"]) == {"BTC", "ETH"}


def test_a_failing_step_fails_the_run_and_the_exit_handler_records_it(tmp_path):
    root = init_local(tmp_path / "pipeline_root", raise_on_error=False)
    lake_url = f"file://{tmp_path}/lake"
    backfill_pipeline(object_store_url=lake_url, **{**DATA, "symbols": "NOTACOIN"})
    run = run_dir(root, "coinline-backfill")
    assert not list(run.rglob("backfill-history")), "nothing is ingested after a failed plan"
    lake = open_lake(lake_url)
    records = [lake.read_json(n) for n in lake.list("reports/pipelines/coinline-backfill")]
    assert [r["state"] for r in records] == ["FAILED"]
