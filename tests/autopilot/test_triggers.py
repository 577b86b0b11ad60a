"""The schedule across cron boundaries, single flight under racing threads and processes, approvals."""

import multiprocessing as mp
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from coinline.errors import ConfigError
from coinline.lake import open_lake
from coinline.promotion import approvals
from coinline.promotion.triggers import (
    RETRAIN_LOCK,
    SingleFlight,
    due_by_schedule,
    list_triggers,
    read_trigger,
    record_trigger,
    request_manual,
    run_single_flight,
    schedule_status,
)

T = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)   # a Monday, 03:00 UTC


# -- schedule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cron", "last", "now", "due"), [
    ("0 3 * * 1", T, T, False),                                          # the fire that was the last run
    ("0 3 * * 1", T, T + timedelta(days=6, hours=23, minutes=59), False),
    ("0 3 * * 1", T, T + timedelta(days=7), True),                       # the boundary itself is due
    ("0 3 * * 1", T - timedelta(minutes=1), T, True),
    ("0 3 * * 1", T + timedelta(seconds=1), T + timedelta(days=7) - timedelta(seconds=1), False),
    ("0 0 1 * *", datetime(2025, 12, 1, tzinfo=UTC), datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), False),
    ("0 0 1 * *", datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), True),   # year boundary
    ("0 0 29 2 *", datetime(2025, 3, 1, tzinfo=UTC), datetime(2027, 12, 31, tzinfo=UTC), False),  # leap days only
    ("0 0 29 2 *", datetime(2025, 3, 1, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC), True),
    ("*/15 * * * *", T, T + timedelta(minutes=14, seconds=59), False),
    ("*/15 * * * *", T, T + timedelta(minutes=15), True),
    ("@daily", T, T + timedelta(hours=21), True),                        # next midnight
])
def test_due_by_schedule_across_boundaries(cron, last, now, due):
    assert due_by_schedule(cron, last, now) is due


def test_no_previous_retraining_is_due_and_evidence_names_the_fire_time():
    assert due_by_schedule("0 3 * * 1", None, T)
    st = schedule_status("0 3 * * 1", T - timedelta(days=8), T)
    assert st["due"] and st["fire_at"] == (T - timedelta(days=7)).isoformat()
    assert st["next_fire_at"] == (T + timedelta(days=7)).isoformat() and "fired" in st["reason"]


def test_a_bad_cron_or_a_naive_time_is_refused():
    with pytest.raises(ConfigError, match="not a valid cron"):
        due_by_schedule("61 * * * *", None, T)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_by_schedule("0 3 * * 1", datetime(2026, 1, 1), T)


# -- trigger records ----------------------------------------------------------------------------------
def test_triggers_are_recorded_with_their_evidence(lake):
    t = record_trigger(lake, "drift", {"psi": {"ret_1": 0.4}}, now=T)
    rec = read_trigger(lake, t.trigger_id)
    assert rec["kind"] == "drift" and rec["status"] == "pending" and rec["evidence"] == {"psi": {"ret_1": 0.4}}
    assert rec["created_at"] == T.isoformat() and t.name == f"triggers/{t.trigger_id}.json"
    manual = request_manual(lake, requested_by="ops", reason="new features", now=T + timedelta(minutes=1))
    assert [r["trigger_id"] for r in list_triggers(lake)] == [t.trigger_id, manual.trigger_id]
    assert [r["trigger_id"] for r in list_triggers(lake, kind="manual", status="pending")] == [manual.trigger_id]
    with pytest.raises(ValueError, match="kind"):
        record_trigger(lake, "whim", {}, now=T)


# -- single flight --------------------------------------------------------------------------------------
def test_a_storm_in_one_call_starts_one_retraining_and_coalesces_the_rest(lake):
    storm = [record_trigger(lake, k, {"n": i}, now=T) for i, k in enumerate(("schedule", "drift", "manual"))]
    calls = []
    result = run_single_flight(lake, storm, lambda lead: calls.append(lead.trigger_id) or {"run_id": "run-1"},
                               flight=SingleFlight(lake))
    assert calls == [storm[0].trigger_id] and result.started and result.outcome == {"run_id": "run-1"}
    recs = {r["trigger_id"]: r for r in list_triggers(lake)}
    assert recs[storm[0].trigger_id]["status"] == "done"
    assert recs[storm[0].trigger_id]["outcome"] == {"run_id": "run-1"}
    for t in storm[1:]:
        assert recs[t.trigger_id]["status"] == "coalesced"
        assert recs[t.trigger_id]["coalesced_into"] == storm[0].trigger_id
    assert lake.read_json(RETRAIN_LOCK) is None                           # released


