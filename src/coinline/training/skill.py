"""Skill across the whole run, corrected for how many models were tried.

Per (horizon, model) the out-of-sample predictions of every coin are pooled and compared with the base
rate by the JOINT block-bootstrap test (`evaluation.joint`): loss differences are summed over coins per time
stamp and blocks of time are resampled, so coins that move together are never counted as independent
evidence. The p-values of all (horizon, model) pairs are then adjusted with Holm's step-down method, so "significant" means: better than the base rate beyond what chance allows
among everything this run tried. This is the evidence a promotion gate may use; a single coin's
uncorrected p-value is not (with 30 coins x 3 horizons x 6 models, some will look lucky).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coinline.evaluation.joint import joint_model_test
from coinline.evaluation.metrics import classification_metrics
from coinline.models.base import derive_seed


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1)."""
    order = sorted(p_values, key=lambda k: (p_values[k], k))
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        out[key] = running
    return out


def pooled_skill(pooled: dict[tuple[int, str], dict[str, list[np.ndarray]]], *, seed: int, block: int,
                 alpha: float = 0.05) -> dict[str, Any]:
    """`pooled[(h, model)] = {"y": [...], "p": [...], "base": [...], "t": [...]}` (one array per coin; t: the
    rows' open times, which align the coins)."""
    rows: dict[str, dict[str, Any]] = {}
    for (h, model), parts in sorted(pooled.items()):
        y, p, base, t = (np.concatenate(parts[k]) for k in ("y", "p", "base", "t"))
        test = joint_model_test(t, y.astype(int), p, base, n_boot=500, seed=derive_seed(seed, "pooled", h, model),
                                block=block)
        rows[f"{h}/{model}"] = {"horizon": h, "model": model, "oos": classification_metrics(y.astype(int), p),
                                "base_rate": classification_metrics(y.astype(int), base), "chance": test}
    adjusted = holm({k: float(v["chance"]["p_value"]) for k, v in rows.items()})
    for key, row in rows.items():
        row["p_value_holm"] = adjusted[key]
        row["significant"] = adjusted[key] <= alpha
    return {"alpha": alpha, "correction": "holm", "tests": len(rows), "by_model": rows,
            "any_significant": any(r["significant"] for r in rows.values())}
