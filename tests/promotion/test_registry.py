"""The active pointer: compare-and-swap on local disk (also across racing processes), activation history,
repair after a crash between CAS and history, lineage and rollback."""

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from coinline.errors import CoinlineError
from coinline.lake import open_lake
from coinline.lake.store import CasConflict
from coinline.promotion import registry as r

NOW = datetime(2025, 6, 1, tzinfo=UTC)


class Crash(Exception):
    pass


@pytest.fixture
def lake(tmp_path):
    return open_lake(f"file://{tmp_path}/lake")


def _activate(lake, run_id, decision_id=None, **kw):
    _, expected = r.read_active(lake)
    return r.activate(lake, expected=expected, run_id=run_id, decision_id=decision_id or f"dec-{run_id}",
                      kind="promote", model_set={"run_id": run_id}, evidence={"x": run_id}, now=NOW, **kw)


def test_compare_and_swap_on_local_disk(lake):
    lake.compare_and_swap("registry/p.json", None, {"v": 1})
    with pytest.raises(CasConflict):
        lake.compare_and_swap("registry/p.json", None, {"v": 2})
    first = lake.read_bytes("registry/p.json")
    with pytest.raises(CasConflict):
        lake.compare_and_swap("registry/p.json", first + b" ", {"v": 2})
    lake.compare_and_swap("registry/p.json", first, {"v": 2})
    assert lake.read_json("registry/p.json") == {"v": 2}
    with pytest.raises(CasConflict):  # stale precondition: the bytes read before the swap
        lake.compare_and_swap("registry/p.json", first, {"v": 3})
    assert lake.read_json("registry/p.json") == {"v": 2}


_RACER = """
import os, sys, time
from coinline.lake.store import CasConflict, open_lake
root, who, go, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lake = open_lake(root)
expected = None if expected == "-" else open(expected, "rb").read()
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    lake.compare_and_swap("registry/active.json", expected, {"winner": who})
    print("won")
except CasConflict:
    print("lost")
"""


@pytest.mark.parametrize("existing", [False, True])
def test_exactly_one_of_many_racing_processes_wins_the_swap(lake, tmp_path, existing):
    if existing:
        lake.compare_and_swap("registry/active.json", None, {"winner": None})
        (tmp_path / "expected").write_bytes(lake.read_bytes("registry/active.json"))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, lake.root, str(i), str(go),
                               str(tmp_path / "expected") if existing else "-"], stdout=subprocess.PIPE, text=True)
             for i in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["lost"] * 3 + ["won"]
    assert lake.read_json("registry/active.json") == {"winner": results.index("won")}


def test_activations_form_a_history_and_a_lineage(lake):
    a = _activate(lake, "run-a")
    b = _activate(lake, "run-b")
    assert (a["sequence"], b["sequence"]) == (1, 2)
    assert b["previous"] == r.summary(a) and a["previous"] is None
    assert [h["activation_id"] for h in r.history(lake)] == [a["activation_id"], b["activation_id"]]
    active, _ = r.read_active(lake)
    assert active == b
    assert [x["run_id"] for x in r.lineage(lake, active)] == ["run-b", "run-a"]


def test_a_stale_pointer_read_is_a_conflict_and_changes_nothing(lake):
    _activate(lake, "run-a")
    _, stale = r.read_active(lake)
    _activate(lake, "run-b")
    with pytest.raises(r.RegistryConflict):
        r.activate(lake, expected=stale, run_id="run-c", decision_id="dec-c", kind="promote", model_set={},
                   evidence={}, now=NOW)
    assert r.read_active(lake)[0]["run_id"] == "run-b"
    assert len(r.history(lake)) == 2


def test_history_missing_after_a_crash_between_cas_and_history_is_repaired_once(lake):
    _activate(lake, "run-a")

    def crash_after_cas(step):
        if step == "after_cas":
            raise Crash

    with pytest.raises(Crash):
        _activate(lake, "run-b", on_step=crash_after_cas)
    active, _ = r.read_active(lake)
    assert active["run_id"] == "run-b"  # the CAS committed
    assert [h["run_id"] for h in r.history(lake)] == ["run-a"]
    lin = r.lineage(lake, active)
    assert [x["run_id"] for x in lin] == ["run-b", "run-a"]
    assert r.repair_history(lake) == [r.history_name(active)]
    assert r.repair_history(lake) == []
    assert [h["run_id"] for h in r.history(lake)] == ["run-a", "run-b"]
    c = _activate(lake, "run-c")
    assert c["sequence"] == 3 and c["previous"]["run_id"] == "run-b"


def test_rollback_walks_back_one_activation_at_a_time(lake):
    a, b, c = (_activate(lake, rid) for rid in ("run-a", "run-b", "run-c"))
    out = r.rollback(lake, now=NOW, reason="bad live results")
    act = out["activation"]
    assert act["run_id"] == "run-b" and act["kind"] == "rollback" and act["restores"] == b["activation_id"]
    assert act["previous"] == r.summary(c) and act["model_set"] == b["model_set"]
    assert out["decision"]["decision"] == "ROLLBACK" and out["decision"]["reason"] == "bad live results"
    assert lake.read_json(f"decisions/{act['decision_id']}.json")["to"] == r.summary(b)
    again = r.rollback(lake, now=NOW)["activation"]
    assert again["run_id"] == "run-a" and again["restores"] == a["activation_id"]
    with pytest.raises(CoinlineError, match="nothing to roll back"):
        r.rollback(lake, now=NOW)
    assert r.read_active(lake)[0] == again
    assert [h["sequence"] for h in r.history(lake)] == [1, 2, 3, 4, 5]
    to_c = r.rollback(lake, now=NOW, to=c["activation_id"])["activation"]
    assert to_c["run_id"] == "run-c"


def test_rollback_refuses_a_target_that_does_not_verify_and_without_an_active_set(lake):
    with pytest.raises(CoinlineError, match="no active model set"):
        r.rollback(lake, now=NOW)
    _activate(lake, "run-a")
    b = _activate(lake, "run-b")
    with pytest.raises(CoinlineError, match="cannot roll back to run-a"):
        r.rollback(lake, now=NOW, verify=lambda rid: [f"missing runs/{rid}/metrics.json"])
    assert r.read_active(lake)[0] == b
