"""The gates as pure functions over evidence loaded from a REAL random-walk run (read-only), each reason
code triggered by one changed figure or threshold, and the policy file's validation and hashing."""

import copy
import json
from dataclasses import replace

import pytest

from coinline.errors import ConfigError
from coinline.lake import open_lake
from coinline.promotion import gates as g
from coinline.promotion.decide import load_evidence
from coinline.promotion.policy import load_policy, parse_policy
from tests.promotion import RUNS_FILE, permissive_policy_data, template


@pytest.fixture(scope="module")
def rw(tmp_path_factory):
    root = template(tmp_path_factory)
    runs = json.loads((root / RUNS_FILE).read_text())["runs"]
    lake = open_lake(f"file://{root}")
    return load_evidence(lake, runs[0], load_policy(), None), load_evidence(lake, runs[1], load_policy(), None)


def policy(**overrides):
    return parse_policy(permissive_policy_data(**overrides), "test")


def codes(ev, pol):
    return g.reason_codes(g.evaluate_gates(ev, pol))


def test_random_walk_fails_the_default_oos_gate_with_corrected_evidence(rw):
    ev, _ = rw
    results = g.evaluate_gates(ev, load_policy())
    assert [r.gate for r in results] == list(g.GATES)
    oos = results[0]
    assert not oos.passed and g.OOS_SKILL_BELOW_BASELINE in oos.reason_codes
    assert list(oos.reason_codes) == sorted(oos.reason_codes)
    f = oos.figures
    assert f["correction"] == "holm" and f["p_value_holm"] > 0.05 and f["n"] > 1000
    assert set(f["log_loss_skill"]) == {"base_rate", "momentum", "random_walk"}
    assert oos.thresholds["alpha"] == 0.05 and oos.thresholds["model"] == "ensemble"
    assert results[3].passed, results[3].figures  # a real run's lineage verifies
    assert g.evaluate_gates(ev, load_policy()) == results  # deterministic


def test_a_permissive_policy_passes_every_gate_on_the_same_evidence(rw):
    assert codes(rw[0], policy()) == []


@pytest.mark.parametrize(("override", "code"), [
    ({"oos__alpha": 0.05}, g.OOS_SKILL_BELOW_BASELINE),
    ({"oos__min_log_loss_skill": 0.0}, g.OOS_SKILL_BELOW_BASELINE),
    ({"oos__min_samples": 10**7}, g.OOS_SAMPLES_BELOW_MIN),
    ({"oos__max_ece": 0.0}, g.CALIBRATION_ERROR_ABOVE_LIMIT),
    ({"simulation__max_drawdown": 0.0}, g.SIM_DRAWDOWN_LIMIT),
    ({"simulation__min_sharpe": 100.0}, g.SIM_SHARPE_BELOW_MIN),
    ({"simulation__max_turnover": 0.0}, g.SIM_TURNOVER_LIMIT),
    ({"simulation__min_periods": 10**6}, g.SIM_TOO_FEW_PERIODS),
    ({"risk__max_position": 0.1}, g.RISK_POSITION_LIMIT),
    ({"risk__max_gross_exposure": 0.1}, g.RISK_EXPOSURE_LIMIT),
    ({"risk__max_coin_weight": 0.1}, g.RISK_COIN_WEIGHT_LIMIT),
    ({"audit__required_artifacts": ["not-there.json"]}, g.AUDIT_ARTIFACT_MISSING),
    ({"audit__required_prefixes": ["weights/"]}, g.AUDIT_ARTIFACT_MISSING),
])
def test_each_threshold_gives_its_reason_code(rw, override, code):
    assert codes(rw[0], policy(**override)) == [code]


def test_in_sample_only_evidence_is_always_a_rejection(rw):
    ev = rw[0]
    metrics = {k: v for k, v in ev.metrics.items() if k not in ("skill", "per_coin")}
    assert metrics["in_sample"]
    assert codes(replace(ev, metrics=metrics), policy()) == [g.IN_SAMPLE_ONLY_EVIDENCE]
    no_metrics = replace(ev, metrics=None)
    assert codes(no_metrics, policy()) == [g.OOS_EVIDENCE_MISSING]


def test_uncorrected_p_values_are_not_evidence(rw):
    metrics = copy.deepcopy(rw[0].metrics)
    metrics["skill"]["correction"] = "none"
    assert codes(replace(rw[0], metrics=metrics), policy()) == [g.OOS_SKILL_BELOW_BASELINE, g.OOS_UNCORRECTED_EVIDENCE]


def test_a_missing_baseline_is_a_rejection(rw):
    pol = policy(oos__baselines=["base_rate", "persistence"])
    assert codes(rw[0], pol) == [g.OOS_BASELINE_MISSING]


def test_comparison_with_the_active_set_uses_its_stored_metrics(rw):
    first, second = rw
    skill = {ev.run_id: g.oos_gate(ev, policy()).figures["log_loss_skill"]["base_rate"] for ev in rw}
    better, worse = sorted(rw, key=lambda ev: -skill[ev.run_id])
    gap = skill[better.run_id] - skill[worse.run_id]
    assert gap > 0
    active = {"run_id": better.run_id, "activation_id": "act-1"}
    challenger = replace(worse, active=active, active_metrics=better.metrics)
    assert codes(challenger, policy(oos__active_tolerance=gap / 2)) == [g.WORSE_THAN_ACTIVE]
    assert codes(challenger, policy(oos__active_tolerance=gap * 2)) == []
    figures = g.oos_gate(challenger, policy()).figures["vs_active"]
    assert figures["active_run_id"] == better.run_id and figures["active_log_loss_skill"] == skill[better.run_id]
    reverse = replace(better, active={"run_id": worse.run_id, "activation_id": "a"}, active_metrics=worse.metrics)
    assert codes(reverse, policy(oos__active_tolerance=0.0)) == []
    assert codes(replace(worse, active=active, active_metrics=None), policy()) == [g.ACTIVE_EVIDENCE_MISSING]
    same = replace(better, active=active, active_metrics=better.metrics)
    assert codes(same, policy()) == [g.ALREADY_ACTIVE]


