"""Keep a table's Delta log short without losing what coinline reads from it (a step of `coinline maintain`).

Why: delta-rs lists the whole `_delta_log` on every open of a table on a local disk, so a log of one entry per
commit makes every open, and so every no-op sync, slower the longer the lake has synced (measured: 6.8 ms ->
65.8 ms for raw_candles after 10,000 hourly cycles, 11,257 log files).

What the old entries hold, and where it goes instead:
- each commit's `commitInfo` (the batch manifests of `tables.commit_manifests`, maintenance record ids):
  copied to `log_archive/<table>/<first>-<last>.json` (create-only; one object per cleanup, contiguous
  version ranges) before any entry is deleted. `commit_history` reads the archive, then the live log.
- the state at every version a dataset pins (audits, rebuilds, incremental materialize): a checkpoint is
  written at each pinned version, so delta-rs opens it from that checkpoint alone.
A version that is neither the newest state nor pinned cannot be opened after a cleanup (`version_gone`).

What is deleted: commit entries older than the checkpoint before the newest one, and older checkpoints that
no dataset pins, both only when written at least `retention_hours` ago (a reader that read `_last_checkpoint`
before a newer checkpoint replays from the older one for a moment: the same guard as VACUUM's). That one
earlier checkpoint and the entries after it stay so that `coinline doctor` can still rebuild a damaged newest
checkpoint by replaying them. Only a contiguous run of intact entries from the oldest up is taken; a
damaged entry stops it (`coinline doctor` keeps its evidence). delta-rs' own `cleanup_metadata` is not
used: it deletes pinned versions' checkpoints and archives nothing.

Crash safety: the archive object is written before anything is deleted; a cleanup killed between the two
leaves entries that are already archived, and the next one deletes them without archiving them twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from coinline.errors import CoinlineError, VersionGoneError
from coinline.lake import integrity
from coinline.lake.store import AlreadyExists, Lake

ARCHIVE = "log_archive"


def archive_name(table: str, first: int, last: int) -> str:
    return f"{ARCHIVE}/{table}/{first:020d}-{last:020d}.json"


def archived_commits(lake: Lake, table: str) -> list[dict[str, Any]]:
    """Every archived commitInfo (each with its `version`), oldest first."""
    out: list[dict[str, Any]] = []
    for name in lake.list(f"{ARCHIVE}/{table}"):
        if not name.endswith(".json"):
            continue
        doc = lake.read_json(name)
        commits = doc.get("commits") if isinstance(doc, dict) else None
        if not isinstance(commits, list):
            raise CoinlineError(f"{name}: not a log archive (no commits list); the commit manifests it held "
                                f"cannot be read")
        out.extend(commits)
    return sorted(out, key=lambda c: c["version"])


def commit_history(lake: Lake, table: str, live: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commitInfo of every commit, oldest first: the archive, then `live` (delta-rs `history()` of the
    table as opened) for the versions the archive does not hold."""
    archived = archived_commits(lake, table)
    last = archived[-1]["version"] if archived else -1
    newer = [dict(c) for c in live if isinstance(c.get("version"), int) and c["version"] > last]
    return archived + sorted(newer, key=lambda c: c["version"])


def _archived_through(lake: Lake, table: str) -> int:
    names = [n for n in lake.list(f"{ARCHIVE}/{table}") if n.endswith(".json")]
    return int(names[-1].rsplit("-", 1)[-1].removesuffix(".json")) if names else -1


def plan(listing: integrity.LogListing, base: int, keep: Iterable[int], cutoff_ns: int,
         damaged: Iterable[int] = ()) -> tuple[list[int], list[int]]:
    """(commit entries, checkpoints) to delete: entries from the oldest up to the first that is at or after
    `base` (the checkpoint the log is kept from), written after `cutoff_ns`, or damaged; checkpoints below the
    last entry taken that are not in `keep` and were written before `cutoff_ns`. Pure."""
    stop = set(damaged)
    entries = []
    for version in sorted(listing.entries):
        if version >= base or version in stop or listing.entries[version].mtime_ns > cutoff_ns:
            break
        entries.append(version)
    if not entries:
        return [], []
    kept = set(keep)
    checkpoints = [v for v, parts in sorted(listing.checkpoints.items())
                   if v <= entries[-1] and v not in kept and all(p.mtime_ns <= cutoff_ns for p in parts)]
    return entries, checkpoints


