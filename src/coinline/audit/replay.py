"""`coinline audit DECISION_ID`: re-derive a decision from stored lineage and report match or the exact
mismatch, step by step:
1. dataset  - rebuild the canonical candles at the pinned raw_candles version and recompute the hash;
2. training - retrain from the run's stored config and seed (nothing is written) and compare the metric
              package byte for byte with the stored one;
3. gates    - re-run the gates under the decision's own policy against the same active set, and compare
              the decision id, outcome, reason codes and every gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from coinline.datasets.canonical import canonical_candles
from coinline.errors import CoinlineError
from coinline.hashing import table_sha256
from coinline.lake.store import Lake
from coinline.providers.base import SeriesKey


@dataclass
class StepResult:
    step: str
    match: bool
    expected: Any = None
    actual: Any = None
    detail: str = ""


@dataclass
class AuditReport:
    decision_id: str
    run_id: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def match(self) -> bool:
        return all(s.match for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "run_id": self.run_id, "match": self.match,
                "steps": [asdict(s) for s in self.steps]}


def replay_dataset(lake: Lake, dataset_id: str, expected_hash: str) -> StepResult:
    manifest = lake.read_json(f"datasets/{dataset_id}/manifest.json")
    if manifest is None:
        return StepResult("dataset", False, expected_hash, None, f"datasets/{dataset_id}/manifest.json missing")
    keys = [SeriesKey(s["source"], s["venue"], s["symbol"], s["quote"], s["interval"]) for s in manifest["series"]]
    spec = manifest["spec"]
    start = datetime.fromisoformat(spec["start"]) if spec.get("start") else None
    end = datetime.fromisoformat(spec["end"]) if spec.get("end") else None
    rebuilt = canonical_candles(lake, keys, start=start, end=end, raw_version=manifest["inputs"]["raw_candles_version"])
    actual = table_sha256(rebuilt, manifest["hashed_columns"])
    return StepResult("dataset", actual == expected_hash, expected_hash, actual,
                      f"{rebuilt.num_rows} rows rebuilt at raw_candles version {manifest['inputs']['raw_candles_version']}")


def replay_training(lake: Lake, run_id: str, dataset_id: str, *, workers: int | None = 1) -> StepResult:
    import json

    from coinline.jsonsafe import json_bytes
    from coinline.training.config import config_from_dict
    from coinline.training.run import train

    stored = lake.read_bytes(f"runs/{run_id}/metrics.json")
    config = lake.read_json(f"runs/{run_id}/config.json")
    if stored is None or config is None:
        return StepResult("training", False, None, None, f"runs/{run_id}/metrics.json or config.json missing")
    cfg = config_from_dict(config["config"])
    stored_doc = json.loads(stored)
    run = train(lake, dataset_id, cfg, symbols=stored_doc["symbols"], workers=workers, persist=False,
                quote=stored_doc.get("quote", "USD"))
    if run.run_id != run_id:
        return StepResult("training", False, run_id, run.run_id, "retraining derived a different run id")
    if json_bytes(run.metrics) == stored:
        return StepResult("training", True, "metrics.json identical", "metrics.json identical",
                          f"retrained {len(stored_doc['symbols'])} coins from config {cfg.config_hash()[:12]}")
    replayed = json.loads(json_bytes(run.metrics))
    return StepResult("training", False, None, None, "metric package differs: " + _first_difference(stored_doc, replayed))


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}/{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '/'}: stored {str(a)[:80]} vs replayed {str(b)[:80]}"


def replay_gates(lake: Lake, decision: dict[str, Any]) -> StepResult:
    from coinline.promotion.decide import build_decision, load_evidence
    from coinline.promotion.gates import evaluate_gates
    from coinline.promotion.policy import parse_policy

    record = decision["policy"]
    policy = parse_policy(record["thresholds"], record.get("source", "decision"))
    if policy.sha256 != record.get("sha256"):
        return StepResult("gates", False, record.get("sha256"), policy.sha256, "policy recorded in the decision does not hash")
    decided_at = datetime.fromisoformat(decision["decided_at"])
    evidence = load_evidence(lake, decision["run_id"], policy, decision.get("active_before"), now=decided_at)
    gates = evaluate_gates(evidence, policy)
    again = build_decision(evidence, gates, policy, decided_at)
    expected = {k: decision[k] for k in ("decision_id", "decision", "reason_codes", "gates")}
    actual = {k: again[k] for k in ("decision_id", "decision", "reason_codes", "gates")}
    detail = "" if expected == actual else _first_difference(expected, actual)
    return StepResult("gates", expected == actual, decision["decision"] + " " + ",".join(decision["reason_codes"]),
                      again["decision"] + " " + ",".join(again["reason_codes"]), detail)


def audit(lake: Lake, decision_id: str, *, retrain: bool = True, workers: int | None = 1) -> AuditReport:
    decision = lake.read_json(f"decisions/{decision_id}.json")
    if decision is None:
        raise CoinlineError(f"unknown decision {decision_id}: no decisions/{decision_id}.json in {lake.root}")
    report = AuditReport(decision_id, decision["run_id"])
    report.steps.append(replay_dataset(lake, decision["dataset_id"], decision["dataset_hash"]))
    if retrain:
        report.steps.append(replay_training(lake, decision["run_id"], decision["dataset_id"], workers=workers))
    report.steps.append(replay_gates(lake, decision))
    return report
