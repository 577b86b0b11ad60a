"""Is a Delta table's log intact? Cheap checks for every open, and the log inspection `coinline doctor` uses.

delta-rs reads a zero-byte (or whitespace-only) commit entry `_delta_log/<version>.json` as a commit of
nothing, and an entry cut at a line boundary as a commit of the files it still names: the table opens and
the commit's rows are silently missing. A truncated entry, an unreadable checkpoint or a hole in the
entries makes every open fail with a long Rust error that names no file. So `tables.open_table` re-reads
and parses the (small) entry of the version it opened, and turns delta-rs' log errors into one
`DamagedTableError` line naming the damaged object and `coinline doctor`. Only the failure path lists the
log. Older entries are the doctor's to check (`coinline doctor`): writers open the table before they
commit, so a damaged newest entry stops them before they could bury it under later commits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from coinline.errors import DamagedTableError
from coinline.lake.store import Lake

LOG = "_delta_log"
HINT = "_last_checkpoint"
ACTIONS = frozenset({"commitInfo", "add", "remove", "metaData", "protocol", "txn", "cdc", "domainMetadata",
                     "checkpointMetadata", "sidecar"})
_ENTRY = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d+\.\d+)?\.parquet$")
# delta-rs error texts that mean "the log itself cannot be read" (not a network or version problem)
_LOG_DAMAGE = ("Json error", "contiguous commit", "Parquet error", "Invalid Checkpoint", "EOF:", "Arrow error")


def entry_name(table: str, version: int) -> str:
    """The lake-relative name of a table's commit entry for `version`."""
    return f"{table}/{LOG}/{version:020d}.json"


def checkpoint_name(table: str, version: int) -> str:
    """The lake-relative name of a (single-part) checkpoint at `version`."""
    return f"{table}/{LOG}/{version:020d}.checkpoint.parquet"


@dataclass(frozen=True)
class ObjectInfo:
    name: str        # relative to the lake root
    size: int
    mtime_ns: int    # the store's own clock (local mtime, S3 LastModified); 0 when unknown


@dataclass(frozen=True)
class LogListing:
    """One listing of `<table>/_delta_log`: commit entries and checkpoint parts by version, and the hint."""

    entries: dict[int, ObjectInfo]
    checkpoints: dict[int, list[ObjectInfo]]
    hint: ObjectInfo | None

    @property
    def newest(self) -> int | None:
        return max(self.entries) if self.entries else None


@dataclass(frozen=True)
class EntryCheck:
    """What one commit entry holds, and its defect ("" when intact): `empty` (zero-byte or whitespace),
    `truncated` (its last line is cut), `unparseable` (a line that is not one Delta action) or `incomplete`
    (fewer add/remove lines than its own commitInfo counts: cut at a line boundary)."""

    version: int
    defect: str
    detail: str = ""
    commit_info: dict[str, Any] | None = None
    adds: list[dict[str, Any]] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    other_actions: list[str] = field(default_factory=list)   # metaData, protocol, txn, ...


def _info(lake: Lake, item: pafs.FileInfo) -> ObjectInfo:
    base = lake.base_path.rstrip("/") + "/"
    mtime = item.mtime_ns if item.mtime_ns is not None else 0
    return ObjectInfo(item.path[len(base):], int(item.size or 0), int(mtime))


def list_objects(lake: Lake, prefix: str, *, recursive: bool = True) -> list[ObjectInfo]:
    """Files under `prefix` (lake-relative) with size and modification time, sorted by name."""
    selector = pafs.FileSelector(lake.path(prefix), recursive=recursive, allow_not_found=True)
    found = [_info(lake, i) for i in lake.fs.get_file_info(selector) if i.type == pafs.FileType.File]
    return sorted(found, key=lambda o: o.name)


def list_log(lake: Lake, table: str) -> LogListing:
    """One listing of the table's `_delta_log` (not recursive)."""
    entries: dict[int, ObjectInfo] = {}
    checkpoints: dict[int, list[ObjectInfo]] = {}
    hint = None
    for obj in list_objects(lake, f"{table}/{LOG}", recursive=False):
        base = obj.name.rsplit("/", 1)[-1]
        if m := _ENTRY.match(base):
            entries[int(m.group(1))] = obj
        elif m := _CHECKPOINT.match(base):
            checkpoints.setdefault(int(m.group(1)), []).append(obj)
        elif base == HINT:
            hint = obj
    return LogListing(entries, checkpoints, hint)


