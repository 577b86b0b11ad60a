"""The promotion gates: pure functions from evidence (already loaded and hash-checked) to GateResults.

Every gate is mandatory and always evaluated (a decision lists every failing reason, not the first):
    oos_quality   out-of-sample, Holm-corrected skill of the policy's model at the evidence horizon against
                  the baselines and the active set, calibration error, sample count
    simulation    drawdown, Sharpe, turnover and period count of the deterministic simulation
    risk          position, exposure and per-coin weight limits, re-verified from simulation figures
    audit         every lineage artifact present and its hash re-computed
    forward       (policies with a `forward` section) the candidate's matured forecasts in the ledger, on the
                  rows it shares with the champion, are not worse than the champion's
Reason codes are fixed strings; each gate's codes are sorted, and so is the decision's union of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from coinline.jsonsafe import clean
from coinline.promotion.policy import Policy

EPS = 1e-9

OOS_EVIDENCE_MISSING = "OOS_EVIDENCE_MISSING"
IN_SAMPLE_ONLY_EVIDENCE = "IN_SAMPLE_ONLY_EVIDENCE"
OOS_UNCORRECTED_EVIDENCE = "OOS_UNCORRECTED_EVIDENCE"
OOS_BASELINE_MISSING = "OOS_BASELINE_MISSING"
OOS_SKILL_BELOW_BASELINE = "OOS_SKILL_BELOW_BASELINE"
OOS_SAMPLES_BELOW_MIN = "OOS_SAMPLES_BELOW_MIN"
CALIBRATION_ERROR_ABOVE_LIMIT = "CALIBRATION_ERROR_ABOVE_LIMIT"
WORSE_THAN_ACTIVE = "WORSE_THAN_ACTIVE"
ACTIVE_EVIDENCE_MISSING = "ACTIVE_EVIDENCE_MISSING"
ALREADY_ACTIVE = "ALREADY_ACTIVE"
SIM_EVIDENCE_MISSING = "SIM_EVIDENCE_MISSING"
SIM_DRAWDOWN_LIMIT = "SIM_DRAWDOWN_LIMIT"
SIM_SHARPE_BELOW_MIN = "SIM_SHARPE_BELOW_MIN"
SIM_TURNOVER_LIMIT = "SIM_TURNOVER_LIMIT"
SIM_TOO_FEW_PERIODS = "SIM_TOO_FEW_PERIODS"
RISK_EVIDENCE_MISSING = "RISK_EVIDENCE_MISSING"
RISK_POSITION_LIMIT = "RISK_POSITION_LIMIT"
RISK_EXPOSURE_LIMIT = "RISK_EXPOSURE_LIMIT"
RISK_COIN_WEIGHT_LIMIT = "RISK_COIN_WEIGHT_LIMIT"
AUDIT_MANIFEST_MISSING = "AUDIT_MANIFEST_MISSING"
AUDIT_ARTIFACT_MISSING = "AUDIT_ARTIFACT_MISSING"
AUDIT_HASH_MISMATCH = "AUDIT_HASH_MISMATCH"
AUDIT_LINEAGE_MISMATCH = "AUDIT_LINEAGE_MISMATCH"
AUDIT_DATASET_MISSING = "AUDIT_DATASET_MISSING"
AUDIT_DATASET_HASH_MISMATCH = "AUDIT_DATASET_HASH_MISMATCH"
FORWARD_EVIDENCE_INSUFFICIENT = "FORWARD_EVIDENCE_INSUFFICIENT"
FORWARD_WORSE_THAN_CHAMPION = "FORWARD_WORSE_THAN_CHAMPION"
SERVED_HORIZON_WORSE = "SERVED_HORIZON_WORSE_THAN_BASE_RATE"      # + ":h<N>", one code per losing horizon
SERVED_HORIZON_EVIDENCE_MISSING = "SERVED_HORIZON_EVIDENCE_MISSING"

GATES = ("oos_quality", "simulation", "risk", "audit", "forward")


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    reason_codes: tuple[str, ...]
    figures: dict[str, Any]
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "reason_codes": list(self.reason_codes),
                "figures": clean(self.figures), "thresholds": clean(self.thresholds)}


@dataclass(frozen=True)
class Evidence:
    """What a decision is made from. `metrics`/`simulation` are parsed from the very bytes whose hashes
    were checked; `audit` is the verification report; `active` the active set's record with its own
    verified metrics (None when no set is active)."""

    run_id: str
    manifest: dict[str, Any] | None
    metrics: dict[str, Any] | None
    simulation: dict[str, Any] | None
    audit: dict[str, Any]
    active: dict[str, Any] | None = None
    active_metrics: dict[str, Any] | None = None
    forward: dict[str, Any] | None = None    # forecasting.evidence.forward_evidence (policies with `forward`)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _result(gate: str, codes: set[str], figures: dict, thresholds: dict) -> GateResult:
    return GateResult(gate, not codes, tuple(sorted(codes)), figures, thresholds)


def evidence_horizon(metrics: dict[str, Any], policy: Policy) -> int | None:
    h = policy.section("evidence")["horizon"]
    return metrics.get("primary_horizon") if h == "primary" else int(h)


def oos_row(metrics: dict[str, Any] | None, policy: Policy) -> dict[str, Any] | None:
    """The pooled, Holm-corrected OOS row of the policy's model at the evidence horizon, if any."""
    if not metrics:
        return None
    key = f"{evidence_horizon(metrics, policy)}/{policy.section('evidence')['model']}"
    row = ((metrics.get("skill") or {}).get("by_model") or {}).get(key)
    return row if isinstance(row, dict) and isinstance(row.get("oos"), dict) else None


