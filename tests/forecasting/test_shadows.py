"""Shadow challengers and the forward-evidence gate: a rejected run keeps forecasting beside the champion,
the scoreboard compares them on the same matured rows, and the gate judges that live evidence under the
policy, replayably (an audit at the decision's time sees the ledger as it was)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from coinline.audit.replay import replay_gates
from coinline.forecasting import ledger, shadows
from coinline.forecasting.modelset import BASELINE_ID, baseline_set, load_run_set
from coinline.forecasting.service import forecast, forecast_cycle
from coinline.promotion import gates as g
from coinline.promotion.decide import promote
from coinline.promotion.policy import load_policy, parse_policy
from coinline.training.config import TrainConfig

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _policy(**forward):
    data = copy.deepcopy(load_policy().data)
    data["forward"].update(forward)
    return parse_policy(data, "test")


def test_a_rejected_run_forecasts_in_shadow_beside_the_baseline_champion(trained, trained_lake):
    lake = trained_lake
    now = trained.end + timedelta(minutes=5)
    out = promote(lake, trained.run_id, load_policy(), now=now)
    assert out["outcome"] == "REJECT" and out["shadow"] is True
    assert shadows.shadow_ids(lake) == [trained.run_id]
    cycle = forecast_cycle(lake, cfg=TrainConfig(), quote="USD", interval="1h", source="sim",
                           symbols=["BTC", "ETH", "SOL"], now=now)
    roles = {s["model_set"]: (s["role"], s["inserted"]) for s in cycle["sets"]}
    assert roles == {BASELINE_ID: ("champion", 9), trained.run_id: ("shadow", 9)}
    rows = ledger.read(lake)
    assert set(zip(rows["model_set"], rows["role"], strict=True)) == {(BASELINE_ID, "champion"),
                                                                      (trained.run_id, "shadow")}


def test_shadows_are_bounded_and_the_oldest_is_retired(lake):
    for i in range(4):
        shadows.add(lake, f"run-{i}", decision_id=f"dec-{i}", now=T0 + timedelta(hours=i), max_shadows=3)
    assert shadows.shadow_ids(lake) == ["run-1", "run-2", "run-3"]
    doc, _ = shadows.read(lake)
    assert [r["run_id"] for r in doc["retired"]] == ["run-0"]
    shadows.add(lake, "run-2", decision_id="again", now=T0, max_shadows=3)   # idempotent
    assert shadows.shadow_ids(lake) == ["run-1", "run-2", "run-3"]


@pytest.mark.parametrize("mode, n_rows, diff, codes", [
    ("off", 0, None, ()),
    ("when_available", 10, None, ()),
    ("required", 10, None, (g.FORWARD_EVIDENCE_INSUFFICIENT,)),
    ("required", 600, -0.001, ()),
    ("when_available", 600, 0.002, (g.FORWARD_WORSE_THAN_CHAMPION,)),
])
def test_forward_gate_follows_the_policy(mode, n_rows, diff, codes):
    ev = g.Evidence("run-x", None, None, None, {}, forward={"champion": BASELINE_ID, "horizon": 4, "n_rows": n_rows,
                                                           "diff": diff})
    result = g.forward_gate(ev, _policy(mode=mode, min_matured_rows=500))
    assert result.reason_codes == codes and result.passed == (not codes)
    json.dumps(result.to_dict(), allow_nan=False)
    assert g.forward_gate(replace(ev, forward=None), _policy(mode="required")).reason_codes == (
        g.FORWARD_EVIDENCE_INSUFFICIENT,)


def test_forward_evidence_is_read_as_of_the_decision_and_replays(trained, trained_lake):
    lake = trained_lake
    run = load_run_set(lake, trained.run_id)
    base = baseline_set(TrainConfig(), quote="USD", interval="1h", source="sim", symbols=list(run.symbols))
    start, end = trained.end - timedelta(hours=300), trained.end - timedelta(hours=100)
    forecast(lake, [run, base], start=start, end=end, now=end)
    policy = _policy(mode="required", min_matured_rows=100)
    decided = trained.end
    out = promote(lake, trained.run_id, policy, now=decided)
    fwd = next(x for x in out["decision"]["gates"] if x["gate"] == "forward")
    assert fwd["figures"]["champion"] == BASELINE_ID and fwd["figures"]["n_rows"] == 3 * 201
    assert fwd["figures"]["diff"] is not None
    expected = () if fwd["figures"]["diff"] <= 0 else (g.FORWARD_WORSE_THAN_CHAMPION,)
    assert tuple(fwd["reason_codes"]) == expected
    # later forecasts (created after the decision) do not change what an audit of the decision sees
    forecast(lake, [run, base], start=end + timedelta(hours=1), end=trained.end, now=trained.end + timedelta(days=1))
    assert replay_gates(lake, out["decision"]).match
