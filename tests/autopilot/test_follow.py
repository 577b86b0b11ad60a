"""`follow`: a fake clock drives cycles against the replay venue with a tiny universe and a tiny TrainConfig."""

import json
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from coinline.app import build_app
from coinline.autopilot import Autopilot, RetrainPolicy, follow, resolve_promote
from coinline.errors import ConfigError
from coinline.promotion.drift import DriftThresholds
from coinline.promotion.triggers import RETRAIN_LOCK, list_triggers
from coinline.settings import Settings
from tests.training.conftest import fast_config

NOW = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
SYMBOLS = ["BTC", "ETH"]
# every new candle is "drift" (min_rows=1): a storm of triggers on every cycle after the first retraining
STORMY = RetrainPolicy(drift=DriftThresholds(min_rows=1, min_scored=1))


def _settings(tmp_path, **kw) -> Settings:
    base = dict(object_store_url=f"file://{tmp_path}/lake", venue="replay", symbols=tuple(SYMBOLS), quotes=("USD",),
                replay_history_days=110, universe_dir=str(tmp_path / "universe"), train_workers=1,
                reconcile_lookback=24)
    return Settings(**{**base, **kw})


class FakeClock:
    def __init__(self, start: datetime):
        self.now, self.sleeps = start, []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def app(tmp_path):
    with build_app(_settings(tmp_path), now=NOW) as a:
        yield a


def _inserted_per_cycle(reports):
    return [r["ingest"]["inserted"] for r in reports]


def test_three_cycles_ingest_each_candle_and_a_trigger_storm_starts_one_retraining(app):
    from coinline.training.run import train

    clock = FakeClock(NOW)
    cfg = fast_config(families=("xgboost",))
    trained, promoted, replica = [], [], {}

    def training(lake, dataset_id, cfg_, **kw):
        if not trained:  # while the first retraining holds the lock, another follower sees its own trigger
            other = Autopilot(app, policy=STORMY, train_config=cfg, symbols=SYMBOLS, clock=clock, name="replica",
                              train_fn=lambda *a, **k: pytest.fail("the replica must not train"))
            replica["report"] = other.cycle(clock())
        run = train(lake, dataset_id, cfg_, **kw)
        trained.append(run.run_id)
        return run

    real_promote, why = resolve_promote()
    assert real_promote is not None, why

    def promote(lake, run_id, policy, *, now):  # the real gates, watched
        promoted.append((run_id, policy, now))
        return real_promote(lake, run_id, policy, now=now)

    reports = follow(app, clock=clock, sleep=clock.sleep, max_cycles=3, policy=STORMY, train_config=cfg,
                     symbols=SYMBOLS, train_fn=training, promote=promote)

    # ingestion: the first cycle backfills, then every cycle appends the newly closed candle of each series
    inserted = _inserted_per_cycle(reports)
    assert inserted[0] > 2000 and inserted[1:] == [2, 2]
    assert reports[0]["ingest"]["backfilled"] == ["BTC-USD:1h", "ETH-USD:1h"]
    assert [round(s) for s in clock.sleeps] == [1805, 3600]               # next close + 5 s grace
    assert len({r["dataset_id"] for r in reports}) == 3

    # one retraining for the whole storm
    assert len(trained) == 1 and [p[0] for p in promoted] == trained
    assert promoted[0][1] is not None and promoted[0][1].version         # the promotion gates policy was passed
    first = reports[0]["retrain"]
    assert first["started"] and first["outcome"]["run_id"] == trained[0]
    promotion = first["outcome"]["promotion"]
    assert promotion["status"] == "called" and promotion["decision"] in ("PROMOTE", "REJECT")
    assert promotion["result"]["decision"]["run_id"] == trained[0]
    basis = "active" if promotion["activated"] else "latest"
    lead = first["leader"]
    assert app.lake.read_json(RETRAIN_LOCK) is None

    records = {r["trigger_id"]: r for r in list_triggers(app.lake)}
    assert records[lead]["kind"] == "schedule" and records[lead]["status"] == "done"
    assert records[lead]["evidence"]["schedule"]["reason"] == "no previous retraining recorded"
    assert records[lead]["outcome"]["run_id"] == trained[0]
    # the replica's trigger arrived while the retraining ran: coalesced into it (single flight)
    (replica_trigger,) = replica["report"]["triggers"]
    assert records[replica_trigger]["status"] == "coalesced" and records[replica_trigger]["coalesced_into"] == lead
    assert "single flight" in records[replica_trigger]["reason"]
    # cycles 2 and 3: drift against the new run is recorded with its evidence, and coalesced (cooldown)
    for r in reports[1:]:
        assert r["reference_run"] == {"run_id": trained[0], "basis": basis}
        assert r["drift"]["triggered"] and not r["schedule"]["due"]
        (tid,) = r["triggers"]
        rec = records[tid]
        assert rec["kind"] == "drift" and rec["status"] == "coalesced" and rec["coalesced_into"] == lead
        assert "cooldown" in rec["reason"]
        evidence = rec["evidence"]["drift"]
        assert evidence["triggered"] and evidence["reasons"][0].startswith("feature drift")
        assert evidence["context"]["run_id"] == trained[0] and evidence["context"]["monitored_family"] == "xgboost"
        assert {"psi", "ks_statistic", "wasserstein"} <= set(evidence["features"]["ret_1"])
        # a run with two hours of forecasts is too young for ledger-based prediction drift: re-predicted
        assert evidence["sources"]["prediction"] == "re-predicted"
        assert evidence["n_cur"] == 2 * (r["cycle"] - 1)                   # the candles closed since training
        assert "retrain" not in r
    assert len(records) == 4
    assert len(app.lake.list("autopilot/cycles")) == 4                   # 3 cycles + the replica's
    # every cycle forecasts the newest closed candle: the baseline before any run exists, then the trained
    # run beside it (champion when promoted, else a shadow challenger); 2 coins x 3 horizons each
    roles = [{s["model_set"]: (s["role"], s["inserted"]) for s in r["forecast"]["sets"]} for r in reports]
    assert roles[0] == {"baseline:climatology": ("champion", 6)}
    later = {trained[0]: ("champion", 6)} if promotion["activated"] else {
        "baseline:climatology": ("champion", 6), trained[0]: ("shadow", 6)}
    assert roles[1] == roles[2] == later
    state = app.lake.read_json("autopilot/state.json")
    assert state["last_run_id"] == trained[0] and state["last_trigger_id"] == lead


