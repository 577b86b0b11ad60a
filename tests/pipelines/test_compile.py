"""Every component and pipeline compiles; the committed specs are what the code compiles to, whatever the
environment of the shell that compiles them; the specs carry the policies the pipelines promise."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import fields

import pytest
import yaml
from kfp import compiler
from kfp.dsl.python_component import PythonComponent

import coinline.settings as settings_module
from coinline.secrets import Secret
from coinline.settings import Settings
from components.image import COINLINE_IMAGE, TRAINER_IMAGE
from pipelines import PIPELINES, steps
from pipelines.compile import COMPILED, compile_all, stale
from tests.pipelines.conftest import REPO

COMPONENT_FILES = sorted((REPO / "components").glob("*/*/component.py"))


def load_component(path):
    module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
    found = [v for v in vars(module).values() if isinstance(v, PythonComponent)]
    assert len(found) == 1, f"{path}: one component per file, found {len(found)}"
    return found[0]


def spec(name: str) -> dict:
    return next(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))


def test_every_component_folder_has_a_component_and_a_readme():
    assert len(COMPONENT_FILES) >= 10
    for path in COMPONENT_FILES:
        assert (path.parent / "README.md").is_file(), f"{path.parent} has no README.md"
        assert (path.parent / "__init__.py").is_file()


@pytest.mark.parametrize("path", COMPONENT_FILES, ids=lambda p: "/".join(p.parts[-3:-1]))
def test_component_compiles_to_the_coinline_image_without_installing_anything(path, tmp_path):
    component = load_component(path)
    out = tmp_path / "component.yaml"
    compiler.Compiler().compile(component, str(out))
    executors = yaml.safe_load(out.read_text())["deploymentSpec"]["executors"]
    fits_models = path.parts[-3] == "training"  # the model-fitting steps run the trainer image
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == (TRAINER_IMAGE if fits_models else COINLINE_IMAGE)
        assert "pip install" not in json.dumps(container), "the image carries coinline and kfp"


def test_component_sources_do_not_read_the_environment_at_import():
    for path in COMPONENT_FILES:
        head = path.read_text().split("@dsl.component", 1)[0]
        assert "os.environ" not in head and "getenv" not in head, path


def test_committed_specs_are_up_to_date():
    assert sorted(p.stem for p in COMPILED.glob("*.yaml")) == sorted(PIPELINES)
    assert stale() == [], "run `python -m pipelines.compile` and commit pipelines/compiled/"


def test_compiling_twice_gives_identical_bytes(tmp_path):
    first = {p.name: p.read_bytes() for p in compile_all(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in compile_all(tmp_path / "b")}
    assert first == second


def test_the_compile_environment_never_reaches_the_specs():
    env = {**os.environ, "OBJECT_STORE_URL": "s3://leaked-bucket", "COINLINE_SYMBOLS": "LEAKED",
           "COINLINE_INTERVALS": "4h", "HIST_MARKET_DATA_API_KEY": "leaked-key", "COINLINE_VENUE": "live"}
    done = subprocess.run([sys.executable, "-m", "pipelines.compile", "--check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_image_override_rewrites_every_component(tmp_path):
    for path in compile_all(tmp_path, image="registry.example/coinline:test"):
        text = path.read_text()
        assert COINLINE_IMAGE not in text
        assert "image: registry.example/coinline:test" in text
    trained = compile_all(tmp_path / "t", trainer_image="registry.example/trainer:cu126")
    text = {p.stem: p.read_text() for p in trained}["full"]
    assert TRAINER_IMAGE not in text and text.count("image: registry.example/trainer:cu126") == 4
    assert f"image: {COINLINE_IMAGE}\n" in text


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_no_pipeline_parameter_carries_a_secret(name):
    params = spec(name)["root"]["inputDefinitions"]["parameters"]
    assert "object_store_url" in params and "now" in params
    assert params["k8s_secret_name"]["defaultValue"] == steps.SECRET_NAME  # a Secret's name, not its data
    for param in set(params) - {"k8s_secret_name"}:
        assert not any(word in param for word in ("key", "secret", "password", "token")), param


def test_the_secret_variables_are_exactly_the_settings_secrets():
    secret_attrs = {f.name for f in fields(Settings) if isinstance(getattr(Settings(), f.name), Secret)}
    assert {var for var, attr in settings_module._ENV.items() if attr in secret_attrs} == set(steps.SECRET_VARIABLES)
    assert not set(steps.DEPLOYMENT_VARIABLES) & set(steps.SECRET_VARIABLES)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_lake_step_reads_secrets_from_the_kubernetes_secret_at_run_time(name):
    docs = list(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))
    assert len(docs) == 2, "pipeline spec + Kubernetes platform spec"
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    pipeline_executors = set(docs[0]["deploymentSpec"]["executors"])
    assert set(executors) == pipeline_executors - {"exec-report-metrics"}  # it reads only its input artifact
    for config in executors.values():
        [secret] = config["secretAsEnv"]
        assert secret["optional"] is True
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("k8s_secret_name")
        assert {m["envVar"] for m in secret["keyToEnv"]} == set(steps.SECRET_VARIABLES)
        [config_map] = config["configMapAsEnv"]
        assert {m["envVar"] for m in config_map["keyToEnv"]} == set(steps.DEPLOYMENT_VARIABLES)


def tasks_of(doc: dict) -> dict[str, dict]:
    """Every task of every DAG in a spec, by task name."""
    out = dict(doc["root"]["dag"]["tasks"])
    for component in doc["components"].values():
        out.update(component.get("dag", {}).get("tasks", {}))
    return out


@pytest.mark.parametrize("name", ["backfill", "sync", "full"])
def test_ingest_steps_retry_and_are_never_cached(name):
    tasks = tasks_of(spec(name))
    ingest = [t for t in tasks.values()
              if t.get("componentRef", {}).get("name") in ("comp-backfill-history", "comp-sync-candles",
                                                           "comp-retry-gaps")]
    assert ingest
    for task in ingest:
        assert task["retryPolicy"]["maxRetryCount"] == 3
        assert task["cachingOptions"].get("enableCache", False) is False


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_pipeline_reports_its_final_state_from_an_exit_handler(name):
    tasks = tasks_of(spec(name))
    notify = [t for t in tasks.values() if t["componentRef"]["name"] == "comp-notify-status"]
    assert len(notify) == 1 and notify[0]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"


def test_full_pipeline_fans_out_per_coin_group_and_per_interval():
    doc = spec("full")
    loops = [t for t in tasks_of(doc).values() if "parameterIterator" in t]
    assert len(loops) == 2
    refs = {t["componentRef"]["name"] for t in tasks_of(doc).values()}
    assert {"comp-plan-run", "comp-backfill-history", "comp-retry-gaps", "comp-sync-candles", "comp-validate-lake",
            "comp-check-parity", "comp-materialize-dataset", "comp-prepare-training", "comp-train-specialists",
            "comp-train-global-models", "comp-build-ensemble", "comp-evaluate-run", "comp-simulate-run",
            "comp-report-metrics", "comp-report-html", "comp-promote-run", "comp-notify-status"} <= refs


@pytest.mark.parametrize("name", ["train_and_promote", "full"])
def test_training_steps_consume_the_artifacts_of_the_steps_before_them(name):
    """The run's lineage is a chain of artifacts (KFP metadata shows what each step consumed), not bare ids."""
    tasks = tasks_of(spec(name))

    def consumed(task):
        arts = tasks[task].get("inputs", {}).get("artifacts", {})
        return {(k, v["taskOutputArtifact"]["producerTask"]) for k, v in arts.items() if "taskOutputArtifact" in v}

    assert consumed("prepare-training") == {("dataset", "materialize-dataset")}
    assert consumed("train-specialists") == {("prepared", "prepare-training")}
    assert consumed("train-global-models") == {("prepared", "prepare-training")}
    assert consumed("build-ensemble") == {("specialists", "train-specialists"), ("regime_model", "train-global-models")}
    assert consumed("evaluate-run") == {("ensemble", "build-ensemble")}
    assert consumed("simulate-run") == {("evaluation", "evaluate-run")}
    # inside dsl.If the artifact arrives through the condition's input, named after its producer
    assert tasks["promote-run"]["inputs"]["artifacts"] == {
        "run_manifest": {"componentInputArtifact": "pipelinechannel--simulate-run-run_manifest"}}
    assert "promote-run" in tasks["report-html"]["dependentTasks"]  # the report shows the decision