def check_entry(version: int, data: bytes) -> EntryCheck:
    """Parse one commit entry (newline-delimited JSON actions) and name its defect, if any."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return EntryCheck(version, "empty", f"{len(data)} bytes, no action")
    info, adds, removes, other = None, [], [], []
    for i, line in enumerate(lines):
        try:
            action = json.loads(line)
        except ValueError:
            last = i == len(lines) - 1
            return EntryCheck(version, "truncated" if last else "unparseable",
                              f"line {i + 1} of {len(lines)} is not complete JSON", info, adds, removes, other)
        if not isinstance(action, dict) or len(action) != 1 or next(iter(action)) not in ACTIONS:
            return EntryCheck(version, "unparseable", f"line {i + 1} is not a Delta action", info, adds, removes, other)
        kind, body = next(iter(action.items()))
        if kind == "commitInfo":
            info = body
        elif kind == "add":
            adds.append(body)
        elif kind == "remove":
            removes.append(body.get("path", ""))
        else:
            other.append(kind)
    metrics = (info or {}).get("operationMetrics") or {}
    for kind, have in (("num_added_files", len(adds)), ("num_removed_files", len(removes))):
        want = metrics.get(kind)
        if isinstance(want, int) and have < want:
            return EntryCheck(version, "incomplete", f"{have} of the {want} files its commitInfo counts ({kind})",
                              info, adds, removes, other)
    return EntryCheck(version, "", "", info, adds, removes, other)


def read_entry(lake: Lake, table: str, version: int) -> EntryCheck:
    data = lake.read_bytes(entry_name(table, version))
    return check_entry(version, data if data is not None else b"")


def checkpoint_defect(lake: Lake, parts: list[ObjectInfo], expected_rows: int | None) -> str:
    """"" when every part of a checkpoint is a readable Parquet file (with the hint's row count when the
    hint names this checkpoint); otherwise what is wrong, in a few words."""
    rows = 0
    for part in parts:
        if part.size == 0:
            return f"{part.name} is empty"
        try:
            rows += pq.read_metadata(lake.path(part.name), filesystem=lake.fs).num_rows
        except Exception as exc:  # noqa: BLE001 - any unreadable footer is the same damage
            return f"{part.name} is not readable Parquet ({_first_line(exc)})"
    if expected_rows is not None and rows != expected_rows:
        return f"{parts[0].name} holds {rows} actions, {HINT} says {expected_rows}"
    return ""


def read_hint(lake: Lake, table: str) -> dict[str, Any] | None:
    """The `_last_checkpoint` hint, or None when absent or unreadable (delta-rs then lists checkpoints)."""
    try:
        hint = lake.read_json(f"{table}/{LOG}/{HINT}")
    except ValueError:
        return None
    return hint if isinstance(hint, dict) and isinstance(hint.get("version"), int) else None


def log_base(lake: Lake, table: str, listing: LogListing) -> tuple[int, str]:
    """(version delta-rs starts replaying after, defect of that checkpoint): the hint's checkpoint when the
    hint is readable, else the newest checkpoint; -1 (replay from entry 0) when there is none."""
    hint = read_hint(lake, table)
    if hint is not None:
        version = hint["version"]
        parts = listing.checkpoints.get(version)
        if not parts:
            return version, f"{table}/{LOG}/{HINT} names checkpoint {version}, which is missing"
        return version, checkpoint_defect(lake, parts, hint.get("size"))
    if not listing.checkpoints:
        return -1, ""
    version = max(listing.checkpoints)
    return version, checkpoint_defect(lake, listing.checkpoints[version], None)


def first_damage(lake: Lake, table: str) -> tuple[str, bool] | None:
    """(one phrase naming the first damaged object the current version depends on, whether the doctor
    may repair it), or None when the log looks intact."""
    listing = list_log(lake, table)
    if listing.newest is None:
        return None
    base, defect = log_base(lake, table, listing)
    if defect:
        return defect, True
    for version in range(base + 1, listing.newest + 1):
        if version not in listing.entries:
            return f"{entry_name(table, version)} is missing (a hole in the log)", False
        check = read_entry(lake, table, version)
        if check.defect:
            return describe(table, check), True
    return None


def describe(table: str, check: EntryCheck) -> str:
    """`<entry> is <defect> (...)` in words."""
    what = {"empty": "empty (an interrupted or lost commit)", "truncated": "truncated (an interrupted commit)",
            "unparseable": "not a valid commit", "incomplete": "incomplete (an interrupted commit)"}[check.defect]
    return f"{entry_name(table, check.version)} is {what}: {check.detail}"


def damaged(table: str, where: str, *, repairable: bool = True) -> DamagedTableError:
    """The one-line error naming the table, the damaged object and the doctor."""
    advice = ("`coinline doctor` explains, `coinline doctor --repair` repairs" if repairable
              else "`coinline doctor` explains")
    return DamagedTableError(f"table {table}: {where}; {advice}")


def is_log_damage(exc: BaseException) -> bool:
    """True when a delta-rs error says the log itself cannot be read."""
    text = str(exc)
    return any(marker in text for marker in _LOG_DAMAGE)


def damage_error(lake: Lake, table: str, exc: BaseException) -> DamagedTableError:
    """The one-line error for a delta-rs log failure, naming the damaged object when it can be found."""
    try:
        found = first_damage(lake, table)
    except Exception:  # noqa: BLE001 - locating is best effort; the delta-rs message still says enough
        found = None
    where, repairable = found or (f"its Delta log cannot be read ({_first_line(exc)})", True)
    return damaged(table, where, repairable=repairable)


def check_opened_entry(lake: Lake, table: str, version: int) -> None:
    """Raise DamagedTableError when the entry of the version just opened is empty or incomplete (and no
    checkpoint holds that version): delta-rs read it as a commit of nothing, or of fewer files than it made.
    One small read per open (the entry delta-rs itself just read)."""
    data = lake.read_bytes(entry_name(table, version))
    if data is None:
        return  # a version held by a checkpoint whose older entries were cleaned up
    check = check_entry(version, data)
    if not check.defect:
        return
    if lake.fs.get_file_info(lake.path(checkpoint_name(table, version))).type == pafs.FileType.File:
        return  # the checkpoint holds this version's state; the damaged entry only loses its history record
    raise damaged(table, f"{describe(table, check)} (reading on would silently drop its rows)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("Kernel error: ")[:200]
