"""The Helm chart (charts/coinline): lints, renders with defaults, the kind values and every toggle on, passes
the Kubernetes schemas (Argo CronWorkflows checked structurally, their pods as Pods), and keeps its promises:
no secret values, least privilege, pinned images, schedules and settings from values, no retries on exit
codes 2 and 3, the in-chart MinIO and its bucket, the names the kind e2e relies on."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import yaml

from .conftest import CHART, ROOT

SECRET_VAR = re.compile(r"(_API_KEY|_API_SECRET|_ACCESS_KEY_ID|_SECRET_ACCESS_KEY)$")
ALL_ON = yaml.safe_load((CHART / "ci" / "all-on-values.yaml").read_text())  # every toggle on
KIND = yaml.safe_load((CHART / "values-kind.yaml").read_text())              # kind / throwaway clusters
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
VALUES_FILES = {"defaults": None, "kind": KIND, "all-on": ALL_ON}
SCHEDULES = {  # values key -> (object name suffix, component, default coinline arguments)
    "sync": ("sync", "sync", ["sync"]),
    "universeRefresh": ("universe", "universe-refresh", ["universe", "refresh"]),
    "retrain": ("retrain", "retrain", ["retrain", "--trigger", "schedule"]),
    "driftCheck": ("drift-check", "drift-check", ["retrain", "--trigger", "drift"]),
    "run": ("run", "run", ["run"]),
    "maintain": ("maintain", "maintain", ["maintain"]),
}
CRD_GROUPS = ("argoproj.io/", "ray.io/")  # no bundled schema: checked structurally


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def container_templates(cwf: dict) -> list[dict]:
    """The container templates of an Argo CronWorkflow (one per pod it runs; the sync workflow's steps
    template, which runs no pod of its own, is left out)."""
    return [t for t in cwf["spec"]["workflowSpec"]["templates"] if "container" in t]


def workflow_pod(cwf: dict, template: str = "coinline") -> dict:
    """The pod one container template of an Argo CronWorkflow runs (default: `coinline`, the scheduled
    command), as a Kubernetes pod spec."""
    ws = cwf["spec"]["workflowSpec"]
    (template,) = [t for t in ws["templates"] if t["name"] == template]
    pod = {k: ws[k] for k in ("serviceAccountName", "automountServiceAccountToken", "securityContext", "volumes",
                              "imagePullSecrets", "nodeSelector", "tolerations", "affinity") if k in ws}
    pod["containers"] = [{"name": "main", **template["container"]}]
    pod["restartPolicy"] = "Never"
    return pod


def pod_templates(doc: dict) -> list[tuple[str, dict, dict]]:
    """(where, pod metadata, pod spec) of every pod a rendered object makes."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        t = spec["jobTemplate"]["spec"]["template"]
        return [(name, t["metadata"], t["spec"])]
    if doc["kind"] in ("Job", "Deployment"):
        return [(name, spec["template"]["metadata"], spec["template"]["spec"])]
    if doc["kind"] == "Pod":  # the `helm test` Pod
        return [(name, doc["metadata"], spec)]
    if doc["kind"] == "CronWorkflow":
        return [(f"{name}/{t['name']}", t["metadata"], workflow_pod(doc, t["name"])) for t in container_templates(doc)]
    if doc["kind"] == "RayCluster":
        head = spec["headGroupSpec"]["template"]
        return [(f"{name}/head", head["metadata"], head["spec"])] + [
            (f"{name}/{g['groupName']}", g["template"]["metadata"], g["template"]["spec"])
            for g in spec["workerGroupSpecs"]]
    return []


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    return [(where, pod) for where, _, pod in pod_templates(doc)]


def containers(rendered) -> list[tuple[str, dict, dict]]:
    """(where, container, pod spec) for every container and init container of every workload."""
    out = []
    for doc in rendered:
        for where, pod in pod_specs(doc):
            for c in pod.get("initContainers", []) + pod["containers"]:
                out.append((f"{where}/{c['name']}", c, pod))
    return out


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label selector semantics (matchLabels + matchExpressions In/NotIn/Exists)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
    return True


def cron_of(cwf: dict) -> str:
    spec = cwf["spec"]
    if "schedules" in spec:
        (cron,) = spec["schedules"]
        return cron
    return spec["schedule"]


def retries_exit_code(expression: str, code: int) -> bool:
    """Evaluate an Argo retryStrategy expression over lastRetry.exitCode (the subset the chart uses)."""
    py = expression.replace("asInt(lastRetry.exitCode)", "CODE").replace("&&", " and ").replace("||", " or ")
    assert re.fullmatch(r"[\sCODE0-9!=<>()andor]+", py), f"unexpected tokens in {expression!r}"
    return bool(eval(py, {"__builtins__": {}}, {"CODE": code}))  # noqa: S307 - vetted arithmetic only


def gib(quantity) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]i)?", str(quantity)).groups()
    return float(number) * {None: 2**-30, "Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}[unit]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, CHART / "files" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- lint and render -------------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", [None, "values-kind.yaml", "ci/all-on-values.yaml"])
def test_chart_lints_strictly_with_each_values_file(helm_run, values_file):
    args = ["-f", str(CHART / values_file)] if values_file else []
    helm_run("lint", "--strict", str(CHART), *args)


def test_default_render_is_six_cronworkflows_and_their_plumbing(render):
    r = render()
    assert r.kinds() == sorted(["ConfigMap", "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount", "Secret"]
                               + ["CronWorkflow"] * 6 + ["Pod"])  # the Secret: the executor's token, see below;
    # the Pod: `helm test`'s (a test hook, run only by `helm test`)


def test_every_toggle_renders_its_workload(render):
    r = render(ALL_ON)
    assert {"Deployment", "RayCluster", "Job", "Service", "PersistentVolumeClaim", "CronWorkflow"} <= set(r.kinds())
    assert len(r.of("NetworkPolicy")) == 3  # app pods, Ray pods, MinIO
    follow = r.one("Deployment", "-sync-follow")["spec"]["template"]["spec"]["containers"][0]
    assert follow["args"] == ["sync", "--follow"]
    assert r.one("Deployment", "-sync-follow")["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("k8s_version", ["1.29.0", "1.33.0"])
def test_renders_pass_the_kubernetes_schemas_strictly(render, k8s_version):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")
    checked = 0
    secret_create = {"secret": {"create": True, "values": {"OBJECT_STORE_ACCESS_KEY_ID": "x"}}}
    for values in (*VALUES_FILES.values(), secret_create):
        for rendered in render(values):
            docs = [rendered]
            if rendered["apiVersion"].startswith(CRD_GROUPS):
                # the pods a CronWorkflow runs are Pods: validate those instead (the RayCluster: structurally)
                docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{rendered['metadata']['name']}-{t}"},
                         "spec": workflow_pod(rendered, t)} for t in
                        ([t["name"] for t in container_templates(rendered)] if rendered["kind"] == "CronWorkflow" else [])]
            for doc in docs:
                try:
                    kv.validate(doc, k8s_version, strict=True)
                except kv.ValidationError as exc:
                    pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {k8s_version}: {exc}")
                checked += 1
    assert checked >= 50


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_every_namespaced_object_names_the_release_namespace(render, name):
    for doc in render(VALUES_FILES[name], namespace="lake"):
        expected = ALL_ON["kubeflow"]["namespace"] if doc["metadata"]["name"].endswith("-kfp-edit") else "lake"
        assert doc["metadata"].get("namespace") == expected, f"{doc['kind']}/{doc['metadata']['name']}"


