"""manifests/: every file parses and the plain ones pass the Kubernetes schemas; the kind cluster config and
the plain MinIO agree with the chart's defaults and reference their credentials instead of carrying them;
the Kubeflow Pipelines install is pinned to one release tag that matches the kfp SDK; the namespace
enforces the restricted Pod Security Standard, which every pod the chart renders meets; the example
Secrets hold placeholders only."""

from __future__ import annotations

import ast
import re
from importlib.metadata import version
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from .conftest import CHART, ROOT

MANIFESTS = ROOT / "manifests"
MINIO = MANIFESTS / "minio"
KUBEFLOW = MANIFESTS / "kubeflow"
SECRETS = MANIFESTS / "secrets"
PLACEHOLDER = "REPLACE_ME"
KFP_REPO = "github.com/kubeflow/pipelines/manifests/kustomize/"
SECRETISH = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL)", re.I)


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml"))


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def is_kubernetes_object(doc: dict) -> bool:
    """Objects an API server takes, as opposed to tool configuration (kustomize, kind)."""
    return doc["kind"] != "Kustomization" and not doc["apiVersion"].startswith(("kind.x-k8s.io/", "kustomize.config"))


def minio_docs() -> list[dict]:
    kustomization = yaml.safe_load((MINIO / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((MINIO / name).read_text()) if d]
    return docs


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in minio_docs() if d["kind"] == kind]
    return doc


def test_minio_carries_no_credentials_only_a_secret_reference():
    assert not [d for d in minio_docs() if d["kind"] == "Secret"]
    container = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert "value" not in env[var] and env[var]["valueFrom"]["secretKeyRef"]["name"] == "minio-credentials"


def test_minio_matches_what_the_chart_expects_by_default():
    minio_values = yaml.safe_load((CHART / "values.yaml").read_text())["minio"]
    service = by_kind("Service")
    assert service["metadata"]["name"] == minio_values["serviceName"]
    assert minio_values["port"] in [p["port"] for p in service["spec"]["ports"]]
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert minio_values["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_minio_runs_non_root_with_a_pinned_image_and_limits():
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", c["image"])
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])


def test_minio_manifests_pass_the_kubernetes_schemas():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")
    for doc in minio_docs():
        kv.validate(doc, "1.33.0", strict=True)


def test_kind_cluster_pins_a_node_image_the_chart_supports():
    cluster = yaml.safe_load((ROOT / "manifests" / "kind" / "cluster.yaml").read_text())
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    chart_min = re.search(r">=\s*(\d+)\.(\d+)", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"])
    for node in cluster["nodes"]:
        m = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.\d+(@sha256:[0-9a-f]{64})?", node["image"])
        assert m, node["image"]
        assert (int(m.group(1)), int(m.group(2))) >= (int(chart_min.group(1)), int(chart_min.group(2)))


# --- every manifest ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_manifest_parses(path):
    docs = load(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict) and isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)
        if is_kubernetes_object(doc):
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]


def test_every_plain_manifest_passes_the_kubernetes_schemas_strictly():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")
    validated = []
    for path in manifest_files():
        for doc in filter(is_kubernetes_object, load(path)):
            kv.validate(doc, "1.33.0", strict=True)
            validated.append(f"{path.relative_to(MANIFESTS)}:{doc['kind']}")
    expected = {"namespace.yaml:Namespace", "secrets/coinline-secrets.example.yaml:Secret",
                "secrets/minio-credentials.example.yaml:Secret", "minio/deployment.yaml:Deployment"}
    assert expected <= set(validated), validated


def test_no_manifest_sets_a_secret_looking_variable_inline():
    """Credentials reach pods through secretKeyRef/secretRef, never as an env `value`."""
    def walk(node, where):
        if isinstance(node, dict):
            if {"name", "value"} <= node.keys() and isinstance(node["name"], str) and SECRETISH.search(node["name"]):
                pytest.fail(f"{where}: env {node['name']} has an inline value")
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for path in manifest_files():
        for doc in load(path):
            walk(doc, path.relative_to(MANIFESTS))


# --- Kubeflow Pipelines -------------------------------------------------------------------------------


