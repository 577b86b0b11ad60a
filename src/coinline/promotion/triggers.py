"""Retraining triggers: the schedule (cron), their records with evidence, and the single-flight lock.

Trigger records are `triggers/<id>.json` in the lake (created create-only, then updated as they move
pending -> running -> done | failed, or pending -> coalesced). Ids sort by creation time.

Single flight: one retraining at a time across every process that shares the lake. The lock is a
create-only object `locks/retrain.json` naming its holder (host:pid:nonce), the trigger it serves and an
expiry, like the per-series ingest leases (`coinline.lake.lease`). A trigger that finds the lock held is
recorded as "coalesced" into the running one and starts nothing. A lock whose expiry has passed, or whose
holder is a dead process on this host, is taken over exclusively (a create-only tombstone per stale holder).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from coinline.errors import ConfigError
from coinline.lake.lease import _holder, _holder_is_dead
from coinline.lake.store import AlreadyExists, Lake

KINDS = ("schedule", "drift", "manual")
STATUSES = ("pending", "running", "done", "failed", "coalesced")
TRIGGERS_DIR = "triggers"
RETRAIN_LOCK = "locks/retrain.json"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return t.astimezone(UTC)


# -- schedule --------------------------------------------------------------------------------------
def check_cron(cron: str, variable: str = "retrain cron") -> str:
    """The expression, or ConfigError naming `variable` when croniter cannot parse it."""
    from croniter import croniter

    if not isinstance(cron, str) or not cron.strip() or not croniter.is_valid(cron.strip()):
        raise ConfigError(f"{variable}={cron!r} is not a valid cron expression "
                          "(5 fields: minute hour day-of-month month day-of-week, UTC; e.g. '0 4 * * 1')")
    return cron.strip()


def schedule_status(cron: str, last_run_at: datetime | None, now: datetime) -> dict[str, Any]:
    """When the schedule fires relative to the last retraining. Due when the first fire time strictly
    after `last_run_at` is <= `now`; with no previous retraining it is due at once. Times are UTC."""
    from croniter import croniter

    cron = check_cron(cron)
    now = _aware(now, "now")
    next_at = croniter(cron, now).get_next(datetime)
    out: dict[str, Any] = {"cron": cron, "now": now.isoformat(), "next_fire_at": next_at.isoformat()}
    if last_run_at is None:
        return {**out, "last_run_at": None, "due": True, "fire_at": None,
                "reason": "no previous retraining recorded"}
    last = _aware(last_run_at, "last_run_at")
    fire = croniter(cron, last).get_next(datetime)
    due = fire <= now
    return {**out, "last_run_at": last.isoformat(), "fire_at": fire.isoformat(), "due": due,
            "reason": (f"schedule fired at {fire.isoformat()} after the last retraining at {last.isoformat()}"
                       if due else f"next fire at {fire.isoformat()}")}


def due_by_schedule(cron: str, last_run_at: datetime | None, now: datetime) -> bool:
    """True when the cron schedule has fired since `last_run_at` (always True without a last run)."""
    return bool(schedule_status(cron, last_run_at, now)["due"])


# -- trigger records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trigger:
    trigger_id: str
    kind: str
    created_at: str
    evidence: dict[str, Any]

    @property
    def name(self) -> str:
        return trigger_name(self.trigger_id)


def trigger_name(trigger_id: str) -> str:
    return f"{TRIGGERS_DIR}/{trigger_id}.json"


def record_trigger(lake: Lake, kind: str, evidence: Mapping[str, Any], *, now: datetime) -> Trigger:
    """Create `triggers/<id>.json` (status pending) holding the evidence that fired it."""
    if kind not in KINDS:
        raise ValueError(f"trigger kind {kind!r} is not one of {', '.join(KINDS)}")
    now = _aware(now, "now")
    trigger_id = f"{now:%Y%m%dT%H%M%S}Z-{kind}-{uuid.uuid4().hex[:8]}"
    record = {"trigger_id": trigger_id, "kind": kind, "created_at": now.isoformat(), "status": "pending",
              "evidence": dict(evidence), "updated_at": now.isoformat()}
    lake.create_only(trigger_name(trigger_id), record)
    return Trigger(trigger_id, kind, record["created_at"], record["evidence"])


def read_trigger(lake: Lake, trigger_id: str) -> dict[str, Any] | None:
    return lake.read_json(trigger_name(trigger_id))


def update_trigger(lake: Lake, trigger_id: str, *, now: datetime, **changes: Any) -> dict[str, Any]:
    """Merge `changes` (status, coalesced_into, outcome, error, ...) into the record."""
    record = read_trigger(lake, trigger_id)
    if record is None:
        raise KeyError(f"no trigger {trigger_id} in the lake")
    if "status" in changes and changes["status"] not in STATUSES:
        raise ValueError(f"trigger status {changes['status']!r} is not one of {', '.join(STATUSES)}")
    record.update(changes, updated_at=_aware(now, "now").isoformat())
    lake.write_json(trigger_name(trigger_id), record)
    return record


def list_triggers(lake: Lake, *, status: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Trigger records in creation order, optionally filtered."""
    out = []
    for name in lake.list(TRIGGERS_DIR):
        if not name.endswith(".json"):
            continue
        rec = lake.read_json(name)
        if rec and (status is None or rec.get("status") == status) and (kind is None or rec.get("kind") == kind):
            out.append(rec)
    return sorted(out, key=lambda r: (r.get("created_at", ""), r.get("trigger_id", "")))


