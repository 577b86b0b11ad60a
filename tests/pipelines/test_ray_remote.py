"""The remote path of the pipelines' per-coin fan-out: the train_specialists component, run by kfp.local's
subprocess runner with `ray_address` naming a Ray head this test started (`ray start --head`, as KubeRay
starts the chart's head, in a session of its own), trains its coins on that cluster instead of starting a
Ray inside the step. Both addresses go through the same `ray.init(address=...)` of
`coinline.training.executor`:

- `ray://127.0.0.1:<port>`, the head's Ray Client server (`--ray-client-server-port`): how the chart's pods
  reach its KubeRay cluster (`ray://<release>-ray-head-svc.<ns>.svc:10001`). The head runs the step's
  driver in a Ray Client server of its own, so the new job's entry point is that server
  (`ray.util.client.server --mode=specific-server`), not the step;
- the head's GCS address (a driver on a machine that is a Ray node): the job's entry point is the KFP
  executor of the step.

Proof either way: the head's job table gains that driver, the step's log says it connected to the address,
and the step's result is the same as the in-process one's (a third run, without an address, which the head
never sees). `coinline preflight`'s Ray check passes against the Ray Client address and fails against a
port nothing listens on. Skipped when no Ray head can be started here."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from kfp import dsl

from coinline import preflight
from components.training.specialists.component import train_specialists
from tests.pipelines.conftest import init_local
from tests.training.conftest import fast_config, random_walk_dataset

pytestmark = pytest.mark.study   # a Ray head of its own and three runs of the step: `make test-study`

HEAD = textwrap.dedent("""
    import json, os, socket, subprocess, sys, time
    tmp, gcs_port, client_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with open(os.path.join(tmp, "ray-start.log"), "w") as log:
        started = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={gcs_port}",
             f"--ray-client-server-port={client_port}", "--num-cpus=2", "--include-dashboard=false",
             f"--temp-dir={tmp}", "--node-ip-address=127.0.0.1", "--disable-usage-stats"],
            stdout=log, stderr=subprocess.STDOUT)
    if started.returncode:
        sys.exit(open(os.path.join(tmp, "ray-start.log")).read()[-2000:])
    deadline = time.monotonic() + 180  # the Ray Client server binds its port after `ray start` returns
    while True:
        try:
            socket.create_connection(("127.0.0.1", client_port), timeout=5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"no Ray Client server on port {client_port}")
            time.sleep(1)
    import ray
    ray.init(address=f"127.0.0.1:{gcs_port}", log_to_driver=False)  # this driver answers the job queries
    print(json.dumps({"gcs": f"127.0.0.1:{gcs_port}", "client": f"ray://127.0.0.1:{client_port}"}), flush=True)
    for line in sys.stdin:
        if line.strip() == "jobs":
            from ray._private import state
            print(json.dumps([{"id": str(j.get("JobID")), "entrypoint": j.get("Entrypoint", "")}
                              for j in state.jobs()]), flush=True)
        else:
            break
    ray.shutdown()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """A Ray cluster of one node, owned by a subprocess of this test (its own session, so ending it ends
    every Ray process it started and nothing else): its GCS address, its Ray Client address, and its job
    table."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}  # as coinline's own Ray
        env.pop("RAY_ADDRESS", None)
        gcs_port, client_port = free_port(), free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", HEAD, self.tmp, str(gcs_port), str(client_port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()[-2000:] if self.proc.poll() is not None else ""
            self.stop()
            pytest.skip(f"no Ray head could be started here: {err or 'no address printed'}")
        addresses = json.loads(line)
        self.gcs_address, self.client_address = addresses["gcs"], addresses["client"]

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

    def client_server_logs(self) -> str:
        """The tails of the head's Ray Client server logs (the proxier's and each driver's own server's)."""
        logs = sorted(Path(self.tmp).glob("session_latest/logs/ray_client_server*"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs) or "no logs"


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


def _run_step(head, prepared_run, root: Path, address: str, capfd) -> tuple[dict, bytes, str, list[dict]]:
    """The step at `address`: its result, the bytes it wrote, its log, and the drivers the head gained."""
    lake, run_id, artifact = prepared_run
    before = head.jobs()
    capfd.readouterr()  # only this run's log
    root = init_local(root)
    try:
        specialists_on_ray(object_store_url=lake.root, prepared_uri=str(artifact), ray_address=address, workers=2)
    except RuntimeError as exc:  # the step failed: say what the head saw
        out = capfd.readouterr()
        raise AssertionError(f"{exc}\n{(out.out + out.err)[-4000:]}\n{head.client_server_logs()}") from exc
    log = capfd.readouterr()
    new = [j for j in head.jobs() if j not in before]
    return _specialists(root), lake.read_bytes(f"work/{run_id}/specialists.pkl"), log.out + log.err, new


def test_the_specialists_step_trains_on_the_ray_cluster_at_ray_address(ray_head, prepared_run, tmp_path, capfd,
                                                                       monkeypatch):
    run_id = prepared_run[1]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    # through Ray Client, as the chart's pods reach its KubeRay cluster
    result, trained, log, new = _run_step(ray_head, prepared_run, tmp_path / "client", ray_head.client_address,
                                          capfd)
    assert result == {"run_id": run_id, "coins": ["BTC", "ETH"]}
    assert trained  # the coins' results, written by the step from the cluster's tasks
    # the step's driver: a Ray Client server the head started for it
    assert any("ray.util.client.server" in j["entrypoint"] and "specific-server" in j["entrypoint"]
               for j in new), new
    assert f"Ray: connected to {ray_head.client_address}" in log
    assert "started in this process" not in log

    # at the head's GCS address: the step itself is the driver
    at_gcs, trained_at_gcs, log, new = _run_step(ray_head, prepared_run, tmp_path / "gcs", ray_head.gcs_address,
                                                 capfd)
    assert at_gcs == result and trained_at_gcs == trained
    assert any("executor_main" in j["entrypoint"] for j in new), new
    assert f"Ray: connected to {ray_head.gcs_address}" in log
    assert "started in this process" not in log

    # the same step without an address: a Ray inside the step, which the head never sees; same coins
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    in_process, trained_in_process, log, new = _run_step(ray_head, prepared_run, tmp_path / "local", "", capfd)
    assert in_process == result
    assert trained_in_process == trained  # seeded per coin: same bytes either way
    assert new == []  # no driver connected to the head this time
    assert "Ray: started in this process over 2 CPUs" in log


def test_preflight_finds_the_ray_client_server(ray_head):
    assert preflight.check_ray(ray_head.client_address, timeout=30) is None
    down = f"ray://127.0.0.1:{free_port()}"
    assert preflight.check_ray(down, timeout=5).startswith(f"Ray cluster does not answer at {down} (")