def test_a_failed_retraining_is_recorded_and_releases_the_lock(lake):
    t = record_trigger(lake, "schedule", {}, now=T)

    def boom(_lead):
        raise RuntimeError("out of memory")

    result = run_single_flight(lake, [t], boom, flight=SingleFlight(lake))
    assert result.started and result.error == "RuntimeError: out of memory"
    assert read_trigger(lake, t.trigger_id)["status"] == "failed"
    assert lake.read_json(RETRAIN_LOCK) is None


def test_two_threads_racing_start_one_retraining(lake):
    barrier = threading.Barrier(2)
    started: list[str] = []
    results = {}

    def contender(i: int) -> None:
        trig = record_trigger(lake, "drift", {"follower": i}, now=T)
        barrier.wait()

        def work(lead):
            started.append(lead.trigger_id)
            time.sleep(1.0)
            return {"run_id": f"run-{i}"}

        results[i] = (trig, run_single_flight(lake, [trig], work, flight=SingleFlight(lake)))

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(started) == 1
    winner = [r for _, r in results.values() if r.started]
    loser = [(t, r) for t, r in results.values() if not r.started]
    assert len(winner) == 1 and len(loser) == 1
    trig, res = loser[0]
    rec = read_trigger(lake, trig.trigger_id)
    assert rec["status"] == "coalesced" and rec["coalesced_into"] == winner[0].leader == started[0]
    assert res.coalesced == (trig.trigger_id,)
    assert lake.read_json(RETRAIN_LOCK) is None


def _process_contender(root: str, i: int, barrier, queue) -> None:
    lake = open_lake(root)
    trig = record_trigger(lake, "drift", {"process": i}, now=T)
    barrier.wait(60)

    def work(lead):
        open(f"{lake.base_path}/started-{os.getpid()}", "w").close()
        time.sleep(1.5)
        return {"run_id": f"run-{i}"}

    res = run_single_flight(lake, [trig], work, flight=SingleFlight(lake))
    queue.put((trig.trigger_id, res.started, res.leader))