def kfp_kustomizations() -> dict[str, list[str]]:
    """manifests/kubeflow/<step>/kustomization.yaml -> its resources."""
    found = {}
    for path in sorted(KUBEFLOW.rglob("kustomization.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "Kustomization" and not doc.get("bases"), path
        found[str(path.parent.relative_to(KUBEFLOW))] = doc["resources"]
    return found


def kfp_release() -> str:
    (release,) = {parse_qs(urlsplit(f"https://{r}").query)["ref"][0]
                  for resources in kfp_kustomizations().values() for r in resources}
    return release


def test_kubeflow_pipelines_is_installed_in_two_steps_from_one_pinned_release_tag():
    kustomizations = kfp_kustomizations()
    assert kustomizations == {
        "cluster-scoped": [f"{KFP_REPO}cluster-scoped-resources?ref={kfp_release()}"],
        # platform-agnostic, never env/dev (which repoints every KFP image to the floating tag master)
        "env": [f"{KFP_REPO}env/platform-agnostic?ref={kfp_release()}"],
    }, kustomizations
    refs = [parse_qs(urlsplit(f"https://{r}").query).get("ref", [""]) for rs in kustomizations.values() for r in rs]
    assert all(len(ref) == 1 for ref in refs), refs
    release = kfp_release()
    assert re.fullmatch(r"\d+\.\d+\.\d+", release), f"?ref={release}: pin a release tag, not a branch or a range"
    assert release.lower() not in ("master", "main", "head", "latest")


def test_kubeflow_pipelines_release_matches_the_kfp_sdk_and_server_api():
    """The backend release of the SDK line the project pins (KFP numbers backend and SDK alike since 2.14;
    the backend went 2.5.0 -> 2.14.0), so compiled specs use nothing the backend lacks."""
    minor = tuple(kfp_release().split(".")[:2])
    assert tuple(version("kfp").split(".")[:2]) == minor, (version("kfp"), kfp_release())
    assert tuple(version("kfp-server-api").split(".")[:2]) == minor, (version("kfp-server-api"), kfp_release())


def test_the_docs_install_the_same_kubeflow_pipelines_release():
    text = (MANIFESTS / "README.md").read_text()
    release = kfp_release()
    assert f"PIPELINE_VERSION={release}" in text or f"?ref={release}" in text
    other = set(re.findall(r"\?ref=([\w.-]+)", text)) - {release}
    assert not other, f"manifests/README.md names other KFP releases: {other}"
    assert "manifests/kubeflow/cluster-scoped" in text and "manifests/kubeflow/env" in text
    assert text.index("manifests/kubeflow/cluster-scoped") < text.index("condition=established") \
        < text.index("manifests/kubeflow/env"), "document the order: cluster-scoped, CRDs Established, env"


# --- the namespace and Pod Security ------------------------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                   "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}


def pod_specs(doc: dict) -> list[tuple[str, dict, list[dict]]]:
    """(label, pod-level spec, containers) of every pod a workload renders."""
    kind, name = doc["kind"], doc["metadata"]["name"]

    def pod(spec: dict, label: str = f"{kind}/{name}") -> tuple[str, dict, list[dict]]:
        return label, spec, [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]

    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [pod(doc["spec"]["template"]["spec"])]
    if kind == "CronJob":
        return [pod(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])]
    if kind == "Pod":
        return [pod(doc["spec"])]
    if kind == "RayCluster":
        groups = [("head", doc["spec"]["headGroupSpec"])] + [(g["groupName"], g) for g in doc["spec"].get("workerGroupSpecs", [])]
        return [pod(group["template"]["spec"], f"{kind}/{name}/{label}") for label, group in groups]
    if kind in ("CronWorkflow", "Workflow", "WorkflowTemplate"):
        spec = doc["spec"]["workflowSpec"] if kind == "CronWorkflow" else doc["spec"]
        containers = [c for t in spec["templates"]
                      for c in [t.get("container"), t.get("script"), *t.get("initContainers", []), *t.get("sidecars", [])]
                      if c]
        return [(f"{kind}/{name}", spec, containers)]
    return []


def restricted_violations(spec: dict, containers: list[dict]) -> list[str]:
    """What the `restricted` Pod Security Standard (Kubernetes 1.33) refuses in a pod."""
    bad = [f"{field}: true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    bad += [f"volume {v['name']}: {sorted(set(v) - {'name'})}" for v in spec.get("volumes", [])
            if not set(v) - {"name"} <= ALLOWED_VOLUMES]
    pod_sc = spec.get("securityContext") or {}
    bad += [f"sysctl {s['name']}" for s in pod_sc.get("sysctls", []) if s["name"] not in SAFE_SYSCTLS]
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append(f"pod seccompProfile {pod_seccomp}")
    if pod_sc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    for c in containers:
        sc, name = c.get("securityContext") or {}, c.get("name", "?")
        caps = sc.get("capabilities") or {}
        checks = {
            "privileged": not sc.get("privileged"),
            "allowPrivilegeEscalation: false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities.drop: [ALL]": "ALL" in (caps.get("drop") or []),
            "no added capabilities but NET_BIND_SERVICE": set(caps.get("add") or []) <= {"NET_BIND_SERVICE"},
            "runAsNonRoot: true": sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True,
            "runAsUser != 0": sc.get("runAsUser", pod_sc.get("runAsUser")) != 0,
            "seccompProfile RuntimeDefault|Localhost":
                (sc.get("seccompProfile") or {}).get("type", pod_seccomp) in ("RuntimeDefault", "Localhost"),
            "no hostPort": not any(p.get("hostPort") for p in c.get("ports", [])),
            "procMount Default": sc.get("procMount") in (None, "Default"),
        }
        bad += [f"container {name}: {rule}" for rule, ok in checks.items() if not ok]
    return bad


def test_namespace_enforces_the_restricted_pod_security_standard():
    (namespace,) = load(MANIFESTS / "namespace.yaml")
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "coinline"
    labels = namespace["metadata"]["labels"]
    node = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())["nodes"][0]["image"]
    node_minor = re.search(r":v(\d+\.\d+)\.", node).group(1)
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", labels
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == f"v{node_minor}", labels


