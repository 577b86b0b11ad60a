"""A run's one-line answer to "did any model find directional skill?", read from its metric package alone.

The answer comes from the run's pooled skill (`metrics["skill"]`, built by `training.skill.pooled_skill`): per
(horizon, model) the out-of-sample predictions of every coin are pooled and tested against the base rate by the
joint block-bootstrap chance test, and the p-values of all pairs are Holm-adjusted. A model "beats the base rate"
only when its Holm-adjusted p-value is at or below alpha (`significant` in the metrics) - the same evidence a
promotion gate may use, never a single coin's uncorrected p-value. The line says which evidence it came from,
so a reader of `coinline run` (or of the report's badge) can find the numbers behind it.

Pure functions of the metrics dict: nothing is recomputed or hard-coded, so the same metrics always give the
same line, and the report and the CLI cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EVIDENCE = "pooled out-of-sample predictions, joint block-bootstrap test vs the base rate"


@dataclass(frozen=True)
class Verdict:
    """`found`: some (model, horizon) beats the base rate; `line`: the sentence printed at the end of a run;
    `badge`: the same answer, short enough for a report badge."""

    found: bool
    line: str
    badge: str


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _rows(skill: dict[str, Any]) -> list[dict[str, Any]]:
    """The skill table's rows in a deterministic order (by key), each with the fields the verdict reads."""
    by_model = skill.get("by_model") or {}
    return [by_model[k] for k in sorted(by_model)]


def _significant_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The significant rows, strongest evidence first (smallest Holm p, then shortest horizon, then name)."""
    hits = [r for r in rows if r.get("significant")]
    return sorted(hits, key=lambda r: (float(r["p_value_holm"]), int(r["horizon"]), str(r["model"])))


def skill_verdict(skill: dict[str, Any], run_id: str | None = None) -> Verdict:
    """The verdict on a run's pooled skill dict (`metrics["skill"]`); `run_id` only names the evidence."""
    rows = _rows(skill)
    alpha = skill.get("alpha", 0.05)
    correction = str(skill.get("correction", "holm")).capitalize()
    where = f"runs/{run_id}/metrics.json" if run_id else "the run's metrics"
    source = f"[evidence: {where}, skill: {EVIDENCE}]"
    hits = _significant_first(rows)
    if hits:
        best = hits[0]
        p = float(best["p_value_holm"])
        line = (f"directional skill: {best['model']} at h={best['horizon']} beats the base rate "
                f"(p={p:.3g} {correction}-adjusted, alpha {alpha}; {len(hits)} of {_count(len(rows), 'test')} "
                f"significant) {source}")
        return Verdict(True, line, f"directional skill: {best['model']} at h={best['horizon']} "
                                   f"({correction} p={p:.3g})")
    models = len({r["model"] for r in rows})
    horizons = len({r["horizon"] for r in rows})
    line = (f"no directional skill: {_count(models, 'model')} x {_count(horizons, 'horizon')} tested "
            f"({_count(len(rows), 'test')}), none beats the base rate under the joint test ({correction}, alpha "
            f"{alpha}) {source}")
    return Verdict(False, line, f"no directional skill in {_count(len(rows), 'test')} ({correction}, alpha {alpha})")


def run_verdict(metrics: dict[str, Any]) -> Verdict:
    """The verdict on a whole metric package (metrics.json): its pooled skill, named by its run id."""
    return skill_verdict(metrics.get("skill") or {}, metrics.get("run_id"))
