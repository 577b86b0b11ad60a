"""Tables of a run's judged evidence for the report's out-of-sample section: every served horizon against
the base rate, the ensemble against its best single member, and the risk head against EWMA and HAR-RV."""

from __future__ import annotations

from typing import Any

from coinline.report.html import Table
from coinline.report.parts import get, sig


def _served(v: dict[str, Any]) -> Any:
    """The served name and, when the run recorded them, the combiners its folds served, oldest fold first
    (e.g. "ensemble: base_rate | mean"; "a/b": coins of one fold served different ones)."""
    folds = v.get("fold_combiners")
    if not folds:
        return v.get("served")
    return f"{v.get('served')}: " + " | ".join("/".join(sorted(c)) for _, c in sorted(folds.items(),
                                                                                    key=lambda kv: int(kv[0])))


def horizons_table(metrics: dict[str, Any]) -> Table | None:
    served = (metrics.get("horizons") or {}).get("served")
    if not served:
        return None
    rows = [[int(h), _served(v), v.get("log_loss"), v.get("base_rate_log_loss"),
             sig(None if v.get("worse_than_base_rate") is None else not v["worse_than_base_rate"]),
             v.get("p_value_holm"), v.get("evidence")] for h, v in sorted(served.items(), key=lambda kv: int(kv[0]))]
    worse = (metrics.get("horizons") or {}).get("worse_than_base_rate") or []
    return Table("Every served horizon vs the base rate (pooled OOS)",
                 ["h", "served", "log loss", "base-rate log loss", "not worse", "p (Holm)", "skill evidence"], rows,
                 note=("(horizon/model) pairs that lose to the base rate: " + ", ".join(worse)) if worse else
                 "no (horizon, model) pair loses to the base rate")


def ensemble_table(metrics: dict[str, Any]) -> Table | None:
    check = metrics.get("ensemble_check")
    if not check or not check.get("per_coin"):
        return None
    rows = [[c, v["ensemble"], v["best_member"], v["best_member_log_loss"], v["gap"], v.get("base_rate_log_loss"),
             v.get("gap_vs_base_rate"), " ".join(v.get("fold_combiners") or [])]
            for c, v in sorted(check["per_coin"].items())]
    p = check.get("pooled") or {}
    rows.append(["(pooled)", p.get("ensemble"), p.get("best_member"), p.get("best_member_log_loss"), p.get("gap"),
                 p.get("base_rate_log_loss"), p.get("gap_vs_base_rate"), ""])
    worse = check.get("worse_beyond_tolerance") or []
    worse_base = check.get("worse_than_base_rate_beyond_tolerance") or []
    notes = [("worse than the best member beyond the tolerance: " + ", ".join(worse)) if worse else
             "within the tolerance of the best member on every coin"]
    if "worse_than_base_rate_beyond_tolerance" in check:
        notes.append(("worse than the base rate beyond the tolerance: " + ", ".join(worse_base)) if worse_base else
                     "within the tolerance of the base rate on every coin")
    return Table(f"Ensemble vs its best single member and the base rate (h={check['horizon']}, "
                 f"tolerance {check['tolerance']})",
                 ["coin", "ensemble log loss", "best member", "its log loss", "gap", "base-rate log loss",
                  "gap vs base rate", "combiner per fold (pooled choice)"], rows, note="; ".join(notes))


def risk_table(metrics: dict[str, Any]) -> Table | None:
    risk = metrics.get("risk")
    if not risk:
        return None
    rows = []
    for h in sorted((k for k in risk if k.isdigit()), key=int):
        pooled = risk[h]["pooled"]
        for name, v in sorted(pooled["forecasts"].items()):
            rows.append([int(h), name, v.get("n"), v.get("qlike"), v.get("mse_log_var"),
                         get(v, "vs_reference", "qlike_skill"), get(v, "vs_reference", "chance", "p_value")])
    return Table(f"Risk head vs EWMA and HAR-RV (pooled OOS, reference {risk.get('reference')})",
                 ["h", "forecast", "n", "QLIKE", "MSE log var", "QLIKE skill vs ref", "p (joint, vs ref)"], rows,
                 note=f"target: {risk.get('target')}; served: {risk.get('served')}. Lower QLIKE is better.")


def evidence_tables(metrics: dict[str, Any]) -> list[Table]:
    return [t for t in (horizons_table(metrics), ensemble_table(metrics), risk_table(metrics)) if t is not None]
