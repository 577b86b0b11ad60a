"""Offline checks of what the kind e2e suite (test_kind.py) sends to the cluster, so that a renamed pipeline
parameter, a stale training config or a chart values change shows up in `make test`, not only after an
hour on kind. Not marked e2e: no cluster, no container engine; helm is used when available."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.delivery.conftest import CHART, find_helm
from tests.e2e import test_kind as e2e

IMAGES = {"runtime": "ghcr.io/coinline/coinline:e2e-plan", "trainer": "ghcr.io/coinline/coinline-trainer:e2e-plan"}
PARAMETER_TYPES = {"STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float), "BOOLEAN": (bool,),
                   "LIST": (list,), "STRUCT": (dict,)}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """The spec the e2e uploads: compiled for the e2e images, requests lowered."""
    path = e2e._pipeline_spec(IMAGES, tmp_path_factory.mktemp("compiled"))
    return list(yaml.safe_load_all(path.read_text()))


def test_run_parameters_are_inputs_of_the_full_pipeline_with_their_types(spec):
    inputs = spec[0]["root"]["inputDefinitions"]["parameters"]
    assert set(e2e.RUN_PARAMETERS) <= set(inputs), set(e2e.RUN_PARAMETERS) - set(inputs)
    required = {name for name, p in inputs.items() if not p.get("isOptional")}
    assert required <= set(e2e.RUN_PARAMETERS), required - set(e2e.RUN_PARAMETERS)
    for name, value in e2e.RUN_PARAMETERS.items():
        kind = inputs[name]["parameterType"]
        assert isinstance(value, PARAMETER_TYPES[kind]) and not (kind.startswith("NUMBER") and isinstance(value, bool)), \
            f"{name}={value!r} is not a {kind}"


def test_run_parameters_describe_a_small_offline_run():
    from coinline.settings import VENUES
    from coinline.timeframes import parse_iso_utc
    from coinline.training.config import train_config_from_json

    params = e2e.RUN_PARAMETERS
    assert params["venue"] == "replay" and params["venue"] in VENUES  # no provider keys, no internet
    assert params["object_store_url"] == f"s3://{e2e.BUCKET}/lake"
    assert parse_iso_utc(params["now"]) == e2e._utc(e2e.NOW)
    config = train_config_from_json(params["train_config_json"])  # the same parser the prepare step uses
    assert config.families == ("lightgbm",) and config.tune.trials == 0
    bars = params["replay_history_days"] * 24  # hourly candles
    assert bars >= config.folds.min_train_bars + config.folds.n_folds * config.folds.test_bars


def test_the_uploaded_spec_runs_the_image_under_test_with_requests_a_small_node_can_give(spec):
    executors = spec[0]["deploymentSpec"]["executors"]
    images = {ex["container"]["image"] for ex in executors.values() if "container" in ex}
    assert images == set(IMAGES.values()), images  # the trainer image fits the models, the runtime image the rest
    requested = [ex["container"]["resources"] for ex in executors.values() if ex["container"].get("resources")]
    assert requested and all(r["resourceMemoryRequest"] == "3G" and r["resourceCpuRequest"] == "1" for r in requested)


def test_the_uploaded_spec_reads_the_secret_and_config_map_the_e2e_creates(spec):
    platform = json.dumps(spec[1])
    assert "secretNameParameter" in platform and "configMapNameParameter" in platform
    assert spec[0]["root"]["inputDefinitions"]["parameters"]["k8s_secret_name"]["defaultValue"] == e2e.SECRET
    assert spec[0]["root"]["inputDefinitions"]["parameters"]["k8s_config_map_name"]["defaultValue"] == e2e.CONFIG_MAP


def test_the_chart_installs_with_the_e2e_values_as_the_e2e_expects(tmp_path):
    helm = find_helm()
    if helm is None:
        pytest.skip("helm not found (PATH or .tools/helm/helm) and npm could not install it")
    proc = subprocess.run([str(helm), "template", e2e.RELEASE, str(CHART), "-n", e2e.NAMESPACE, "-f", str(e2e.VALUES_KIND),
                           "--set", "image.repository=ghcr.io/coinline/coinline", "--set", "image.tag=e2e-plan",
                           *e2e._suspend_every_schedule()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    named = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("ConfigMap", e2e.CONFIG_MAP), ("Service", e2e.LAKE_SERVICE)} <= named, sorted(named)
    assert not [d for d in docs if d["kind"] == "Secret"], "the e2e creates coinline-secrets itself"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == e2e.CONFIG_MAP]
    assert config["data"]["OBJECT_STORE_ENDPOINT_URL"] == f"http://{e2e.LAKE_SERVICE}.{e2e.NAMESPACE}.svc:9000"
    assert config["data"]["OBJECT_STORE_URL"].startswith(f"s3://{e2e.BUCKET}/")
    images = {c["image"] for d in docs if d["kind"] in ("CronJob", "Job")
              for c in (d["spec"].get("jobTemplate", d)["spec"]["template"]["spec"]["containers"])}
    assert "ghcr.io/coinline/coinline:e2e-plan" in images
    schedules = [d for d in docs if d["kind"] in ("CronJob", "CronWorkflow")]
    assert schedules and all(d["spec"]["suspend"] is True for d in schedules), "nothing may fire during the e2e"