def log_loss_skill(model_ll: float | None, base_ll: float | None) -> float | None:
    if model_ll is None or base_ll is None or base_ll <= 0:
        return None
    return 1.0 - model_ll / base_ll


def _baseline_skills(metrics: dict, row: dict, policy: Policy) -> dict[str, float | None]:
    """Pooled log-loss skill against each baseline: base_rate from the pooled row, the others pooled over
    coins (weighted by each coin's OOS count) from per_coin[sym][h]['baselines']."""
    h, model = str(evidence_horizon(metrics, policy)), policy.section("evidence")["model"]
    model_ll = _num(row["oos"].get("log_loss"))
    out: dict[str, float | None] = {}
    for name in policy.section("oos")["baselines"]:
        if name == "base_rate":
            out[name] = log_loss_skill(model_ll, _num((row.get("base_rate") or {}).get("log_loss")))
            continue
        total_n, ll_m, ll_b = 0, 0.0, 0.0
        for coin in (metrics.get("per_coin") or {}).values():
            slot = (coin or {}).get(h) or {}
            m = (((slot.get("models") or {}).get(model)) or {}).get("oos") or {}
            b = (slot.get("baselines") or {}).get(name) or {}
            n, mv, bv = m.get("n"), _num(m.get("log_loss")), _num(b.get("log_loss"))
            if not n or mv is None or bv is None:
                total_n = 0
                break
            total_n, ll_m, ll_b = total_n + n, ll_m + n * mv, ll_b + n * bv
        out[name] = log_loss_skill(ll_m / total_n, ll_b / total_n) if total_n else None
    return out


def oos_gate(ev: Evidence, policy: Policy) -> GateResult:
    p = policy.section("oos")
    thresholds = {**p, "model": policy.section("evidence")["model"], "horizon": policy.section("evidence")["horizon"]}
    codes: set[str] = set()
    metrics = ev.metrics or {}
    row = oos_row(metrics, policy)
    if row is None:  # no OOS row for this model: in-sample figures alone never count
        any_oos = bool((metrics.get("skill") or {}).get("by_model"))
        in_sample_only = bool(metrics.get("in_sample")) and not any_oos
        codes.add(IN_SAMPLE_ONLY_EVIDENCE if in_sample_only else OOS_EVIDENCE_MISSING)
        return _result("oos_quality", codes, {"evidence": "in-sample only" if in_sample_only else None}, thresholds)
    oos, skill = row["oos"], metrics.get("skill") or {}
    p_holm = _num(row.get("p_value_holm")) if skill.get("correction") == "holm" else None
    n, ece = oos.get("n"), _num(oos.get("ece"))
    vs = _baseline_skills(metrics, row, policy)
    figures: dict[str, Any] = {
        "model": row.get("model"), "horizon": row.get("horizon"), "n": n, "log_loss": _num(oos.get("log_loss")),
        "log_loss_skill": vs, "p_value": _num((row.get("chance") or {}).get("p_value")), "p_value_holm": p_holm,
        "correction": skill.get("correction"), "tests": skill.get("tests"), "ece": ece, "vs_active": None,
    }
    if p_holm is None:
        codes.add(OOS_UNCORRECTED_EVIDENCE)
    if any(v is None for v in vs.values()):
        codes.add(OOS_BASELINE_MISSING)
    if (p_holm is None or p_holm > p["alpha"]
            or any(v is not None and v <= p["min_log_loss_skill"] for v in vs.values())):
        codes.add(OOS_SKILL_BELOW_BASELINE)
    if not isinstance(n, int) or n < p["min_samples"]:
        codes.add(OOS_SAMPLES_BELOW_MIN)
    if ece is None or ece > p["max_ece"]:
        codes.add(CALIBRATION_ERROR_ABOVE_LIMIT)
    if ev.active is not None:
        mine = log_loss_skill(_num(oos.get("log_loss")), _num((row.get("base_rate") or {}).get("log_loss")))
        figures["vs_active"] = _vs_active(ev, policy, mine, codes)
    if "horizons" in policy.data and policy.section("horizons")["served_not_worse_than_base_rate"]:
        figures["served_horizons"] = _served_horizons(metrics, policy.section("horizons")["tolerance"], codes)
        thresholds["horizons"] = policy.section("horizons")
    return _result("oos_quality", codes, figures, thresholds)


