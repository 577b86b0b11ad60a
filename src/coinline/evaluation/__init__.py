"""Evaluation: probability metrics, naive baselines and a chance test, hindcast/forward checks, and the
deterministic trading simulation. Everything here is pure (arrays / frames in, JSON-safe dicts out)."""

from .baselines import BASELINES, baseline_probabilities, chance_test, skill_scores
from .checks import forward, hindcast, rolling_summary, score_forward
from .metrics import calibration_table, classification_metrics, pointwise_losses
from .simulation import SimulationResult, simulate, target_weights

__all__ = [
    "BASELINES",
    "SimulationResult",
    "baseline_probabilities",
    "calibration_table",
    "chance_test",
    "classification_metrics",
    "forward",
    "hindcast",
    "pointwise_losses",
    "rolling_summary",
    "score_forward",
    "simulate",
    "skill_scores",
    "target_weights",
]
