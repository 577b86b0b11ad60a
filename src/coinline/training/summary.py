"""A run's metric package as a compact table: per coin x horizon x model, OOS against the baselines."""

from __future__ import annotations

from typing import Any


def summary_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for symbol, per_h in sorted(metrics.get("per_coin", {}).items()):
        for h, block in sorted(per_h.items(), key=lambda kv: int(kv[0])):
            base = block["baselines"]["base_rate"]
            for name, m in sorted(block["models"].items()):
                oos = m["oos"]
                chance = m.get("chance_vs_base_rate", {})
                rows.append({
                    "symbol": symbol, "h": h, "model": name, "n": oos.get("n"),
                    "acc": _f(oos.get("accuracy")), "bal_acc": _f(oos.get("balanced_accuracy")),
                    "brier": _f(oos.get("brier")), "logloss": _f(oos.get("log_loss")), "ece": _f(oos.get("ece")),
                    "base_logloss": _f(base.get("log_loss")),
                    "significant": chance.get("significant"),
                })
    return rows


def _f(x) -> str:
    return "" if x is None else f"{x:.4f}"