def chart_values_files() -> list[Path]:
    return sorted([*CHART.glob("values-*.yaml"), *(CHART / "ci").glob("*values*.yaml")])


@pytest.mark.parametrize("values_file", [None, *chart_values_files()],
                         ids=lambda p: "defaults" if p is None else str(p.relative_to(CHART)))
def test_every_pod_the_chart_renders_meets_the_restricted_standard(render, values_file):
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    pods = [p for doc in render(values) for p in pod_specs(doc)]
    assert pods, "the chart rendered no pod at all"
    violations = {label: bad for label, spec, containers in pods if (bad := restricted_violations(spec, containers))}
    assert not violations, violations


def test_the_plain_minio_meets_the_restricted_standard():
    pods = [p for doc in minio_docs() for p in pod_specs(doc)]
    assert len(pods) == 1
    assert not restricted_violations(*pods[0][1:])


def test_the_restricted_check_refuses_what_it_should():
    ok_container = {"name": "c", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    ok_pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
              "volumes": [{"name": "tmp", "emptyDir": {}}]}
    assert restricted_violations(ok_pod, [ok_container]) == []
    bad_cases = [
        ({**ok_pod, "hostNetwork": True}, ok_container),
        ({**ok_pod, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, ok_container),
        ({**ok_pod, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}, ok_container),
        ({**ok_pod, "securityContext": {"runAsNonRoot": True}}, ok_container),
        (ok_pod, {"name": "c", "securityContext": {"capabilities": {"drop": ["ALL"]}}}),
        (ok_pod, {"name": "c", "securityContext": {"allowPrivilegeEscalation": False}}),
        (ok_pod, {**ok_container, "ports": [{"containerPort": 80, "hostPort": 80}]}),
        (ok_pod, {"name": "c", "securityContext": {**ok_container["securityContext"], "runAsUser": 0}}),
    ]
    for spec, container in bad_cases:
        assert restricted_violations(spec, [container]), (spec, container)


# --- example Secrets --------------------------------------------------------------------------------


def example_secrets() -> dict[str, dict]:
    found = {}
    for path in sorted(SECRETS.iterdir()):
        assert path.name.endswith(".example.yaml"), f"{path.name}: only *.example.yaml belongs in manifests/secrets"
        for doc in load(path):
            assert doc["kind"] == "Secret", path
            found[doc["metadata"]["name"]] = doc
    return found


def test_example_secrets_hold_placeholders_only():
    secrets = example_secrets()
    assert set(secrets) == {"coinline-secrets", "minio-credentials"}
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name}: base64 `data` would hide what it holds; use stringData placeholders"
        assert secret["stringData"], name
        not_placeholders = {k: v for k, v in secret["stringData"].items() if v != PLACEHOLDER}
        assert not not_placeholders, f"{name}: values other than {PLACEHOLDER}: {sorted(not_placeholders)}"
        assert "not for real use" in secret["metadata"]["annotations"]["coinline.io/example"]


def test_no_secret_outside_the_examples():
    for path in manifest_files():
        if path.parent != SECRETS:
            assert not [d for d in load(path) if d["kind"] == "Secret"], path


def _pipeline_secret_variables() -> set[str]:
    tree = ast.parse((ROOT / "pipelines" / "steps.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SECRET_VARIABLES" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("pipelines/steps.py defines no SECRET_VARIABLES")


def test_example_secrets_have_exactly_the_keys_their_readers_use():
    secrets = example_secrets()
    coinline_keys = set(secrets["coinline-secrets"]["stringData"])
    assert coinline_keys == _pipeline_secret_variables()  # what every pipeline step maps into its environment
    chart_keys = yaml.safe_load((CHART / "values.yaml").read_text()).get("secret", {}).get("keys")
    if chart_keys is not None:  # what the chart's pods read from secret.existingSecret
        assert coinline_keys == set(chart_keys)
    container = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    minio_keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]
                  if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "minio-credentials"}
    assert set(secrets["minio-credentials"]["stringData"]) == minio_keys == {"rootUser", "rootPassword"}
