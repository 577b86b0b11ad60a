"""Recurring runs are made through a KFP client (here a fake one): one per name, on a version of the uploaded
pipeline (the newest, e.g. the chart's; the local spec uploaded when there is none), never overlapping, no
catch-up, parameters the compiled pipelines accept, and never a secret among them; a rerun after an upgrade
moves them to the new version."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import yaml

import coinline
from coinline import kfp_deploy
from coinline.errors import ConfigError
from coinline.secrets import Secret
from coinline.settings import Settings
from pipelines.compile import COMPILED
from pipelines.schedules import SYNC_CRON, create_schedules, kfp_cron, plan_schedules


def recurring_run(rid: str, name: str, *, version_id: str | None = None, cron: str = "0 5 * * * *",
                  params: dict | None = None, no_catchup: bool = True, experiment_id: str = "exp-1"):
    ref = SimpleNamespace(pipeline_id="p", pipeline_version_id=version_id) if version_id else None
    return SimpleNamespace(recurring_run_id=rid, display_name=name, description="", experiment_id=experiment_id,
                           pipeline_version_reference=ref, pipeline_version_id=None, pipeline_spec=None,
                           runtime_config=SimpleNamespace(parameters=dict(params or {}), pipeline_root=None),
                           service_account=None, max_concurrency="1", mode="ENABLE", no_catchup=no_catchup,
                           trigger=SimpleNamespace(cron_schedule=SimpleNamespace(cron=cron, start_time=None,
                                                                                 end_time=None)))


class FakeKfpClient:
    """The kfp.Client methods create_schedules uses, recording every call; pipelines named in `uploaded`
    exist with one version each (`<name>-v1`, id `<name>-v1-id`)."""

    def __init__(self, existing: tuple[str, ...] = (), uploaded: tuple[str, ...] = ()):
        self.runs = [recurring_run(f"old-{i}", name) for i, name in enumerate(existing)]
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.experiments: list[str] = []
        self.pipelines = {name: f"{name}-id" for name in uploaded}
        self.versions = {f"{name}-id": [SimpleNamespace(display_name=f"{name}-v1", pipeline_version_id=f"{name}-v1-id",
                                                        created_at="2026-01-01")] for name in uploaded}
        self.uploads: list[tuple[str, str]] = []

    def create_experiment(self, name, description=None, namespace=None):
        self.experiments.append(name)
        return SimpleNamespace(experiment_id="exp-1", display_name=name)

    def list_recurring_runs(self, page_token="", page_size=10, sort_by="", experiment_id=None, namespace=None,
                            filter=None):
        assert experiment_id == "exp-1"
        start = int(page_token or 0)
        page = self.runs[start:start + 1]  # one per page: exercises pagination
        token = str(start + 1) if start + 1 < len(self.runs) else ""
        return SimpleNamespace(recurring_runs=page or None, next_page_token=token)

    def get_pipeline_id(self, name):
        return self.pipelines.get(name)

    def list_pipeline_versions(self, pipeline_id, page_token="", page_size=10, **_):
        return SimpleNamespace(pipeline_versions=self.versions[pipeline_id], next_page_token="")

    def upload_pipeline(self, path, pipeline_name=None, description=None, namespace=None):
        self.uploads.append((pipeline_name, path))
        pid = self.pipelines[pipeline_name] = f"{pipeline_name}-id"
        self.versions[pid] = [SimpleNamespace(display_name=pipeline_name, pipeline_version_id=f"{pid}-first",
                                              created_at="2026-01-01")]
        return SimpleNamespace(pipeline_id=pid)

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id=None, description=None, **_):
        self.uploads.append((pipeline_version_name, path))
        version = SimpleNamespace(display_name=pipeline_version_name, pipeline_version_id=f"{pipeline_version_name}-id",
                                  created_at="2026-02-01")
        self.versions[pipeline_id].append(version)
        return version

    def create_recurring_run(self, **kwargs):
        assert kwargs["pipeline_id"] and kwargs["version_id"] and "pipeline_package_path" not in kwargs
        self.created.append(kwargs)
        run = recurring_run(f"rr-{len(self.created)}", kwargs["job_name"], version_id=kwargs["version_id"],
                            cron=kwargs["cron_expression"], params=kwargs["params"], no_catchup=kwargs["no_catchup"])
        self.runs.append(run)
        return run

    def delete_recurring_run(self, recurring_run_id):
        self.deleted.append(recurring_run_id)
        self.runs = [r for r in self.runs if r.recurring_run_id != recurring_run_id]


def cluster_settings(**kw) -> Settings:
    return Settings(object_store_url="s3://coinline-lake/lake", symbols=("BTC", "ETH"), quotes=("USD",),
                    hist_api_key=Secret("hist-secret-value"), object_store_secret_access_key=Secret("s3-secret"),
                    **kw)


def pipeline_parameters(pipeline: str) -> set[str]:
    doc = next(yaml.safe_load_all((COMPILED / f"{pipeline}.yaml").read_text()))
    return set(doc["root"]["inputDefinitions"]["parameters"])


def test_sync_hourly_and_retraining_on_the_retraining_policy_cron():
    client = FakeKfpClient()
    done = create_schedules(client, cluster_settings(universe_refresh_cron="0 3 * * 1"))
    assert [d["action"] for d in done] == ["created", "created"]
    by_name = {c["job_name"]: c for c in client.created}
    assert by_name["coinline-sync-hourly"]["cron_expression"] == SYNC_CRON == "0 5 * * * *"
    # the retraining policy's weekly cron, not the universe refresh's
    assert by_name["coinline-train-and-promote"]["cron_expression"] == "0 0 4 * * 1"
    assert create_schedules(FakeKfpClient(), cluster_settings(), train_cron="0 6 * * *")[1]["cron"] == "0 0 6 * * *"
    for call in client.created:
        assert call["max_concurrency"] == 1 and call["no_catchup"] is True
        assert call["experiment_id"] == "exp-1"
    # no pipeline uploaded yet: the local compiled specs are, as versions named by coinline's version
    uploaded = dict(client.uploads)
    assert uploaded["coinline-sync"] == str(COMPILED / "sync.yaml")
    sync_version = kfp_deploy.version_name("sync", coinline.__version__, (COMPILED / "sync.yaml").read_text())
    assert uploaded[sync_version] == str(COMPILED / "sync.yaml")
    assert by_name["coinline-sync-hourly"]["version_id"] == f"{sync_version}-id"
    assert by_name["coinline-train-and-promote"]["pipeline_id"] == "coinline-train_and_promote-id"


def test_schedules_run_the_newest_uploaded_version_and_upload_nothing():
    """With the Helm chart's uploader, the pipelines exist already (retargeted to the chart's images and names)."""
    client = FakeKfpClient(uploaded=("coinline-sync", "coinline-train_and_promote"))
    create_schedules(client, cluster_settings())
    assert client.uploads == []
    assert {c["job_name"]: c["version_id"] for c in client.created} == {
        "coinline-sync-hourly": "coinline-sync-v1-id", "coinline-train-and-promote": "coinline-train_and_promote-v1-id"}


def test_parameters_are_ones_the_compiled_pipelines_accept_and_carry_no_secret():
    client = FakeKfpClient()
    create_schedules(client, cluster_settings())
    for call in client.created:
        pipeline = "sync" if "sync" in call["job_name"] else "train_and_promote"
        assert set(call["params"]) <= pipeline_parameters(pipeline)
        assert call["params"]["object_store_url"] == "s3://coinline-lake/lake"
        text = json.dumps(call["params"])
        assert "hist-secret-value" not in text and "s3-secret" not in text
    sync = next(c for c in client.created if c["job_name"] == "coinline-sync-hourly")
    assert sync["params"]["symbols"] == "BTC,ETH" and sync["params"]["intervals"] == ["1h"]


def test_a_rerun_leaves_identical_schedules_alone_and_moves_them_after_an_upgrade():
    client = FakeKfpClient(existing=("something-else",), uploaded=("coinline-sync", "coinline-train_and_promote"))
    create_schedules(client, cluster_settings())
    ids = sorted(r.recurring_run_id for r in client.runs)
    done = create_schedules(client, cluster_settings())
    assert {d["name"]: d["action"] for d in done} == {"coinline-sync-hourly": "unchanged",
                                                     "coinline-train-and-promote": "unchanged"}
    assert sorted(r.recurring_run_id for r in client.runs) == ids and len(client.created) == 2
    # an upgrade uploaded a new version of the sync pipeline: the schedule moves to it, under the same name
    client.versions["coinline-sync-id"].append(SimpleNamespace(display_name="sync-v2", pipeline_version_id="v2-id",
                                                               created_at="2026-03-01"))
    done = create_schedules(client, cluster_settings())
    assert {d["name"]: d["action"] for d in done} == {"coinline-sync-hourly": "updated",
                                                     "coinline-train-and-promote": "unchanged"}
    [sync] = [r for r in client.runs if r.display_name == "coinline-sync-hourly"]
    assert sync.pipeline_version_reference.pipeline_version_id == "v2-id" and sync.no_catchup is True
    assert sorted(r.display_name for r in client.runs) == ["coinline-sync-hourly", "coinline-train-and-promote",
                                                           "something-else"]


def test_an_old_schedule_with_an_embedded_spec_or_duplicates_becomes_one_on_a_version():
    client = FakeKfpClient(existing=("coinline-sync-hourly", "coinline-sync-hourly", "coinline-sync-hourly"),
                           uploaded=("coinline-sync", "coinline-train_and_promote"))
    done = create_schedules(client, cluster_settings())
    sync = next(d for d in done if d["name"] == "coinline-sync-hourly")
    assert sync["action"] == "updated" and sync["previous"] == "embedded spec" and sync["duplicates_deleted"] == 2
    assert sorted(client.deleted) == ["old-0", "old-1", "old-2"]
    [run] = [r for r in client.runs if r.display_name == "coinline-sync-hourly"]
    assert run.pipeline_version_reference.pipeline_version_id == "coinline-sync-v1-id"


def test_changed_settings_replace_the_schedules_parameters():
    client = FakeKfpClient(uploaded=("coinline-sync", "coinline-train_and_promote"))
    create_schedules(client, cluster_settings())
    done = create_schedules(client, replace(cluster_settings(), symbols=("BTC",)))
    assert {d["action"] for d in done} == {"updated"}
    [sync] = [r for r in client.runs if r.display_name == "coinline-sync-hourly"]
    assert sync.runtime_config.parameters["symbols"] == "BTC"
    assert len(client.runs) == 2


def test_disabled_ingestion_or_retraining_schedules_nothing_for_it():
    assert [s.pipeline for s in plan_schedules(cluster_settings(enable_continuous_ingestion=False))] == \
        ["train_and_promote"]
    assert [s.pipeline for s in plan_schedules(cluster_settings(enable_autonomous_retraining=False))] == ["sync"]


def test_a_local_lake_is_refused_for_cluster_schedules():
    with pytest.raises(ConfigError, match="shared object store"):
        create_schedules(FakeKfpClient(), Settings())


def test_the_training_config_file_travels_as_its_json_text(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"tune": {"trials": 8}}')
    sync, train = plan_schedules(cluster_settings(train_config=str(path)))
    assert json.loads(train.params["train_config_json"]) == {"tune": {"trials": 8}}
    # the sync cycle's forecast step forecasts with the same config when the baseline is the champion
    assert (sync.pipeline, sync.params["train_config_json"]) == ("sync", train.params["train_config_json"])


@pytest.mark.parametrize(("given", "expected"), [("0 3 * * 1", "0 0 3 * * 1"), ("30 0 3 * * 1", "30 0 3 * * 1")])
def test_kfp_cron_has_a_seconds_field(given, expected):
    assert kfp_cron(given) == expected


def test_a_malformed_cron_is_a_config_error():
    with pytest.raises(ConfigError, match="fields"):
        kfp_cron("every monday")


def test_the_cli_creates_the_schedules_through_kfp_client(monkeypatch, capsys):
    """`coinline schedule` (not --dry-run): kfp.Client built from --host/--namespace, schedules created once."""
    import kfp

    from coinline.cli import main

    clients = []

    def fake_client(host=None, namespace=None, **kw):
        clients.append((host, namespace))
        client = FakeKfpClient(existing=("coinline-sync-hourly",), uploaded=("coinline-sync", "coinline-train_and_promote"))
        clients.append(client)
        return client

    monkeypatch.setattr(kfp, "Client", fake_client)
    monkeypatch.setenv("OBJECT_STORE_URL", "s3://coinline-lake/lake")
    monkeypatch.setenv("HIST_MARKET_DATA_API_KEY", "cli-canary-key-value")
    assert main(["schedule", "--host", "http://kfp.example:8888", "--namespace", "team", "--json"]) == 0
    (host, namespace), client = clients
    assert (host, namespace) == ("http://kfp.example:8888", "team")
    assert [c["job_name"] for c in client.created] == ["coinline-sync-hourly", "coinline-train-and-promote"]
    out = json.loads(capsys.readouterr().out)
    assert {d["name"]: d["action"] for d in out} == {"coinline-sync-hourly": "updated",  # was an embedded spec
                                                    "coinline-train-and-promote": "created"}
    assert "cli-canary-key-value" not in json.dumps(client.created)
