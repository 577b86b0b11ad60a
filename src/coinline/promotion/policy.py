"""The promotion policy: one versioned JSON file of gate thresholds, validated and hashed.

Format (every key required, unknown keys rejected; see `policies/default-v2.json`):
    policy_version            name of this policy version, recorded in every decision
    description               free text
    evidence.model            the model whose pooled evidence is judged (the ensemble)
    evidence.horizon          "primary" (the run's primary horizon) or a horizon in bars
    oos.alpha                 Holm-corrected p-value of the chance test must be <= alpha
    oos.min_log_loss_skill    pooled OOS log-loss skill (1 - ll_model / ll_baseline) must be > this,
                              against every baseline in oos.baselines
    oos.baselines             baseline names (base_rate, momentum, random_walk)
    oos.min_samples           pooled OOS sample count must be >= this
    oos.max_ece               pooled OOS expected calibration error must be <= this
    oos.active_tolerance      log-loss skill vs base rate must be >= the active set's minus this
    simulation.max_drawdown   simulation max drawdown must be <= this
    simulation.min_sharpe     simulation Sharpe must be >= this
    simulation.max_turnover   simulation turnover (|dw| per period) must be <= this
    simulation.min_periods    simulation must have at least this many periods
    risk.max_position         observed per-coin position must be <= this (and <= the simulation's own cap)
    risk.max_gross_exposure   observed gross exposure, and the simulation's exposure cap, must be <= this
    risk.max_coin_weight      the simulation's per-coin weight cap must be <= this
    audit.required_artifacts  artifact names the run manifest must list (and that must verify)
    audit.required_prefixes   the manifest must list at least one artifact under each prefix
    audit.verify_dataset      re-hash the run's dataset rows against its manifest
    forward (optional section; absent = no forward gate, as in default-v1)
    forward.mode              "off" | "when_available" (judge forward evidence once there is enough; until
                              then the gate passes and says so) | "required" (no promotion without it)
    forward.min_matured_rows  matured forecasts the candidate and the champion must share (same coin,
                              horizon and decision time in the `forecasts` ledger) before they are compared
    forward.horizon           "primary" or a horizon in bars
    forward.tolerance         the candidate's forward log loss may exceed the champion's by at most this
    forward.max_shadows       rejected candidates kept forecasting in shadow (oldest retired beyond it)
    horizons (optional section; absent = only the evidence horizon is judged, as in default-v1)
    horizons.served_not_worse_than_base_rate  every horizon the set serves must not lose to the base rate out
                              of sample (pooled log loss of what is served there: the ensemble at the primary
                              horizon, the specialists' mean elsewhere), by more than horizons.tolerance

The policy hash is SHA-256 over the canonical JSON (sorted keys, no whitespace), so reformatting the
file does not change it but any threshold change does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from coinline.errors import ConfigError

DEFAULT_POLICY = "default-v2"

_NUM = (int, float)
_SCHEMA: dict[str, Any] = {
    "policy_version": str,
    "description": str,
    "evidence": {"model": str, "horizon": (str, int)},
    "oos": {"alpha": _NUM, "min_log_loss_skill": _NUM, "baselines": list, "min_samples": int,
            "max_ece": _NUM, "active_tolerance": _NUM},
    "simulation": {"max_drawdown": _NUM, "min_sharpe": _NUM, "max_turnover": _NUM, "min_periods": int},
    "risk": {"max_position": _NUM, "max_gross_exposure": _NUM, "max_coin_weight": _NUM},
    "audit": {"required_artifacts": list, "required_prefixes": list, "verify_dataset": bool},
    "forward": {"mode": str, "min_matured_rows": int, "horizon": (str, int), "tolerance": _NUM, "max_shadows": int},
    "horizons": {"served_not_worse_than_base_rate": bool, "tolerance": _NUM},
}
_OPTIONAL = {"forward", "horizons"}
FORWARD_MODES = ("off", "when_available", "required")


@dataclass(frozen=True)
class Policy:
    version: str
    sha256: str
    source: str
    data: dict[str, Any]

    def section(self, name: str) -> dict[str, Any]:
        return self.data[name]

    def to_record(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "source": self.source}


def canonical_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _check(data: Any, schema: dict[str, Any], where: str, source: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"promotion policy {source}: {where or 'top level'} must be an object")
    unknown = sorted(set(data) - set(schema))
    missing = sorted(set(schema) - set(data) - (_OPTIONAL if not where else set()))
    if unknown or missing:
        raise ConfigError(f"promotion policy {source}: {where or 'top level'} unknown keys {unknown}, "
                          f"missing keys {missing}")
    for key, kind in schema.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(kind, dict):
            _check(value, kind, f"{where}{key}.", source)
        elif isinstance(value, bool) and kind is not bool:
            raise ConfigError(f"promotion policy {source}: {where}{key} must not be a boolean")
        elif not isinstance(value, kind):
            raise ConfigError(f"promotion policy {source}: {where}{key}={value!r} has the wrong type")


def parse_policy(data: Any, source: str) -> Policy:
    _check(data, _SCHEMA, "", source)
    horizon = data["evidence"]["horizon"]
    if isinstance(horizon, str) and horizon != "primary":
        raise ConfigError(f"promotion policy {source}: evidence.horizon must be \"primary\" or an integer")
    if not 0 < data["oos"]["alpha"] <= 1:
        raise ConfigError(f"promotion policy {source}: oos.alpha must lie in (0, 1]")
    fwd = data.get("forward")
    if fwd is not None:
        if fwd["mode"] not in FORWARD_MODES:
            raise ConfigError(f"promotion policy {source}: forward.mode must be one of {', '.join(FORWARD_MODES)}")
        if isinstance(fwd["horizon"], str) and fwd["horizon"] != "primary":
            raise ConfigError(f"promotion policy {source}: forward.horizon must be \"primary\" or an integer")
        if fwd["min_matured_rows"] < 1 or fwd["max_shadows"] < 0 or fwd["tolerance"] < 0:
            raise ConfigError(f"promotion policy {source}: forward.min_matured_rows must be >= 1, "
                              f"forward.max_shadows and forward.tolerance >= 0")
    for name in ("baselines",):
        if not all(isinstance(b, str) for b in data["oos"][name]):
            raise ConfigError(f"promotion policy {source}: oos.{name} must be a list of names")
    for name in ("required_artifacts", "required_prefixes"):
        if not all(isinstance(b, str) for b in data["audit"][name]):
            raise ConfigError(f"promotion policy {source}: audit.{name} must be a list of names")
    digest = hashlib.sha256(canonical_bytes(data)).hexdigest()
    return Policy(version=data["policy_version"], sha256=digest, source=source, data=data)


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in `path`, or the packaged default (`policies/default-v2.json`) when None."""
    if path is None:
        ref = resources.files("coinline.promotion").joinpath(f"policies/{DEFAULT_POLICY}.json")
        return parse_policy(json.loads(ref.read_text()), f"package:{DEFAULT_POLICY}")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"promotion policy {path}: cannot read JSON ({exc})") from None
    return parse_policy(data, str(path))
