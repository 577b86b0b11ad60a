"""Policy changes take effect only with an approval record.

Governed kinds: `universe` (the training universe version), `thresholds` (retraining / drift / gate
thresholds policy) and `provider` (the historical market-data provider and its venue). Each kind has an
adopted value in the lake, `policy/active/<kind>.json` (its value hash, when and on what basis it was
adopted). A process that starts with a different value calls `require_approved(lake, kind, new_hash)`:
  * no value adopted yet: the first value is the baseline, adopted and recorded (basis "initial");
  * same hash as adopted: nothing to do;
  * a different hash: adopted only when `approvals/<kind>/<hash>.json` exists (written create-only by
    `approve`, i.e. `coinline approve KIND HASH --approver NAME --reason TEXT`) or the caller names an
    approval recorded elsewhere (`external_approval`, e.g. the universe's own approval file written by
    `coinline universe approve`); otherwise ConfigError naming what changed and how to approve it.
Every adoption is also appended to `policy/history/<kind>/`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from coinline.errors import ConfigError
from coinline.lake.store import AlreadyExists, Lake

POLICY_KINDS = ("universe", "thresholds", "provider")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_HOW = {
    "universe": "the training universe version (TRAINING_UNIVERSE_VERSION)",
    "thresholds": "the retraining/drift thresholds policy",
    "provider": "the historical market-data provider (HIST_MARKET_DATA_PROVIDER / _EXCHANGE / _BASE_URL)",
}


def value_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of a policy value (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _kind(kind: str) -> str:
    if kind not in POLICY_KINDS:
        raise ConfigError(f"unknown policy kind {kind!r}; one of {', '.join(POLICY_KINDS)}")
    return kind


def _check_hash(h: str) -> str:
    if not isinstance(h, str) or not _HASH.match(h):
        raise ConfigError(f"policy value hash {h!r} must be 64 lower-case hex digits (sha256)")
    return h


def approval_name(kind: str, new_value_hash: str) -> str:
    return f"approvals/{_kind(kind)}/{_check_hash(new_value_hash)}.json"


def active_name(kind: str) -> str:
    return f"policy/active/{_kind(kind)}.json"


def approve_command(kind: str, new_value_hash: str) -> str:
    return f"coinline approve {kind} {new_value_hash} --approver NAME --reason TEXT"


def approve(lake: Lake, kind: str, new_value_hash: str, *, approver: str, reason: str, at: datetime,
            value: Any = None) -> str:
    """Write the create-only approval record of `new_value_hash` for `kind`; returns its lake name.
    Refuses a missing approver / reason, a bad hash, or a hash already approved."""
    name = approval_name(kind, new_value_hash)
    if not approver or not approver.strip():
        raise ConfigError(f"approving a {kind} change needs an approver (who approves it)")
    if not reason or not reason.strip():
        raise ConfigError(f"approving a {kind} change needs a reason")
    if at.tzinfo is None:
        raise ConfigError("approval time must be timezone-aware (UTC)")
    if value is not None and value_hash(value) != new_value_hash:
        raise ConfigError(f"the {kind} value given does not hash to {new_value_hash}")
    record = {"kind": kind, "value_hash": new_value_hash, "approved_by": approver.strip(),
              "approved_at": at.astimezone(UTC).isoformat(), "reason": reason.strip(), "value": value}
    try:
        lake.create_only(name, record)
    except AlreadyExists:
        existing = lake.read_json(name) or {}
        raise ConfigError(f"{kind} value {new_value_hash} is already approved by {existing.get('approved_by', '?')} "
                          f"at {existing.get('approved_at', '?')} ({name})") from None
    return name


def approval(lake: Lake, kind: str, new_value_hash: str) -> dict[str, Any] | None:
    return lake.read_json(approval_name(kind, new_value_hash))


def active(lake: Lake, kind: str) -> dict[str, Any] | None:
    """The adopted value record of `kind` (None before the first adoption)."""
    return lake.read_json(active_name(kind))


def require_approved(lake: Lake, kind: str, new_value_hash: str, *, value: Any = None,
                     at: datetime | None = None, external_approval: str | None = None) -> dict[str, Any]:
    """Adopt `new_value_hash` as the value of `kind` if allowed (see the module docstring) and return the
    adopted record; raise ConfigError for an unapproved change."""
    _kind(kind)
    _check_hash(new_value_hash)
    now = (at or datetime.now(UTC)).astimezone(UTC)
    current = active(lake, kind)
    if current is not None and current.get("value_hash") == new_value_hash:
        return current
    if current is None:
        basis, ref = "initial", None
    else:
        record = approval(lake, kind, new_value_hash)
        if record is not None:
            basis, ref = "approved", approval_name(kind, new_value_hash)
        elif external_approval:
            basis, ref = "external", external_approval
        else:
            raise ConfigError(
                f"unapproved policy change refused: {_HOW[kind]} changed from {current['value_hash']} "
                f"(adopted {current.get('adopted_at', '?')}) to {new_value_hash}, and no approval record "
                f"{approval_name(kind, new_value_hash)} exists. Approve it with `{approve_command(kind, new_value_hash)}` "
                f"and start again, or restore the previous {kind}"
                + (" (a universe version may instead be approved with `coinline universe approve VERSION`)"
                   if kind == "universe" else ""))
    adopted = {"kind": kind, "value_hash": new_value_hash, "value": value, "adopted_at": now.isoformat(),
               "basis": basis, "approval": ref,
               "previous": None if current is None else current.get("value_hash")}
    lake.write_json(active_name(kind), adopted)
    lake.write_json(f"policy/history/{kind}/{now:%Y%m%dT%H%M%S}Z-{new_value_hash[:12]}.json", adopted)
    return adopted


__all__ = ["POLICY_KINDS", "active", "active_name", "approval", "approval_name", "approve", "approve_command",
           "require_approved", "value_hash"]
