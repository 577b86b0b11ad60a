"""The Helm chart (charts/coinline): lints, renders with defaults and with every toggle on, passes the
Kubernetes schemas, and keeps its promises: no secret values, least privilege, pinned images, schedules
and settings from values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, ROOT

SECRET_VAR = re.compile(r"(_API_KEY|_API_SECRET|_ACCESS_KEY_ID|_SECRET_ACCESS_KEY)$")
ALL_ON = yaml.safe_load((CHART / "ci" / "all-on-values.yaml").read_text())  # every toggle on


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        return [(name, spec["jobTemplate"]["spec"]["template"]["spec"])]
    if doc["kind"] in ("Job", "Deployment"):
        return [(name, spec["template"]["spec"])]
    if doc["kind"] == "RayCluster":
        return [(f"{name}/head", spec["headGroupSpec"]["template"]["spec"])] + [
            (f"{name}/{g['groupName']}", g["template"]["spec"]) for g in spec["workerGroupSpecs"]]
    return []


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


# --- lint and render -------------------------------------------------------------------------------

def test_chart_lints_strictly_with_defaults_and_with_every_toggle_on(helm_run):
    helm_run("lint", "--strict", str(CHART))
    helm_run("lint", "--strict", str(CHART), "-f", str(CHART / "ci" / "all-on-values.yaml"))


def test_default_render_is_the_two_cronjobs_and_their_plumbing(render):
    r = render()
    assert r.kinds() == sorted(["ConfigMap", "CronJob", "CronJob", "NetworkPolicy", "Role", "RoleBinding",
                                "ServiceAccount"])


def test_every_toggle_renders_its_workload(render):
    r = render(ALL_ON)
    assert {"Deployment", "RayCluster", "Job"} <= set(r.kinds())
    assert len(r.of("NetworkPolicy")) == 2  # app pods and Ray pods
    follow = r.one("Deployment", "-sync-follow")["spec"]["template"]["spec"]["containers"][0]
    assert follow["args"] == ["sync", "--follow"]
    assert r.one("Deployment", "-sync-follow")["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("k8s_version", ["1.29.0", "1.33.0"])
def test_renders_pass_the_kubernetes_schemas_strictly(render, k8s_version):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")
    checked = 0
    for values in (None, ALL_ON, {"secret": {"create": True, "values": {"OBJECT_STORE_ACCESS_KEY_ID": "x"}}}):
        for doc in render(values):
            if doc["apiVersion"].startswith("ray.io/"):
                continue  # CRD: no bundled schema; checked structurally below
            try:
                kv.validate(doc, k8s_version, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {k8s_version}: {exc}")
            checked += 1
    assert checked >= 20


# --- secrets -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [None, ALL_ON], ids=["defaults", "all-toggles"])
def test_no_secret_values_are_rendered_unless_explicitly_given(render, values):
    r = render(values)
    assert r.of("Secret") == []
    config = r.one("ConfigMap", "-config")["data"]
    assert not [k for k in config if SECRET_VAR.search(k)]
    for where, c, _ in containers(r):
        for name, e in env_of(c).items():
            if SECRET_VAR.search(name):
                assert "value" not in e, f"{where}: {name} has a literal value"
                assert e["valueFrom"]["secretKeyRef"]["optional"] is True


def test_secret_variables_come_from_the_existing_secret_by_key(render):
    r = render({"secret": {"existingSecret": "my-keys"}})
    secret_vars = [k for k in env_example() if SECRET_VAR.search(k)]
    for where, c, _ in containers(r):
        env = env_of(c)
        for var in secret_vars:
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "my-keys", "key": var, "optional": True}, where


def test_a_secret_is_rendered_only_when_asked_for_explicitly(render):
    r = render({"secret": {"create": True, "values": {"OBJECT_STORE_SECRET_ACCESS_KEY": "kind-only"}}})
    secret = r.one("Secret")
    assert secret["stringData"] == {"OBJECT_STORE_SECRET_ACCESS_KEY": "kind-only"}
    run = r.one("CronJob", "-run")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
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
    data = render({"config": {"COINLINE_SYMBOLS": "BTC,ETH", "COINLINE_GAP_TOLERANCE": 3}}).one("ConfigMap")["data"]
    assert data["COINLINE_SYMBOLS"] == "BTC,ETH" and data["COINLINE_GAP_TOLERANCE"] == "3"
    data = render({"minio": {"enabled": True}}, namespace="lake").one("ConfigMap")["data"]
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "http://minio.lake.svc:9000"
    data = render({"minio": {"enabled": True}, "config": {"OBJECT_STORE_ENDPOINT_URL": "https://s3.example"}}).one("ConfigMap")["data"]
    assert data["OBJECT_STORE_ENDPOINT_URL"] == "https://s3.example"


def test_every_coinline_container_loads_the_configmap(render):
    r = render(ALL_ON)
    cm = r.one("ConfigMap", "-config")["metadata"]["name"]
    for where, c, _ in containers(r):
        assert {"configMapRef": {"name": cm}} in c["envFrom"], where


# --- workloads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [None, ALL_ON], ids=["defaults", "all-toggles"])
def test_every_container_has_resources_and_a_non_root_locked_down_security_context(render, values):
    found = containers(render(values))
    assert found
    for where, c, pod in found:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind}"
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, where
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert "ALL" in sc["capabilities"]["drop"], where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        volumes = {v["name"]: v for v in pod["volumes"]}
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: /tmp must be an emptyDir"


def test_coinline_pods_mount_no_service_account_token(render):
    for doc in render(ALL_ON):
        for where, pod in pod_specs(doc):
            assert pod.get("automountServiceAccountToken") is False, where
    assert render(ALL_ON).one("ServiceAccount")["automountServiceAccountToken"] is False


def test_the_role_grants_nothing_by_default(render):
    assert render().one("Role")["rules"] == []
    kfp = render(ALL_ON).one("RoleBinding", "-kfp-edit")
    assert kfp["roleRef"]["name"] == "kubeflow-pipelines-edit" and kfp["metadata"]["namespace"] == "team-a"


def test_cronjob_schedules_and_arguments_come_from_values(render):
    r = render()
    run = r.one("CronJob", "-run")["spec"]
    sync = r.one("CronJob", "-sync")["spec"]
    assert run["schedule"].split()[2:] == ["*", "*", "*"] and "*" not in run["schedule"].split()[:2]  # daily
    assert sync["schedule"].split()[1:] == ["*", "*", "*", "*"]                                       # hourly
    assert run["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["run"]
    assert sync["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["sync"]
    assert run["concurrencyPolicy"] == sync["concurrencyPolicy"] == "Forbid"
    r = render({"run": {"schedule": "15 4 * * *", "args": ["run", "--no-train"]}, "sync": {"schedule": "@hourly"}})
    assert r.one("CronJob", "-run")["spec"]["schedule"] == "15 4 * * *"
    assert r.one("CronJob", "-sync")["spec"]["schedule"] == "@hourly"
    assert r.one("CronJob", "-run")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "run", "--no-train"]
    render({"run": {"schedule": "every day"}}, expect_error=True)


def test_jobs_do_not_retry_configuration_errors_or_held_leases(render):
    for cron in render().of("CronJob"):
        rules = cron["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
        assert {"action": "FailJob", "onExitCodes": {"containerName": "coinline", "operator": "In", "values": [2, 3]}} in rules


def test_images_are_pinned_by_tag_from_values(render):
    for where, c, _ in containers(render(ALL_ON)):
        repo, _, tag = c["image"].rpartition(":")
        assert tag and tag != "latest", where
    custom = {**ALL_ON, "image": {"repository": "registry.example/coinline", "tag": "1.2.3"}}
    images = {c["image"] for _, c, _ in containers(render(custom))}
    assert images == {"registry.example/coinline:1.2.3"}
    digest = "sha256:" + "a" * 64
    images = {c["image"] for _, c, _ in containers(render({"image": {"tag": "1.2.3", "digest": digest}}))}
    assert images == {f"ghcr.io/coinline/coinline:1.2.3@{digest}"}
    for bad in ("latest", ""):
        render({"image": {"tag": bad}}, expect_error=True)


def test_the_follower_needs_continuous_ingestion(render):
    render({"syncFollow": {"enabled": True}, "config": {"ENABLE_CONTINUOUS_INGESTION": "false"}}, expect_error=True)


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
    for cron in r.of("CronJob"):
        c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert env_of(c)["RAY_ADDRESS"]["value"] == address
    for where, c, _ in containers(r):
        if where.startswith("RayCluster"):
            assert "RAY_ADDRESS" not in env_of(c), where  # KubeRay sets the nodes' own
            assert env_of(c)["RAY_AUTH_MODE"]["value"] == "disabled"
    assert "RAY_ADDRESS" not in str(render())


def test_ray_autoscaling_leaves_the_head_service_account_to_kuberay(render):
    ray = render({"ray": {"enabled": True, "enableInTreeAutoscaling": True}}).one("RayCluster")
    assert "serviceAccountName" not in ray["spec"]["headGroupSpec"]["template"]["spec"]


# --- network ---------------------------------------------------------------------------------------

def test_network_policy_denies_ingress_and_limits_egress(render):
    app = render().one("NetworkPolicy", "-app")["spec"]
    assert app["policyTypes"] == ["Ingress", "Egress"] and app["ingress"] == []
    ports = sorted(p["port"] for rule in app["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443]
    app = render(ALL_ON).one("NetworkPolicy", "-app")["spec"]
    ports = sorted(p["port"] for rule in app["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443, 8888, 9000, 10001]
    ray = render(ALL_ON).one("NetworkPolicy", "-ray")["spec"]
    client_rule = [rule for rule in ray["ingress"] if rule.get("ports")]
    assert [p["port"] for p in client_rule[0]["ports"]] == [10001]


# --- Kubeflow Pipelines --------------------------------------------------------------------------------

def test_kfp_uploader_is_a_hook_job_with_its_script_and_spec(render):
    r = render(ALL_ON)
    job = r.one("Job", "-kfp-upload")
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python"] and c["args"][0] == "/opt/kfp-upload/kfp_upload.py"
    cm = r.one("ConfigMap", "-kfp-upload")["data"]
    assert cm["kfp_upload.py"].strip() == (CHART / "files" / "kfp_upload.py").read_text().strip()
    spec = yaml.safe_load(cm["spec.json"])
    assert spec["recurringRuns"][0]["cron"] == "0 30 1 * * *" and spec["multiUser"] is True
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    token = volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "pipelines.kubeflow.org"


def test_kfp_cron_needs_six_fields(render):
    bad = {"kubeflow": {"enabled": True, "recurringRuns": [{"name": "x", "pipeline": "full", "cron": "30 1 * * *"}]}}
    render(bad, expect_error=True)


def test_values_schema_and_readme_cover_every_top_level_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    for key in values:
        assert key in schema["properties"], key
        assert f"`{key}" in readme, f"charts/coinline/README.md does not document {key}"


def test_the_image_carries_what_the_chart_runs():
    dockerfile = (ROOT / "images" / "coinline" / "Dockerfile").read_text()
    assert "/opt/coinline/pipelines" in dockerfile  # kubeflow.compiledDir
    assert "kfp" in dockerfile and "ray[default]" in dockerfile  # uploader; Ray head dashboard + client
    assert re.search(r"USER\s+10001", dockerfile)  # podSecurityContext.runAsUser
    assert Path(CHART / "files" / "kfp_upload.py").exists()


def test_chart_defaults_match_the_package_version_and_the_pipelines_image():
    import coinline

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    assert chart["appVersion"] == image["tag"] == coinline.__version__
    components_image = ROOT / "components" / "image.py"
    if components_image.exists():  # compiled KFP components run the same image as the CronJobs
        found = re.search(r'COINLINE_IMAGE_REPOSITORY\s*=\s*"([^"]+)"', components_image.read_text())
        assert found and found.group(1) == image["repository"]
