"""The preflight: the first step of every pipeline (every other step runs after it, only the exit handler's
notify step does not), mounting the Secret and ConfigMap it checks; its checks (Secret/ConfigMap present,
credentials, lake, providers, Ray), each failing with its name in one line; the component under kfp.local,
and `coinline preflight`."""

import http.server
import json
import socket
import threading

import pytest
import yaml

from coinline import preflight
from coinline.secrets import Secret
from coinline.settings import Settings
from components.ops.preflight.component import preflight as preflight_component
from pipelines import PIPELINES
from pipelines.compile import COMPILED
from tests.pipelines.conftest import init_local


def docs(name: str) -> list[dict]:
    return list(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))


def unguarded_executors(doc: dict) -> set[str]:
    """Executor tasks that may start before the preflight succeeded: neither they, nor a DAG task enclosing
    them, depend (transitively, within their DAG) on the task named preflight."""
    components = doc["components"]

    def after_preflight(name: str, tasks: dict, seen: set[str]) -> bool:
        deps = tasks[name].get("dependentTasks", [])
        return "preflight" in deps or any(d not in seen and after_preflight(d, tasks, seen | {d}) for d in deps)

    out: set[str] = set()

    def visit(tasks: dict, guarded: bool) -> None:
        for name, task in tasks.items():
            if name == "preflight":
                continue
            ok = guarded or after_preflight(name, tasks, {name})
            dag = components[task["componentRef"]["name"]].get("dag")
            if dag:
                visit(dag["tasks"], ok)
            elif not ok:
                out.add(name)

    visit(doc["root"]["dag"]["tasks"], False)
    return out


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_step_but_the_exit_handler_runs_after_the_preflight(name):
    doc = docs(name)[0]
    assert unguarded_executors(doc) == {"notify-status"}  # it records the final state, also of a failed preflight
    handler = next(c for c in doc["components"].values() if "preflight" in c.get("dag", {}).get("tasks", {}))
    task = handler["dag"]["tasks"]["preflight"]
    assert "dependentTasks" not in task and task["cachingOptions"].get("enableCache", False) is False
    assert "retryPolicy" not in task  # a missing Secret does not appear by retrying


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_the_preflight_pod_mounts_the_secret_and_config_map_it_checks_by_their_parameters(name):
    spec, platform = docs(name)
    config = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-preflight"]
    [secret] = config["secretAsVolume"]
    [config_map] = config["configMapAsVolume"]
    assert secret["optional"] is True and config_map["optional"] is True  # missing: an empty mount, not a stuck pod
    assert secret["mountPath"] == preflight.SECRET_MOUNT and config_map["mountPath"] == preflight.CONFIG_MAP_MOUNT
    assert secret["secretNameParameter"]["componentInputParameter"].endswith("k8s_secret_name")
    assert config_map["configMapNameParameter"]["componentInputParameter"].endswith("k8s_config_map_name")
    assert config["fieldPathAsEnv"] == [{"fieldPath": "metadata.namespace", "name": "POD_NAMESPACE"}]
    handler = next(c for c in spec["components"].values() if "preflight" in c.get("dag", {}).get("tasks", {}))
    params = handler["dag"]["tasks"]["preflight"]["inputs"]["parameters"]
    assert params["secret_name"]["componentInputParameter"].endswith("k8s_secret_name")
    assert params["config_map_name"]["componentInputParameter"].endswith("k8s_config_map_name")
    calls_providers = name in ("backfill", "sync", "full")
    assert params["providers"]["runtimeValue"]["constant"] is calls_providers
    if calls_providers:
        assert params["venue"]["componentInputParameter"].endswith("venue")
    if name in ("full", "train_and_promote"):  # the pipelines whose training fans out on Ray
        assert params["ray_address"]["componentInputParameter"].endswith("ray_address")
    else:
        assert params["ray_address"]["runtimeValue"]["constant"] == ""


# --- the checks ----------------------------------------------------------------------------------------------

