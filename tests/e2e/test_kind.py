"""End to end on a real cluster: kind + both coinline images + Kubeflow Pipelines + the chart + one full
pipeline run, then the lake in MinIO.

1. Creates a kind cluster (manifests/kind/cluster.yaml), builds the runtime and trainer images
   (images/coinline, images/trainer) and `kind load`s them; the trainer image runs one pod (torch, non-root).
2. Installs Kubeflow Pipelines standalone from manifests/kubeflow in two steps (cluster-scoped resources;
   every CRD Established; the env; every Deployment Available).
3. Creates the Secret `coinline-secrets` (random MinIO credentials) in `kubeflow`, where standalone KFP
   runs pipeline pods, and installs the chart there (release `coinline`, charts/coinline/values-kind.yaml:
   chart-managed MinIO `coinline-minio:9000`, bucket `coinline-lake`, ConfigMap `coinline-config`).
4. Through `kubectl port-forward svc/ml-pipeline` and kfp.Client: uploads pipelines/compiled/full.yaml
   (recompiled for the images under test: the trainer image for the model-fitting steps, the runtime
   image for the others), runs it on the offline replay venue (BTC and ETH against USD, 60 days of hourly
   candles, a pinned clock, a tiny training config) and waits for it to succeed.
5. Through `kubectl port-forward svc/coinline-minio` and boto3 (plus coinline's own lake code): Delta
   commits of raw_candles covering both coins, a dataset whose manifest and content hash verify, the
   training run's manifest.json and metrics.json, a promotion decision under decisions/, the exit
   handler's status record; through `svc/minio-service` (KFP's artifact store) the HTML report.

Skipped unless `kind`, `docker` (with a running engine), `kubectl`, `git` (kustomize fetches the KFP
manifests) and `helm` (installed into .tools when missing) are available. Needs network access (KFP's
manifests and images, MinIO's image), about 8 GB of memory for the kind node and 30 to 60 minutes.
Environment knobs: COINLINE_E2E_IMAGE=name:tag and COINLINE_E2E_TRAINER_IMAGE=name:tag (use prebuilt
images instead of building them), COINLINE_E2E_FULL_REQUESTS=1 (keep the training steps' compiled
requests, 2 CPU / 8G; by default they are lowered to 1 CPU / 3G to fit a laptop-sized kind node),
COINLINE_E2E_KEEP=1 (leave the cluster for inspection).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.delivery.conftest import CHART, ROOT, find_helm

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(7200)]

NAMESPACE = "kubeflow"          # standalone KFP runs pipeline pods in its own namespace: the chart goes there too
RELEASE = "coinline"
SECRET = "coinline-secrets"
CONFIG_MAP = "coinline-config"
LAKE_SERVICE = "coinline-minio"  # the chart-managed MinIO of values-kind.yaml
BUCKET = "coinline-lake"
LAKE_URL = f"s3://{BUCKET}/lake"
VALUES_KIND = CHART / "values-kind.yaml"
KFP_MANIFESTS = ROOT / "manifests" / "kubeflow"
PIPELINE = "full"                # pipelines/compiled/full.yaml, pipeline name coinline-full

NOW = "2026-01-15T00:00:00Z"     # pins every step's clock: the replay venue serves the same market to each pod
TINY_TRAINING = {"families": ["lightgbm"], "horizons": [1, 4], "max_history_bars": None, "tune": {"trials": 0},
                 "folds": {"n_folds": 2, "test_bars": 200, "min_train_bars": 600},
                 "features": {"short": 6, "medium": 24, "long": 72}}
RUN_PARAMETERS = {
    "object_store_url": LAKE_URL, "symbols": "BTC,ETH", "quotes": "USD", "intervals": ["1h"], "venue": "replay",
    "replay_history_days": 60, "group_size": 1, "now": NOW, "train_config_json": json.dumps(TINY_TRAINING),
    "train_workers": 1, "promote": True, "k8s_secret_name": SECRET, "k8s_config_map_name": CONFIG_MAP,
}


def _tooling_or_skip() -> dict[str, str]:
    tools = {name: shutil.which(name) for name in ("kind", "docker", "kubectl", "git")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.skip(f"e2e needs kind, docker, kubectl and git; missing: {', '.join(missing)}")
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
        raise AssertionError(f"{' '.join(cmd[:5])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _split_ref(ref: str) -> tuple[str, str]:
    repository, _, tag = ref.rpartition(":")
    assert repository and tag and "/" not in tag and "@" not in ref, f"image {ref!r}: use name:tag"
    return repository, tag


class Cluster:
    def __init__(self, tools: dict[str, str], name: str, kubeconfig: Path):
        self.tools, self.name, self.kubeconfig = tools, name, kubeconfig

    def kubectl(self, *args: str, namespace: str = NAMESPACE, **kw) -> subprocess.CompletedProcess:
        return _run([self.tools["kubectl"], "--kubeconfig", str(self.kubeconfig), "-n", namespace, *args], **kw)

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return _run([self.tools["helm"], "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE, *args], **kw)

    def secret_value(self, name: str, key: str) -> str:
        data = json.loads(self.kubectl("get", "secret", name, "-o", "json").stdout)["data"]
        return base64.b64decode(data[key]).decode()

    def diagnostics(self, namespace: str = NAMESPACE) -> str:
        """What to look at when something in the cluster did not work: pods, recent events, failed pods' logs."""
        out = [self.kubectl("get", "pods", "-o", "wide", namespace=namespace, check=False).stdout,
               "\n".join(self.kubectl("get", "events", "--sort-by=.lastTimestamp", namespace=namespace,
                                      check=False).stdout.splitlines()[-40:])]
        failed = self.kubectl("get", "pods", "--field-selector=status.phase=Failed", "-o", "name",
                              namespace=namespace, check=False).stdout.split()
        for pod in failed[:5]:
            logs = self.kubectl("logs", pod, "--all-containers", "--tail", "60", namespace=namespace, check=False)
            out.append(f"--- {pod}\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)[-12000:]

    def wait_pod(self, pod: str, namespace: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        phase = ""
        while time.monotonic() < deadline:
            phase = self.kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}", namespace=namespace).stdout
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(5)
        if phase != "Succeeded":
            logs = self.kubectl("logs", f"pod/{pod}", "--tail", "100", namespace=namespace, check=False)
            pytest.fail(f"pod {pod} ended {phase or 'nowhere'}\n{logs.stdout}{logs.stderr}\n{self.diagnostics(namespace)}")

    @contextlib.contextmanager
    def port_forward(self, target: str, port: int):
        """`kubectl port-forward <target> :<port>`; yields the local port on 127.0.0.1."""
        proc = subprocess.Popen([self.tools["kubectl"], "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE,
                                 "port-forward", target, f":{port}"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            line = proc.stdout.readline()
            local = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert local, f"port-forward {target} said: {line}"
            # keep reading: kubectl logs every connection, and would block once the pipe is full
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            yield int(local.group(1))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tools = _tooling_or_skip()
    tmp = tmp_path_factory.mktemp("kind")
    name = f"coinline-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp / "kubeconfig"
    _run([tools["kind"], "create", "cluster", "--name", name, "--config", str(ROOT / "manifests/kind/cluster.yaml"),
          "--kubeconfig", str(kubeconfig), "--wait", "180s"], timeout=900)
    try:
        yield Cluster(tools, name, kubeconfig)
    finally:
        if os.environ.get("COINLINE_E2E_KEEP") != "1":
            _run([tools["kind"], "delete", "cluster", "--name", name], check=False, timeout=300)


@pytest.fixture(scope="module")
def images(cluster) -> dict[str, str]:
    """The runtime and trainer image references, built here unless given, loaded into the kind node."""
    tag = f"e2e-{uuid.uuid4().hex[:8]}"
    refs = {}
    for key, dockerfile, repository, knob in (
            ("runtime", "images/coinline/Dockerfile", "ghcr.io/coinline/coinline", "COINLINE_E2E_IMAGE"),
            ("trainer", "images/trainer/Dockerfile", "ghcr.io/coinline/coinline-trainer", "COINLINE_E2E_TRAINER_IMAGE")):
        ref = os.environ.get(knob)
        if not ref:
            ref = f"{repository}:{tag}"
            _run([cluster.tools["docker"], "build", "-f", str(ROOT / dockerfile), "-t", ref, str(ROOT)], timeout=2400)
        _split_ref(ref)
        refs[key] = ref
    _run([cluster.tools["kind"], "load", "docker-image", *refs.values(), "--name", cluster.name], timeout=1200)
    return refs


@pytest.fixture(scope="module")
def kubeflow(cluster):
    """Kubeflow Pipelines standalone, installed the documented way: cluster-scoped resources, CRDs
    Established, then the env; done when every Deployment in `kubeflow` is Available."""
    cluster.kubectl("apply", "-k", str(KFP_MANIFESTS / "cluster-scoped"), timeout=900)
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=180s", "crd", "--all", timeout=210)
    cluster.kubectl("apply", "-k", str(KFP_MANIFESTS / "env"), timeout=900)
    waited = cluster.kubectl("wait", "--for", "condition=Available", "--timeout=1500s", "deployment", "--all",
                             timeout=1530, check=False)
    if waited.returncode != 0:
        pytest.fail(f"Kubeflow Pipelines did not become available:\n{waited.stderr}\n{cluster.diagnostics()}")


@pytest.fixture(scope="module")
def credentials(cluster, kubeflow, tmp_path_factory):
    """Random MinIO credentials in the Secret coinline-secrets (passed by file, not on a command line): the
    object-store keys coinline's pods read, which the chart's MinIO also takes as its root credentials."""
    user, password = "coinline-e2e", secrets.token_hex(24)
    env_file = tmp_path_factory.mktemp("secrets") / f"{SECRET}.env"
    env_file.touch(mode=0o600)
    env_file.write_text(f"OBJECT_STORE_ACCESS_KEY_ID={user}\nOBJECT_STORE_SECRET_ACCESS_KEY={password}\n")
    try:
        cluster.kubectl("create", "secret", "generic", SECRET, f"--from-env-file={env_file}")
    finally:
        env_file.unlink()
    return user, password


def _suspend_every_schedule() -> list[str]:
    """--set flags suspending every recurring command the chart schedules (values.yaml and values-kind.yaml),
    so that only the pipeline run under test writes to the lake while the suite runs."""
    flags = []
    for values_file in (CHART / "values.yaml", VALUES_KIND):
        schedules = (yaml.safe_load(values_file.read_text()) or {}).get("schedules") or {}
        for name, block in schedules.items():
            if isinstance(block, dict) and "suspend" in block and f"schedules.{name}.suspend=true" not in flags:
                flags.append(f"schedules.{name}.suspend=true")
    return [arg for flag in flags for arg in ("--set", flag)]


@pytest.fixture(scope="module")
def release(cluster, images, credentials):
    assert VALUES_KIND.is_file(), f"{VALUES_KIND.relative_to(ROOT)} is missing: the e2e installs the chart with it"
    repository, tag = _split_ref(images["runtime"])
    installed = cluster.helm(
        "install", RELEASE, str(CHART), "-f", str(VALUES_KIND),
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", *_suspend_every_schedule(),
        "--wait", "--timeout", "10m", timeout=660, check=False)
    if installed.returncode != 0:
        pytest.fail(f"helm install failed:\n{installed.stderr}\n{cluster.diagnostics()}")
    config = json.loads(cluster.kubectl("get", "configmap", CONFIG_MAP, "-o", "json").stdout)["data"]
    assert config.get("OBJECT_STORE_ENDPOINT_URL"), f"{CONFIG_MAP} names no object store endpoint: {config}"
    cluster.kubectl("get", "service", LAKE_SERVICE)
    return config


@pytest.fixture(scope="module")
def kfp_client(cluster, kubeflow):
    import kfp

    with cluster.port_forward("svc/ml-pipeline", 8888) as port:
        client = kfp.Client(host=f"http://127.0.0.1:{port}")
        for attempt in range(30):
            try:
                client.get_kfp_healthz(sleep_duration=2)
                break
            except Exception:  # the API server may still be starting behind the forward
                if attempt == 29:
                    raise
                time.sleep(5)
        yield client


def _pipeline_spec(images: dict[str, str], out: Path) -> Path:
    """pipelines/compiled/full.yaml for the images under test (python -m pipelines.compile --image
    --trainer-image: the runtime image for every step, the trainer image for the model-fitting ones), the
    training steps' requests lowered to fit a small kind node unless COINLINE_E2E_FULL_REQUESTS=1."""
    _run([sys.executable, "-m", "pipelines.compile", "--image", images["runtime"], "--trainer-image", images["trainer"],
          "--out", str(out)], cwd=ROOT, timeout=300)
    spec = out / f"{PIPELINE}.yaml"
    text = spec.read_text()
    used = set(re.findall(r"^ +image: (\S+)$", text, re.M))
    assert images["runtime"] in used and used <= set(images.values()), f"the spec runs {used}, not the images under test"
    if os.environ.get("COINLINE_E2E_FULL_REQUESTS") != "1":
        docs = list(yaml.safe_load_all(text))
        lowered = 0
        for executor in docs[0]["deploymentSpec"]["executors"].values():
            resources = executor.get("container", {}).get("resources")
            if resources:
                resources.update(cpuRequest=1.0, resourceCpuRequest="1", memoryRequest=3.0, resourceMemoryRequest="3G")
                lowered += 1
        assert lowered, "no executor of the spec declares resources: update this test"
        spec.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return spec


@pytest.fixture(scope="module")
def pipeline_run(cluster, images, release, kfp_client, tmp_path_factory):
    """Upload the pipeline, run it once with RUN_PARAMETERS, wait for it to end; returns the final run."""
    spec = _pipeline_spec(images, tmp_path_factory.mktemp("compiled"))
    suffix = uuid.uuid4().hex[:6]
    pipeline = kfp_client.upload_pipeline(str(spec), pipeline_name=f"coinline-{PIPELINE}-e2e-{suffix}",
                                          description="coinline e2e (tests/e2e/test_kind.py)")
    versions = kfp_client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert versions, "the uploaded pipeline has no version"
    experiment = kfp_client.create_experiment(f"coinline-e2e-{suffix}")
    run = kfp_client.run_pipeline(experiment_id=experiment.experiment_id, job_name=f"coinline-e2e-{suffix}",
                                  params=RUN_PARAMETERS, pipeline_id=pipeline.pipeline_id,
                                  version_id=versions[0].pipeline_version_id, enable_caching=False)
    try:
        finished = kfp_client.wait_for_run_completion(run.run_id, timeout=3600, sleep_duration=15)
    except TimeoutError:
        pytest.fail(f"run {run.run_id} did not finish\n{cluster.diagnostics()}")
    return finished, cluster.diagnostics() if finished.state != "SUCCEEDED" else ""


def _succeeded(pipeline_run) -> None:
    run, diagnostics = pipeline_run
    assert run.state == "SUCCEEDED", f"pipeline run {run.run_id} ended {run.state}: {run.error}\n{diagnostics}"


@pytest.fixture(scope="module")
def lake_endpoint(cluster, release):
    """http://127.0.0.1:<port>: the lake's MinIO through `kubectl port-forward svc/coinline-minio`."""
    with cluster.port_forward(f"svc/{LAKE_SERVICE}", 9000) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def s3(lake_endpoint, credentials):
    import boto3

    user, password = credentials
    return boto3.client("s3", endpoint_url=lake_endpoint, region_name="us-east-1",
                        aws_access_key_id=user, aws_secret_access_key=password)


@pytest.fixture(scope="module")
def lake(lake_endpoint, credentials):
    """coinline's own view of the same lake (Delta tables, dataset verification) through the forward."""
    from coinline.lake import open_lake
    from coinline.secrets import Secret

    user, password = credentials
    return open_lake(LAKE_URL, endpoint_url=lake_endpoint, access_key=Secret(user), secret_key=Secret(password))


@pytest.fixture(scope="module")
def artifact_store(cluster, kubeflow):
    """(boto3 client, bucket, prefix) of KFP's artifact store (Service minio-service), where a run's
    output artifacts are kept under the pipeline root named by the ConfigMap kfp-launcher."""
    import boto3

    launcher = json.loads(cluster.kubectl("get", "configmap", "kfp-launcher", "-o", "json").stdout).get("data", {})
    root = launcher.get("defaultPipelineRoot", "")
    if not re.match(r"(minio|s3)://", root):
        root = "minio://mlpipeline/v2/artifacts"   # KFP's default when the ConfigMap names none
    bucket, _, prefix = root.split("://", 1)[1].partition("/")
    key, secret = (cluster.secret_value("mlpipeline-minio-artifact", k) for k in ("accesskey", "secretkey"))
    with cluster.port_forward("svc/minio-service", 9000) as port:
        yield (boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret), bucket, prefix)


def _keys(s3, prefix: str, bucket: str = BUCKET) -> list[str]:
    keys, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def _read(s3, key: str, bucket: str = BUCKET) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_trainer_image_runs_as_non_root_with_cpu_torch(cluster, images):
    code = ("import json, os, coinline, torch; x = torch.ones(4, 4); "
            "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'sum': float((x @ x).sum()), "
            "'uid': os.getuid(), 'coinline': coinline.__version__}))")
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer-check"},
           "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "trainer", "image": images["trainer"], "imagePullPolicy": "IfNotPresent",
                                    "command": ["python", "-c", code], "env": [{"name": "HOME", "value": "/tmp"}],
                                    "securityContext": restricted, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                    "volumes": [{"name": "tmp", "emptyDir": {}}]}}
    cluster.kubectl("apply", "-f", "-", namespace="default", input=json.dumps(pod))
    cluster.wait_pod("trainer-check", "default", timeout_s=600)
    report = json.loads(cluster.kubectl("logs", "pod/trainer-check", namespace="default").stdout.strip().splitlines()[-1])
    assert report["torch"].split("+")[0] == "2.13.0" and report["cuda"] is None, report  # the default cpu build
    assert report["sum"] == 64.0 and report["uid"] == 10001, report


