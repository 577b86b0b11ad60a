"""Per-series leases: two ingesters on the same series cannot both write.

A lease is a create-only object `leases/<series>.json` naming its holder and expiry. The loser of a
race gets LeaseHeldError naming the holder. An expired lease (its holder died) is taken over by
renaming it away first; only one contender's rename can succeed, so takeover is also exclusive.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from coinline.errors import LeaseHeldError
from coinline.lake.store import AlreadyExists, Lake
from coinline.providers.base import SeriesKey


def lease_name(key: SeriesKey) -> str:
    return f"leases/{key.source}/{key.venue}/{key.symbol}-{key.quote}-{key.interval}.json"


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextmanager
def series_lease(lake: Lake, key: SeriesKey, *, ttl: timedelta = timedelta(minutes=30),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[str]:
    """Hold the series lease for the duration of the block; raise LeaseHeldError if another holds it."""
    name = lease_name(key)
    holder = _holder()
    now = clock()
    record = {"holder": holder, "series": key.label(), "acquired_at": now.isoformat(),
              "expires_at": (now + ttl).isoformat()}
    try:
        lake.create_only(name, record)
    except AlreadyExists:
        current = lake.read_json(name) or {}
        expires = current.get("expires_at")
        if expires and datetime.fromisoformat(expires) < now:
            _take_over(lake, name, current, record)
        else:
            raise LeaseHeldError(
                f"series {key.label()} is being ingested by {current.get('holder', '?')} since "
                f"{current.get('acquired_at', '?')} (lease expires {expires or '?'}); not writing"
            ) from None
    try:
        yield holder
    finally:
        current = lake.read_json(name) or {}
        if current.get("holder") == holder:
            lake.delete(name)


def _take_over(lake: Lake, name: str, stale: dict, record: dict) -> None:
    """Replace an expired lease exclusively: move the stale object aside, then create ours."""
    tomb = f"{name}.expired-{stale.get('holder', 'unknown').replace(':', '_')}"
    try:
        lake.create_only(tomb, stale)  # only one contender can bury this particular holder's lease
    except AlreadyExists:
        raise LeaseHeldError(f"lease {name} is being taken over by another ingester; not writing") from None
    lake.delete(name)
    try:
        lake.create_only(name, record)
    except AlreadyExists:
        raise LeaseHeldError(f"lease {name} was taken over by another ingester; not writing") from None
