"""A promotion decision as Markdown (the Kubeflow run page shows it as a visualization): outcome, reason
codes, and each gate with its figures against its thresholds."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return "" if value is None else str(value).replace("|", "\\|")


def decision_markdown(decision: dict[str, Any], *, activated: bool = False) -> str:
    codes = decision.get("reason_codes") or []
    lines = [f"# Promotion decision: {decision.get('decision')}", "",
             f"- run: `{decision.get('run_id')}`, decision `{decision.get('decision_id')}`",
             f"- policy: `{(decision.get('policy') or {}).get('version', '')}` "
             f"(sha256 `{str((decision.get('policy') or {}).get('sha256', ''))[:16]}`)",
             f"- active set before: `{decision.get('active_before') or 'none'}`; "
             f"{'activated' if activated else 'active set unchanged'}",
             f"- reason codes: {', '.join(f'`{c}`' for c in codes) if codes else 'none'}", "",
             "| gate | passed | reason codes | figure | value | threshold |", "|---|---|---|---|---|---|"]
    for gate in decision.get("gates") or []:
        figures, thresholds = gate.get("figures") or {}, gate.get("thresholds") or {}
        names = sorted(set(figures) | set(thresholds)) or [""]
        for i, name in enumerate(names):
            head = [gate.get("gate", ""), "yes" if gate.get("passed") else "no",
                    _cell(gate.get("reason_codes"))] if i == 0 else ["", "", ""]
            lines.append("| " + " | ".join([*head, name, _cell(figures.get(name)), _cell(thresholds.get(name))]) + " |")
    return "\n".join(lines) + "\n"
