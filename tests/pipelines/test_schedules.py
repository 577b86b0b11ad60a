"""Recurring runs are created through a KFP client (here a fake one): once each, never overlapping, no
catch-up, parameters the compiled pipelines accept, and never a secret among them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from coinline.errors import ConfigError
from coinline.secrets import Secret
from coinline.settings import Settings
from pipelines.compile import COMPILED
from pipelines.schedules import SYNC_CRON, create_schedules, kfp_cron, plan_schedules


class FakeKfpClient:
    """The three kfp.Client methods create_schedules uses, recording every call."""

    def __init__(self, existing: tuple[str, ...] = ()):
        self.existing = [SimpleNamespace(display_name=name) for name in existing]
        self.created: list[dict] = []
        self.experiments: list[str] = []

    def create_experiment(self, name, description=None, namespace=None):
        self.experiments.append(name)
        return SimpleNamespace(experiment_id="exp-1", display_name=name)

    def list_recurring_runs(self, page_token="", page_size=10, sort_by="", experiment_id=None, namespace=None,
                            filter=None):
        assert experiment_id == "exp-1"
        start = int(page_token or 0)
        page = self.existing[start:start + 1]  # one per page: exercises pagination
        token = str(start + 1) if start + 1 < len(self.existing) else ""
        return SimpleNamespace(recurring_runs=page or None, next_page_token=token)

    def create_recurring_run(self, **kwargs):
        self.created.append(kwargs)
        return SimpleNamespace(recurring_run_id=f"rr-{len(self.created)}")


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
    assert by_name["coinline-sync-hourly"]["pipeline_package_path"] == str(COMPILED / "sync.yaml")
    assert by_name["coinline-train-and-promote"]["pipeline_package_path"] == str(COMPILED / "train_and_promote.yaml")


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


def test_existing_schedules_are_left_alone():
    client = FakeKfpClient(existing=("something-else", "coinline-sync-hourly"))
    done = create_schedules(client, cluster_settings())
    assert {d["name"]: d["action"] for d in done} == {"coinline-sync-hourly": "exists",
                                                     "coinline-train-and-promote": "created"}
    assert [c["job_name"] for c in client.created] == ["coinline-train-and-promote"]


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
        client = FakeKfpClient(existing=("coinline-sync-hourly",))
        clients.append(client)
        return client

    monkeypatch.setattr(kfp, "Client", fake_client)
    monkeypatch.setenv("OBJECT_STORE_URL", "s3://coinline-lake/lake")
    monkeypatch.setenv("HIST_MARKET_DATA_API_KEY", "cli-canary-key-value")
    assert main(["schedule", "--host", "http://kfp.example:8888", "--namespace", "team", "--json"]) == 0
    (host, namespace), client = clients
    assert (host, namespace) == ("http://kfp.example:8888", "team")
    assert [c["job_name"] for c in client.created] == ["coinline-train-and-promote"]
    out = json.loads(capsys.readouterr().out)
    assert {d["name"]: d["action"] for d in out} == {"coinline-sync-hourly": "exists",
                                                    "coinline-train-and-promote": "created"}
    assert "cli-canary-key-value" not in json.dumps(client.created)
