"""The registry's compare-and-swap on a real S3 server (SeaweedFS): conditional PUTs (`If-None-Match: *`,
`If-Match: <etag>`) make exactly one of several racing writers win, and activation, history and rollback
work the same as on local disk."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from coinline.lake.store import CasConflict
from coinline.promotion import registry as r

pytestmark = pytest.mark.s3
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_compare_and_swap_uses_conditional_puts_on_s3(s3_lake):
    s3_lake.compare_and_swap("registry/p.json", None, {"v": 1})
    with pytest.raises(CasConflict):
        s3_lake.compare_and_swap("registry/p.json", None, {"v": 2})
    first = s3_lake.read_bytes("registry/p.json")
    with pytest.raises(CasConflict):
        s3_lake.compare_and_swap("registry/p.json", first + b" ", {"v": 2})
    s3_lake.compare_and_swap("registry/p.json", first, {"v": 2})
    with pytest.raises(CasConflict):
        s3_lake.compare_and_swap("registry/p.json", first, {"v": 3})
    assert s3_lake.read_json("registry/p.json") == {"v": 2}
    with pytest.raises(CasConflict):
        s3_lake.compare_and_swap("registry/absent.json", first, {"v": 1})


@pytest.mark.parametrize("existing", [False, True])
def test_exactly_one_racing_writer_wins_on_s3(s3_lake, existing):
    if existing:
        s3_lake.compare_and_swap("registry/active.json", None, {"winner": None})
    expected = s3_lake.read_bytes("registry/active.json")

    def attempt(who):
        try:
            s3_lake.compare_and_swap("registry/active.json", expected, {"winner": who})
            return who
        except CasConflict:
            return -1

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    winners = [w for w in results if w >= 0]
    assert len(winners) == 1, results
    assert s3_lake.read_json("registry/active.json") == {"winner": winners[0]}


def test_activation_history_and_rollback_on_s3(s3_lake):
    for run in ("run-a", "run-b"):
        _, expected = r.read_active(s3_lake)
        r.activate(s3_lake, expected=expected, run_id=run, decision_id=f"dec-{run}", kind="promote",
                   model_set={"run_id": run}, evidence={}, now=NOW)
    active, _ = r.read_active(s3_lake)
    assert [x["run_id"] for x in r.lineage(s3_lake, active)] == ["run-b", "run-a"]
    out = r.rollback(s3_lake, now=NOW, reason="s3 drill")
    assert out["activation"]["run_id"] == "run-a" and r.read_active(s3_lake)[0] == out["activation"]
    assert [h["kind"] for h in r.history(s3_lake)] == ["promote", "promote", "rollback"]
    assert s3_lake.read_json(f"decisions/{out['decision']['decision_id']}.json")["decision"] == "ROLLBACK"
