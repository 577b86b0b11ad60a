"""Inspect one Delta table of the lake without scanning its data: one listing of its log, the entries after
its checkpoint parsed, the checkpoint's footer read, one listing of its data files against the current
version's add actions. Every finding is a `Problem` that says in one line what is wrong and what
`--repair` would do about it (nothing, when no repair is safe)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable

from coinline.lake import integrity, tables
from coinline.lake.integrity import LOG, EntryCheck, LogListing
from coinline.lake.store import Lake

ERROR, WARNING = "error", "warning"
# what `--repair` does for each repairable kind
REPAIRS = {
    "interrupted-commit": "quarantine the entry, put an empty placeholder commit at its version, re-commit the "
                          "rows of its data files through the writer",
    "damaged-entry": "quarantine the entry, put an empty placeholder commit at its version, re-commit only "
                     "the candles its data files hold that no later commit has",
    "checkpoint-damaged": "quarantine the checkpoint (delta-rs then replays the JSON entries) and write a fresh one",
    "checkpoint-hint": "write a fresh checkpoint and hint",
}


@dataclass(frozen=True)
class Problem:
    table: str
    kind: str
    subject: str                 # the damaged object, relative to the lake root
    severity: str                # error: data missing or commands failing; warning: nothing lost now
    message: str                 # one line: what is wrong
    repair: str = ""             # what --repair does ("" = no safe repair)
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        fix = f"; --repair will {self.repair}" if self.repair else "; no automatic repair"
        return f"{self.severity.upper()} {self.table}: {self.message}{fix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TableHealth:
    name: str
    version: int | None = None       # None when the log cannot be opened
    checkpoint: int = -1             # the version delta-rs replays after (-1: none)
    entries_parsed: int = 0
    data_files: int = 0
    referenced_files: int = 0
    unreferenced_files: int = 0      # written by commits that never landed (killed writers): harmless
    remove_tombstones: int = 0       # files removed by a commit but still stored (vacuum's job, not ours)
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = len(self.problems)
        return out


def delta_tables(lake: Lake) -> list[str]:
    """Names of the lake's top-level folders that hold a Delta log."""
    selector = pafs.FileSelector(lake.base_path, recursive=False, allow_not_found=True)
    dirs = [i.base_name for i in lake.fs.get_file_info(selector) if i.type == pafs.FileType.Directory]
    return sorted(d for d in dirs if lake.fs.get_file_info(lake.path(f"{d}/{LOG}")).type == pafs.FileType.Directory)


def inspect_table(lake: Lake, table: str) -> TableHealth:
    """Everything wrong with one table, found from its log and a listing of its files."""
    health = TableHealth(table)
    listing = integrity.list_log(lake, table)
    if listing.newest is None:
        health.problems.append(Problem(table, "log-empty", f"{table}/{LOG}", ERROR,
                                       f"{table}/{LOG} holds no commit entries"))
        return health
    health.checkpoint = _check_checkpoint(lake, table, listing, health.problems)
    checks = _check_entries(lake, table, listing, health)
    health.remove_tombstones = len(removed_files(lake, table, listing, health.checkpoint, checks))
    if any(p.severity == ERROR for p in health.problems):
        return health  # data files are checked once the log opens
    _check_data_files(lake, table, health)
    return health


def _check_checkpoint(lake: Lake, table: str, listing: LogListing, problems: list[Problem]) -> int:
    hint_obj = listing.hint
    hint = integrity.read_hint(lake, table)
    if hint_obj is not None and hint is None:
        problems.append(Problem(table, "checkpoint-hint", hint_obj.name, WARNING,
                                f"{hint_obj.name} is unreadable (delta-rs ignores it and lists checkpoints)",
                                REPAIRS["checkpoint-hint"]))
    base, defect = integrity.log_base(lake, table, listing)
    if defect:
        previous = max((v for v in listing.checkpoints if v < base), default=-1)
        replayable = _replayable(lake, table, listing, previous, base)
        problems.append(Problem(
            table, "checkpoint-damaged", integrity.checkpoint_name(table, base), ERROR,
            f"checkpoint {base}: {defect} (every open of the table fails)"
            + ("" if replayable else f"; the JSON entries {previous + 1}..{base} needed to replay without it "
                                     f"are not all intact"),
            REPAIRS["checkpoint-damaged"] if replayable else "",
            {"version": base, "parts": [p.name for p in listing.checkpoints.get(base, [])],
             "hint": hint_obj.name if hint and hint["version"] == base and hint_obj else None}))
    return base


def _replayable(lake: Lake, table: str, listing: LogListing, previous: int, base: int) -> bool:
    """True when entries previous+1..base all exist and parse, so the table opens without checkpoint `base`."""
    if previous >= 0 and integrity.checkpoint_defect(lake, listing.checkpoints[previous], None):
        return False
    return all(v in listing.entries and not integrity.read_entry(lake, table, v).defect
               for v in range(previous + 1, base + 1))


def _check_entries(lake: Lake, table: str, listing: LogListing, health: TableHealth) -> list[EntryCheck]:
    """Parse every entry after the checkpoint; size-check the older ones (time travel only)."""
    newest, base = listing.newest, health.checkpoint
    for version, obj in sorted(listing.entries.items()):
        if version <= base and obj.size == 0:
            travel = (f"; read as of versions {version}..{base - 1}, the table lacks that commit's rows" if version < base else "")
            health.problems.append(Problem(
                table, "old-entry-empty", obj.name, WARNING,
                f"{obj.name} is empty: checkpoint {base} holds the current state, but that commit's manifest "
                f"(its history record) is lost{travel}"))
    checks = []
    for version in range(base + 1, newest + 1):
        if version not in listing.entries:
            health.problems.append(Problem(table, "entry-missing", integrity.entry_name(table, version), ERROR,
                                           f"{integrity.entry_name(table, version)} is missing (a hole in the log: "
                                           f"every open fails); restore it from a backup"))
            continue
        check = integrity.read_entry(lake, table, version)
        checks.append(check)
        if check.defect:
            health.problems.append(_entry_problem(table, check, newest, listing))
    health.entries_parsed = len(checks)
    return checks


