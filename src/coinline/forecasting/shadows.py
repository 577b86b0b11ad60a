"""Shadow challengers: rejected candidates that keep forecasting beside the champion, so that the
scoreboard (and the forward-evidence gate) can compare them on the same matured rows.

`registry/shadows.json` holds at most `max_shadows` run ids, newest last; adding one beyond the bound
retires the oldest. Changed by compare-and-swap, like the active pointer.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from coinline.lake.store import CasConflict, Lake

SHADOWS = "registry/shadows.json"
DEFAULT_MAX = 3


def read(lake: Lake) -> tuple[dict[str, Any], bytes | None]:
    """The shadow record and the exact bytes it was parsed from (the CAS precondition)."""
    data = lake.read_bytes(SHADOWS)
    if data is None:
        return {"shadows": [], "retired": []}, None
    return json.loads(data), data


def shadow_ids(lake: Lake) -> list[str]:
    return [s["run_id"] for s in read(lake)[0]["shadows"]]


def _update(lake: Lake, change) -> dict:
    """Apply `change(doc) -> new doc | None (nothing to do)` by compare-and-swap, retrying on a race."""
    for _ in range(5):
        doc, raw = read(lake)
        new = change(doc)
        if new is None:
            return doc
        try:
            lake.compare_and_swap(SHADOWS, raw, new)
            return new
        except CasConflict:
            continue
    raise CasConflict(f"{SHADOWS} kept changing; try again")


def add(lake: Lake, run_id: str, *, decision_id: str, now: datetime, max_shadows: int = DEFAULT_MAX) -> dict:
    """Put a rejected run in shadow (idempotent); the oldest beyond `max_shadows` is retired."""
    def change(doc: dict) -> dict | None:
        if any(s["run_id"] == run_id for s in doc["shadows"]):
            return None
        shadows = doc["shadows"] + [{"run_id": run_id, "decision_id": decision_id, "since": now.isoformat()}]
        retired = doc["retired"]
        while len(shadows) > max(0, max_shadows):
            gone = shadows.pop(0)
            retired = retired + [{**gone, "retired_at": now.isoformat(), "why": f"bound of {max_shadows} shadows"}]
        return {"shadows": shadows, "retired": retired[-50:]}

    return _update(lake, change)


def remove(lake: Lake, run_id: str, *, now: datetime, why: str) -> dict:
    """Take a run out of shadow (it was promoted, or retired by hand)."""
    def change(doc: dict) -> dict | None:
        gone = [s for s in doc["shadows"] if s["run_id"] == run_id]
        if not gone:
            return None
        return {"shadows": [s for s in doc["shadows"] if s["run_id"] != run_id],
                "retired": (doc["retired"] + [{**g, "retired_at": now.isoformat(), "why": why} for g in gone])[-50:]}

    return _update(lake, change)
