"""`coinline schedule --dry-run` and `coinline pipeline run` argument checks (fast: nothing is run; the
whole local DAGs are exercised by tests/pipelines/test_local_runs.py)."""

from coinline.cli import pipeline_params
from coinline.settings import Settings
from pipelines import PIPELINES


def test_schedule_dry_run_prints_the_planned_schedules(cli, monkeypatch):
    monkeypatch.setenv("OBJECT_STORE_URL", "s3://bucket/lake")
    plans = cli("schedule", "--dry-run", "--json", as_json=True)
    assert [(p["name"], p["pipeline"]) for p in plans] == [("coinline-sync-hourly", "sync"),
                                                             ("coinline-train-and-promote", "train_and_promote")]
    assert all(p["params"]["object_store_url"] == "s3://bucket/lake" for p in plans)
    assert "coinline-sync-hourly" in cli("schedule", "--dry-run").out


def test_schedule_dry_run_honours_the_toggles_and_refuses_a_local_lake(cli, monkeypatch):
    monkeypatch.setenv("OBJECT_STORE_URL", "s3://bucket/lake")
    monkeypatch.setenv("ENABLE_AUTONOMOUS_RETRAINING", "false")
    assert [p["pipeline"] for p in cli("schedule", "--dry-run", "--json", as_json=True)] == ["sync"]
    monkeypatch.setenv("OBJECT_STORE_URL", "file://./lake")
    assert "shared object store" in cli("schedule", "--dry-run", expect=2).err


def test_pipeline_run_rejects_an_unknown_name_with_the_known_ones(cli):
    err = cli("pipeline", "run", "--local", "nope", expect=2).err
    assert "unknown pipeline 'nope'" in err
    for name in PIPELINES:
        assert name in err


def test_pipeline_run_needs_local(cli):
    assert "--local" in cli("pipeline", "run", "full", expect=2).err


def test_pipeline_parameters_come_from_the_settings_and_fit_each_pipeline():
    s = Settings(object_store_url="file:///tmp/lake", symbols=("BTC", "ETH"), intervals=("1h",))
    for name, pipeline in PIPELINES.items():
        params = pipeline_params(pipeline, s, now="2026-01-15T00:00:00Z")
        assert set(params) <= set(pipeline.component_spec.inputs), name
        assert params["object_store_url"] == "file:///tmp/lake" and params["now"] == "2026-01-15T00:00:00Z"
        if "intervals" in pipeline.component_spec.inputs:   # every ingest/train pipeline; `maintain` has none
            assert params["intervals"] == ["1h"]
    assert sum("intervals" in p.component_spec.inputs for p in PIPELINES.values()) >= 4
    assert PIPELINES["full"].component_spec.inputs.keys() >= {"symbols"}
    assert pipeline_params(PIPELINES["full"], s)["symbols"] == "BTC,ETH"
    assert pipeline_params(PIPELINES["train_and_promote"], s)["train_symbols"] == "BTC,ETH"