def test_risk_limits_are_reverified_not_read_from_the_flag(rw):
    sim = copy.deepcopy(rw[0].simulation)
    sim["max_position_observed"] = 0.35  # breached, though the stored flag still says within limits
    sim["max_gross_exposure"] = 1.4
    assert sim["within_limits"] is True
    assert codes(replace(rw[0], simulation=sim), policy()) == [g.RISK_EXPOSURE_LIMIT, g.RISK_POSITION_LIMIT]
    loose = copy.deepcopy(rw[0].simulation)
    loose["limits"]["max_position"] = 0.5  # simulated under a looser per-coin cap than the policy allows
    assert codes(replace(rw[0], simulation=loose), policy()) == [g.RISK_COIN_WEIGHT_LIMIT]
    assert codes(replace(rw[0], simulation=None), policy()) == [g.RISK_EVIDENCE_MISSING, g.SIM_EVIDENCE_MISSING]


def test_audit_findings_map_to_codes(rw):
    audit = copy.deepcopy(rw[0].audit)
    audit.update(missing=["models/BTC/4_h_lightgbm.bin"], mismatched=["folds.json"], lineage_mismatch=["metrics.run_id"])
    audit["dataset"] = {**audit["dataset"], "hash_ok": False}
    assert codes(replace(rw[0], audit=audit), policy()) == [
        g.AUDIT_ARTIFACT_MISSING, g.AUDIT_DATASET_HASH_MISMATCH, g.AUDIT_HASH_MISMATCH, g.AUDIT_LINEAGE_MISMATCH]
    gone = {"manifest_present": False, "listed": [], "missing": [], "mismatched": [], "verified": 0,
            "lineage_mismatch": [], "dataset": None}
    assert g.audit_gate(replace(rw[0], audit=gone), policy()).reason_codes == (
        g.AUDIT_ARTIFACT_MISSING, g.AUDIT_MANIFEST_MISSING)


def test_every_gate_reports_figures_and_thresholds_as_json(rw):
    for result in g.evaluate_gates(rw[0], load_policy()):
        d = result.to_dict()
        assert d["figures"] and d["thresholds"]
        json.dumps(d, allow_nan=False)


def test_policy_file_is_versioned_validated_and_hashed(tmp_path):
    default = load_policy()
    assert default.version == "default-v2" and len(default.sha256) == 64
    reformatted = tmp_path / "p.json"
    reformatted.write_text(json.dumps(default.data, indent=4, sort_keys=False))
    assert load_policy(reformatted).sha256 == default.sha256
    changed = copy.deepcopy(default.data)
    changed["oos"]["alpha"] = 0.01
    assert parse_policy(changed, "x").sha256 != default.sha256
    bad = copy.deepcopy(default.data)
    bad["oos"]["alpah"] = 0.05
    with pytest.raises(ConfigError, match="alpah"):
        parse_policy(bad, "x")
    del bad["oos"]["alpah"], bad["risk"]["max_position"]
    with pytest.raises(ConfigError, match="max_position"):
        parse_policy(bad, "x")
    wrong = copy.deepcopy(default.data)
    wrong["audit"]["verify_dataset"] = "yes"
    with pytest.raises(ConfigError, match="verify_dataset"):
        parse_policy(wrong, "x")


def test_oos_rows_of_other_models_do_not_stand_in_for_the_promoted_one(rw):
    metrics = copy.deepcopy(rw[0].metrics)
    metrics["skill"]["by_model"] = {k: v for k, v in metrics["skill"]["by_model"].items() if not k.endswith("/ensemble")}
    assert metrics["skill"]["by_model"]
    assert codes(replace(rw[0], metrics=metrics), policy()) == [g.OOS_EVIDENCE_MISSING]


def test_every_served_horizon_is_judged_against_the_base_rate(rw):
    ev = rw[0]
    metrics = copy.deepcopy(ev.metrics)
    metrics["horizons"] = {"served": {
        "1": {"served": "mean", "log_loss": 0.6920, "base_rate_log_loss": 0.6925},
        "4": {"served": "ensemble", "log_loss": 0.6930, "base_rate_log_loss": 0.6930},
        "24": {"served": "mean", "log_loss": 0.7100, "base_rate_log_loss": 0.6950}}}
    result = g.oos_gate(replace(ev, metrics=metrics), load_policy())
    assert f"{g.SERVED_HORIZON_WORSE}:h24" in result.reason_codes
    assert not any(c.endswith((":h1", ":h4")) for c in result.reason_codes)
    assert set(result.figures["served_horizons"]) == {"1", "4", "24"}
    del metrics["horizons"]
    assert g.SERVED_HORIZON_EVIDENCE_MISSING in g.oos_gate(replace(ev, metrics=metrics), load_policy()).reason_codes
    v1 = parse_policy({k: v for k, v in load_policy().data.items() if k not in ("horizons", "forward")}, "v1-like")
    assert not any(c.startswith("SERVED_HORIZON") for c in g.oos_gate(replace(ev, metrics=metrics), v1).reason_codes)
