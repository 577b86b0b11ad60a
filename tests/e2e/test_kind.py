"""End to end on a real cluster: kind + the coinline image + MinIO (manifests/minio) + the chart.

Creates a kind cluster (manifests/kind/cluster.yaml), builds and loads the image, installs MinIO and the
chart with the offline replay venue (no provider keys, HTTPS egress closed by the NetworkPolicy), runs
the main job (`coinline run`) and the sync job as Jobs made from their CronJobs, and checks the lake
in MinIO: Delta commits, a hashed dataset with its manifest, the run report, per-series coverage.

Skipped unless `kind`, `docker` (with a running engine), `kubectl` and `helm` are available.
Environment knobs: COINLINE_E2E_IMAGE=ref (use a prebuilt image instead of building one),
COINLINE_E2E_TRAIN=1 (run the full job including training; default `run --no-train` keeps it small),
COINLINE_E2E_KEEP=1 (leave the cluster for inspection).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.delivery.conftest import CHART, ROOT, find_helm

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

NAMESPACE = "coinline-e2e"
RELEASE = "coinline"
BUCKET = "coinline-lake"


def _tooling_or_skip() -> dict[str, str]:
    tools = {name: shutil.which(name) for name in ("kind", "docker", "kubectl")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.skip(f"e2e needs kind, docker and kubectl; missing: {', '.join(missing)}")
    probe = subprocess.run([tools["docker"], "info"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("docker is installed but no engine answers (`docker info` failed)")
    helm = find_helm()
    if helm is None:
        pytest.skip("helm not found and could not be installed")
    return {**tools, "helm": str(helm)}


def _run(cmd: list[str], *, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class Cluster:
    def __init__(self, tools: dict[str, str], name: str, kubeconfig: Path):
        self.tools, self.name, self.kubeconfig = tools, name, kubeconfig

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return _run([self.tools["kubectl"], "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE, *args], **kw)

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return _run([self.tools["helm"], "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE, *args], **kw)

    def job_from_cronjob(self, cronjob: str, job: str, timeout_s: float) -> None:
        self.kubectl("create", "job", f"--from=cronjob/{cronjob}", job)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = json.loads(self.kubectl("get", "job", job, "-o", "json").stdout).get("status", {})
            if status.get("succeeded"):
                return
            if any(c["type"] == "Failed" and c["status"] == "True" for c in status.get("conditions", [])):
                break
            time.sleep(5)
        logs = self.kubectl("logs", f"job/{job}", "--tail", "200", check=False)
        pods = self.kubectl("describe", "pods", "-l", f"job-name={job}", check=False)
        pytest.fail(f"job {job} did not succeed\n{logs.stdout}\n{logs.stderr}\n{pods.stdout[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tools = _tooling_or_skip()
    tmp = tmp_path_factory.mktemp("kind")
    name = f"coinline-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp / "kubeconfig"
    _run([tools["kind"], "create", "cluster", "--name", name, "--config", str(ROOT / "manifests/kind/cluster.yaml"),
          "--kubeconfig", str(kubeconfig), "--wait", "180s"], timeout=900)
    try:
        c = Cluster(tools, name, kubeconfig)
        _run([tools["kubectl"], "--kubeconfig", str(kubeconfig), "create", "namespace", NAMESPACE])
        yield c
    finally:
        if os.environ.get("COINLINE_E2E_KEEP") != "1":
            _run([tools["kind"], "delete", "cluster", "--name", name], check=False, timeout=300)


@pytest.fixture(scope="module")
def image(cluster):
    ref = os.environ.get("COINLINE_E2E_IMAGE")
    if not ref:
        ref = f"coinline:e2e-{uuid.uuid4().hex[:8]}"
        _run([cluster.tools["docker"], "build", "-f", str(ROOT / "images/coinline/Dockerfile"), "-t", ref, str(ROOT)],
             timeout=1800)
    _run([cluster.tools["kind"], "load", "docker-image", ref, "--name", cluster.name], timeout=900)
    return ref


@pytest.fixture(scope="module")
def credentials(cluster, tmp_path_factory):
    """Random MinIO root credentials, stored as the two Secrets (passed by file, not on a command line)."""
    user, password = "coinline-e2e", secrets.token_hex(24)
    tmp = tmp_path_factory.mktemp("secrets")
    for secret, pairs in {
        "minio-credentials": {"rootUser": user, "rootPassword": password},
        "coinline-secrets": {"OBJECT_STORE_ACCESS_KEY_ID": user, "OBJECT_STORE_SECRET_ACCESS_KEY": password},
    }.items():
        env_file = tmp / f"{secret}.env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in pairs.items()))
        cluster.kubectl("create", "secret", "generic", secret, f"--from-env-file={env_file}")
        env_file.unlink()
    return user, password


@pytest.fixture(scope="module")
def release(cluster, image, credentials, tmp_path_factory):
    cluster.kubectl("apply", "-k", str(ROOT / "manifests/minio"))
    cluster.kubectl("rollout", "status", "deployment/minio", "--timeout=300s", timeout=330)
    repository, _, tag = image.rpartition(":")
    small = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    train = os.environ.get("COINLINE_E2E_TRAIN") == "1"
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "secret": {"existingSecret": "coinline-secrets"},
        "minio": {"enabled": True},
        "config": {"COINLINE_VENUE": "replay", "COINLINE_SYMBOLS": "BTC,ETH", "COINLINE_QUOTES": "USD",
                   "COINLINE_REPLAY_HISTORY_DAYS": "30", "OBJECT_STORE_URL": f"s3://{BUCKET}/lake",
                   "COINLINE_TRAIN_WORKERS": "1"},
        "run": {"suspend": True, "args": ["run"] if train else ["run", "--no-train"], "shmSizeLimit": "512Mi",
                "resources": small if not train else {**small, "limits": {"cpu": "2", "memory": "6Gi"}}},
        "sync": {"suspend": True, "resources": small},
        # the replay venue runs inside the pod: no provider traffic, so no HTTPS egress at all
        "networkPolicy": {"httpsEgress": {"enabled": False}},
    }
    values_file = tmp_path_factory.mktemp("values") / "e2e.yaml"
    values_file.write_text(yaml.safe_dump(values))
    cluster.helm("install", RELEASE, str(CHART), "-f", str(values_file), "--wait", "--timeout", "5m", timeout=360)
    return values


@pytest.fixture(scope="module")
def s3(cluster, credentials):
    """boto3 client through `kubectl port-forward svc/minio`."""
    import boto3

    proc = subprocess.Popen([cluster.tools["kubectl"], "--kubeconfig", str(cluster.kubeconfig), "-n", NAMESPACE,
                             "port-forward", "svc/minio", ":9000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = proc.stdout.readline()
        port = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert port, f"port-forward said: {line}"
        user, password = credentials
        yield boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port.group(1)}", region_name="us-east-1",
                           aws_access_key_id=user, aws_secret_access_key=password)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _keys(s3, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def test_main_job_fills_the_lake_in_minio(cluster, release, s3):
    cluster.job_from_cronjob(f"{RELEASE}-run", "e2e-run", timeout_s=2400)
    keys = _keys(s3, "lake/")
    assert any(re.fullmatch(r"lake/raw_candles/_delta_log/\d{20}\.json", k) for k in keys), keys[:20]
    manifests = [k for k in keys if re.fullmatch(r"lake/datasets/[^/]+/manifest\.json", k)]
    assert manifests and all(k.replace("manifest.json", "data.parquet") in keys for k in manifests)
    reports = sorted(k for k in keys if re.fullmatch(r"lake/reports/run-\d{8}T\d{6}Z\.json", k))
    assert reports
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=reports[-1])["Body"].read())
    assert report["offline"] is True
    assert report["backfill"]["outcomes"].get("ok", 0) >= 2  # BTC-USD, ETH-USD
    assert {d["content_hash"] for d in report["datasets"]} and all(d["rows"] > 0 for d in report["datasets"])
    # series labels are source:venue:SYMBOL-QUOTE:interval
    covered = {row["series"].split(":")[2] for row in report["coverage"] if row["rows"] > 0}
    assert {"BTC-USD", "ETH-USD"} <= covered


def test_sync_job_runs_against_the_same_lake(cluster, release, s3):
    before = len(_keys(s3, "lake/raw_candles/_delta_log/"))
    cluster.job_from_cronjob(f"{RELEASE}-sync", "e2e-sync", timeout_s=900)
    assert len(_keys(s3, "lake/raw_candles/_delta_log/")) >= before
