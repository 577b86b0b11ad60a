"""Kill `coinline promote` (a real subprocess) at every step of promotion: before the compare-and-swap the
active set never changes; after it, the pointer and its decision are consistent and the next run repairs
the history. Two ways to die: os._exit(137) at the step (no cleanup, no finally blocks) and a real SIGKILL
sent from outside while the process waits at the step."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from coinline.promotion import STEPS, load_policy, promote, read_active, rollback
from coinline.promotion.decide import CRASH_ENV, PAUSE_ENV
from coinline.promotion.registry import ACTIVE, history, history_name
from tests.promotion import fresh_lake, permissive_policy, template

BEFORE_CAS = STEPS[:STEPS.index("before_cas") + 1]
NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def world(tmp_path_factory, tmp_path):
    """runs[0] already active (promoted in-process); runs[1] is the candidate."""
    lake, info = fresh_lake(template(tmp_path_factory), tmp_path / "lake")
    policy_path, policy = permissive_policy(tmp_path)
    assert promote(lake, info["runs"][0], policy, now=NOW)["activated"]
    return lake, info["runs"], policy_path, tmp_path


def _coinline(lake, cwd, *args, env=None, wait=True):
    full = {**os.environ, "OBJECT_STORE_URL": lake.root, **(env or {})}
    if CRASH_ENV not in (env or {}):
        full.pop(CRASH_ENV, None)
    cmd = [sys.executable, "-m", "coinline.cli", "--now", "2025-06-01T00:00:00Z", *args, "--json"]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def _state(lake):
    return lake.read_bytes(ACTIVE), lake.list("registry/history")


@pytest.mark.parametrize("step", STEPS)
def test_killing_a_promotion_at_each_step(world, step):
    lake, runs, policy, cwd = world
    before_bytes, before_history = _state(lake)
    killed = _coinline(lake, cwd, "promote", runs[1], "--policy", str(policy), env={CRASH_ENV: step})
    assert killed.returncode == 137, killed.stderr
    active, after_bytes = read_active(lake)
    decisions = [lake.read_json(n) for n in lake.list("decisions")]
    if step in BEFORE_CAS:
        assert after_bytes == before_bytes and lake.list("registry/history") == before_history
    else:
        assert active["run_id"] == runs[1]
        decision = lake.read_json(f"decisions/{active['decision_id']}.json")
        assert decision["decision"] == "PROMOTE" and decision["run_id"] == runs[1]
        assert decision["active_before"]["run_id"] == runs[0]
        assert (lake.read_bytes(history_name(active)) is not None) == (step == "history_written")
    # the next run finishes or repairs idempotently, and never activates twice
    rerun = _coinline(lake, cwd, "promote", runs[1], "--policy", str(policy))
    out = json.loads(rerun.stdout)
    if step in BEFORE_CAS:
        assert rerun.returncode == 0 and out["activated"]
        if step in ("decision_written", "before_cas"):  # its own decision record is reused
            assert len(lake.list("decisions")) == len(decisions)
    else:
        # the run is already active: nothing to decide (exit 0, no new decision record), the history finished
        assert rerun.returncode == 0 and out["outcome"] == "ALREADY_ACTIVE" and not out["activated"]
        assert len(lake.list("decisions")) == len(decisions)
        assert out["history_repaired"] == ([] if step == "history_written" else [history_name(active)])
    assert read_active(lake)[0]["run_id"] == runs[1]
    assert [h["run_id"] for h in history(lake)] == [runs[0], runs[1]]


@pytest.mark.parametrize("step", STEPS[:3])
def test_killing_a_rejection_never_touches_the_pointer(world, step):
    lake, runs, _, cwd = world
    before = _state(lake)
    killed = _coinline(lake, cwd, "promote", runs[1], env={CRASH_ENV: step})  # default policy: REJECT
    assert killed.returncode == 137
    assert _state(lake) == before
    done = promote(lake, runs[1], load_policy(), now=NOW)
    assert "OOS_SKILL_BELOW_BASELINE" in done["decision"]["reason_codes"] and not done["activated"]
    assert _state(lake) == before


def _sigkill_at(lake, cwd, step, *args):
    pause = cwd / f"paused-{step}"
    proc = _coinline(lake, cwd, *args, env={CRASH_ENV: step, PAUSE_ENV: str(pause)}, wait=False)
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return proc.returncode


@pytest.mark.parametrize("step", ["before_cas", "after_cas"])
def test_real_sigkill_at_the_swap(world, step):
    lake, runs, policy, cwd = world
    before_bytes, _ = _state(lake)
    assert _sigkill_at(lake, cwd, step, "promote", runs[1], "--policy", str(policy)) == -signal.SIGKILL
    active, after_bytes = read_active(lake)
    if step == "before_cas":
        assert after_bytes == before_bytes
    else:
        assert active["run_id"] == runs[1] and lake.read_bytes(history_name(active)) is None
        assert lake.read_json(f"decisions/{active['decision_id']}.json")["decision"] == "PROMOTE"


def test_real_sigkill_during_rollback(world):
    lake, runs, policy, cwd = world
    assert promote(lake, runs[1], load_policy(policy), now=NOW)["activated"]
    before = _state(lake)
    assert _sigkill_at(lake, cwd, "before_cas", "models", "rollback") == -signal.SIGKILL
    assert _state(lake) == before
    assert rollback(lake, now=NOW)["activation"]["run_id"] == runs[0] == read_active(lake)[0]["run_id"]
