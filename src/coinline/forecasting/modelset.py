"""A model set: a finished training run loaded so that it can forecast, or the declared baseline.

A run stores, beside its evidence, everything needed to predict (see `training.artifacts.modelset_doc`):
per coin and horizon the last walk-forward fold's calibrated specialists, the coin's stacking
meta-learner (the one that made the last test fold's stacked predictions) and, at every other horizon, the
combiner its last fold served (base rate, mean or one member; sets stored before it existed have none and
serve the mean there), the global regime model, the
feature names, and the climatology / momentum baselines and risk scale fitted on the same window. Every
file is checked against the run manifest's SHA-256 before anything is unpickled.

With no active set the champion is the declared baseline, `baseline:climatology`: P(up) = the frequency of
up moves over the trailing window, so forecasts always exist and a challenger must beat something.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from coinline.errors import CoinlineError
from coinline.lake.store import Lake
from coinline.training.config import TrainConfig, config_from_dict

BASELINE_ID = "baseline:climatology"
BASELINE_WINDOW_BARS = 6000       # trailing labelled bars the climatology is measured on
TREES = ("xgboost", "lightgbm", "random_forest")


class ModelSetError(CoinlineError):
    """A model set cannot be loaded: unknown run, missing or altered artifact, older run format."""


@dataclass
class ModelSet:
    set_id: str
    set_hash: str
    cfg: TrainConfig
    quote: str
    interval: str
    source: str
    symbols: tuple[str, ...]
    horizons: tuple[int, ...]
    primary_horizon: int
    dataset_hash: str
    dataset_start: str | None = None
    doc: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)   # symbol -> h -> family -> model
    metas: dict[str, Any] = field(default_factory=dict)                           # symbol -> meta-learner
    horizon_metas: dict[str, dict[int, Any]] = field(default_factory=dict)       # symbol -> h -> combiner (h != primary)
    regime: Any = None

    @property
    def is_baseline(self) -> bool:
        return self.set_id == BASELINE_ID

    def coin(self, symbol: str) -> dict[str, Any]:
        try:
            return self.doc["coins"][symbol]
        except KeyError:
            raise ModelSetError(f"model set {self.set_id} was not trained on {symbol}; it knows "
                                f"{', '.join(self.symbols)}") from None

    def summary(self) -> dict[str, Any]:
        return {"model_set": self.set_id, "set_hash": self.set_hash, "quote": self.quote, "interval": self.interval,
                "source": self.source, "symbols": list(self.symbols), "horizons": list(self.horizons),
                "primary_horizon": self.primary_horizon, "dataset_hash": self.dataset_hash}


def _verified(lake: Lake, run_id: str, name: str, manifest: dict) -> bytes:
    expected = manifest.get("artifacts", {}).get(name)
    data = lake.read_bytes(f"runs/{run_id}/{name}")
    if data is None:
        raise ModelSetError(f"run {run_id}: artifact {name} is missing from the lake")
    if expected is None:
        raise ModelSetError(f"run {run_id}: artifact {name} is not listed in the run manifest")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelSetError(f"run {run_id}: artifact {name} fails its hash (sha256 {actual[:12]}, manifest "
                            f"{expected[:12]}); refusing to load an altered model set")
    return data


def _model(family: str, blob: bytes):
    if family in TREES:
        from coinline.models.trees import from_bytes

        return from_bytes(blob)
    from coinline.models.sequence import SequenceModel

    return SequenceModel.from_bytes(blob)


def load_run_set(lake: Lake, run_id: str, *, symbols: list[str] | None = None) -> ModelSet:
    """Load run `run_id` as a model set (only `symbols`' models when given), every artifact hash-checked."""
    from coinline.models.regime import RegimeClassifier
    from coinline.models.stacking import StackingMetaLearner

    manifest = lake.read_json(f"runs/{run_id}/manifest.json")
    if manifest is None:
        raise ModelSetError(f"unknown run id {run_id}: no runs/{run_id}/manifest.json in {lake.root}")
    if "modelset.json" not in manifest.get("artifacts", {}):
        raise ModelSetError(f"run {run_id} stored no model set (trained before runs could forecast); "
                            f"train it again to forecast with it")
    doc = json.loads(_verified(lake, run_id, "modelset.json", manifest))
    config = json.loads(_verified(lake, run_id, "config.json", manifest))
    cfg = config_from_dict(config["config"])
    wanted = sorted(doc["coins"]) if symbols is None else symbols
    ms = ModelSet(run_id, manifest["content_hash"], cfg, doc["quote"], doc["interval"], doc["source"],
                  tuple(doc["symbols"]), tuple(int(h) for h in doc["horizons"]), int(doc["primary_horizon"]),
                  doc["dataset_hash"], doc.get("dataset_start"), doc)
    for sym in wanted:
        coin = ms.coin(sym)
        ms.models[sym] = {int(h): {fam: _model(fam, _verified(lake, run_id, path, manifest))
                                   for fam, path in spec["models"].items()}
                          for h, spec in coin["horizons"].items()}
        ms.metas[sym] = (StackingMetaLearner.from_bytes(_verified(lake, run_id, coin["meta"], manifest))
                         if coin.get("meta") else None)
        ms.horizon_metas[sym] = {int(h): StackingMetaLearner.from_bytes(_verified(lake, run_id, spec["meta"], manifest))
                                 for h, spec in coin["horizons"].items() if spec.get("meta")}
    if doc.get("regime"):
        ms.regime = RegimeClassifier.from_bytes(_verified(lake, run_id, doc["regime"], manifest))
    return ms


def baseline_set(cfg: TrainConfig, *, quote: str, interval: str, source: str, symbols: list[str]) -> ModelSet:
    """The declared baseline champion: climatology over the trailing window (no fitted models)."""
    ident = {"model_set": BASELINE_ID, "window_bars": BASELINE_WINDOW_BARS, "config_hash": cfg.config_hash()}
    set_hash = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return ModelSet(BASELINE_ID, set_hash, cfg, quote, interval, source, tuple(sorted(symbols)),
                    tuple(cfg.horizons), cfg.primary_horizon, dataset_hash="", doc={"coins": {}})


def active_run_id(lake: Lake) -> str | None:
    from coinline.promotion.registry import read_active

    record, _ = read_active(lake)
    return None if record is None else record["run_id"]