def request_manual(lake: Lake, *, requested_by: str, reason: str, now: datetime) -> Trigger:
    """A manual retraining request; the autopilot picks pending manual triggers up on its next cycle."""
    if not requested_by.strip() or not reason.strip():
        raise ConfigError("a manual retraining trigger needs requested_by and a reason")
    return record_trigger(lake, "manual", {"requested_by": requested_by.strip(), "reason": reason.strip()}, now=now)


# -- single flight ------------------------------------------------------------------------------------
_LOCAL = threading.Lock()  # Lake.create_only stages through a per-pid temp file: serialize threads here


@dataclass
class FlightLease:
    name: str
    record: dict[str, Any]

    @property
    def holder(self) -> str:
        return self.record["holder"]

    @property
    def trigger_id(self) -> str:
        return self.record["trigger_id"]


class SingleFlight:
    """The retraining lock. `acquire` returns a FlightLease, or None when another flight holds it."""

    def __init__(self, lake: Lake, *, name: str = RETRAIN_LOCK, ttl: timedelta = timedelta(hours=12),
                 clock: Callable[[], datetime] = _utcnow):
        self.lake, self.name, self.ttl, self.clock = lake, name, ttl, clock

    def holder(self) -> dict[str, Any] | None:
        """The current lock record (None when free)."""
        return self.lake.read_json(self.name)

    def acquire(self, trigger_id: str) -> FlightLease | None:
        now = self.clock()
        record = {"holder": _holder(), "trigger_id": trigger_id, "acquired_at": now.isoformat(),
                  "expires_at": (now + self.ttl).isoformat()}
        with _LOCAL:
            try:
                self.lake.create_only(self.name, record)
                return FlightLease(self.name, record)
            except AlreadyExists:
                current = self.holder() or {}
            if not current:  # released between our attempt and the read: one more exclusive try
                try:
                    self.lake.create_only(self.name, record)
                    return FlightLease(self.name, record)
                except AlreadyExists:
                    return None
            if not self._stale(current, now):
                return None
            tomb = f"{self.name}.expired-{str(current.get('holder', 'unknown')).replace(':', '_')}"
            try:
                self.lake.create_only(tomb, current)  # only one contender buries this holder's lock
            except AlreadyExists:
                return None
            self.lake.delete(self.name)
            try:
                self.lake.create_only(self.name, {**record, "took_over_from": current})
            except AlreadyExists:
                return None
            return FlightLease(self.name, {**record, "took_over_from": current})

    def _stale(self, current: Mapping[str, Any], now: datetime) -> bool:
        expires = current.get("expires_at")
        try:
            expired = bool(expires) and datetime.fromisoformat(expires) < now
        except ValueError:
            expired = True
        return expired or _holder_is_dead(str(current.get("holder", "")))

    def renew(self, lease: FlightLease) -> None:
        """Push the expiry forward (long retrainings); refuses when the lock was taken over."""
        current = self.holder() or {}
        if current.get("holder") != lease.holder:
            raise RuntimeError(f"retrain lock {self.name} was taken over by {current.get('holder', '?')}")
        lease.record = {**lease.record, "expires_at": (self.clock() + self.ttl).isoformat()}
        self.lake.write_json(self.name, lease.record)

    def release(self, lease: FlightLease) -> None:
        current = self.holder() or {}
        if current.get("holder") == lease.holder:
            self.lake.delete(self.name)

    @contextmanager
    def flight(self, trigger_id: str) -> Iterator[FlightLease | None]:
        lease = self.acquire(trigger_id)
        try:
            yield lease
        finally:
            if lease is not None:
                self.release(lease)


