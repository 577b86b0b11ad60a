"""manifests/: the kind cluster config and the plain MinIO for kind agree with the chart's defaults,
reference their credentials instead of carrying them, and pass the Kubernetes schemas."""

from __future__ import annotations

import re

import pytest
import yaml

from .conftest import CHART, ROOT

MINIO = ROOT / "manifests" / "minio"


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
