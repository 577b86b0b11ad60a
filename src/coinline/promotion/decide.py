"""Promotion of one training run, in this order (each step named for crash testing):

    read the active set (after repairing a history record a crash left out)
    load the run's evidence, re-hashing every artifact its manifest lists        -> "evidence_loaded"
    evaluate every gate against the policy and the active set                   -> "gates_evaluated"
    write the decision, create-only, to decisions/<id>.json                     -> "decision_written"
    PROMOTE only: compare-and-swap the active pointer from exactly the bytes read  ("before_cas", "after_cas")
    record the activation in registry/history/                                  -> "history_written"

The pointer is the only commit. A process killed at any step before the CAS leaves the active set as it
was; one killed after it leaves a consistent pointer naming a written decision, and the next activation
(or `repair_history`) writes the missing history record. The decision id is a hash of (run, manifest,
policy, active set before, gate results), so a re-run after a crash finds and reuses its own decision.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from coinline.errors import CoinlineError, ConfigError
from coinline.lake.store import AlreadyExists, Lake
from coinline.promotion import registry
from coinline.promotion.gates import Evidence, GateResult, evaluate_gates, oos_row, reason_codes
from coinline.promotion.policy import Policy, canonical_bytes, load_policy

STEPS = ("evidence_loaded", "gates_evaluated", "decision_written", "before_cas", "after_cas", "history_written")
CRASH_ENV = "COINLINE_PROMOTION_CRASH_AT"
PAUSE_ENV = "COINLINE_PROMOTION_PAUSE_FILE"
_JSON_ARTIFACTS = ("metrics.json", "simulation.json", "config.json")


def _manifest_hash(hashes: dict[str, str]) -> str:
    """The run manifest's content_hash, as training.artifacts computes it."""
    return hashlib.sha256((json.dumps(hashes, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()).hexdigest()


def _artifact_hash(expected: str, data: bytes) -> str:
    if expected.startswith("rows:"):
        import pyarrow.parquet as pq

        from coinline.hashing import table_sha256

        return "rows:" + table_sha256(pq.read_table(io.BytesIO(data)))
    return hashlib.sha256(data).hexdigest()


def verify_run(lake: Lake, run_id: str, *, verify_dataset: bool = True) -> tuple[dict | None, dict[str, Any], dict]:
    """Re-hash every artifact the run manifest lists. Returns (manifest, parsed JSON artifacts whose hash
    verified, audit report). JSON evidence is parsed from the very bytes that were hashed."""
    base = f"runs/{run_id}"
    manifest = lake.read_json(f"{base}/manifest.json")
    audit: dict[str, Any] = {"manifest_present": manifest is not None, "listed": [], "missing": [], "mismatched": [],
                             "verified": 0, "lineage_mismatch": [], "dataset": None}
    parsed: dict[str, Any] = {}
    if manifest is None:
        return None, parsed, audit
    hashes = manifest.get("artifacts") or {}
    audit["listed"] = sorted(hashes)
    for name in sorted(hashes):
        if name.startswith("/") or ".." in name.split("/"):  # a manifest may only name files inside its run
            audit["mismatched"].append(name)
            continue
        data = lake.read_bytes(f"{base}/{name}")
        if data is None:
            audit["missing"].append(name)
            continue
        try:
            ok = _artifact_hash(hashes[name], data) == hashes[name]
        except Exception:  # an unreadable parquet file cannot match its row hash
            ok = False
        if not ok:
            audit["mismatched"].append(name)
            continue
        audit["verified"] += 1
        if name in _JSON_ARTIFACTS:
            parsed[name] = json.loads(data)
    audit["lineage_mismatch"] = _lineage_mismatch(run_id, manifest, parsed)
    audit["dataset"] = _dataset_check(lake, manifest, verify_dataset)
    return manifest, parsed, audit


def _lineage_mismatch(run_id: str, manifest: dict, parsed: dict[str, Any]) -> list[str]:
    bad = []
    if manifest.get("run_id") != run_id:
        bad.append("manifest.run_id")
    if manifest.get("content_hash") != _manifest_hash(manifest.get("artifacts") or {}):
        bad.append("manifest.content_hash")
    metrics = parsed.get("metrics.json")
    if metrics is not None:
        bad += [f"metrics.{k}" for k in ("run_id", "dataset_id", "dataset_hash", "config_hash")
                if metrics.get(k) != manifest.get(k)]
        if "simulation.json" in parsed and parsed["simulation.json"] != metrics.get("simulation"):
            bad.append("simulation.json")
    config = parsed.get("config.json")
    if config is not None:
        recomputed = hashlib.sha256(json.dumps(config.get("config"), sort_keys=True).encode()).hexdigest()
        if not (config.get("config_hash") == manifest.get("config_hash") == recomputed):
            bad.append("config.config_hash")
    return sorted(bad)


def _dataset_check(lake: Lake, manifest: dict, verify_rows: bool) -> dict[str, Any]:
    dataset_id = manifest.get("dataset_id")
    ds = lake.read_json(f"datasets/{dataset_id}/manifest.json") if dataset_id else None
    out: dict[str, Any] = {"dataset_id": dataset_id, "present": ds is not None, "hash_ok": None}
    if ds is None:
        return out
    out["hash_ok"] = ds.get("content_hash") == manifest.get("dataset_hash")
    if out["hash_ok"] and verify_rows:
        from coinline.datasets.materialize import load_dataset

        try:
            load_dataset(lake, dataset_id, verify=True)
            out["rows_verified"] = True
        except Exception:
            out["hash_ok"], out["rows_verified"] = False, False
    return out


def verify_problems(lake: Lake, run_id: str) -> list[str]:
    """Problems with a stored model set (used before rolling back to it)."""
    manifest, _, audit = verify_run(lake, run_id, verify_dataset=False)
    if manifest is None:
        return [f"runs/{run_id}/manifest.json missing"]
    return ([f"missing {n}" for n in audit["missing"]] + [f"hash mismatch {n}" for n in audit["mismatched"]]
            + [f"lineage {n}" for n in audit["lineage_mismatch"]])


def _active_metrics(lake: Lake, active: dict | None) -> dict | None:
    """The active set's stored metrics, trusted only if they match its manifest's hash."""
    if active is None:
        return None
    base = f"runs/{active['run_id']}"
    manifest, data = lake.read_json(f"{base}/manifest.json"), lake.read_bytes(f"{base}/metrics.json")
    if manifest is None or data is None:
        return None
    if (manifest.get("artifacts") or {}).get("metrics.json") != hashlib.sha256(data).hexdigest():
        return None
    return json.loads(data)


def load_evidence(lake: Lake, run_id: str, policy: Policy, active: dict | None, *,
                  now: datetime | None = None) -> Evidence:
    """Everything the gates read. Forward evidence (policies with a `forward` section) is the ledger as of
    `now` (rows created and matured by then), so an audit replaying the decision at its time sees the same."""
    manifest, parsed, audit = verify_run(lake, run_id, verify_dataset=policy.section("audit")["verify_dataset"])
    if manifest is None and lake.read_bytes(f"runs/{run_id}/metrics.json") is None:
        raise CoinlineError(f"unknown run {run_id}: no runs/{run_id}/manifest.json or metrics.json in {lake.root}")
    metrics = parsed.get("metrics.json")
    forward = None
    fwd = policy.data.get("forward")
    if fwd is not None and fwd["mode"] != "off" and now is not None:
        from coinline.forecasting.evidence import forward_evidence

        horizon = fwd["horizon"] if fwd["horizon"] != "primary" else (metrics or {}).get("primary_horizon")
        if horizon is not None:
            forward = forward_evidence(lake, run_id, None if active is None else active["run_id"], int(horizon),
                                       now=now)
    return Evidence(run_id=run_id, manifest=manifest, metrics=metrics,
                    simulation=parsed.get("simulation.json"), audit=audit, active=active,
                    active_metrics=_active_metrics(lake, active), forward=forward)


def _evidence_summary(ev: Evidence, gates: list[GateResult]) -> dict[str, Any]:
    oos = next(g for g in gates if g.gate == "oos_quality").to_dict()["figures"]
    sim = next(g for g in gates if g.gate == "simulation").to_dict()["figures"]
    return {"oos": {k: oos.get(k) for k in ("model", "horizon", "n", "log_loss", "log_loss_skill", "p_value_holm",
                                            "ece")},
            "simulation": {k: sim.get(k) for k in ("sharpe", "max_drawdown", "turnover", "n_periods")}}


def _model_set(ev: Evidence) -> dict[str, Any]:
    m = ev.manifest or {}
    return {"run_id": ev.run_id, "manifest": f"runs/{ev.run_id}/manifest.json",
            "manifest_content_hash": m.get("content_hash"), "dataset_id": m.get("dataset_id"),
            "dataset_hash": m.get("dataset_hash"), "config_hash": m.get("config_hash"),
            "code_version": m.get("code_version"),
            "models": sorted(n for n in m.get("artifacts") or {} if n.startswith("models/"))}


def build_decision(ev: Evidence, gates: list[GateResult], policy: Policy, now: datetime) -> dict[str, Any]:
    m = ev.manifest or {}
    metrics = ev.metrics or {}
    gate_dicts = [g.to_dict() for g in gates]
    codes = reason_codes(gates)
    active_before = registry.summary(ev.active)
    key = {"run_id": ev.run_id, "manifest": m.get("content_hash"), "policy": policy.sha256,
           "active_before": active_before, "gates": gate_dicts}
    decision_id = "dec-" + hashlib.sha256(canonical_bytes(key)).hexdigest()[:20]
    row = oos_row(metrics, policy)
    return {
        "decision_id": decision_id,
        "kind": "promotion",
        "decision": "PROMOTE" if not codes else "REJECT",
        "reason_codes": codes,
        "run_id": ev.run_id,
        "dataset_id": m.get("dataset_id", metrics.get("dataset_id")),
        "dataset_hash": m.get("dataset_hash", metrics.get("dataset_hash")),
        "config_hash": m.get("config_hash", metrics.get("config_hash")),
        "manifest_content_hash": m.get("content_hash"),
        "code_version": m.get("code_version"),
        "policy": {**policy.to_record(), "thresholds": policy.data},
        "active_before": active_before,
        "evidence_basis": ("out-of-sample walk-forward metrics pooled over coins, chance test vs base rate "
                           f"Holm-corrected over {(metrics.get('skill') or {}).get('tests')} tests; "
                           "in-sample metrics are never evidence") if row else "no out-of-sample evidence",
        "gates": gate_dicts,
        "evidence": _evidence_summary(ev, gates),
        "decided_at": now.isoformat(),
    }


def _write_decision(lake: Lake, decision: dict[str, Any]) -> dict[str, Any]:
    name = f"decisions/{decision['decision_id']}.json"
    try:
        lake.create_only(name, decision)
        return decision
    except AlreadyExists:  # same inputs, same gates: our own record from an interrupted attempt
        existing = lake.read_json(name)
        if existing is None or existing.get("decision") != decision["decision"] or existing.get("run_id") != decision["run_id"]:
            raise CoinlineError(f"{name} exists with a different decision") from None
        return existing


def promote(lake: Lake, run_id: str, policy: Policy | None = None, *, now: datetime,
            on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Decide on `run_id` under `policy` (default: the packaged default policy) and, on PROMOTE, activate
    it. Returns {"run_id", "outcome": "PROMOTE"|"REJECT", "decision", "activated", "activation", "history_repaired"};
    a rejection never touches the active pointer. Raises RegistryConflict when the pointer moved between
    reading it and the swap (the decision stays recorded, not activated)."""
    policy = policy or load_policy()
    step = on_step or (lambda _s: None)
    repaired = registry.repair_history(lake)
    active, active_bytes = registry.read_active(lake)
    ev = load_evidence(lake, run_id, policy, active, now=now)
    step("evidence_loaded")
    gates = evaluate_gates(ev, policy)
    step("gates_evaluated")
    decision = _write_decision(lake, build_decision(ev, gates, policy, now))
    step("decision_written")
    out = {"run_id": run_id, "outcome": decision["decision"], "decision": decision, "activated": False,
           "activation": None, "history_repaired": repaired}
    if decision["decision"] != "PROMOTE":
        out["shadow"] = _keep_in_shadow(lake, ev, gates, decision, policy, now)
        return out
    out["activation"] = registry.activate(
        lake, expected=active_bytes, run_id=run_id, decision_id=decision["decision_id"], kind="promote",
        model_set=_model_set(ev), evidence=decision["evidence"], now=now, on_step=step)
    out["activated"] = True
    from coinline.forecasting import shadows

    shadows.remove(lake, run_id, now=now, why=f"promoted by {decision['decision_id']}")
    return out


def _keep_in_shadow(lake: Lake, ev: Evidence, gates: list[GateResult], decision: dict, policy: Policy,
                    now: datetime) -> bool:
    """A rejected candidate whose artifacts verified and that stored a model set forecasts in shadow."""
    from coinline.forecasting import shadows

    fwd = policy.data.get("forward")
    audit_ok = next(g for g in gates if g.gate == "audit").passed
    loadable = "modelset.json" in ((ev.manifest or {}).get("artifacts") or {})
    active = ev.active is not None and ev.active.get("run_id") == ev.run_id
    if fwd is None or fwd["max_shadows"] == 0 or not audit_ok or not loadable or active:
        return False
    shadows.add(lake, ev.run_id, decision_id=decision["decision_id"], now=now, max_shadows=fwd["max_shadows"])
    return True


def decide(lake: Lake, run_id: str, *, now: datetime, policy: Policy | None = None) -> dict[str, Any]:
    """`promote` under the given or default policy (the name pipeline components look up)."""
    return promote(lake, run_id, policy, now=now)


def rollback(lake: Lake, *, now: datetime, reason: str = "", to: str | None = None,
             on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Roll the active set back (see registry.rollback), refusing a target whose artifacts do not verify."""
    return registry.rollback(lake, now=now, reason=reason, to=to, on_step=on_step,
                             verify=lambda rid: verify_problems(lake, rid))


def crash_hook_from_env(environ: Mapping[str, str] | None = None) -> Callable[[str], None] | None:
    """For crash tests, read at the entry point: COINLINE_PROMOTION_CRASH_AT=<step> ends the process
    abruptly (os._exit(137), no cleanup) when promotion reaches that step; with COINLINE_PROMOTION_PAUSE_FILE
    set it instead writes that file and waits to be killed from outside (a real SIGKILL)."""
    env = os.environ if environ is None else environ
    at = env.get(CRASH_ENV, "")
    if not at:
        return None
    if at not in STEPS:
        raise ConfigError(f"{CRASH_ENV}={at!r}: not one of {', '.join(STEPS)}")
    pause = env.get(PAUSE_ENV, "")

    def hook(step: str) -> None:
        if step != at:
            return
        if pause:
            Path(pause).write_text(f"{os.getpid()} {step}\n")
            time.sleep(600)
        os._exit(137)

    return hook
