"""`coinline retrain --trigger schedule|drift`: one cycle started by a cluster scheduler (the chart's Argo
CronWorkflows). Training and promotion are fakes that record their calls; ingest and triggers are real."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from coinline.app import build_app
from coinline.autopilot import RetrainPolicy, retrain_once
from coinline.cli import main
from coinline.errors import ConfigError
from coinline.promotion.drift import DriftThresholds
from coinline.promotion.triggers import list_triggers
from tests.autopilot.test_follow import NOW, _settings

STORMY = RetrainPolicy(drift=DriftThresholds(min_rows=1, min_scored=1))


class Calls:
    def __init__(self):
        self.trained, self.promoted = [], []

    def train(self, lake, dataset_id, cfg, **kw):
        self.trained.append(dataset_id)
        return SimpleNamespace(run_id=f"run-fake-{len(self.trained)}")

    def promote(self, lake, run_id, *, now):
        self.promoted.append(run_id)
        return {"run_id": run_id, "outcome": "REJECT", "decision": {"decision": "REJECT"}, "activated": False}


@pytest.fixture
def app(tmp_path):
    with build_app(_settings(tmp_path), now=NOW) as a:
        yield a


def test_a_scheduled_retrain_trains_and_promotes_even_when_the_policy_cron_is_not_due(app):
    calls = Calls()
    app.lake.write_json("autopilot/state.json", {"last_retrain_at": (NOW - timedelta(hours=1)).isoformat()})
    policy = RetrainPolicy(cron="0 4 * * 1")  # weekly: not due one hour after the last retraining
    report = retrain_once(app, "schedule", now=NOW, clock=lambda: NOW, policy=policy, train_fn=calls.train,
                          promote=calls.promote)
    assert report["ingest"]["inserted"] > 0
    assert report["schedule"]["due"] and report["schedule"]["by"] == "external scheduler"
    assert calls.trained == [report["dataset_id"]] and calls.promoted == ["run-fake-1"]
    assert report["retrain"]["started"] and report["retrain"]["outcome"]["run_id"] == "run-fake-1"
    (trigger,) = list_triggers(app.lake, kind="schedule")
    assert trigger["trigger_id"] == report["retrain"]["leader"]
    assert "drift" not in report


def test_a_drift_check_without_a_reference_run_trains_nothing(app):
    calls = Calls()
    report = retrain_once(app, "drift", now=NOW, clock=lambda: NOW, policy=STORMY, train_fn=calls.train,
                          promote=calls.promote)
    assert report["reference_run"]["run_id"] is None
    assert report["triggers"] == [] and "retrain" not in report and "schedule" not in report
    assert calls.trained == []


def test_a_drift_check_inside_the_cooldown_is_recorded_and_coalesced(app, monkeypatch):
    calls = Calls()
    retrain_once(app, "schedule", now=NOW, clock=lambda: NOW, policy=STORMY, train_fn=calls.train,
                 promote=calls.promote)
    later = NOW + timedelta(hours=2)
    app.now = later
    monkeypatch.setattr("coinline.autopilot.compute_drift", lambda *a, **k: SimpleNamespace(
        triggered=True, reasons=("psi",), notes=(), n_cur=10, drifted_features=["ret_short"],
        to_dict=lambda: {"triggered": True}))
    report = retrain_once(app, "drift", now=later, clock=lambda: later, policy=STORMY, train_fn=calls.train,
                          promote=calls.promote, reference=lambda lake: ("run-fake-1", "latest run"))
    assert report["reference_run"]["run_id"] == "run-fake-1"
    assert len(report["triggers"]) == 1 and "retrain" not in report
    (drift,) = list_triggers(app.lake, kind="drift")
    assert drift["status"] == "coalesced" and "cooldown" in drift["reason"]
    assert len(calls.trained) == 1, "the coalesced drift trigger must not start a second retraining"


def test_an_unknown_trigger_is_refused_by_name(app, capsys):
    with pytest.raises(ConfigError, match="'manual'"):
        retrain_once(app, "manual", now=NOW)
    with pytest.raises(SystemExit) as exc:
        main(["retrain", "--trigger", "sometimes"])
    assert exc.value.code == 2 and "--trigger" in capsys.readouterr().err


def test_the_cli_verb_runs_one_cycle_and_records_it(tmp_path, monkeypatch, capsys):
    env = {"OBJECT_STORE_URL": f"file://{tmp_path}/lake", "COINLINE_VENUE": "replay", "COINLINE_SYMBOLS": "BTC",
           "COINLINE_QUOTES": "USD", "COINLINE_REPLAY_HISTORY_DAYS": "30", "COINLINE_UNIVERSE_DIR": str(tmp_path / "u"),
           "ENABLE_AUTONOMOUS_RETRAINING": "false"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    assert main(["--now", datetime(2026, 6, 1, 12, 30, tzinfo=UTC).isoformat(), "retrain", "--trigger", "drift",
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert '"retraining": "disabled (ENABLE_AUTONOMOUS_RETRAINING=false)"' in out
    assert list((tmp_path / "lake" / "autopilot").rglob("*retrain-drift.json"))