def test_without_autonomous_retraining_follow_only_ingests(tmp_path):
    clock = FakeClock(NOW)
    with build_app(_settings(tmp_path, enable_autonomous_retraining=False), now=NOW) as app:
        reports = follow(app, clock=clock, sleep=clock.sleep, max_cycles=2, symbols=["BTC"],
                         train_fn=lambda *a, **k: pytest.fail("no training when retraining is disabled"))
        assert _inserted_per_cycle(reports)[1] == 1
        assert all("disabled" in r["retraining"] for r in reports)
        assert list_triggers(app.lake) == []


def test_follow_refuses_disabled_ingestion_and_unapproved_policy_changes(tmp_path):
    clock = FakeClock(NOW)
    with build_app(_settings(tmp_path, enable_continuous_ingestion=False), now=NOW) as app:
        with pytest.raises(ConfigError, match="ENABLE_CONTINUOUS_INGESTION=false"):
            follow(app, clock=clock, sleep=clock.sleep, max_cycles=1)
    with build_app(_settings(tmp_path, enable_autonomous_retraining=False), now=NOW) as app:
        follow(app, clock=clock, sleep=clock.sleep, max_cycles=1, symbols=["BTC"])
        changed = RetrainPolicy(cron="0 * * * *")
        with pytest.raises(ConfigError, match="unapproved policy change refused") as err:
            follow(app, clock=clock, sleep=clock.sleep, max_cycles=1, symbols=["BTC"], policy=changed)
        assert "coinline approve thresholds" in str(err.value)
        assert len(app.lake.list("autopilot/cycles")) == 1                    # refused before any cycle


def test_a_missing_promotion_module_is_recorded_as_promotion_unavailable(app, monkeypatch):
    assert callable(resolve_promote()[0])                                       # present in this tree
    monkeypatch.setitem(sys.modules, "coinline.promotion.decide", None)
    assert resolve_promote() == (None, "coinline.promotion.decide is not installed")
    fake_run = SimpleNamespace(run_id="run-fake")
    clock = FakeClock(NOW)
    (report,) = follow(app, clock=clock, sleep=clock.sleep, max_cycles=1, symbols=SYMBOLS,
                       train_fn=lambda *a, **k: fake_run)
    outcome = report["retrain"]["outcome"]
    assert outcome["run_id"] == "run-fake"
    assert outcome["promotion"] == {"status": "unavailable", "reason": "coinline.promotion.decide is not installed"}


def test_cli_run_follow_one_cycle(tmp_path, monkeypatch, capsys):
    from coinline.cli import main

    monkeypatch.chdir(tmp_path)
    for var in ("HIST_MARKET_DATA_API_KEY", "OBJECT_STORE_URL", "COINLINE_VENUE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in {"COINLINE_SYMBOLS": "BTC", "COINLINE_QUOTES": "USD", "COINLINE_REPLAY_HISTORY_DAYS": "20",
                       "ENABLE_AUTONOMOUS_RETRAINING": "false"}.items():
        monkeypatch.setenv(var, value)
    assert main(["--now", NOW.isoformat(), "run", "--follow", "--cycles", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cycle"] == 1 and report["ingest"]["inserted"] == 20 * 24
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"cron": "not a cron"}))
    assert main(["--now", NOW.isoformat(), "run", "--follow", "--cycles", "1", "--policy", str(policy)]) == 2
    assert "not a valid cron" in capsys.readouterr().err
