"""`coinline doctor [--repair]`: examine every Delta table and the leases, explain each problem in one line,
and (with --repair) perform the safe repairs, each recorded in `doctor/records/<stamp>.json` before and
after it acts, so an interrupted repair is seen and resumed by the next run. Exit 0 when no error remains.

Repair order: stale leases and old tombstones; unfinished earlier repairs; then per table a damaged
checkpoint (quarantined), damaged entries (quarantined, placeholders written), the table re-opened (and
re-checkpointed when its checkpoint was quarantined), and the damaged commits' rows re-committed. Tables
are not repaired while a live lease shows an ingester at work (it could be committing right now).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coinline.doctor import recover
from coinline.doctor.inspect import ERROR, Problem, TableHealth, delta_tables, inspect_table, removed_files
from coinline.doctor.leases import inspect_leases, repair_lease
from coinline.lake import tables
from coinline.lake.store import AlreadyExists, Lake

RECORDS = "doctor/records"
ENTRY_KINDS = ("interrupted-commit", "damaged-entry")


@dataclass
class Examination:
    tables: list[TableHealth]
    lease_problems: list[Problem]
    live_leases: list[dict[str, Any]]
    unfinished: list[Problem]

    @property
    def problems(self) -> list[Problem]:
        return [*self.lease_problems, *self.unfinished, *(p for t in self.tables for p in t.problems)]

    @property
    def healthy(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)


def examine(lake: Lake, now: datetime) -> Examination:
    """Every problem of the lake, found from logs and listings (no data scan)."""
    lease_problems, live = inspect_leases(lake, now)
    return Examination([inspect_table(lake, t) for t in delta_tables(lake)], lease_problems, live,
                       unfinished_repairs(lake))


def unfinished_repairs(lake: Lake) -> list[Problem]:
    out = []
    for name in lake.list(RECORDS):
        record = lake.read_json(name) or {}
        if record.get("status") != "done":
            pending = [r for r in record.get("repairs", []) if _pending(r)]
            out.append(Problem("doctor", "unfinished-repair", name, ERROR,
                               f"repair {name} did not finish ({len(pending)} damaged commit(s) not yet re-committed)",
                               "resume it", {"pending": len(pending)}))
    return out


def doctor(lake: Lake, *, now: datetime, repair: bool = False) -> dict[str, Any]:
    """Examine the lake; with `repair`, perform the safe repairs and examine again. Returns the report."""
    before = examine(lake, now)
    if not repair or not any(p.repair for p in before.problems):
        return _report(lake, before)
    record_name, record = _start_record(lake, now, before)
    stamp = record_name.rsplit("/", 1)[-1].removesuffix(".json")

    def step(entry: dict[str, Any]) -> None:
        record["repairs"].append(entry)
        lake.write_json(record_name, record)

    for problem in before.lease_problems:
        if problem.repair:
            step({"table": problem.table, "kind": problem.kind, **repair_lease(lake, problem, now)})
    for problem in before.unfinished:
        _resume(lake, problem.subject)
        step({"kind": "unfinished-repair", "action": "resumed", "record": problem.subject})
    _, live = inspect_leases(lake, now)
    for health in before.tables:
        if not any(p.repair for p in health.problems):
            continue
        if live:
            step({"table": health.name, "action": "skipped", "reason": f"live leases {live}: an ingester is at "
                  f"work; stop it (or wait for its lease to expire), then rerun `coinline doctor --repair`"})
            continue
        _repair_table(lake, health.name, stamp, record_name, step)
    record["status"] = "done" if not any(_pending(r) for r in record["repairs"]) else "incomplete"
    lake.write_json(record_name, record)
    after = examine(lake, now)
    record["problems_after"] = [p.to_dict() for p in after.problems]
    lake.write_json(record_name, record)
    return _report(lake, after, before=before, repairs=record["repairs"], record=record_name)


def _repair_table(lake: Lake, table: str, stamp: str, record_name: str, step) -> None:
    health = inspect_table(lake, table)
    rewrite = any(p.kind == "checkpoint-hint" for p in health.problems)
    for problem in [p for p in health.problems if p.kind == "checkpoint-damaged" and p.repair]:
        names = [*problem.detail["parts"], *([problem.detail["hint"]] if problem.detail.get("hint") else [])]
        moved = recover.quarantine(lake, names, stamp)
        recover.drop_objects(lake, moved)
        step({"table": table, "kind": problem.kind, "action": "quarantined-checkpoint", "moved": moved})
        rewrite = True
        health = inspect_table(lake, table)
    placeholders = []
    for problem in sorted((p for p in health.problems if p.kind in ENTRY_KINDS), key=lambda p: p.detail["version"]):
        moved = recover.quarantine(lake, [problem.subject], stamp)
        entry = {"table": table, "kind": problem.kind, "action": "placeholder", "entry": problem.subject,
                 "version": problem.detail["version"], "defect": problem.detail["defect"],
                 "quarantined_to": moved[problem.subject], "lost_commit": problem.detail["lost_commit"],
                 "since_ns": problem.detail["previous_entry_mtime_ns"],
                 "insert_only": problem.kind == "damaged-entry" or problem.detail["previous_entry_mtime_ns"] is None,
                 "files": None, "recovered": None}
        step(entry)  # recorded before the log changes: an interrupted run is resumed from here
        _place(lake, entry, record_name)
        placeholders.append(entry)
    tables.open_table(lake, table)  # the log opens again (raises DamagedTableError, one line, if not)
    if rewrite:
        step({"table": table, "action": "checkpoint-written", "version": recover.rewrite_checkpoint(lake, table)})
    for entry in placeholders:
        _recover(lake, entry)
        step({"table": table, "action": "recovered", "entry": entry["entry"], **_tally(entry["recovered"])})


def _place(lake: Lake, entry: dict[str, Any], record_name: str) -> None:
    """Write the placeholder commit the record entry describes (nothing when it is in place already)."""
    data = recover.placeholder(entry["lost_commit"], entry["since_ns"], entry["quarantined_to"], record_name,
                               entry["defect"])
    recover.replace_entry(lake, entry["table"], entry["version"], data)


def _recover(lake: Lake, entry: dict[str, Any]) -> None:
    """Find the damaged commit's files (once) and re-commit what is not yet re-committed; updates `entry`."""
    table = entry["table"]
    if entry.get("files") is None:
        named = entry["lost_commit"].get("added_files") or []
        entry["files"] = recover.unreferenced_files(lake, table, since_ns=entry["since_ns"], named=named,
                                                    removed=removed_files(lake, table))
    done = {f for r in entry.get("recovered") or [] if not _pending_result(r) for f in r.get("files", [r.get("file")])}
    todo = [f for f in entry["files"] if f["path"] not in done]
    why = {"lost_entry": entry["entry"], "quarantined_to": entry["quarantined_to"]}
    kept = [r for r in entry.get("recovered") or [] if not _pending_result(r)]
    entry["recovered"] = kept + recover.recover_rows(lake, table, todo, insert_only=entry["insert_only"], why=why)