def test_full_pipeline_run_succeeds_on_kubeflow(pipeline_run):
    _succeeded(pipeline_run)


def test_lake_has_delta_commits_of_raw_candles_for_both_coins(pipeline_run, s3, lake):
    _succeeded(pipeline_run)
    commits = sorted(k for k in _keys(s3, "lake/raw_candles/_delta_log/")
                     if re.fullmatch(r"lake/raw_candles/_delta_log/\d{20}\.json", k))
    assert len(commits) >= 2, commits  # the table's creation, then appends by the ingest steps
    first = [json.loads(line) for line in _read(s3, commits[0]).decode().splitlines() if line.strip()]
    assert any("protocol" in action for action in first) and any("metaData" in action for action in first)
    from coinline.lake import tables

    rows = {(key.source, key.symbol, key.quote, key.interval): n for key, n, _first, _last in tables.series_in(lake)}
    for symbol in ("BTC", "ETH"):
        for source in ("coinapi", "kraken"):  # the historical provider and the Kraken venue sync (replayed)
            assert rows.get((source, symbol, "USD", "1h"), 0) > 0, (source, symbol, sorted(rows))


def _json(s3, key: str) -> dict:
    return json.loads(_read(s3, key))


def _our_dataset(s3) -> tuple[str, dict]:
    """The dataset this pipeline run materialized: its manifest's created_at is the run's pinned clock (a
    schedule firing meanwhile would stamp the real time)."""
    ids = sorted(m.group(1) for k in _keys(s3, "lake/datasets/")
                 if (m := re.fullmatch(r"lake/datasets/([^/]+)/manifest\.json", k)))
    ours = {i: manifest for i in ids
            if _utc((manifest := _json(s3, f"lake/datasets/{i}/manifest.json"))["created_at"]) == _utc(NOW)}
    assert len(ours) == 1, f"datasets created at {NOW}: {sorted(ours)} (all: {ids})"  # one interval: 1h
    return next(iter(ours.items()))