def test_two_processes_racing_start_one_retraining(lake):
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_process_contender, args=(lake.root, i, barrier, queue)) for i in range(2)]
    for p in procs:
        p.start()
    out = [queue.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(started for _, started, _ in out) == [False, True]
    (lead_id,) = [tid for tid, started, _ in out if started]
    (lose_id,) = [tid for tid, started, _ in out if not started]
    assert [leader for _, started, leader in out if not started] == [lead_id]
    assert read_trigger(lake, lose_id)["status"] == "coalesced"
    assert read_trigger(lake, lead_id)["status"] == "done"
    assert len([n for n in os.listdir(lake.base_path) if n.startswith("started-")]) == 1


def test_an_expired_or_dead_holder_is_taken_over_a_live_one_is_not(lake):
    clock = [T]
    flight = SingleFlight(lake, ttl=timedelta(hours=1), clock=lambda: clock[0])
    first = flight.acquire("trig-a")
    assert first is not None and flight.acquire("trig-b") is None          # held and alive
    clock[0] = T + timedelta(hours=2)                                         # expired
    second = flight.acquire("trig-c")
    assert second is not None and second.record["took_over_from"]["trigger_id"] == "trig-a"
    flight.release(second)
    assert lake.read_json(RETRAIN_LOCK) is None
    # a holder process on this host that no longer exists
    dead = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    import socket

    lake.create_only(RETRAIN_LOCK, {"holder": f"{socket.gethostname()}:{dead.pid}:deadbeef", "trigger_id": "trig-d",
                                    "expires_at": (clock[0] + timedelta(hours=5)).isoformat()})
    third = flight.acquire("trig-e")
    assert third is not None and third.record["took_over_from"]["trigger_id"] == "trig-d"


# -- approvals ------------------------------------------------------------------------------------------
def test_an_unapproved_policy_change_is_refused_with_a_clear_message(lake):
    v1, v2 = {"psi": 0.2}, {"psi": 0.1}
    h1, h2 = approvals.value_hash(v1), approvals.value_hash(v2)
    first = approvals.require_approved(lake, "thresholds", h1, value=v1, at=T)
    assert first["basis"] == "initial" and approvals.active(lake, "thresholds")["value_hash"] == h1
    assert approvals.require_approved(lake, "thresholds", h1, at=T)["value_hash"] == h1   # unchanged: fine
    with pytest.raises(ConfigError) as err:
        approvals.require_approved(lake, "thresholds", h2, value=v2, at=T)
    msg = str(err.value)
    assert "unapproved policy change refused" in msg and h1 in msg and h2 in msg
    assert f"coinline approve thresholds {h2} --approver NAME --reason TEXT" in msg
    assert approvals.active(lake, "thresholds")["value_hash"] == h1          # nothing adopted

    name = approvals.approve(lake, "thresholds", h2, approver="risk-officer", reason="tighter PSI", at=T, value=v2)
    assert name == f"approvals/thresholds/{h2}.json"
    adopted = approvals.require_approved(lake, "thresholds", h2, value=v2, at=T + timedelta(minutes=1))
    assert adopted["basis"] == "approved" and adopted["approval"] == name and adopted["previous"] == h1
    assert len(lake.list("policy/history/thresholds")) == 2
    with pytest.raises(ConfigError, match="already approved by risk-officer"):
        approvals.approve(lake, "thresholds", h2, approver="x", reason="again", at=T)


def test_approvals_refuse_bad_input(lake):
    h = approvals.value_hash({"a": 1})
    with pytest.raises(ConfigError, match="approver"):
        approvals.approve(lake, "provider", h, approver=" ", reason="r", at=T)
    with pytest.raises(ConfigError, match="reason"):
        approvals.approve(lake, "provider", h, approver="me", reason="", at=T)
    with pytest.raises(ConfigError, match="64 lower-case hex"):
        approvals.approve(lake, "provider", "abc", approver="me", reason="r", at=T)
    with pytest.raises(ConfigError, match="unknown policy kind"):
        approvals.require_approved(lake, "colour", h)
    with pytest.raises(ConfigError, match="does not hash"):
        approvals.approve(lake, "provider", h, approver="me", reason="r", at=T, value={"a": 2})


def test_autopilot_start_refuses_unapproved_universe_provider_and_threshold_changes(lake, tmp_path):
    from coinline.autopilot import RetrainPolicy, policy_values, require_policy_approvals
    from coinline.settings import Settings

    def app(**kw):
        return SimpleNamespace(settings=Settings(universe_dir=str(tmp_path / "u"), venue="replay", **kw), lake=lake)

    base = RetrainPolicy()
    adopted = require_policy_approvals(app(), base, now=T)
    assert {k: v["basis"] for k, v in adopted.items()} == {"universe": "initial", "thresholds": "initial",
                                                           "provider": "initial"}
    require_policy_approvals(app(), base, now=T)                               # unchanged restart: fine

    stricter = RetrainPolicy(cron="0 5 * * *")
    with pytest.raises(ConfigError, match="coinline approve thresholds"):
        require_policy_approvals(app(), stricter, now=T)
    with pytest.raises(ConfigError, match="universe approve VERSION"):
        require_policy_approvals(app(training_universe_version="UNIVERSE_V2_TOP30_NON_STABLE"), base, now=T)
    with pytest.raises(ConfigError, match="coinline approve provider"):
        require_policy_approvals(app(hist_exchange="BINANCE"), base, now=T)

    value = policy_values(app(), stricter)["thresholds"]
    approvals.approve(lake, "thresholds", approvals.value_hash(value), approver="ops", reason="daily", at=T)
    assert require_policy_approvals(app(), stricter, now=T)["thresholds"]["basis"] == "approved"
    # a universe approved through `coinline universe approve` counts as the approval record
    approved = tmp_path / "u" / "approvals" / "UNIVERSE_V2_TOP30_NON_STABLE.json"
    approved.parent.mkdir(parents=True)
    approved.write_text("{}")
    out = require_policy_approvals(app(training_universe_version="UNIVERSE_V2_TOP30_NON_STABLE"), stricter, now=T)
    assert out["universe"]["basis"] == "external" and out["universe"]["approval"] == str(approved)


def test_the_approve_command_named_in_a_refusal_records_the_approval(tmp_path, monkeypatch, capsys):
    from coinline.cli import main
    from coinline.lake import open_lake
    from coinline.promotion.approvals import approval_name

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OBJECT_STORE_URL", raising=False)
    digest = "ab" * 32
    assert main(["approve", "universe", digest, "--approver", "ops", "--reason", "v2 reviewed", "--json"]) == 0
    assert open_lake(f"file://{tmp_path}/lake").read_json(approval_name("universe", digest)) is not None