@dataclass(frozen=True)
class FlightResult:
    started: bool                        # this call ran the work
    leader: str | None                   # the trigger the retraining serves (ours, or the running one's)
    coalesced: tuple[str, ...]           # triggers recorded as coalesced by this call
    outcome: dict[str, Any] | None       # what `work` returned (when started)
    error: str | None = None


def run_single_flight(lake: Lake, triggers: list[Trigger], work: Callable[[Trigger], Mapping[str, Any]], *,
                      flight: SingleFlight, clock: Callable[[], datetime] = _utcnow) -> FlightResult:
    """Serve a storm of `triggers` with at most one retraining: the first trigger leads and runs `work`
    under the lock, the others are coalesced into it; when another flight already holds the lock, every
    trigger is coalesced into that one. `work` failing marks the leader failed (the error is recorded and
    returned, not raised) and releases the lock."""
    if not triggers:
        return FlightResult(False, None, (), None)
    lead, rest = triggers[0], triggers[1:]
    with flight.flight(lead.trigger_id) as lease:
        if lease is None:
            running = (flight.holder() or {}).get("trigger_id")
            for t in triggers:
                if (read_trigger(lake, t.trigger_id) or {}).get("status") not in (None, "pending"):
                    continue  # another follower already took this one (e.g. a shared manual request)
                update_trigger(lake, t.trigger_id, now=clock(), status="coalesced", coalesced_into=running,
                               reason="a retraining was already running (single flight)")
            return FlightResult(False, running, tuple(t.trigger_id for t in triggers), None)
        for t in rest:
            update_trigger(lake, t.trigger_id, now=clock(), status="coalesced", coalesced_into=lead.trigger_id,
                           reason="coalesced into the retraining started by this storm's first trigger")
        update_trigger(lake, lead.trigger_id, now=clock(), status="running", lock_holder=lease.holder,
                       coalesced=[t.trigger_id for t in rest])
        try:
            outcome = dict(work(lead))
        except Exception as exc:  # noqa: BLE001 - an autonomous loop records the failure and lives on
            error = f"{type(exc).__name__}: {exc}"
            update_trigger(lake, lead.trigger_id, now=clock(), status="failed", error=error)
            return FlightResult(True, lead.trigger_id, tuple(t.trigger_id for t in rest), None, error)
        update_trigger(lake, lead.trigger_id, now=clock(), status="done", outcome=outcome)
        return FlightResult(True, lead.trigger_id, tuple(t.trigger_id for t in rest), outcome)


__all__ = ["KINDS", "RETRAIN_LOCK", "STATUSES", "FlightLease", "FlightResult", "SingleFlight", "Trigger",
           "check_cron", "due_by_schedule", "list_triggers", "read_trigger", "record_trigger", "request_manual",
           "run_single_flight", "schedule_status", "trigger_name", "update_trigger"]
