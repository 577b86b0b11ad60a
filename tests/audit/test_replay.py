"""Audit replay re-derives a decision from lineage and names the exact mismatch when evidence changed."""

from datetime import UTC, datetime

import pytest

from coinline.audit.replay import audit
from coinline.promotion.decide import promote
from tests.training.conftest import fast_config, random_walk_dataset

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def decided(lake):
    from coinline.training.run import train

    run = train(lake, random_walk_dataset(lake, seed=5), fast_config(families=("lightgbm", "lstm")), workers=1)
    return promote(lake, run.run_id, now=NOW)["decision"]


def test_replay_of_a_decision_matches_on_every_step(lake, decided):
    assert decided["decision"] == "REJECT" and "OOS_SKILL_BELOW_BASELINE" in decided["reason_codes"]
    report = audit(lake, decided["decision_id"])
    assert [s.step for s in report.steps] == ["dataset", "training", "gates"]
    assert report.match, report.to_dict()


def test_replay_names_the_step_that_no_longer_matches(lake, decided):
    import json

    name = f"datasets/{decided['dataset_id']}/manifest.json"
    manifest = lake.read_json(name)
    manifest["inputs"]["raw_candles_version"] -= 1   # lineage now points at an older table version
    lake.write_json(name, manifest)
    report = audit(lake, decided["decision_id"], retrain=False)
    dataset, gates = report.steps
    assert not dataset.match and dataset.expected == decided["dataset_hash"] and dataset.actual != dataset.expected
    assert not report.match
    assert json.dumps(report.to_dict())  # serializable for --json


def test_cli_audit_exits_zero_on_match(lake, decided, tmp_path, monkeypatch, capsys):
    from coinline.cli import main

    monkeypatch.setenv("OBJECT_STORE_URL", lake.root)
    assert main(["audit", decided["decision_id"], "--no-retrain"]) == 0
    assert "MATCH" in capsys.readouterr().out