def _our_training_run(s3) -> tuple[str, dict]:
    dataset_id, _ = _our_dataset(s3)
    ids = sorted(m.group(1) for k in _keys(s3, "lake/runs/")
                 if (m := re.fullmatch(r"lake/runs/([^/]+)/manifest\.json", k)))
    ours = {i: manifest for i in ids
            if (manifest := _json(s3, f"lake/runs/{i}/manifest.json"))["dataset_id"] == dataset_id}
    assert len(ours) == 1, f"training runs on {dataset_id}: {sorted(ours)} (all: {ids})"
    return next(iter(ours.items()))


def _utc(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


def test_dataset_has_a_manifest_and_a_content_hash_that_verifies(pipeline_run, s3, lake):
    _succeeded(pipeline_run)
    from coinline.datasets.materialize import load_dataset

    dataset_id, manifest = _our_dataset(s3)
    assert f"lake/datasets/{dataset_id}/data.parquet" in _keys(s3, f"lake/datasets/{dataset_id}/")
    data, loaded = load_dataset(lake, dataset_id, verify=True)  # recomputes the content hash, refuses a mismatch
    assert loaded == manifest
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["content_hash"]) and dataset_id.endswith(manifest["content_hash"][:16])
    assert data.num_rows == manifest["row_count"] > 0
    assert {s["symbol"] for s in manifest["series"]} == {"BTC", "ETH"}
    assert {s["quote"] for s in manifest["series"]} == {"USD"}