# --- secrets -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_no_secret_values_are_rendered_unless_explicitly_given(render, name):
    r = render(VALUES_FILES[name])
    for secret in r.of("Secret"):  # only the executor's token Secret, which Kubernetes fills in
        assert secret["type"] == "kubernetes.io/service-account-token", secret["metadata"]["name"]
        assert not {"data", "stringData"} & set(secret), secret["metadata"]["name"]
    config = r.one("ConfigMap", "-config")["data"]
    assert not [k for k in config if SECRET_VAR.search(k)]
    for where, c, _ in containers(r):
        for env_name, e in env_of(c).items():
            if SECRET_VAR.search(env_name) or env_name.startswith("MINIO_ROOT"):
                assert "value" not in e or env_name.endswith("_FILE"), f"{where}: {env_name} has a literal value"
            if SECRET_VAR.search(env_name):
                assert e["valueFrom"]["secretKeyRef"]["optional"] is True


def test_secret_variables_come_from_the_existing_secret_by_key(render):
    r = render({"secret": {"existingSecret": "my-keys"}, "scheduler": "cronjob", "syncFollow": {"enabled": True}})
    secret_vars = [k for k in env_example() if SECRET_VAR.search(k)]
    found = [(w, c) for w, c, _ in containers(r)]
    assert len(found) == 10  # six CronJobs, the follower, and the helm test Pod's deployment, preflight and smoke containers
    for where, c in found:
        env = env_of(c)
        for var in secret_vars:
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "my-keys", "key": var, "optional": True}, where
    for cwf in render({"secret": {"existingSecret": "my-keys"}}).of("CronWorkflow"):
        c = workflow_pod(cwf)["containers"][0]
        assert env_of(c)["KRAKEN_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "my-keys"


def test_hook_jobs_get_no_secret_variables(render):
    r = render(ALL_ON)
    for suffix in ("-kfp-upload", "-minio-bucket"):
        c = r.one("Job", suffix)["spec"]["template"]["spec"]["containers"][0]
        assert not [n for n in env_of(c) if SECRET_VAR.search(n)], suffix


def test_a_secret_is_rendered_only_when_asked_for_explicitly(render):
    r = render({"secret": {"create": True, "values": {"OBJECT_STORE_SECRET_ACCESS_KEY": "kind-only"}}})
    secret = r.one("Secret", "-secrets")
    assert secret["stringData"] == {"OBJECT_STORE_SECRET_ACCESS_KEY": "kind-only"}
    run = workflow_pod(r.one("CronWorkflow", "-run"))["containers"][0]
    assert env_of(run)["OBJECT_STORE_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


@pytest.mark.parametrize("values", [
    {"config": {"HIST_MARKET_DATA_API_KEY": "leak"}},
    {"config": {"OBJECT_STORE_SECRET_ACCESS_KEY": "leak"}},
    {"secret": {"create": True, "values": {"NOT_A_SECRET_VAR": "x"}}},
    {"secret": {"create": True, "existingSecret": "both", "values": {"KRAKEN_API_KEY": "x"}}},
], ids=["api-key-in-config", "s3-secret-in-config", "unknown-secret-key", "create-and-existing"])
def test_secrets_in_the_wrong_place_are_refused(render, values):
    render(values, expect_error=True)


# --- settings ----------------------------------------------------------------------------------------

def test_configmap_carries_every_non_secret_variable_of_env_example(render):
    example = env_example()
    non_secret = {k for k in example if not SECRET_VAR.search(k)}
    assert len(non_secret) > 20 and len(example) > len(non_secret)
    data = render().one("ConfigMap", "-config")["data"]
    assert sorted(non_secret - set(data)) == []
    assert all(isinstance(v, str) for v in data.values())


def test_configmap_values_come_from_values_and_minio_fills_the_endpoint(render):
    data = render({"config": {"COINLINE_SYMBOLS": "BTC,ETH", "COINLINE_GAP_TOLERANCE": 3}}).one("ConfigMap", "-config")["data"]
    assert data["COINLINE_SYMBOLS"] == "BTC,ETH" and data["COINLINE_GAP_TOLERANCE"] == "3"
    assert data["OBJECT_STORE_ENDPOINT_URL"] == ""  # a default cluster brings its own S3 (AWS)
    in_chart = {"minio": {"enabled": True}, "secret": {"existingSecret": "k"}}
    data = render(in_chart, namespace="lake").one("ConfigMap", "-config")["data"]
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "http://t-coinline-minio.lake.svc:9000"
    data = render({"minio": {"external": True}}, namespace="lake").one("ConfigMap", "-config")["data"]
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "http://minio.lake.svc:9000"
    data = render({"minio": {"external": True, "endpoint": "http://s3.lake:9000"}}).one("ConfigMap", "-config")["data"]
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "http://s3.lake:9000"
    data = render({**in_chart, "config": {"OBJECT_STORE_ENDPOINT_URL": "https://s3.example"}}).one("ConfigMap", "-config")["data"]
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "https://s3.example"


def test_every_coinline_container_loads_the_configmap(render):
    r = render(ALL_ON)
    cm = r.one("ConfigMap", "-config")["metadata"]["name"]
    for where, c, _ in containers(r):
        if where.startswith("Deployment/t-coinline-minio/"):
            continue  # MinIO is not coinline
        assert {"configMapRef": {"name": cm}} in c["envFrom"], where


# --- workloads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_every_container_has_resources_and_a_non_root_locked_down_security_context(render, name):
    found = containers(render(VALUES_FILES[name]))
    assert len(found) >= 5
    for where, c, pod in found:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind}"
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, where
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert "ALL" in sc["capabilities"]["drop"], where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        volumes = {v["name"]: v for v in pod["volumes"]}
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: /tmp must be an emptyDir"
        if "/minio:" not in c["image"] and not where.startswith("RayCluster"):  # coinline's working directory (COINLINE_UNIVERSE_DIR lives there)
            work = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/coinline"]
            assert work and "emptyDir" in volumes[work[0]["name"]], f"{where}: /var/lib/coinline must be an emptyDir"


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_coinline_pods_mount_no_service_account_token(render, name):
    r = render(VALUES_FILES[name])
    for doc in r:
        for where, pod in pod_specs(doc):
            if doc["kind"] == "RayCluster" and "serviceAccountName" not in pod:
                continue  # in-tree autoscaling: KubeRay manages the head's account
            assert pod.get("automountServiceAccountToken") is False, where
    assert r.one("ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_every_pod_is_labelled_part_of_coinline_and_the_app_policy_selects_coinline_pods(render, name):
    r = render(VALUES_FILES[name])
    app = r.one("NetworkPolicy", "-app")["spec"]["podSelector"]
    for doc in r:
        for where, meta, _ in pod_templates(doc):
            labels = meta["labels"]
            assert labels["app.kubernetes.io/part-of"] == "coinline", where
            component = labels["app.kubernetes.io/component"]
            is_app = not component.startswith(("ray-", "minio")) or component == "minio-bucket"
            assert selects(app, labels) is is_app, f"{where} ({component})"


def test_images_are_pinned_by_tag_from_values(render):
    for where, c, _ in containers(render(ALL_ON)):
        repo, _, tag = c["image"].rpartition(":")
        assert tag and tag != "latest", where
    custom = {**ALL_ON, "image": {"repository": "registry.example/coinline", "tag": "1.2.3"}}
    images = {c["image"] for w, c, _ in containers(render(custom)) if "/minio:" not in c["image"]}
    assert images == {"registry.example/coinline:1.2.3"}
    digest = "sha256:" + "a" * 64
    images = {c["image"] for _, c, _ in containers(render({"image": {"tag": "1.2.3", "digest": digest}}))}
    assert images == {f"ghcr.io/coinline/coinline:1.2.3@{digest}"}
    render({"image": {"tag": "latest"}}, expect_error=True)
    for bad in ("latest", ""):
        render({**ALL_ON, "minio": {**ALL_ON["minio"], "image": {"tag": bad}}}, expect_error=True)
    # a blank image.tag (the default) is the chart's appVersion, everywhere coinline's image runs
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {c["image"] for w, c, _ in containers(render({**ALL_ON, "image": {"tag": ""}})) if "/minio:" not in c["image"]}
    assert images == {f"ghcr.io/coinline/coinline:{app_version}"}


def test_the_follower_needs_continuous_ingestion(render):
    render({"syncFollow": {"enabled": True}, "config": {"ENABLE_CONTINUOUS_INGESTION": "false"}}, expect_error=True)


# --- recurring work: Argo CronWorkflows (default) -------------------------------------------------------

def test_cronworkflows_run_the_six_commands_on_their_default_schedules(render):
    r = render(release="coinline")
    cwfs = {d["metadata"]["name"]: d for d in r.of("CronWorkflow")}
    assert sorted(cwfs) == sorted(f"coinline-{suffix}" for suffix, _, _ in SCHEDULES.values())
    for key, (suffix, component, args) in SCHEDULES.items():
        cwf = cwfs[f"coinline-{suffix}"]
        assert cwf["apiVersion"] == "argoproj.io/v1alpha1", key
        assert workflow_pod(cwf)["containers"][0]["args"] == args, key
        assert cwf["metadata"]["labels"]["app.kubernetes.io/component"] == component
    assert cron_of(cwfs["coinline-sync"]) == "5 * * * *"                          # hourly at :05
    assert cron_of(cwfs["coinline-universe"]) == DEFAULTS["config"]["UNIVERSE_REFRESH_CRON"] == "0 3 * * 1"
    assert cron_of(cwfs["coinline-retrain"]) == "0 4 * * 1"                       # Mondays 04:00
    assert cron_of(cwfs["coinline-drift-check"]).split()[1:] == ["*/6", "*", "*", "*"]  # every 6 hours
    assert cron_of(cwfs["coinline-run"]).split()[2:] == ["*", "*", "*"]           # daily
    assert cron_of(cwfs["coinline-maintain"]) == "0 5 * * 0"                      # Sundays 05:00
    suspended = {name for name, d in cwfs.items() if d["spec"]["suspend"]}
    assert suspended == {"coinline-run"}  # submitted by hand first; retraining belongs to retrain/drift-check


@pytest.mark.parametrize("name", ["defaults", "all-on"])
def test_cronworkflows_are_structurally_complete(render, name):
    r = render(VALUES_FILES[name])
    cwfs = r.of("CronWorkflow")
    assert len(cwfs) == 6
    sa = r.one("ServiceAccount")["metadata"]["name"]
    for cwf in cwfs:
        where, spec = cwf["metadata"]["name"], cwf["spec"]
        assert cwf["kind"] == "CronWorkflow" and cwf["metadata"]["labels"]["app.kubernetes.io/part-of"] == "coinline"
        assert isinstance(spec["schedules"], list) and "schedule" not in spec, where
        assert spec["concurrencyPolicy"] == "Forbid", where
        assert spec["timezone"] == "Etc/UTC", where
        assert isinstance(spec["suspend"], bool), where
        assert isinstance(spec["startingDeadlineSeconds"], int) and spec["startingDeadlineSeconds"] > 0, where
        assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1, where
        ws = spec["workflowSpec"]
        assert ws["serviceAccountName"] == ws["executor"]["serviceAccountName"] == sa, where
        assert ws["automountServiceAccountToken"] is False, where
        assert ws["activeDeadlineSeconds"] > 0 and ws["ttlStrategy"]["secondsAfterCompletion"] > 0, where
        templates = container_templates(cwf)
        names = [t["name"] for t in templates]
        # one container template; the sync workflow: a steps template running sync, then the forecast
        assert names == (["coinline", "forecast"] if where.endswith("-sync") else ["coinline"]), where
        expected = ["sync-then-forecast", "coinline", "forecast"] if where.endswith("-sync") else ["coinline"]
        assert [t["name"] for t in ws["templates"]] == expected and ws["entrypoint"] == expected[0], where
        for template in templates:
            assert set(template) >= {"container", "retryStrategy", "metadata"}, where
            assert "command" not in template["container"], f"{where}: the image's entrypoint is coinline"
            assert template["archiveLocation"] == {"archiveLogs": False}, where
            assert int(template["retryStrategy"]["limit"]) >= 1, where
            mounts = {m["mountPath"] for m in template["container"]["volumeMounts"]}
            assert {"/tmp", "/var/lib/coinline"} <= mounts, where


def test_cronworkflows_never_retry_configuration_errors_or_held_leases(render):
    for cwf in render().of("CronWorkflow"):
        for template in container_templates(cwf):
            where = f"{cwf['metadata']['name']}/{template['name']}"
            strategy = template["retryStrategy"]
            assert strategy["retryPolicy"] == "Always"
            expression = strategy["expression"]
            assert not retries_exit_code(expression, 2), where
            assert not retries_exit_code(expression, 3), where
            for code in (1, 137, -1):  # a crash, an OOM kill, a pod that never ran
                assert retries_exit_code(expression, code), (where, code)


def test_schedules_and_arguments_come_from_values(render):
    values = {"schedules": {"sync": {"schedule": "@hourly"},
                            "retrain": {"schedule": "15 4 * * 0", "args": ["retrain", "--trigger", "schedule", "-v"]},
                            "run": {"suspend": False, "args": ["run", "--no-train"]},
                            "driftCheck": {"enabled": False}},
              "config": {"UNIVERSE_REFRESH_CRON": "45 2 * * 0"}}
    r = render(values)
    assert cron_of(r.one("CronWorkflow", "-sync")) == "@hourly"
    assert cron_of(r.one("CronWorkflow", "-retrain")) == "15 4 * * 0"
    assert cron_of(r.one("CronWorkflow", "-universe")) == "45 2 * * 0"
    assert r.one("ConfigMap", "-config")["data"]["UNIVERSE_REFRESH_CRON"] == "45 2 * * 0"  # one setting, two readers
    assert workflow_pod(r.one("CronWorkflow", "-retrain"))["containers"][0]["args"][-1] == "-v"
    run = r.one("CronWorkflow", "-run")
    assert run["spec"]["suspend"] is False and workflow_pod(run)["containers"][0]["args"] == ["run", "--no-train"]
    assert [d for d in r.of("CronWorkflow") if d["metadata"]["name"].endswith("-drift-check")] == []


@pytest.mark.parametrize("name", ["defaults", "kind"])
def test_every_scheduled_command_is_one_the_cli_accepts(render, name):
    from coinline.cli import build_parser

    r = render(VALUES_FILES[name])
    pods = [workflow_pod(d, t["name"]) for d in r.of("CronWorkflow") for t in container_templates(d)] + [
        d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in r.of("CronJob")]
    assert len(pods) == (7 if name == "defaults" else 6)  # defaults: the sync workflow's forecast step too
    for pod in pods:
        args = pod["containers"][0]["args"]
        parsed = build_parser().parse_args(args)  # argparse exits 2 on an unknown verb or option
        assert callable(parsed.func), args


def test_the_sync_workflow_forecasts_only_after_the_sync_step_succeeded(render):
    cwf = render(release="coinline").one("CronWorkflow", "-sync")
    ws = cwf["spec"]["workflowSpec"]
    (entry,) = [t for t in ws["templates"] if t["name"] == ws["entrypoint"]]
    # sequential step groups: Argo starts the second only once every step of the first succeeded, and no
    # step may opt out of that (continueOn) or run on a condition (when)
    assert entry["steps"] == [[{"name": "sync", "template": "coinline"}],
                              [{"name": "forecast", "template": "forecast"}]]
    sync, forecast = workflow_pod(cwf, "coinline"), workflow_pod(cwf, "forecast")
    assert sync["containers"][0]["args"] == ["sync"]
    assert forecast["containers"][0]["args"] == ["forecast", "--json"] == DEFAULTS["forecast"]["args"]
    # the same pod: service account, hardening, ConfigMap and secrets, scratch mounts; its own resources
    for key in ("securityContext", "envFrom", "env", "volumeMounts", "image", "workingDir"):
        assert forecast["containers"][0][key] == sync["containers"][0][key], key
    assert forecast["containers"][0]["resources"] == DEFAULTS["forecast"]["resources"]
    templates = {t["name"]: t for t in container_templates(cwf)}
    assert templates["forecast"]["metadata"] == templates["coinline"]["metadata"]  # NetworkPolicy selects it
    assert templates["forecast"]["retryStrategy"]["limit"] == DEFAULTS["forecast"]["retries"]
    assert templates["forecast"]["retryStrategy"]["expression"] == templates["coinline"]["retryStrategy"]["expression"]
    # no other workflow forecasts
    for other in render(release="coinline").of("CronWorkflow"):
        if other is not cwf:
            assert "forecast" not in json.dumps(other["spec"]["workflowSpec"]), other["metadata"]["name"]


def test_the_forecast_step_follows_its_values_and_can_be_turned_off(render):
    custom = render({"forecast": {"args": ["forecast", "--json", "--quote", "USDC"], "retries": 3,
                                  "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                                "limits": {"cpu": "2", "memory": "4Gi"}}}})
    cwf = custom.one("CronWorkflow", "-sync")
    assert workflow_pod(cwf, "forecast")["containers"][0]["args"][-2:] == ["--quote", "USDC"]
    assert {"cpu": "2", "memory": "4Gi"}.items() <= workflow_pod(cwf, "forecast")["containers"][0]["resources"][
        "limits"].items()
    assert {t["name"]: t for t in container_templates(cwf)}["forecast"]["retryStrategy"]["limit"] == 3
    off = render({"forecast": {"enabled": False}})
    ws = off.one("CronWorkflow", "-sync")["spec"]["workflowSpec"]
    assert ws["entrypoint"] == "coinline" and [t["name"] for t in ws["templates"]] == ["coinline"]
    assert "forecast" not in json.dumps(ws)
    # with CronJobs the sync CronJob only syncs, forecast on or off
    for values in ({"scheduler": "cronjob"}, {"scheduler": "cronjob", "forecast": {"enabled": False}}):
        pod = render(values).one("CronJob", "-sync")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert [c["args"] for c in pod["containers"]] == [["sync"]] and "initContainers" not in pod
    render({"forecast": {"retries": -1}}, expect_error=True)
    render({"forecast": {"enabled": "yes"}}, expect_error=True)


def test_argo_before_3_6_gets_the_singular_schedule_field(render):
    for cwf in render({"argo": {"scheduleField": "schedule"}}).of("CronWorkflow"):
        assert "schedules" not in cwf["spec"] and re.fullmatch(r"\S+( \S+){4}", cwf["spec"]["schedule"])


def test_training_schedules_get_shared_memory_for_ray(render):
    r = render()
    for suffix in ("-retrain", "-drift-check", "-run"):
        pod = workflow_pod(r.one("CronWorkflow", suffix))
        shm = [v for v in pod["volumes"] if v["name"] == "dshm"]
        assert shm and shm[0]["emptyDir"]["medium"] == "Memory", suffix
    assert "dshm" not in str(workflow_pod(r.one("CronWorkflow", "-sync")))


def test_the_role_grants_only_argo_task_results_and_only_with_argo(render):
    rule = {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    assert render().one("Role")["rules"] == [rule]
    assert render({"scheduler": "cronjob"}).one("Role")["rules"] == []
    none_enabled = {"schedules": {k: {"enabled": False} for k in SCHEDULES}}
    assert render(none_enabled).one("Role")["rules"] == []
    extra = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    assert render({"rbac": {"rules": [extra]}}).one("Role")["rules"] == [rule, extra]
    kfp = render(ALL_ON).one("RoleBinding", "-kfp-edit")
    assert kfp["roleRef"]["name"] == "kubeflow-pipelines-edit" and kfp["metadata"]["namespace"] == "team-a"


def test_argos_executor_gets_a_token_secret_the_coinline_container_never_mounts(render):
    r = render(release="coinline")
    sa = r.one("ServiceAccount")["metadata"]["name"]
    (token,) = r.of("Secret")
    # Argo mounts `<executor account>.service-account-token` into the init and wait containers only
    assert token["metadata"]["name"] == f"{sa}.service-account-token"
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": sa}
    for cwf in r.of("CronWorkflow"):
        ws = cwf["spec"]["workflowSpec"]
        assert ws["executor"]["serviceAccountName"] == sa and ws["automountServiceAccountToken"] is False
        assert token["metadata"]["name"] not in str(ws["templates"])
    assert render({"scheduler": "cronjob"}).of("Secret") == []
    assert render({"serviceAccount": {"create": False, "name": "mine"}}).of("Secret") == []  # yours to create


def test_workflow_pods_may_reach_the_api_server_for_argos_executor_only_with_argo(render):
    def api_rules(r):
        return [rule for rule in r.one("NetworkPolicy", "-app")["spec"]["egress"]
                if any("ipBlock" in to for to in rule.get("to", []))
                and {p["port"] for p in rule["ports"]} & {6443}]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in api_rules(render())] == [[443, 6443]]
    assert api_rules(render({"scheduler": "cronjob"})) == []


# --- recurring work: Kubernetes CronJobs (scheduler: cronjob) --------------------------------------------

def test_cronjob_scheduler_renders_the_same_commands_as_cronjobs(render):
    r = render({"scheduler": "cronjob"})
    assert r.of("CronWorkflow") == []
    jobs = {d["metadata"]["name"]: d for d in r.of("CronJob")}
    assert len(jobs) == 6
    argo = {d["metadata"]["name"]: d for d in render().of("CronWorkflow")}
    for name, cj in jobs.items():
        spec = cj["spec"]
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"] == workflow_pod(argo[name])["containers"][0]["args"], name
        assert spec["schedule"] == cron_of(argo[name]) and spec["timeZone"] == "Etc/UTC", name
        assert spec["concurrencyPolicy"] == "Forbid" and spec["suspend"] == argo[name]["spec"]["suspend"], name
        rules = spec["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
        assert {"action": "FailJob",
                "onExitCodes": {"containerName": "coinline", "operator": "In", "values": [2, 3]}} in rules, name


@pytest.mark.parametrize("scheduler", ["argo", "cronjob"])
def test_schedule_names_fit_the_52_character_limit_at_the_longest_fullname(render, scheduler):
    r = render({"fullnameOverride": "x" * 60, "scheduler": scheduler})
    docs = r.of("CronWorkflow") + r.of("CronJob")
    assert len(docs) == 6
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 52, doc["metadata"]["name"]


# --- values refused at install, with a message that says why -------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"schedules": {"sync": {"schedule": "5 * * *"}}}, "schedules.sync.schedule"),
    ({"schedules": {"retrain": {"schedule": "0 0 4 * * 1"}}}, "schedules.retrain.schedule"),
    ({"config": {"UNIVERSE_REFRESH_CRON": "0 3 * *"}}, "UNIVERSE_REFRESH_CRON"),
    ({"schedules": {"universeRefresh": {"schedule": "0 3 * * 1"}}}, "schedule"),
    ({"schedules": {"sync": {"concurrencyPolicy": "Replace"}}}, "concurrencyPolicy"),
    ({"schedules": {"run": {"retries": -1}}}, "retries"),
    ({"scheduler": "airflow"}, "scheduler"),
    ({"minio": {"enabled": True}}, "minio.enabled needs credentials"),
    ({"minio": {"enabled": True, "external": True}, "secret": {"existingSecret": "k"}}, "mutually exclusive"),
    ({"minio": {"enabled": True}, "secret": {"existingSecret": "k"}, "config": {"OBJECT_STORE_URL": "s3://Bad_Bucket/x"}},
     "OBJECT_STORE_URL"),
    ({"minio": {"enabled": True}, "secret": {"create": True, "values": {"OBJECT_STORE_ACCESS_KEY_ID": "u"}}},
     "OBJECT_STORE_SECRET_ACCESS_KEY"),
    ({"kubeflow": {"enabled": True, "recurringRuns": [{"name": "x", "pipeline": "full", "cron": "0 0 1 * * *"}]}},
     "recurringRuns"),
], ids=["4-field-cron", "6-field-cron", "4-field-universe-cron", "universe-has-no-own-schedule", "replace-policy",
        "negative-retries", "unknown-scheduler", "minio-without-credentials", "minio-in-chart-and-external",
        "minio-bad-bucket", "minio-secret-without-password", "kfp-recurring-runs-are-not-the-charts"])
def test_bad_values_fail_at_install_naming_the_value(render, values, message):
    stderr = render(values, expect_error=True)
    assert message in stderr, stderr


# --- MinIO in the chart --------------------------------------------------------------------------------

MINIO_ON = {"minio": {"enabled": True}, "secret": {"existingSecret": "coinline-keys"}}


def test_minio_is_off_by_default_and_external_minio_only_opens_egress(render):
    r = render()
    assert not [d for d in r if "minio" in d["metadata"]["name"]]
    r = render({"minio": {"external": True}})
    assert not [d for d in r if "minio" in d["metadata"]["name"]]
    egress = r.one("NetworkPolicy", "-app")["spec"]["egress"]
    to_minio = [rule for rule in egress if rule["ports"] == [{"protocol": "TCP", "port": 9000}]]
    assert to_minio and to_minio[0]["to"][0]["podSelector"] == DEFAULTS["minio"]["podSelector"]


def test_minio_runs_pinned_non_root_read_only_with_probes_and_limits(render):
    r = render(MINIO_ON)
    dep = r.one("Deployment", "-minio")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", c["image"])
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"] and pod["automountServiceAccountToken"] is False
    assert {"cpu", "memory"} <= set(c["resources"]["limits"]) and {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert dep["spec"]["strategy"]["type"] == "Recreate" and dep["spec"]["replicas"] == 1
    svc = r.one("Service")
    assert svc["metadata"]["name"] == "t-coinline-minio"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(9000, "api")]
    assert selects({"matchLabels": svc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"])


def test_minio_reads_its_root_credentials_as_files_from_the_coinline_secret_by_default(render):
    def creds(values):
        pod = render(values).one("Deployment", "-minio")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        assert "MINIO_ROOT_USER" not in env and "MINIO_ROOT_PASSWORD" not in env
        volume = {v["name"]: v for v in pod["volumes"]}["minio-credentials"]["secret"]
        mount = {m["name"]: m for m in c["volumeMounts"]}["minio-credentials"]
        assert env["MINIO_ROOT_USER_FILE"]["value"] == f"{mount['mountPath']}/root-user"
        assert env["MINIO_ROOT_PASSWORD_FILE"]["value"] == f"{mount['mountPath']}/root-password"
        assert mount["readOnly"] is True and not volume.get("optional")  # a missing key stops MinIO, no defaults
        return volume["secretName"], {i["path"]: i["key"] for i in volume["items"]}

    assert creds(MINIO_ON) == ("coinline-keys", {"root-user": "OBJECT_STORE_ACCESS_KEY_ID",
                                                 "root-password": "OBJECT_STORE_SECRET_ACCESS_KEY"})
    own = {**MINIO_ON, "minio": {"enabled": True, "auth": {"existingSecret": "minio-root", "userKey": "rootUser",
                                                            "passwordKey": "rootPassword"}}}
    assert creds(own) == ("minio-root", {"root-user": "rootUser", "root-password": "rootPassword"})
    created = {"minio": {"enabled": True}, "secret": {"create": True, "values": {
        "OBJECT_STORE_ACCESS_KEY_ID": "u", "OBJECT_STORE_SECRET_ACCESS_KEY": "p" * 12}}}
    assert creds(created)[0] == "t-coinline-secrets"


def test_minio_storage_is_a_kept_claim_or_an_empty_dir(render):
    def data_volume(r):
        pod = r.one("Deployment", "-minio")["spec"]["template"]["spec"]
        return {v["name"]: v for v in pod["volumes"]}["data"]

    r = render(MINIO_ON)
    assert r.of("PersistentVolumeClaim") == [] and data_volume(r)["emptyDir"]["sizeLimit"] == "10Gi"
    r = render({**MINIO_ON, "minio": {"enabled": True, "persistence": {"enabled": True, "size": "50Gi"}}})
    pvc = r.one("PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert data_volume(r)["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_the_bucket_hook_creates_the_bucket_of_the_lake_url_where_coinline_looks(render):
    r = render({**MINIO_ON, "config": {"OBJECT_STORE_URL": "s3://team-lake.v2/prices"}}, namespace="lake")
    job = r.one("Job", "-minio-bucket")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python"] and c["args"][0] == "/opt/minio-bucket/create_bucket.py"
    args = dict(zip(c["args"][1::2], c["args"][2::2], strict=True))
    assert args["--bucket"] == "team-lake.v2"
    assert args["--endpoint"] == r.one("ConfigMap", "-config")["data"]["OBJECT_STORE_ENDPOINT_URL"]
    assert args["--endpoint"] == "http://t-coinline-minio.lake.svc:9000"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert args["--credentials-dir"] in mounts
    script = r.one("ConfigMap", "-minio-bucket")["data"]["create_bucket.py"]
    assert script.strip() == (CHART / "files" / "create_bucket.py").read_text().strip()
    assert r.one("ConfigMap", "-minio-bucket")["metadata"]["annotations"]["helm.sh/hook-weight"] == "-1"


def test_only_coinline_pods_reach_minio(render):
    r = render(MINIO_ON)
    policy = r.one("NetworkPolicy", "-minio")["spec"]
    minio_labels = r.one("Deployment", "-minio")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"], minio_labels)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "coinline"}}}]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert sorted(p["port"] for rule in policy["egress"] for p in rule["ports"]) == [53, 53]
    app_egress = r.one("NetworkPolicy", "-app")["spec"]["egress"]
    assert any(selects(to["podSelector"], minio_labels) for rule in app_egress for to in rule["to"] if "podSelector" in to)


# --- the kind values: the names the e2e suite relies on ----------------------------------------------------

def test_kind_values_keep_the_contract_of_the_e2e_suite(render):
    r = render(KIND, release="coinline", namespace="kubeflow")
    config = r.one("ConfigMap", "-config")
    assert config["metadata"]["name"] == "coinline-config"
    data = config["data"]
    assert data["COINLINE_VENUE"] == "replay" and data["COINLINE_SYMBOLS"] == "BTC,ETH"
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "http://coinline-minio.kubeflow.svc:9000"
    assert data["OBJECT_STORE_URL"].startswith("s3://coinline-lake/")
    assert r.one("Service")["metadata"]["name"] == "coinline-minio"
    assert r.one("Service")["spec"]["ports"][0]["port"] == 9000
    args = r.one("Job", "-minio-bucket")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--bucket") + 1] == "coinline-lake"
    assert r.of("Secret") == [] and r.of("PersistentVolumeClaim") == []  # the e2e creates coinline-secrets
    minio_pod = r.one("Deployment", "-minio")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in minio_pod["volumes"]}["minio-credentials"]["secret"]["secretName"] == "coinline-secrets"
    for where, c, _ in containers(r):
        assert c["imagePullPolicy"] == "IfNotPresent", where
        for var in ("OBJECT_STORE_ACCESS_KEY_ID", "OBJECT_STORE_SECRET_ACCESS_KEY"):
            if var in env_of(c):
                assert env_of(c)[var]["valueFrom"]["secretKeyRef"]["name"] == "coinline-secrets", where
    ports = {p["port"] for rule in r.one("NetworkPolicy", "-app")["spec"]["egress"] for p in rule["ports"]}
    assert 443 not in ports and 9000 in ports  # replay needs no internet; MinIO is reachable
    jobs = r.of("CronJob")
    assert len(jobs) == 6 and all(j["spec"]["suspend"] for j in jobs)  # no Argo on kind; started by hand
    for where, c, _ in containers(r):
        assert gib(c["resources"]["limits"]["memory"]) <= 4, where  # small


# --- network ---------------------------------------------------------------------------------------

def test_network_policy_denies_ingress_and_limits_egress(render):
    app = render({"scheduler": "cronjob"}).one("NetworkPolicy", "-app")["spec"]
    assert app["policyTypes"] == ["Ingress", "Egress"] and app["ingress"] == []
    ports = sorted(p["port"] for rule in app["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443]
    app = render(ALL_ON).one("NetworkPolicy", "-app")["spec"]
    ports = sorted(p["port"] for rule in app["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443, 443, 6443, 8888, 9000, 10001]
    ray = render(ALL_ON).one("NetworkPolicy", "-ray")["spec"]
    client_rule = [rule for rule in ray["ingress"] if rule.get("ports")]
    assert [p["port"] for p in client_rule[0]["ports"]] == [10001]


# --- Ray -----------------------------------------------------------------------------------------------

def test_raycluster_has_a_head_and_workers_and_jobs_get_its_address(render):
    r = render(ALL_ON, release="prod", namespace="ml")
    ray = r.one("RayCluster")
    spec = ray["spec"]
    pinned_ray = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert ray["apiVersion"] == "ray.io/v1" and spec["rayVersion"] == pinned_ray
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["client"] == 10001
    (workers,) = spec["workerGroupSpecs"]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    address = f"ray://{ray['metadata']['name']}-head-svc.ml.svc:10001"  # KubeRay: <cluster>-head-svc
    for cwf in r.of("CronWorkflow"):
        c = workflow_pod(cwf)["containers"][0]
        assert env_of(c)["RAY_ADDRESS"]["value"] == address
    for where, c, _ in containers(r):
        if where.startswith("RayCluster"):
            assert "RAY_ADDRESS" not in env_of(c), where  # KubeRay sets the nodes' own
            assert env_of(c)["RAY_AUTH_MODE"]["value"] == "disabled"
    assert "RAY_ADDRESS" not in str(render())
    client_from = [rule for rule in r.one("NetworkPolicy", "-ray")["spec"]["ingress"] if rule.get("ports")][0]["from"]
    for suffix in ("-run", "-retrain", "-drift-check"):  # the schedules that train reach the Ray client port
        labels = container_templates(r.one("CronWorkflow", suffix))[0]["metadata"]["labels"]
        assert any(selects(peer["podSelector"], labels) for peer in client_from), suffix


def test_ray_autoscaling_leaves_the_head_service_account_to_kuberay(render):
    ray = render({"ray": {"enabled": True, "enableInTreeAutoscaling": True}}).one("RayCluster")
    assert "serviceAccountName" not in ray["spec"]["headGroupSpec"]["template"]["spec"]


# --- Kubeflow Pipelines --------------------------------------------------------------------------------

def test_kfp_uploader_is_a_hook_job_that_uploads_pipeline_versions_made_for_the_release(render):
    r = render(ALL_ON)
    job = r.one("Job", "-kfp-upload")
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python"] and c["args"][0] == "/opt/kfp-upload/kfp_upload.py"
    cm = r.one("ConfigMap", "-kfp-upload")["data"]
    assert cm["kfp_upload.py"].strip() == (CHART / "files" / "kfp_upload.py").read_text().strip()
    spec = json.loads(cm["spec.json"])
    assert spec["multiUser"] is True and spec["compiledDir"] == DEFAULTS["kubeflow"]["compiledDir"]
    # it creates no recurring run (`coinline schedule` makes them); it only moves existing ones on upgrade
    assert not {"recurringRuns", "experiment", "runServiceAccount"} & set(spec) and spec["moveRecurringRuns"] is True
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    token = volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "pipelines.kubeflow.org"


def _upload_spec(render, values, **kw) -> dict:
    return json.loads(render(values, **kw).one("ConfigMap", "-kfp-upload")["data"]["spec.json"])


def test_kfp_uploader_gets_the_charts_images_digests_and_the_releases_names(render):
    digest, trainer_digest = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    spec = _upload_spec(render, {"kubeflow": {"enabled": True}, "secret": {"existingSecret": "prod-keys"},
                                 "image": {"repository": "registry.example/coinline", "tag": "9.9.9", "digest": digest},
                                 "trainerImage": {"repository": "registry.example/trainer", "tag": "9.9.9-cu126",
                                                  "digest": trainer_digest}}, release="prod", namespace="ml")
    assert spec["images"] == {"runtime": f"registry.example/coinline:9.9.9@{digest}",
                              "trainer": f"registry.example/trainer:9.9.9-cu126@{trainer_digest}"}
    assert spec["parameters"] == {"k8s_secret_name": "prod-keys", "k8s_config_map_name": "prod-coinline-config",
                                  "ray_address": "",  # no RayCluster: the training steps use a Ray in their pod
                                  # trainerAccelerator's defaults: no accelerator
                                  "trainer_accelerator_type": "", "trainer_accelerator_count": 1,
                                  "trainer_node_selector": {}, "trainer_tolerations": []}
    assert spec["release"] == {"name": "prod", "namespace": "ml", "chartVersion": CHART_META["version"]}
    # defaults: both images follow the chart's appVersion; without a Secret named, the one secret.create would make
    spec = _upload_spec(render, {"kubeflow": {"enabled": True}}, release="coinline")
    assert spec["images"] == {"runtime": f"ghcr.io/coinline/coinline:{CHART_META['appVersion']}",
                              "trainer": f"ghcr.io/coinline/coinline-trainer:{CHART_META['appVersion']}"}
    assert spec["parameters"]["k8s_secret_name"] == "coinline-secrets"
    assert spec["parameters"]["k8s_config_map_name"] == "coinline-config"
    spec = _upload_spec(render, {"kubeflow": {"enabled": True}, "image": {"tag": "2.0.0"}})
    assert spec["images"]["trainer"] == "ghcr.io/coinline/coinline-trainer:2.0.0"  # trainer tag blank: image.tag


def test_kfp_pipelines_get_the_ray_address_and_their_pods_reach_the_ray_head(render):
    r = render(ALL_ON, release="prod", namespace="ml")
    spec = json.loads(r.one("ConfigMap", "-kfp-upload")["data"]["spec.json"])
    head = f"ray://{r.one('RayCluster')['metadata']['name']}-head-svc.ml.svc:10001"
    assert spec["parameters"]["ray_address"] == head
    assert env_of(workflow_pod(r.one("CronWorkflow", "-retrain"))["containers"][0])["RAY_ADDRESS"]["value"] == head
    # the labels every pipeline step's pod carries (compiled specs), admitted to the head's client port
    platform = list(yaml.safe_load_all((ROOT / "pipelines" / "compiled" / "full.yaml").read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labels = {json.dumps(e["podMetadata"]["labels"], sort_keys=True) for e in executors.values()}
    assert len(labels) == 1
    step_labels = json.loads(labels.pop())
    [client_rule] = [rule for rule in r.one("NetworkPolicy", "-ray")["spec"]["ingress"] if rule.get("ports")]
    assert [p["port"] for p in client_rule["ports"]] == [10001]
    peers = [peer for peer in client_rule["from"] if selects(peer["podSelector"], step_labels)]
    assert len(peers) == 1
    # multi-user KFP runs pipeline pods in the profile namespace (all-on: team-a)
    assert peers[0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
    assert not selects(peers[0]["podSelector"], {**step_labels, "app.kubernetes.io/component": "other"})
    # without Kubeflow, no pipeline pod is admitted
    no_kfp = render({**ALL_ON, "kubeflow": {"enabled": False}})
    [client_rule] = [rule for rule in no_kfp.one("NetworkPolicy", "-ray")["spec"]["ingress"] if rule.get("ports")]
    assert not [peer for peer in client_rule["from"] if selects(peer["podSelector"], step_labels)]


# --- the bucket script (files/create_bucket.py) against a fake S3 client ----------------------------------

class FakeClientError(Exception):
    def __init__(self, code: str, status: int):
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class FakeS3:
    def __init__(self, buckets=(), head_errors=(), create_errors=()):
        self.buckets, self.calls = set(buckets), []
        self.head_errors, self.create_errors = list(head_errors), list(create_errors)

    def head_bucket(self, Bucket):
        self.calls.append(("head", Bucket))
        if self.head_errors:
            raise self.head_errors.pop(0)
        if Bucket not in self.buckets:
            raise FakeClientError("404", 404)

    def create_bucket(self, Bucket):
        self.calls.append(("create", Bucket))
        if self.create_errors:
            raise self.create_errors.pop(0)
        self.buckets.add(Bucket)


def test_bucket_script_creates_once_and_then_leaves_the_bucket_alone():
    mod, s3 = load_script("create_bucket"), FakeS3()
    assert mod.ensure_bucket(s3, "coinline-lake", FakeClientError) == "created"
    assert mod.ensure_bucket(s3, "coinline-lake", FakeClientError) == "exists"
    assert [c for c in s3.calls if c[0] == "create"] == [("create", "coinline-lake")]
    raced = FakeS3(create_errors=[FakeClientError("BucketAlreadyOwnedByYou", 409)])
    assert mod.ensure_bucket(raced, "coinline-lake", FakeClientError) == "exists"


def test_bucket_script_fails_on_refusals_and_waits_for_a_starting_server():
    mod = load_script("create_bucket")
    with pytest.raises(FakeClientError):  # wrong credentials are not "missing bucket"
        mod.ensure_bucket(FakeS3(head_errors=[FakeClientError("403", 403)]), "b", FakeClientError)
    with pytest.raises(mod.NotReady):
        mod.ensure_bucket(FakeS3(head_errors=[FakeClientError("503", 503)]), "b", FakeClientError)

    clock = NS(now=0.0)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.now += seconds

    s3 = FakeS3(head_errors=[ConnectionError("refused")] * 3)
    outcome = mod.ensure_with_wait(lambda: mod.ensure_bucket(s3, "b", FakeClientError), 60, (ConnectionError,),
                                   sleep=sleep, clock=lambda: clock.now)
    assert outcome == "created" and sleeps == [1.0, 2.0, 4.0]
    never = FakeS3(head_errors=[ConnectionError("refused")] * 100)
    with pytest.raises(ConnectionError):
        mod.ensure_with_wait(lambda: mod.ensure_bucket(never, "b", FakeClientError), 30, (ConnectionError,),
                             sleep=sleep, clock=lambda: clock.now)


def test_bucket_script_reads_credentials_from_files(tmp_path):
    mod = load_script("create_bucket")
    (tmp_path / "root-user").write_text("coinline\n")
    (tmp_path / "root-password").write_text("s3cr3t-s3cr3t\n")
    assert mod.read_credentials(tmp_path) == ("coinline", "s3cr3t-s3cr3t")
    (tmp_path / "root-password").write_text("\n")
    with pytest.raises(SystemExit, match="empty credentials"):
        mod.read_credentials(tmp_path)


# --- values, schema and README agree -----------------------------------------------------------------

def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _uncovered(schema: dict, node: dict, value, path: str) -> list[str]:
    node = _resolve(schema, node)
    if not isinstance(value, dict) or node.get("type") != "object" and "properties" not in node:
        return []
    out = []
    for key, sub in value.items():
        if key in node.get("properties", {}):
            out += _uncovered(schema, node["properties"][key], sub, f"{path}.{key}")
        elif node.get("additionalProperties", True) is False:
            out.append(f"{path}.{key}")
    return out


@pytest.mark.parametrize("name", ["values.yaml", "values-kind.yaml", "ci/all-on-values.yaml"])
def test_values_schema_covers_every_value_and_refuses_unknown_ones(name):
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / name).read_text())
    assert schema["additionalProperties"] is False
    assert _uncovered(schema, schema, values, "") == []
    for block in ("schedules", "minio", "argo", "kubeflow"):
        assert _resolve(schema, schema["properties"][block])["additionalProperties"] is False, block


def test_readme_documents_every_top_level_value_and_schedule():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    for key in values:
        assert f"`{key}" in readme, f"charts/coinline/README.md does not document {key}"
    for key in SCHEDULES:
        assert f"`schedules.{key}`" in readme or f"`{key}`" in readme, key
    for topic in ("Argo Workflows", "KubeRay", "checkov-baseline.yaml", "make scan", "values-kind.yaml"):
        assert topic in readme, topic


def test_the_image_carries_what_the_chart_runs():
    dockerfile = (ROOT / "images" / "coinline" / "Dockerfile").read_text()
    assert "/opt/coinline/pipelines" in dockerfile  # kubeflow.compiledDir
    assert "kfp" in dockerfile and "ray[default]" in dockerfile  # uploader; Ray head dashboard + client
    assert re.search(r"USER\s+10001", dockerfile)  # podSecurityContext.runAsUser
    assert "boto3" in (ROOT / "pyproject.toml").read_text()  # the bucket hook's client
    assert Path(CHART / "files" / "kfp_upload.py").exists()


def test_chart_defaults_match_the_package_version_and_the_pipelines_image():
    import coinline

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = DEFAULTS["image"]
    assert chart["appVersion"] == coinline.__version__ and image["tag"] == ""  # blank: image.tag follows appVersion
    components_image = ROOT / "components" / "image.py"
    if components_image.exists():  # compiled KFP components run the same image as the schedules
        found = re.search(r'COINLINE_IMAGE_REPOSITORY\s*=\s*"([^"]+)"', components_image.read_text())
        assert found and found.group(1) == image["repository"]


def test_the_uploader_gets_the_trainer_accelerator_as_parameter_defaults(render):
    acc = {"resourceName": "nvidia.com/gpu", "count": 2, "nodeSelector": {"gpu": "a100"},
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    spec = _upload_spec(render, {"kubeflow": {"enabled": True}, "trainerAccelerator": acc}, release="coinline")
    assert {k: spec["parameters"][k] for k in ("trainer_accelerator_type", "trainer_accelerator_count",
                                               "trainer_node_selector", "trainer_tolerations")} == {
        "trainer_accelerator_type": "nvidia.com/gpu", "trainer_accelerator_count": 2,
        "trainer_node_selector": {"gpu": "a100"}, "trainer_tolerations": acc["tolerations"]}
