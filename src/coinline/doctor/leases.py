"""Leases and lease tombstones under `leases/`.

A stale lease (expired, or its holder a process on this host that no longer exists) blocks nothing: the
next ingester takes it over. `--repair` buries it the same way a takeover does (create-only tombstone
named after the holder, then delete), so it can never race a contender. Tombstones are what takeovers
leave behind; one older than TOMBSTONE_GRACE no contender can still be using, so `--repair` deletes it.
A live lease is reported as a note: a writer is at work.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from coinline.doctor.inspect import ERROR, WARNING, Problem
from coinline.lake import integrity
from coinline.lake.lease import _holder_is_dead
from coinline.lake.store import AlreadyExists, Lake

PREFIX = "leases"
TOMBSTONE_GRACE = timedelta(hours=1)


def is_stale(record: dict[str, Any], now: datetime) -> bool:
    """The lease rule of lake/lease.py: expired, or held by a dead process on this host."""
    expires = record.get("expires_at")
    try:
        expired = bool(expires) and datetime.fromisoformat(expires) < now
    except (TypeError, ValueError):
        expired = True  # an unreadable expiry can never be honoured
    return expired or _holder_is_dead(str(record.get("holder", "")))


def inspect_leases(lake: Lake, now: datetime) -> tuple[list[Problem], list[dict[str, Any]]]:
    """(problems, live leases) under leases/."""
    problems, live = [], []
    for obj in integrity.list_objects(lake, PREFIX):
        if ".json.expired-" in obj.name:
            age = now.timestamp() - obj.mtime_ns / 1e9
            if age > TOMBSTONE_GRACE.total_seconds():
                problems.append(Problem(PREFIX, "lease-tombstone", obj.name, WARNING,
                                        f"{obj.name} is a takeover tombstone {age / 3600:.1f} h old",
                                        "delete it", {"age_s": round(age)}))
            continue
        if not obj.name.endswith(".json"):
            continue
        record = _read(lake, obj.name)
        if record is None and lake.read_bytes(obj.name) is None:
            continue  # released while we listed
        if record is None:
            problems.append(Problem(PREFIX, "stale-lease", obj.name, ERROR,
                                    f"{obj.name} is unreadable: every ingest of its series fails on it",
                                    "bury it as a takeover does (tombstone, then delete)", {"record": None}))
        elif is_stale(record, now):
            problems.append(Problem(PREFIX, "stale-lease", obj.name, WARNING,
                                    f"{obj.name} is stale (holder {record.get('holder', '?')}, expired "
                                    f"{record.get('expires_at', '?')}); the next ingester would take it over",
                                    "bury it as a takeover does (tombstone, then delete)", {"record": record}))
        else:
            live.append({"lease": obj.name, "holder": record.get("holder"), "expires_at": record.get("expires_at")})
    return problems, live


def repair_lease(lake: Lake, problem: Problem, now: datetime) -> dict[str, Any]:
    """Bury a stale lease or delete an old tombstone; returns what was done."""
    if problem.kind == "lease-tombstone":
        lake.delete(problem.subject)
        return {"action": "deleted-tombstone", "object": problem.subject}
    record = problem.detail.get("record")
    current = _read(lake, problem.subject)
    if current != record or (current is not None and not is_stale(current, now)):
        return {"action": "skipped", "object": problem.subject, "reason": "the lease changed since it was read"}
    holder = str((record or {}).get("holder", "unreadable"))
    tomb = f"{problem.subject}.expired-{holder.replace(':', '_')}"
    raw = lake.read_bytes(problem.subject) or b""
    try:
        lake.create_only(tomb, record if record is not None else {"unreadable": raw.decode(errors="replace")})
    except AlreadyExists:
        return {"action": "skipped", "object": problem.subject, "reason": "an ingester is taking it over"}
    lake.delete(problem.subject)
    return {"action": "buried-lease", "object": problem.subject, "tombstone": tomb}


def _read(lake: Lake, name: str) -> dict[str, Any] | None:
    """The lease record, or None when it is not a JSON object."""
    try:
        record = lake.read_json(name)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