def test_training_run_has_its_manifest_and_metrics(pipeline_run, s3):
    _succeeded(pipeline_run)
    run_id, manifest = _our_training_run(s3)
    dataset_id, dataset = _our_dataset(s3)
    metrics_bytes = _read(s3, f"lake/runs/{run_id}/metrics.json")
    assert manifest["run_id"] == run_id and json.loads(metrics_bytes)["dataset_id"] == dataset_id
    assert manifest["dataset_hash"] == dataset["content_hash"]
    assert manifest["artifacts"]["metrics.json"] == hashlib.sha256(metrics_bytes).hexdigest()


def _our_decision(s3) -> dict:
    run_id, _ = _our_training_run(s3)
    decisions = [_json(s3, k) for k in _keys(s3, "lake/decisions/") if k.endswith(".json")]
    ours = [d for d in decisions if d.get("run_id") == run_id]
    assert len(ours) == 1, f"decisions on run {run_id}: {ours} (all: {[d.get('run_id') for d in decisions]})"
    return ours[0]


def test_promotion_decision_is_recorded_for_the_run(pipeline_run, s3):
    _succeeded(pipeline_run)
    decision = _our_decision(s3)
    assert decision["decision"] in ("PROMOTE", "REJECT") and decision["gates"], decision
    assert f"lake/decisions/{decision['decision_id']}.json" in _keys(s3, "lake/decisions/")


def test_exit_handler_recorded_success_in_the_lake(pipeline_run, s3):
    _succeeded(pipeline_run)
    records = [_json(s3, k) for k in _keys(s3, "lake/reports/pipelines/coinline-full/") if k.endswith(".json")]
    assert [r["state"] for r in records if r.get("now") == NOW] == ["SUCCEEDED"], records


def test_html_report_is_an_artifact_of_the_run(pipeline_run, s3, artifact_store):
    _succeeded(pipeline_run)
    run, _ = pipeline_run
    run_id, _ = _our_training_run(s3)
    client, bucket, prefix = artifact_store
    outputs = [k for k in _keys(client, prefix, bucket=bucket) if f"/{run.run_id}/" in k and k.endswith("/report")]
    pages = [html for k in outputs if (html := _read(client, k, bucket=bucket).decode(errors="replace"))
             .lstrip().lower().startswith("<!doctype html")]
    assert len(pages) == 1, f"HTML reports among {outputs}: {len(pages)}"  # promote=True: the If branch's only
    assert run_id in pages[0]
    assert _our_decision(s3)["decision_id"] in pages[0], "the report runs after the promotion and shows it"