def test_sync_pipeline_forecasts_once_the_synced_candles_passed_the_quality_gate():
    doc = spec("sync")
    tasks = tasks_of(doc)
    forecast = tasks["forecast-cycle"]
    assert forecast["componentRef"]["name"] == "comp-forecast-cycle"
    assert forecast["dependentTasks"] == ["validate-lake"]  # after the gate, which runs after every sync
    loop = next(name for name, t in doc["components"]["comp-exit-handler-1"]["dag"]["tasks"].items()
                if "parameterIterator" in t)
    assert tasks["validate-lake"]["dependentTasks"] == [loop]
    synced = {t["componentRef"]["name"] for t in doc["components"][tasks[loop]["componentRef"]["name"]]["dag"][
        "tasks"].values()}
    assert synced == {"comp-sync-candles", "comp-sync-candles-2", "comp-retry-gaps"}
    assert forecast["cachingOptions"].get("enableCache", False) is False
    params = forecast["inputs"]["parameters"]
    assert params["source"]["runtimeValue"]["constant"] == steps.HIST_SOURCE
    for name, pipeline_param in (("object_store_url", "object_store_url"), ("symbols", "symbols"),
                                 ("quote", "forecast_quote"), ("interval", "forecast_interval"),
                                 ("train_config_json", "train_config_json"), ("now", "now")):
        assert params[name]["componentInputParameter"].endswith(pipeline_param), name
    assert "comp-forecast-cycle" not in {t["componentRef"]["name"] for p in ("backfill", "full", "train_and_promote")
                                         for t in tasks_of(spec(p)).values()}