def clean(lake: Lake, table: str, keep: list[int], *, retention_hours: int, dry_run: bool,
          open_version: Any) -> dict[str, Any]:
    """Checkpoint every pinned version, archive, then delete what `plan` names. `open_version(v)` opens the
    table at version v (`tables.open_table`; passed in, since tables imports this module). What was done."""
    listing = integrity.list_log(lake, table)
    hint = integrity.read_hint(lake, table)
    out: dict[str, Any] = {"entries_deleted": 0, "checkpoints_deleted": 0, "pinned_checkpoints_written": [],
                           "archive": None, "log_files_before": _files(listing)}
    if hint is None or hint["version"] not in listing.checkpoints:
        out["skipped"] = "no readable newest checkpoint to keep the log from"
        return out
    base = hint["version"]
    missing = [v for v in keep if v < base and v not in listing.checkpoints]
    out["pinned_checkpoints_written"] = missing
    if missing and not dry_run:   # a dry run plans as if they were written
        for v in missing:   # needs the version's entries (or an older checkpoint): all still there
            open_version(v).create_checkpoint()
        listing = integrity.list_log(lake, table)
        if any(v not in listing.checkpoints for v in missing):
            raise CoinlineError(f"table {table}: a checkpoint at pinned version(s) {missing} was not written; "
                                f"the log was not cleaned")
    floor = max((v for v in listing.checkpoints if v < base), default=None)
    if floor is None:
        out["skipped"] = "one checkpoint only: the entries before it stay, for the doctor to rebuild it from"
        return out
    cutoff = time.time_ns() - retention_hours * 3_600 * 10**9
    done = _archived_through(lake, table)
    checks = {v: integrity.read_entry(lake, table, v) for v in sorted(listing.entries) if done < v < floor}
    damaged = [v for v, check in checks.items() if check.defect]
    entries, checkpoints = plan(listing, floor, keep, cutoff, damaged)
    out.update(entries_planned=len(entries), checkpoints_planned=len(checkpoints))
    if damaged:
        out["stopped_at_damaged_entry"] = integrity.entry_name(table, damaged[0])
    if not entries or dry_run:
        return out
    fresh = [v for v in entries if v > done]
    if fresh:
        commits = [{**(checks[v].commit_info or {}), "version": v} for v in fresh]
        name = archive_name(table, fresh[0], fresh[-1])
        try:
            lake.create_only(name, {"table": table, "first": fresh[0], "last": fresh[-1], "commits": commits})
        except AlreadyExists:
            raise CoinlineError(f"{name} exists already; another cleanup archived these versions; the log was "
                                f"not cleaned") from None
        out["archive"] = name
    for v in entries:
        lake.delete(integrity.entry_name(table, v))
    for v in checkpoints:
        for part in listing.checkpoints[v]:
            lake.delete(part.name)
    out.update(entries_deleted=len(entries), checkpoints_deleted=len(checkpoints),
               log_files_after=_files(integrity.list_log(lake, table)))
    return out


def _files(listing: integrity.LogListing) -> int:
    """Commit entries and checkpoint parts in one listing of the log."""
    return len(listing.entries) + sum(len(parts) for parts in listing.checkpoints.values())


def version_gone(table: str, version: int, exc: BaseException) -> VersionGoneError:
    """The error for opening a version whose log entries a cleanup removed (it was not pinned)."""
    return VersionGoneError(f"table {table} version {version} is no longer in its Delta log: `coinline maintain` "
                         f"keeps the newest state and every version a dataset pins, and this one is neither "
                         f"(its commit records are in {ARCHIVE}/{table}/; delta-rs: "
                         f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__})")
