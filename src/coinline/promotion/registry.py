"""The model registry: one active pointer (`registry/active.json`), changed only by compare-and-swap, and
one create-only history record per activation (`registry/history/<sequence>-<activation id>.json`).

A model set is a training run's artifacts (`runs/<run_id>/`, named by its manifest and content hash).
An activation record names the set, the decision that activated it, the previous activation and the
evidence figures. The pointer is the commit: the history record is written after the CAS, so a process
killed between the two leaves a consistent pointer whose history record `repair_history` writes later
(idempotently; every activation path repairs first). Rollback re-activates the set that the current
one replaced, as a new activation with its own decision record; repeated rollbacks walk further back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from coinline.errors import CoinlineError
from coinline.lake.store import AlreadyExists, CasConflict, Lake

ACTIVE = "registry/active.json"
HISTORY = "registry/history"

StepHook = Callable[[str], None]


class RegistryConflict(CoinlineError):
    """The active pointer changed between reading it and swapping it (another activation won)."""


def _noop(step: str) -> None:
    return None


def read_active(lake: Lake) -> tuple[dict[str, Any] | None, bytes | None]:
    """The active record and the exact bytes it was parsed from (the CAS precondition)."""
    data = lake.read_bytes(ACTIVE)
    return (None, None) if data is None else (json.loads(data), data)


def summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: record.get(k) for k in ("activation_id", "sequence", "kind", "run_id", "decision_id")}


def history_name(record: dict[str, Any]) -> str:
    return f"{HISTORY}/{int(record['sequence']):08d}-{record['activation_id']}.json"


def write_history(lake: Lake, record: dict[str, Any]) -> bool:
    """Create the history record of an activation; False when it is already there (idempotent)."""
    try:
        lake.create_only(history_name(record), record)
        return True
    except AlreadyExists:
        return False


def repair_history(lake: Lake) -> list[str]:
    """Write the history record of the current activation if a crash left it out; names written."""
    active, _ = read_active(lake)
    if active is None or lake.read_bytes(history_name(active)) is not None:
        return []
    return [history_name(active)] if write_history(lake, active) else []


def history(lake: Lake) -> list[dict[str, Any]]:
    """Every recorded activation, oldest first."""
    out = [lake.read_json(name) for name in lake.list(HISTORY) if name.endswith(".json")]
    return sorted((r for r in out if r), key=lambda r: r["sequence"])


def find_activation(lake: Lake, activation_id: str) -> dict[str, Any] | None:
    for name in lake.list(HISTORY):
        if name.endswith(f"-{activation_id}.json"):
            return lake.read_json(name)
    active, _ = read_active(lake)
    return active if active and active["activation_id"] == activation_id else None


def lineage(lake: Lake, record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Summaries from `record` back through each previous activation (newest first)."""
    by_id = {r["activation_id"]: r for r in history(lake)}
    out, seen = [], set()
    while record is not None and record["activation_id"] not in seen:
        seen.add(record["activation_id"])
        out.append({**summary(record), "activated_at": record.get("activated_at"), "restores": record.get("restores")})
        prev = record.get("previous")
        record = by_id.get(prev["activation_id"]) if prev else None
        if prev and record is None:  # history record missing (not yet repaired): show what the pointer says
            out.append({**prev, "activated_at": None, "restores": None, "history_missing": True})
    return out


def activation_id(sequence: int, decision_id: str, run_id: str) -> str:
    digest = hashlib.sha256(f"{sequence}|{decision_id}|{run_id}".encode()).hexdigest()[:12]
    return f"act-{sequence:06d}-{digest}"


def activate(lake: Lake, *, expected: bytes | None, run_id: str, decision_id: str, kind: str,
             model_set: dict[str, Any], evidence: dict[str, Any], now: datetime, restores: str | None = None,
             on_step: StepHook | None = None) -> dict[str, Any]:
    """CAS the pointer from exactly `expected` to a new activation, then record it in the history."""
    step = on_step or _noop
    current = json.loads(expected) if expected is not None else None
    sequence = int(current["sequence"]) + 1 if current else 1
    record = {
        "activation_id": activation_id(sequence, decision_id, run_id),
        "sequence": sequence,
        "kind": kind,
        "run_id": run_id,
        "model_set": model_set,
        "decision_id": decision_id,
        "decision": f"decisions/{decision_id}.json",
        "previous": summary(current),
        "restores": restores,
        "evidence": evidence,
        "activated_at": now.isoformat(),
    }
    step("before_cas")
    try:
        lake.compare_and_swap(ACTIVE, expected, record)
    except CasConflict:
        raise RegistryConflict(f"the active model set changed while activating {run_id} "
                               f"(decision {decision_id}); re-run to decide against the new active set") from None
    step("after_cas")
    write_history(lake, record)
    step("history_written")
    return record


def _rollback_target(lake: Lake, current: dict[str, Any], to: str | None) -> dict[str, Any]:
    if to is not None:
        target = find_activation(lake, to)
        if target is None:
            raise CoinlineError(f"no recorded activation {to} to roll back to")
        return target
    base = current
    if current.get("restores"):  # a rollback: undo one step further back than the set it restored
        base = find_activation(lake, current["restores"])
        if base is None:
            raise CoinlineError(f"activation {current['restores']} (restored by {current['activation_id']}) "
                                f"has no history record")
    prev = base.get("previous")
    if not prev:
        raise CoinlineError(f"nothing to roll back to: {base['activation_id']} has no previous model set")
    target = find_activation(lake, prev["activation_id"])
    if target is None:
        raise CoinlineError(f"previous activation {prev['activation_id']} has no history record")
    return target


def rollback(lake: Lake, *, now: datetime, reason: str = "", to: str | None = None,
             verify: Callable[[str], list[str]] | None = None, on_step: StepHook | None = None) -> dict[str, Any]:
    """Re-activate the model set the current activation replaced (or the activation `to`). `verify(run_id)`
    returns problems with the target set's artifacts; any problem refuses the rollback."""
    step = on_step or _noop
    repair_history(lake)
    current, expected = read_active(lake)
    if current is None:
        raise CoinlineError("no active model set: nothing to roll back")
    target = _rollback_target(lake, current, to)
    if target["run_id"] == current["run_id"]:
        raise CoinlineError(f"{target['activation_id']} activates {target['run_id']}, which is already active")
    problems = verify(target["run_id"]) if verify else []
    if problems:
        raise CoinlineError(f"cannot roll back to {target['run_id']}: {', '.join(problems[:5])}")
    key = f"rollback|{current['activation_id']}|{target['activation_id']}"
    decision_id = "dec-" + hashlib.sha256(key.encode()).hexdigest()[:20]
    decision = {"decision_id": decision_id, "kind": "rollback", "decision": "ROLLBACK", "run_id": target["run_id"],
                "from": summary(current), "to": summary(target), "active_before": summary(current),
                "reason": reason, "decided_at": now.isoformat()}
    try:
        lake.create_only(f"decisions/{decision_id}.json", decision)
    except AlreadyExists:
        decision = lake.read_json(f"decisions/{decision_id}.json")
    step("decision_written")
    record = activate(lake, expected=expected, run_id=target["run_id"], decision_id=decision_id, kind="rollback",
                      model_set=target["model_set"], evidence=target.get("evidence") or {}, now=now,
                      restores=target["activation_id"], on_step=step)
    return {"decision": decision, "activation": record}
