"""Training configuration: one frozen object, hashed into every run's lineage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class FeatureConfig:
    short: int = 6          # bars (hours on 1h data) per context resolution
    medium: int = 24
    long: int = 168


@dataclass(frozen=True)
class FoldConfig:
    n_folds: int = 3
    mode: str = "expanding"         # expanding | rolling
    test_bars: int = 720            # bars per test fold
    min_train_bars: int = 2000
    calib_fraction: float = 0.2     # tail of each training window held out for calibration/early stopping
    embargo_bars: int | None = None  # default: the longest horizon (purge gap between train and test)


@dataclass(frozen=True)
class SequenceConfig:
    window: int = 32        # bars of context per sample
    hidden: int = 16
    layers: int = 1
    heads: int = 2          # transformer
    epochs: int = 4
    batch: int = 256
    patience: int = 2
    lr: float = 3e-3
    max_train_samples: int = 2000   # most recent training samples used (keeps CPU time bounded)
    # "cpu" (bit-identical reruns) or "cuda" / "cuda:N" (the trainer image built with TORCH_VARIANT=cuXYZ on a
    # GPU node; a run that asks for CUDA where torch sees no GPU fails instead of quietly using the CPU)
    device: str = "cpu"


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 4                 # per tree family, on the tuning coin(s)
    tune_symbols: tuple[str, ...] = ("BTC",)


@dataclass(frozen=True)
class TrainConfig:
    horizons: tuple[int, ...] = (1, 4, 24)      # bars ahead
    primary_horizon: int = 4                    # the horizon the ensemble, simulation and gates use
    families: tuple[str, ...] = ("xgboost", "lightgbm", "random_forest", "lstm", "transformer")
    seed: int = 42
    max_history_bars: int | None = 6000         # most recent bars per coin used for training (None: all)
    stacking_c: float = 0.05                    # L2 strength of the meta-learner (29 inputs, ~10^3 rows/fold)
    ensemble_tolerance: float = 0.001           # OOS log loss the ensemble may lose to its best member (reported)
    in_sample_rows: int = 1000                  # last training rows scored for the (labelled) in-sample metrics
    features: FeatureConfig = field(default_factory=FeatureConfig)
    folds: FoldConfig = field(default_factory=FoldConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    max_position: float = 0.2        # per-coin weight limit in simulation
    max_exposure: float = 1.0        # gross exposure limit

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def load_train_config(path: str | None) -> TrainConfig:
    """TrainConfig from a JSON file of overrides (nested by section), or the defaults."""
    from pathlib import Path

    from coinline.errors import ConfigError

    if not path:
        return TrainConfig()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"COINLINE_TRAIN_CONFIG={path}: cannot read JSON ({exc})") from None
    return train_config_from_json(text, f"COINLINE_TRAIN_CONFIG={path}")


def train_config_from_json(text: str, source: str = "train_config_json") -> TrainConfig:
    """TrainConfig from JSON overrides (nested by section); blank text means the defaults. `source` names
    where the JSON came from in error messages."""
    from dataclasses import fields, is_dataclass, replace

    from coinline.errors import ConfigError

    if not text.strip():
        return TrainConfig()
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: cannot read JSON ({exc})") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: expected a JSON object of settings, got {type(overrides).__name__}")

    def apply(obj, values: dict, where: str):
        known = {f.name: f for f in fields(obj)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown setting {where}{key}")
            current = getattr(obj, key)
            if is_dataclass(current):
                changes[key] = apply(current, value, f"{where}{key}.")
            else:
                changes[key] = _coerce(value, current, f"{where}{key}", source)
        return replace(obj, **changes)

    return apply(TrainConfig(), overrides, "")


def _coerce(value, current, name: str, source: str):
    """Convert a JSON override to the type of the default it replaces (None stays None)."""
    from coinline.errors import ConfigError

    if value is None or current is None:
        return value
    try:
        if isinstance(current, tuple):
            return tuple(value)
        if isinstance(current, bool):
            return bool(value)
        return type(current)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name}={value!r} is not a {type(current).__name__}") from None


def config_from_dict(data: dict) -> TrainConfig:
    """Rebuild the TrainConfig stored with a run (`config.json`), so a replay uses exactly it."""
    from dataclasses import fields, is_dataclass

    def build(cls, values: dict):
        defaults = cls()
        kwargs = {}
        for f in fields(cls):
            if f.name in values:
                current, value = getattr(defaults, f.name), values[f.name]
                if is_dataclass(current):
                    value = build(type(current), value)
                elif isinstance(current, tuple):
                    value = tuple(value)
                kwargs[f.name] = value
        return cls(**kwargs)

    return build(TrainConfig, data)