def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_404():
    """A loopback HTTP server that answers 404 to everything (a provider base URL without a path)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's hook
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def mounted(tmp_path, name: str, keys: dict[str, str]):
    folder = tmp_path / name
    folder.mkdir()
    for key, value in keys.items():
        (folder / key).write_text(value)
    (folder / "..data").mkdir()  # kubelet's link folder is not a key
    return folder


def test_a_missing_secret_or_config_map_is_named_with_the_namespace(tmp_path, monkeypatch):
    monkeypatch.setenv("POD_NAMESPACE", "team-a")
    settings = Settings(object_store_url=f"file://{tmp_path}/lake", venue="replay")
    secret, config = mounted(tmp_path, "secret", {}), mounted(tmp_path, "config", {"OBJECT_STORE_REGION": "x"})
    report = preflight.run(settings, secret_name="prod-secrets", config_map_name="prod-config", secret_dir=secret,
                           config_dir=config, kubernetes=True)
    assert report.problems == ["Secret 'prod-secrets' is missing or empty in namespace 'team-a'"]
    report = preflight.run(settings, secret_name="prod-secrets", config_map_name="prod-config",
                           secret_dir=mounted(tmp_path, "s2", {"KRAKEN_API_KEY": "k"}),
                           config_dir=tmp_path / "not-mounted", kubernetes=True)
    assert report.problems == ["ConfigMap 'prod-config' is missing or empty in namespace 'team-a'"]
    # outside a pod nothing is mounted: those two checks are skipped, and said to be
    report = preflight.run(settings, secret_name="prod-secrets", config_map_name="prod-config",
                           secret_dir=tmp_path / "none", config_dir=tmp_path / "none", kubernetes=False)
    assert report.problems == [] and "Secret and ConfigMap" in report.line() and "skipped" in report.line()


def test_credentials_the_settings_need_are_named(tmp_path):
    minio = Settings(object_store_url="s3://lake/x", object_store_endpoint_url="http://127.0.0.1:1", venue="replay")
    problems = preflight.check_credentials(minio, "coinline-secrets")
    assert problems == ["OBJECT_STORE_ACCESS_KEY_ID and OBJECT_STORE_SECRET_ACCESS_KEY not set for the object store "
                        "at http://127.0.0.1:1 (not in Secret 'coinline-secrets')"]
    live = Settings(object_store_url=f"file://{tmp_path}", venue="live")
    assert preflight.check_credentials(live, "s") == ["HIST_MARKET_DATA_API_KEY not set (COINLINE_VENUE=live) "
                                                      "(not in Secret 's')"]
    keyed = Settings(object_store_url="s3://lake/x", object_store_endpoint_url="http://127.0.0.1:1", venue="live",
                     hist_api_key=Secret("k"), object_store_access_key_id=Secret("a"),
                     object_store_secret_access_key=Secret("b"))
    assert preflight.check_credentials(keyed, "s") == []
    aws = Settings(object_store_url="s3://lake/x", venue="replay")  # AWS S3: the pod's role may hold the access
    assert preflight.check_credentials(aws, "s") == []


def test_a_lake_that_does_not_answer_is_named_with_its_endpoint():
    port = closed_port()
    settings = Settings(object_store_url="s3://lake/x", object_store_endpoint_url=f"http://127.0.0.1:{port}",
                        object_store_access_key_id=Secret("canary-key-id"),
                        object_store_secret_access_key=Secret("canary-secret-value"))
    problem = preflight.check_lake(settings, timeout=2)
    assert problem.startswith(f"lake s3://lake/x does not answer at http://127.0.0.1:{port} (")
    assert "\n" not in problem and "canary" not in problem


def test_a_local_lake_answers(tmp_path):
    assert preflight.check_lake(Settings(object_store_url=f"file://{tmp_path}/lake")) is None


def test_providers_must_answer_unless_replayed(tmp_path, http_404):
    down = f"http://127.0.0.1:{closed_port()}"
    live = Settings(object_store_url=f"file://{tmp_path}/lake", venue="live", hist_api_key=Secret("k"),
                    hist_base_url=down, kraken_public_base_url=f"{http_404}/0")
    # a generous timeout: the refused connection fails at once, the loopback server must not miss it under load
    report = preflight.run(live, secret_name="s", config_map_name="c", kubernetes=False, timeout=30)
    [problem] = report.problems  # Kraken answered (404 is an answer); the historical provider did not
    assert problem.startswith(f"COINAPI (historical provider) does not answer at {down} (")
    replayed = Settings(object_store_url=f"file://{tmp_path}/lake", venue="replay", hist_base_url=down,
                        kraken_public_base_url=down)
    report = preflight.run(replayed, secret_name="s", config_map_name="c", kubernetes=False)
    assert report.problems == [] and "providers (replay venue)" in report.skipped
    report = preflight.run(live, secret_name="s", config_map_name="c", kubernetes=False, providers=False)
    assert report.problems == [] and "providers (this pipeline calls none)" in report.skipped


def test_the_ray_cluster_must_answer_when_named(tmp_path):
    settings = Settings(object_store_url=f"file://{tmp_path}/lake", venue="replay")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = f"ray://127.0.0.1:{listening.getsockname()[1]}"
        assert preflight.run(settings, secret_name="s", config_map_name="c", kubernetes=False,
                             ray_address=up, timeout=30).problems == []
    down = f"ray://127.0.0.1:{closed_port()}"
    [problem] = preflight.run(settings, secret_name="s", config_map_name="c", kubernetes=False,
                              ray_address=down, timeout=2).problems
    assert problem.startswith(f"Ray cluster does not answer at {down} (")
    assert preflight.check_ray("no-port-here") == "Ray address 'no-port-here' is not host:port or ray://host:port"


def test_every_problem_is_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    settings = Settings(object_store_url="s3://lake/x", object_store_endpoint_url=f"http://127.0.0.1:{closed_port()}",
                        venue="replay")
    with pytest.raises(preflight.PreflightError) as caught:
        preflight.require(settings, secret_name="s", config_map_name="c", secret_dir=tmp_path / "x",
                          config_dir=mounted(tmp_path, "c", {"A": "1"}), kubernetes=True,
                          ray_address=f"127.0.0.1:{closed_port()}", timeout=2)
    line = str(caught.value)
    assert "\n" not in line and line.startswith("preflight failed: Secret 's' is missing or empty; ")
    assert "OBJECT_STORE_ACCESS_KEY_ID" in line and "does not answer at http://127.0.0.1" in line
    assert "Ray cluster does not answer" in line and "ConfigMap" not in line


# --- the component (kfp.local) and the CLI ------------------------------------------------------------------

def test_the_component_fails_the_task_with_one_line_naming_what_is_missing(tmp_path, monkeypatch, capfd):
    init_local(tmp_path / "root")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # as in a pod, whose mounts are missing here
    monkeypatch.setenv("POD_NAMESPACE", "team-a")
    with pytest.raises(RuntimeError, match="FAILURE"):
        preflight_component(object_store_url=f"file://{tmp_path}/lake", secret_name="prod-secrets",
                            config_map_name="prod-config", venue="replay")
    out = capfd.readouterr()
    text = out.out + out.err
    line = ("preflight failed: Secret 'prod-secrets' is missing or empty in namespace 'team-a'; "
            "ConfigMap 'prod-config' is missing or empty in namespace 'team-a'")
    assert line in text and "Traceback" not in text


def test_the_component_passes_and_reports_what_it_checked(tmp_path):
    init_local(tmp_path / "root")
    task = preflight_component(object_store_url=f"file://{tmp_path}/lake", secret_name="s", config_map_name="c",
                               venue="replay")
    assert task.output.startswith(f"preflight ok: checked lake file://{tmp_path}/lake; skipped ")
    assert "providers (replay venue)" in task.output


def test_the_cli_verb_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    from coinline.cli import main

    monkeypatch.setenv("OBJECT_STORE_URL", f"file://{tmp_path}/lake")
    monkeypatch.setenv("COINLINE_VENUE", "replay")
    assert main(["preflight", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["preflight", "--ray-address", f"127.0.0.1:{closed_port()}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("coinline: error: preflight failed: Ray cluster does not answer at 127.0.0.1:")
    assert len(err.splitlines()) == 1


def test_an_aws_lake_without_any_credentials_says_so(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    problem = preflight.check_lake(Settings(object_store_url="s3://lake/x"), timeout=2)
    assert problem == ("lake s3://lake/x at AWS S3: no credentials (OBJECT_STORE_ACCESS_KEY_ID / "
                       "OBJECT_STORE_SECRET_ACCESS_KEY unset and no role for the pod)")


def test_a_minio_without_keys_that_answers_is_only_a_credentials_problem(http_404):
    settings = Settings(object_store_url="s3://lake/x", object_store_endpoint_url=http_404, venue="replay")
    assert preflight.check_lake(settings, timeout=30) is None  # it answered (an error status is an answer)
    report = preflight.run(settings, secret_name="s", config_map_name="c", kubernetes=False, timeout=30)
    assert report.problems == [f"OBJECT_STORE_ACCESS_KEY_ID and OBJECT_STORE_SECRET_ACCESS_KEY not set for the object "
                               f"store at {http_404} (not in Secret 's')"]