def _served_horizons(metrics: dict[str, Any], tolerance: float, codes: set[str]) -> dict[str, Any]:
    """Each served horizon's pooled OOS log loss against the base rate (metrics["horizons"]["served"])."""
    served = (metrics.get("horizons") or {}).get("served")
    if not served:
        codes.add(SERVED_HORIZON_EVIDENCE_MISSING)
        return {}
    out = {}
    for h, v in sorted(served.items(), key=lambda kv: int(kv[0])):
        ll, base = _num(v.get("log_loss")), _num(v.get("base_rate_log_loss"))
        if ll is None or base is None:
            codes.add(SERVED_HORIZON_EVIDENCE_MISSING)
        elif ll > base + tolerance:
            codes.add(f"{SERVED_HORIZON_WORSE}:h{h}")
        out[h] = {"served": v.get("served"), "log_loss": ll, "base_rate_log_loss": base}
    return out


def _vs_active(ev: Evidence, policy: Policy, candidate: float | None, codes: set[str]) -> dict[str, Any]:
    active = ev.active or {}
    out: dict[str, Any] = {"active_run_id": active.get("run_id"), "activation_id": active.get("activation_id"),
                           "candidate_log_loss_skill": candidate, "active_log_loss_skill": None}
    if active.get("run_id") == ev.run_id:
        codes.add(ALREADY_ACTIVE)
    row = oos_row(ev.active_metrics, policy)
    if row is None:
        codes.add(ACTIVE_EVIDENCE_MISSING)
        return out
    theirs = log_loss_skill(_num(row["oos"].get("log_loss")), _num((row.get("base_rate") or {}).get("log_loss")))
    out["active_log_loss_skill"] = theirs
    if theirs is None:
        codes.add(ACTIVE_EVIDENCE_MISSING)
    elif candidate is None or candidate < theirs - policy.section("oos")["active_tolerance"]:
        codes.add(WORSE_THAN_ACTIVE)
    return out


def simulation_gate(ev: Evidence, policy: Policy) -> GateResult:
    p = policy.section("simulation")
    sim = ev.simulation or {}
    figures = {k: _num(sim.get(k)) for k in ("max_drawdown", "sharpe", "turnover", "total_return")}
    figures["n_periods"] = sim.get("n_periods")
    codes: set[str] = set()
    dd, sharpe, turnover, periods = figures["max_drawdown"], figures["sharpe"], figures["turnover"], sim.get("n_periods")
    if None in (dd, sharpe, turnover) or not isinstance(periods, int):
        codes.add(SIM_EVIDENCE_MISSING)
    if dd is not None and dd > p["max_drawdown"]:
        codes.add(SIM_DRAWDOWN_LIMIT)
    if sharpe is not None and sharpe < p["min_sharpe"]:
        codes.add(SIM_SHARPE_BELOW_MIN)
    if turnover is not None and turnover > p["max_turnover"]:
        codes.add(SIM_TURNOVER_LIMIT)
    if isinstance(periods, int) and periods < p["min_periods"]:
        codes.add(SIM_TOO_FEW_PERIODS)
    return _result("simulation", codes, figures, dict(p))


