"""Promotion: a versioned policy, four mandatory gates with deterministic reason codes, and the registry
(one active pointer changed only by compare-and-swap, an activation history, rollback)."""

from coinline.promotion.decide import STEPS, crash_hook_from_env, promote, rollback, verify_run
from coinline.promotion.gates import Evidence, GateResult, evaluate_gates
from coinline.promotion.policy import Policy, load_policy, parse_policy
from coinline.promotion.registry import RegistryConflict, history, lineage, read_active, repair_history

__all__ = ["STEPS", "Evidence", "GateResult", "Policy", "RegistryConflict", "crash_hook_from_env", "evaluate_gates",
           "history", "lineage", "load_policy", "parse_policy", "promote", "read_active", "repair_history",
           "rollback", "verify_run"]
