"""The remote path of the pipelines' per-coin fan-out: the train_specialists component, run by kfp.local's
subprocess runner with `ray_address` naming a Ray head this test started (in a process of its own), trains
its coins on that cluster instead of starting a Ray inside the step. Proof: the head's job table gains a
driver whose entry point is the KFP executor of the step, the step's log says it connected to the address,
and the step's result is the same as the in-process one's.

The chart's KubeRay cluster is reached through Ray Client (`ray://head-svc:10001`), which needs grpcio; this
environment has none, so the test hands the step the head's GCS address instead (a driver on a machine that
is a Ray node). Both go through the same `ray.init(address=...)` of `coinline.training.executor`.
Skipped when no Ray head can be started here."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from kfp import dsl

from components.training.specialists.component import train_specialists
from tests.pipelines.conftest import init_local
from tests.training.conftest import fast_config, random_walk_dataset

HEAD = textwrap.dedent("""
    import json, os, sys
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    ctx = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1], _node_ip_address="127.0.0.1",
                   log_to_driver=False)
    print(json.dumps({"address": ctx.address_info["gcs_address"]}), flush=True)
    for line in sys.stdin:
        if line.strip() == "jobs":
            from ray._private import state
            print(json.dumps([{"id": str(j.get("JobID")), "entrypoint": j.get("Entrypoint", "")}
                              for j in state.jobs()]), flush=True)
        else:
            break
    ray.shutdown()
""")


class RayHead:
    """A Ray cluster of one node, owned by a subprocess of this test (its own session, so ending it ends
    every Ray process it started and nothing else): the address to connect to, and its job table."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen([sys.executable, "-c", HEAD, self.tmp], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()[-2000:] if self.proc.poll() is not None else ""
            self.stop()
            pytest.skip(f"no Ray head could be started here: {err or 'no address printed'}")
        self.address = json.loads(line)["address"]

    def jobs(self) -> list[dict]:
        """The drivers that ever connected to this cluster (the head's own first), by job id."""
        self.proc.stdin.write("jobs\n")
        self.proc.stdin.flush()
        return sorted(json.loads(self.proc.stdout.readline()), key=lambda j: j["id"])

    def stop(self) -> None:
        import shutil
        import signal

        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this test started: its own Ray processes
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory):
    """A prepared training run (two random-walk coins, LightGBM only, two folds) in a file:// lake, and the
    JSON of prepare_training's output artifact naming it."""
    from coinline.lake import open_lake, tables
    from coinline.training import stages

    base = tmp_path_factory.mktemp("ray-remote")
    lake = open_lake(f"file://{base}/lake")
    tables.ensure_tables(lake)
    dataset_id = random_walk_dataset(lake, seed=5, bars=1300, symbols=("BTC", "ETH"))
    cfg = fast_config(families=("lightgbm",), horizons=(1, 4))
    from dataclasses import replace

    cfg = replace(cfg, folds=replace(cfg.folds, n_folds=2, test_bars=200, min_train_bars=600))
    run_id = stages.prepare_run(lake, dataset_id, cfg, workers=1).run_id
    artifact = base / "prepared.json"
    artifact.write_text(json.dumps({"run_id": run_id, "dataset_id": dataset_id}))
    return lake, run_id, artifact


@dsl.pipeline(name="specialists-on-ray")
def specialists_on_ray(object_store_url: str, prepared_uri: str, ray_address: str, workers: int):
    prepared = dsl.importer(artifact_uri=prepared_uri, artifact_class=dsl.Artifact, reimport=True)
    train_specialists(object_store_url=object_store_url, prepared=prepared.output, workers=workers,
                      ray_address=ray_address)


def _specialists(root: Path) -> dict:
    [path] = list(root.rglob("train-specialists/specialists"))
    return json.loads(path.read_text())


def test_the_specialists_step_trains_on_the_ray_cluster_at_ray_address(ray_head, prepared_run, tmp_path, capfd,
                                                                       monkeypatch):
    lake, run_id, artifact = prepared_run
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = ray_head.jobs()
    root = init_local(tmp_path / "root")
    specialists_on_ray(object_store_url=lake.root, prepared_uri=str(artifact), ray_address=ray_head.address,
                       workers=2)
    log = capfd.readouterr()
    result = _specialists(root)
    assert result == {"run_id": run_id, "coins": ["BTC", "ETH"]}
    new = [j for j in ray_head.jobs() if j not in before]
    assert any("executor_main" in j["entrypoint"] for j in new), new  # the step was a driver of this cluster
    assert f"Ray: connected to {ray_head.address}" in log.out + log.err
    assert "started in this process" not in log.out + log.err
    trained = lake.read_bytes(f"work/{run_id}/specialists.pkl")
    assert trained  # the coins' results, written by the step from the cluster's tasks

    # the same step without an address: a Ray inside the step, which the head never sees; same coins
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    seen = ray_head.jobs()
    root = init_local(tmp_path / "local")
    specialists_on_ray(object_store_url=lake.root, prepared_uri=str(artifact), ray_address="", workers=2)
    log = capfd.readouterr()
    assert _specialists(root) == result
    assert lake.read_bytes(f"work/{run_id}/specialists.pkl") == trained  # seeded per coin: same bytes either way
    assert ray_head.jobs() == seen  # no driver connected to the head this time
    assert "Ray: started in this process over 2 CPUs" in log.out + log.err