def risk_gate(ev: Evidence, policy: Policy) -> GateResult:
    """Re-verified from the simulation's figures (its `within_limits` flag is reported, not trusted)."""
    p = policy.section("risk")
    sim = ev.simulation or {}
    limits = sim.get("limits") or {}
    pos, gross = _num(sim.get("max_position_observed")), _num(sim.get("max_gross_exposure"))
    cap_pos, cap_gross = _num(limits.get("max_position")), _num(limits.get("max_exposure"))
    figures = {"max_position_observed": pos, "max_gross_exposure": gross, "sim_max_position": cap_pos,
               "sim_max_exposure": cap_gross, "sim_within_limits_flag": sim.get("within_limits")}
    codes: set[str] = set()
    if None in (pos, gross, cap_pos, cap_gross):
        codes.add(RISK_EVIDENCE_MISSING)
    if pos is not None and (pos > p["max_position"] + EPS or (cap_pos is not None and pos > cap_pos + EPS)):
        codes.add(RISK_POSITION_LIMIT)
    if gross is not None and (gross > p["max_gross_exposure"] + EPS or (cap_gross is not None and gross > cap_gross + EPS)):
        codes.add(RISK_EXPOSURE_LIMIT)
    if cap_gross is not None and cap_gross > p["max_gross_exposure"] + EPS:
        codes.add(RISK_EXPOSURE_LIMIT)
    if cap_pos is not None and cap_pos > p["max_coin_weight"] + EPS:
        codes.add(RISK_COIN_WEIGHT_LIMIT)
    return _result("risk", codes, figures, dict(p))


def audit_gate(ev: Evidence, policy: Policy) -> GateResult:
    p = policy.section("audit")
    a = ev.audit
    listed = set(a.get("listed", ()))
    unlisted = sorted(n for n in p["required_artifacts"] if n not in listed)
    unlisted += sorted(f"{pre}*" for pre in p["required_prefixes"] if not any(n.startswith(pre) for n in listed))
    figures = {"manifest_present": a.get("manifest_present", False), "artifacts_listed": len(listed),
               "artifacts_verified": a.get("verified", 0), "missing": sorted(a.get("missing", [])) + unlisted,
               "hash_mismatch": sorted(a.get("mismatched", [])), "lineage_mismatch": sorted(a.get("lineage_mismatch", [])),
               "dataset": a.get("dataset")}
    codes: set[str] = set()
    if not a.get("manifest_present"):
        codes.add(AUDIT_MANIFEST_MISSING)
    if figures["missing"]:
        codes.add(AUDIT_ARTIFACT_MISSING)
    if figures["hash_mismatch"]:
        codes.add(AUDIT_HASH_MISMATCH)
    if figures["lineage_mismatch"]:
        codes.add(AUDIT_LINEAGE_MISMATCH)
    dataset = a.get("dataset") or {}
    if a.get("manifest_present") and not dataset.get("present"):
        codes.add(AUDIT_DATASET_MISSING)
    elif dataset.get("present") and dataset.get("hash_ok") is False:
        codes.add(AUDIT_DATASET_HASH_MISMATCH)
    return _result("audit", codes, figures, dict(p))


def forward_gate(ev: Evidence, policy: Policy) -> GateResult:
    """Live evidence: matured forecasts the candidate shares with the champion (as a shadow or in a frozen-set
    study). `when_available` judges it once there are min_matured_rows shared rows and passes (saying so)
    before; `required` fails without them; `off` records the gate and passes."""
    p = policy.section("forward")
    f = ev.forward or {}
    figures = {"mode": p["mode"], "champion": f.get("champion"), "horizon": f.get("horizon"),
               "n_rows": int(f.get("n_rows") or 0), "n_times": f.get("n_times"),
               "log_loss": f.get("log_loss"), "diff": f.get("diff"), "p_value": f.get("p_value")}
    codes: set[str] = set()
    if p["mode"] == "off":
        figures["note"] = "forward evidence is not used by this policy"
    elif figures["n_rows"] < p["min_matured_rows"]:
        figures["note"] = (f"{figures['n_rows']} shared matured forecasts of {p['min_matured_rows']} needed: "
                           "no forward evidence yet")
        if p["mode"] == "required":
            codes.add(FORWARD_EVIDENCE_INSUFFICIENT)
    elif _num(figures["diff"]) is None or figures["diff"] > p["tolerance"] + EPS:
        codes.add(FORWARD_WORSE_THAN_CHAMPION)
    return _result("forward", codes, figures, dict(p))


def evaluate_gates(ev: Evidence, policy: Policy) -> list[GateResult]:
    """Every gate of the policy, in the order of GATES (the forward gate only under policies that have it)."""
    out = [oos_gate(ev, policy), simulation_gate(ev, policy), risk_gate(ev, policy), audit_gate(ev, policy)]
    if "forward" in policy.data:
        out.append(forward_gate(ev, policy))
    return out


def reason_codes(results: list[GateResult]) -> list[str]:
    return sorted({c for r in results for c in r.reason_codes})
