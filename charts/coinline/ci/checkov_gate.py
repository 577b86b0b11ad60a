"""Gate checkov's findings against the checked-in baseline (charts/coinline/ci/checkov-baseline.yaml).

    python checkov_gate.py --baseline checkov-baseline.yaml REPORT.json [REPORT.json ...]

REPORT is what `checkov --framework kubernetes -o json` printed: one report object, a list of them (one per
framework), or a bare summary when nothing was found to scan. A finding is (check_id, resource), resource
as checkov names it: `Kind.namespace.name`. Each baseline entry accepts the findings whose check_id equals
its check_id and whose resource matches its resource, an exact name or a glob (fnmatch: `*`, `?`, `[...]`),
for the stated reason:

    accepted:
      - check_id: CKV_K8S_43
        resource: "*.coinline.coinline-*"
        reason: why this is accepted

Exit 0 when every finding is accepted and every entry still accepts something; 1 (listing them) on new
findings, stale entries, parse errors or an empty scan; 2 on unusable input. Standard library + PyYAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

ENTRY_KEYS = {"check_id", "resource", "reason"}


class GateInputError(Exception):
    """The baseline or a report cannot be used."""


@dataclass(frozen=True)
class Finding:
    check_id: str
    resource: str
    file: str = ""
    name: str = ""

    def key(self) -> tuple[str, str]:
        return self.check_id, self.resource


@dataclass(frozen=True)
class Entry:
    check_id: str
    resource: str
    reason: str

    def accepts(self, finding: Finding) -> bool:
        return finding.check_id == self.check_id and fnmatchcase(finding.resource, self.resource)


@dataclass
class Result:
    findings: list[Finding]
    new: list[Finding]
    stale: list[Entry]
    problems: list[str]
    resources: int

    @property
    def ok(self) -> bool:
        return not (self.new or self.stale or self.problems)


def load_baseline(data: Any) -> list[Entry]:
    """Entries from the parsed baseline YAML; malformed entries raise GateInputError."""
    if not isinstance(data, dict) or not isinstance(data.get("accepted"), list):
        raise GateInputError("baseline: expected a mapping with a list `accepted`")
    entries, seen = [], set()
    for i, raw in enumerate(data["accepted"]):
        if not isinstance(raw, dict):
            raise GateInputError(f"baseline entry {i}: expected a mapping")
        unknown, missing = set(raw) - ENTRY_KEYS, ENTRY_KEYS - set(raw)
        if unknown or missing:
            raise GateInputError(f"baseline entry {i}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        if not all(isinstance(raw[k], str) and raw[k].strip() for k in ENTRY_KEYS):
            raise GateInputError(f"baseline entry {i}: check_id, resource and reason must be non-empty strings")
        entry = Entry(raw["check_id"].strip(), raw["resource"].strip(), raw["reason"].strip())
        if (entry.check_id, entry.resource) in seen:
            raise GateInputError(f"baseline entry {i}: duplicate of {entry.check_id} {entry.resource}")
        seen.add((entry.check_id, entry.resource))
        entries.append(entry)
    return entries


def _reports(data: Any) -> list[dict]:
    reports = data if isinstance(data, list) else [data]
    if not all(isinstance(r, dict) for r in reports):
        raise GateInputError("report: expected a JSON object or a list of objects")
    return reports


def parse_reports(datas: list[Any]) -> tuple[list[Finding], int, list[str]]:
    """(failed findings, resources scanned, problems) from parsed checkov JSON reports."""
    findings, resources, problems = [], 0, []
    for data in datas:
        for report in _reports(data):
            summary = report.get("summary", report)  # a bare summary when checkov found nothing to scan
            resources += int(summary.get("resource_count", 0) or 0)
            if int(summary.get("parsing_errors", 0) or 0):
                problems.append(f"checkov could not parse {summary['parsing_errors']} file(s): "
                                f"{(report.get('results') or {}).get('parsing_errors', '?')}")
            for check in (report.get("results") or {}).get("failed_checks", []):
                try:
                    findings.append(Finding(check["check_id"], check["resource"], check.get("file_path", ""),
                                            check.get("check_name", "")))
                except KeyError as exc:
                    raise GateInputError(f"report: a failed check without {exc}") from exc
    return findings, resources, problems


def gate(findings: list[Finding], entries: list[Entry], resources: int, problems: list[str] | None = None) -> Result:
    problems = list(problems or [])
    if resources == 0:
        problems.append("checkov scanned no resources (empty renders, or the wrong framework?)")
    new = [f for f in findings if not any(e.accepts(f) for e in entries)]
    stale = [e for e in entries if not any(e.accepts(f) for f in findings)]
    return Result(findings, new, stale, problems, resources)


def _unique(findings: list[Finding]) -> dict[tuple[str, str], list[Finding]]:
    out: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        out.setdefault(f.key(), []).append(f)
    return out


def report(result: Result, out=None) -> None:
    out = out or sys.stdout
    unique = _unique(result.findings)
    for problem in result.problems:
        print(f"checkov-gate: {problem}", file=out)
    if result.new:
        new = _unique(result.new)
        print(f"checkov-gate: {len(new)} finding(s) not in the baseline (fix them, or add an entry with a reason):",
              file=out)
        for (check_id, resource), fs in sorted(new.items()):
            files = ", ".join(sorted({f.file for f in fs if f.file}))
            print(f"  - {check_id} {resource}  ({fs[0].name}) [{files}]", file=out)
    if result.stale:
        print(f"checkov-gate: {len(result.stale)} baseline entr{'y' if len(result.stale) == 1 else 'ies'} "
              "no longer match a finding (remove them):", file=out)
        for e in result.stale:
            print(f"  - {e.check_id} {e.resource}", file=out)
    if result.ok:
        print(f"checkov-gate: ok: {result.resources} resources, {len(unique)} finding(s) "
              f"({len(result.findings)} across the renders), all in the baseline", file=out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, type=Path)
    p.add_argument("reports", nargs="+", type=Path)
    args = p.parse_args(argv)
    try:
        entries = load_baseline(yaml.safe_load(args.baseline.read_text()))
        datas = []
        for path in args.reports:
            try:
                datas.append(json.loads(path.read_text()))
            except json.JSONDecodeError as exc:
                raise GateInputError(f"{path}: not JSON ({exc})") from exc
        findings, resources, problems = parse_reports(datas)
    except (OSError, GateInputError, yaml.YAMLError) as exc:
        print(f"checkov-gate: {exc}", file=sys.stderr)
        return 2
    result = gate(findings, entries, resources, problems)
    report(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
