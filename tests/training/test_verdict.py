"""The run verdict (`coinline.training.verdict`): one line from the metrics' pooled skill, both ways, and the
report's summary badge saying the same thing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from coinline.report import build_report
from coinline.training.skill import pooled_skill
from coinline.training.verdict import run_verdict, skill_verdict


def _row(h: int, model: str, p_holm: float, alpha: float = 0.05) -> dict:
    return {"horizon": h, "model": model, "p_value_holm": p_holm, "significant": p_holm <= alpha,
            "chance": {"p_value": p_holm / 2}}


def _skill(*rows: dict, alpha: float = 0.05) -> dict:
    by_model = {f"{r['horizon']}/{r['model']}": r for r in rows}
    return {"alpha": alpha, "correction": "holm", "tests": len(by_model), "by_model": by_model,
            "any_significant": any(r["significant"] for r in by_model.values())}


def _pooled(signal: float, *, seed: int, n: int = 1500, coins: int = 2) -> dict:
    """Pooled predictions of two models on `coins` coins: `model` knows the outcome up to `signal` (0: a coin
    flip it cannot see), `noise` never does; the base rate is 0.5."""
    rng = np.random.default_rng(seed)
    pooled: dict = {}
    for model, strength in (("model", signal), ("noise", 0.0)):
        parts: dict[str, list[np.ndarray]] = {"y": [], "p": [], "base": [], "t": []}
        for _ in range(coins):
            y = rng.integers(0, 2, n)
            parts["y"].append(y.astype(float))
            parts["p"].append(np.clip(0.5 + strength * (2 * y - 1) + rng.normal(0, 0.05, n), 0.05, 0.95))
            parts["base"].append(np.full(n, 0.5))
            parts["t"].append(np.arange(n))
        pooled[(1, model)] = parts
    return pooled


def test_no_significant_row_says_no_directional_skill_and_counts_what_was_tested():
    skill = _skill(_row(1, "xgboost", 0.4), _row(1, "lightgbm", 1.0), _row(4, "xgboost", 0.2),
                   _row(4, "lightgbm", 0.07), _row(4, "ensemble", 0.9))
    v = skill_verdict(skill, "run-abc")
    assert not v.found
    assert v.line.startswith("no directional skill: 3 models x 2 horizons tested (5 tests), none beats the base "
                             "rate under the joint test (Holm, alpha 0.05) [evidence: runs/run-abc/metrics.json, skill: ")
    assert "joint block-bootstrap" in v.line and v.line.endswith("]")
    assert v.badge == "no directional skill in 5 tests (Holm, alpha 0.05)"


def test_a_significant_row_names_the_strongest_model_horizon_and_its_adjusted_p():
    skill = _skill(_row(1, "xgboost", 0.03), _row(1, "random_forest", 0.004), _row(4, "lightgbm", 0.6))
    v = skill_verdict(skill)
    assert v.found
    assert v.line.startswith("directional skill: random_forest at h=1 beats the base rate (p=0.004 "
                             "Holm-adjusted, alpha 0.05; 2 of 3 tests significant) [evidence: the run's metrics, ")
    assert v.badge == "directional skill: random_forest at h=1 (Holm p=0.004)"


def test_significance_follows_the_metrics_flag_and_alpha_not_a_threshold_of_its_own():
    strict = _skill(_row(1, "xgboost", 0.03, alpha=0.01), alpha=0.01)
    assert not skill_verdict(strict).found and "alpha 0.01" in skill_verdict(strict).line


def test_empty_or_missing_skill_is_no_skill_with_zero_tests():
    assert run_verdict({}).line.startswith("no directional skill: 0 models x 0 horizons tested (0 tests)")


@pytest.mark.parametrize("signal, found", [(0.2, True), (0.0, False)])
def test_the_verdict_reads_pooled_skill_as_training_writes_it(signal, found):
    skill = pooled_skill(_pooled(signal, seed=5), seed=5, block=24)
    v = run_verdict({"run_id": "run-x", "skill": skill})
    assert v.found is found is skill["any_significant"]
    if found:
        assert v.line.startswith("directional skill: model at h=1 beats the base rate")
        p = float(re.search(r"\(p=([0-9.e-]+) Holm", v.line).group(1))
        assert p == pytest.approx(skill["by_model"]["1/model"]["p_value_holm"], rel=1e-2)
    else:
        assert v.line.startswith("no directional skill: 2 models x 1 horizon tested (2 tests)")


def test_the_same_metrics_give_the_same_line():
    skill = pooled_skill(_pooled(0.2, seed=9), seed=9, block=24)
    assert run_verdict({"skill": skill}) == run_verdict({"skill": skill})


@pytest.mark.parametrize("skill, badge", [
    (_skill(_row(1, "xgboost", 0.5)), "no directional skill in 1 test (Holm, alpha 0.05)"),
    (_skill(_row(4, "ensemble", 0.01)), "directional skill: ensemble at h=4 (Holm p=0.01)"),
])
def test_the_report_summary_badge_is_the_verdict(lake, skill, badge):
    lake.write_json("runs/run-v/metrics.json", {"run_id": "run-v", "dataset_id": "none", "per_coin": {},
                                                "simulation": {}, "skill": skill})
    html = build_report(lake, "run-v")
    summary = re.search(r'<section id="summary".*?</section>', html, re.S).group(0)
    assert badge in summary and "significant skill found" not in summary