def _resume(lake: Lake, record_name: str) -> None:
    record = lake.read_json(record_name) or {}
    for entry in record.get("repairs", []):
        if _pending(entry):
            _place(lake, entry, record_name)
            _recover(lake, entry)
            lake.write_json(record_name, record)
    record["status"] = "done" if not any(_pending(r) for r in record.get("repairs", [])) else "incomplete"
    lake.write_json(record_name, record)


def _tally(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of re-commit results: rows found in the files, inserted, revised, duplicates, by status."""
    out: dict[str, Any] = {k: sum(r.get(k) or 0 for r in results)
                           for k in ("rows_in_files", "inserted", "revised", "duplicates")}
    out["statuses"] = sorted({r["status"] for r in results})
    out["files"] = len({f for r in results for f in r.get("files", [r.get("file")])})
    return out


def _pending(entry: dict[str, Any]) -> bool:
    return entry.get("action") == "placeholder" and (
        entry.get("recovered") is None or any(_pending_result(r) for r in entry["recovered"]))


def _pending_result(result: dict[str, Any]) -> bool:
    return result.get("status") == "lease-held"


def _start_record(lake: Lake, now: datetime, before: Examination) -> tuple[str, dict[str, Any]]:
    """Create `doctor/records/<stamp>[-n].json` (create-only) before anything is changed."""
    record = {"started_at": now.isoformat(), "lake": lake.root, "status": "started", "repairs": [],
              "problems_before": [p.to_dict() for p in before.problems]}
    base = now.strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        name = f"{RECORDS}/{base}{'' if n == 1 else f'-{n}'}.json"
        try:
            lake.create_only(name, record)
            return name, record
        except AlreadyExists:
            continue
    raise AlreadyExists(f"{RECORDS}/{base}")


def _report(lake: Lake, exam: Examination, *, before: Examination | None = None,
            repairs: list[dict[str, Any]] | None = None, record: str | None = None) -> dict[str, Any]:
    return {"lake": lake.root, "healthy": exam.healthy, "tables": [t.summary() for t in exam.tables],
            "live_leases": exam.live_leases, "problems": [p.to_dict() for p in exam.problems],
            "found_before_repair": [p.to_dict() for p in before.problems] if before else None,
            "repairs": repairs or [], "record": record}


def report_text(report: dict[str, Any]) -> str:
    """The report for people: one line per problem and per repair, then the verdict."""
    lines = []
    if report["found_before_repair"] is not None:
        lines.append(f"found {len(report['found_before_repair'])} problem(s):")
        lines += [_line(p) for p in report["found_before_repair"]]
        lines += [f"repaired: {_repair_line(r)}" for r in report["repairs"]]
        lines.append(f"record: {report['record']}")
        if report["problems"]:
            lines.append("after repair:")
    lines += [_line(p) for p in report["problems"]]
    versions = ", ".join(f"{t['name']}@{t['version']}" for t in report["tables"])
    verdict = "healthy" if report["healthy"] else "NOT healthy"
    lines.append(f"lake {report['lake']}: {verdict} ({versions}; {len(report['problems'])} problem(s))")
    return "\n".join(lines)


def _line(p: dict[str, Any]) -> str:
    return Problem(**p).line()


def _repair_line(r: dict[str, Any]) -> str:
    if r.get("action") == "recovered":
        return (f"{r['table']}: re-committed the rows of {r['entry']}'s {r['files']} data file(s): "
                f"{r['rows_in_files']} rows found, {r['inserted']} inserted, {r['revised']} revised, "
                f"{r['duplicates']} already present ({', '.join(r['statuses']) or 'no files'})")
    parts = [str(r.get(k)) for k in ("table", "action", "object", "entry", "quarantined_to", "reason") if r.get(k)]
    if r.get("moved"):
        parts.append(f"({', '.join(f'{a} -> {b}' for a, b in r['moved'].items())})")
    if r.get("action") == "checkpoint-written":
        parts.append(f"at version {r['version']}")
    return " ".join(parts)
