"""Per-series leases: two ingesters on the same series cannot both write.

A lease is a create-only object `leases/<series>.json` naming its holder (host:pid:nonce) and expiry.
The loser of a race gets LeaseHeldError naming the holder. A lease is stale when it has expired or when
its holder is a process on this host that no longer exists (a killed ingester), so a rerun after a kill
resumes at once. A stale lease is taken over by first creating a tombstone named after its holder; only
one contender can create that tombstone, so takeover is also exclusive. Holders renew (extend) their
lease as they commit, so a long backfill never outlives its TTL.
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


def _holder_is_dead(holder: str) -> bool:
    """True only when the holder is a process on THIS host that does not exist any more."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """A held lease; `renew()` pushes its expiry forward (call it as work progresses)."""

    def __init__(self, lake: Lake, name: str, record: dict, ttl: timedelta, clock: Callable[[], datetime]):
        self.lake, self.name, self.record, self.ttl, self.clock = lake, name, record, ttl, clock

    @property
    def holder(self) -> str:
        return self.record["holder"]

    def renew(self) -> None:
        current = self.lake.read_json(self.name) or {}
        if current.get("holder") != self.holder:
            raise LeaseHeldError(f"lease {self.name} was taken over by {current.get('holder', '?')}; stop writing")
        self.record = {**self.record, "expires_at": (self.clock() + self.ttl).isoformat()}
        self.lake.write_json(self.name, self.record)


@contextmanager
def series_lease(lake: Lake, key: SeriesKey, *, ttl: timedelta = timedelta(minutes=30),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[Lease]:
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
        if (expires and datetime.fromisoformat(expires) < now) or _holder_is_dead(current.get("holder", "")):
            _take_over(lake, name, current, record)
        else:
            raise LeaseHeldError(
                f"series {key.label()} is being ingested by {current.get('holder', '?')} since "
                f"{current.get('acquired_at', '?')} (lease expires {expires or '?'}); not writing"
            ) from None
    lease = Lease(lake, name, record, ttl, clock)
    try:
        yield lease
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