def _entry_problem(table: str, check: EntryCheck, newest: int, listing: LogListing) -> Problem:
    name = integrity.entry_name(table, check.version)
    lost = lost_commit(check)
    detail = {"version": check.version, "defect": check.defect, "newest": newest, "lost_commit": lost,
              "previous_entry_mtime_ns": (listing.entries[check.version - 1].mtime_ns
                                          if check.version - 1 in listing.entries else None)}
    what = integrity.describe(table, check)
    if check.version == 0 or check.other_actions or lost.get("operation") not in (None, "WRITE"):
        return Problem(table, "schema-commit-damaged", name, ERROR,
                       f"{what}; it {'creates the table' if check.version == 0 else 'changes the table itself'} "
                       f"(operation {lost.get('operation') or '?'}), so no placeholder can stand in for it; "
                       f"restore it from a backup", "", detail)
    if check.version == newest:
        effect = ("every open of the table fails" if check.defect in ("truncated", "unparseable")
                  else "delta-rs reads it as a commit of nothing: its rows are silently missing")
        return Problem(table, "interrupted-commit", name, ERROR, f"{what}; {effect}{_lost_words(lost)}",
                       REPAIRS["interrupted-commit"], detail)
    return Problem(table, "damaged-entry", name, ERROR,
                   f"{what}; {newest - check.version} later commit(s) were built on it, so its rows are missing "
                   f"from every version since{_lost_words(lost)}", REPAIRS["damaged-entry"], detail)


def lost_commit(check: EntryCheck) -> dict[str, Any]:
    """What the damaged entry still tells about its commit: operation, manifest, the data files it added."""
    info = check.commit_info or {}
    manifest = info.get("coinline")
    try:
        manifest = json.loads(manifest) if isinstance(manifest, str) else manifest
    except ValueError:
        manifest = None
    return {"operation": info.get("operation"), "timestamp_ms": info.get("timestamp"), "manifest": manifest,
            "added_files": [unquote(a.get("path", "")) for a in check.adds],
            "files_counted": ((info.get("operationMetrics") or {}).get("num_added_files"))}


def _lost_words(lost: dict[str, Any]) -> str:
    pages = [m for m in tables.page_manifests(lost.get("manifest")) if m.get("row_count") is not None]
    if len(pages) == 1:
        (manifest,) = pages
        return f" (batch {manifest.get('batch_id')}: {manifest.get('row_count')} rows of {manifest.get('series')})"
    if pages:   # a commit of several ingest pages
        series = ", ".join(sorted({str(m.get("series")) for m in pages}))
        return f" ({len(pages)} batches: {sum(int(m['row_count']) for m in pages)} rows of {series})"
    return ""


def removed_files(lake: Lake, table: str, listing: LogListing | None = None, base: int | None = None,
                  checks: list[EntryCheck] | None = None) -> set[str]:
    """Paths (table-relative) that a commit removed and the log still remembers (the checkpoint's tombstones
    and the remove actions after it): stored files a VACUUM may delete, never rows to re-commit."""
    if listing is None:
        listing = integrity.list_log(lake, table)
        base = integrity.log_base(lake, table, listing)[0]
    if checks is None:
        checks = [integrity.read_entry(lake, table, v) for v in range(base + 1, (listing.newest or 0) + 1)
                  if v in listing.entries]
    removed = {unquote(p) for c in checks for p in c.removes}
    parts = listing.checkpoints.get(base, [])
    if parts and not integrity.checkpoint_defect(lake, parts, None):
        for part in parts:
            if "remove" in pq.read_schema(lake.path(part.name), filesystem=lake.fs).names:
                column = pq.read_table(lake.path(part.name), columns=["remove"], filesystem=lake.fs)["remove"]
                removed |= {unquote(r["path"]) for r in column.to_pylist() if r and r.get("path")}
    return removed


def _check_data_files(lake: Lake, table: str, health: TableHealth) -> None:
    try:
        dt = DeltaTable(lake.uri(table), storage_options=lake.storage_options)
    except Exception as exc:  # noqa: BLE001 - whatever delta-rs says, the table does not open
        health.problems.append(Problem(table, "log-unreadable", f"{table}/{LOG}", ERROR,
                                       f"{table} does not open: {str(exc).splitlines()[0][:200]}"))
        return
    health.version = dt.version()
    adds = pa.table(dt.get_add_actions(flatten=True))
    referenced = [unquote(p) for p in adds.column("path").to_pylist()]
    stored = {o.name[len(table) + 1:] for o in integrity.list_objects(lake, table)
              if not o.name.startswith(f"{table}/{LOG}/") and o.name.endswith(".parquet")}
    health.data_files, health.referenced_files = len(stored), len(referenced)
    health.unreferenced_files = len(stored - set(referenced))
    missing = [i for i, p in enumerate(referenced) if p not in stored]
    if missing:
        rows = pc.sum(adds.column("num_records").take(missing)).as_py() or 0
        sample = f"{table}/{referenced[missing[0]]}"
        health.problems.append(Problem(
            table, "missing-file", sample, ERROR,
            f"{len(missing)} data file(s) that version {health.version} references are missing ({rows} rows; first: "
            f"{sample}); restore them from a backup (a repair could only drop their rows, so the doctor does not)",
            "", {"missing": [referenced[i] for i in missing], "rows": rows}))
