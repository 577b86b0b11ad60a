"""A training run one step at a time, each step's result kept in the lake, so separate processes (the
Kubeflow components, or a retried pod) can carry it on: prepare -> specialists (per coin, on Ray) and
the global regime model -> ensemble -> evaluate -> simulate (which writes the run's artifacts).

The steps call the same functions as `training.run.train` in the same order of random draws, so a staged
run writes byte-identical `runs/<run_id>/` artifacts (tested). Between steps the state lives under
`work/<run_id>/` as pickles: scratch of one code version, written and read by this module only, never
evidence (the run's manifest names none of it) and safe to delete once the run's manifest exists.
Every step is idempotent: rerunning it rewrites the same bytes. The last step deletes the step results
once the run is written (`keep_work=True` keeps them for inspection).
"""

from __future__ import annotations

import logging
import pickle
from datetime import datetime
from typing import Any, NamedTuple

from coinline.errors import CoinlineError
from coinline.features.frame import build_coin_frames
from coinline.lake.store import Lake
from coinline.training.coin_task import CoinResult, train_specialists
from coinline.training.config import TrainConfig
from coinline.training.executor import map_tasks
from coinline.training.regime_task import RegimeResult
from coinline.training.run import (
    Prepared,
    TrainRun,
    evaluate,
    finish_coins,
    persist_run,
    prepare,
    train_global,
    tune,
    with_simulation,
)

log = logging.getLogger("coinline")

STEPS = ("prepared", "specialists", "regime", "ensemble", "evaluation")


def work_path(run_id: str, step: str) -> str:
    return f"work/{run_id}/{step}.pkl"


def _put(lake: Lake, run_id: str, step: str, value: Any) -> None:
    lake.write_bytes(work_path(run_id, step), pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _get(lake: Lake, run_id: str, step: str, *, missing_ok: bool = False) -> Any:
    data = lake.read_bytes(work_path(run_id, step))
    if data is None:
        if missing_ok:
            return None
        raise CoinlineError(f"training run {run_id}: step result {work_path(run_id, step)} is missing; "
                            f"run the step that writes {step!r} first")
    return pickle.loads(data)  # noqa: S301 (our own scratch in the deployment's lake, see the module doc)


class PreparedRun(NamedTuple):
    run_id: str
    tuning_log: dict[str, Any]      # every trial of the hyperparameter search and the parameters chosen


def prepare_run(lake: Lake, dataset_id: str, cfg: TrainConfig, *, symbols: list[str] | None = None,
                until: datetime | None = None, quote: str = "USD", interval: str = "1h",
                workers: int | None = None, feature_builder=build_coin_frames) -> PreparedRun:
    """Features, run id, look-ahead check and the seeded hyperparameter search."""
    prep = prepare(lake, dataset_id, cfg, symbols=symbols, until=until, quote=quote, interval=interval,
                   feature_builder=feature_builder)
    tuning = tune(prep, workers)
    _put(lake, prep.run_id, "prepared", {"prep": prep, "tuning": tuning})
    log.info("training %s prepared: %d coins", prep.run_id, len(prep.frames))
    return PreparedRun(prep.run_id, tuning["log"])


def _prepared(lake: Lake, run_id: str) -> tuple[Prepared, dict]:
    state = _get(lake, run_id, "prepared")
    return state["prep"], state["tuning"]


def train_specialists_step(lake: Lake, run_id: str, *, workers: int | None = None) -> list[str]:
    """Per-coin specialists (every family x fold x horizon), one Ray task per coin. Returns the coins."""
    prep, tuning = _prepared(lake, run_id)
    frames = [prep.frames[s] for s in sorted(prep.frames)]
    results = map_tasks(train_specialists, frames, shared=(prep.cfg, tuning["params"]), workers=workers)
    _put(lake, run_id, "specialists", results)
    return [r.symbol for r in results]


def train_global_step(lake: Lake, run_id: str) -> dict[str, Any]:
    """The global regime classifier. Returns its out-of-sample metrics."""
    prep, _ = _prepared(lake, run_id)
    regime = train_global(prep)
    _put(lake, run_id, "regime", regime)
    return regime.metrics


def ensemble_step(lake: Lake, run_id: str, *, workers: int | None = None) -> dict[str, Any]:
    """Stack each coin's specialists under the regime posteriors (out-of-fold only; combiner per fold pooled
    over the coins, `training.run.finish_coins`) and compute each coin's metric package. Returns the
    stacking weights per coin."""
    prep, _ = _prepared(lake, run_id)
    specialists: list[CoinResult] = _get(lake, run_id, "specialists")
    regime: RegimeResult = _get(lake, run_id, "regime")
    results = finish_coins(prep.frames, specialists, regime, prep.cfg, workers)
    _put(lake, run_id, "ensemble", results)
    return {r.symbol: r.stacking_weights for r in results}


def evaluate_step(lake: Lake, run_id: str) -> dict[str, Any]:
    """The metric package (OOS metrics, baselines, chance tests, Holm-corrected pooled skill, hindcast and
    forward checks), without the simulation. Returns it."""
    prep, tuning = _prepared(lake, run_id)
    metrics = evaluate(prep, _get(lake, run_id, "ensemble"), _get(lake, run_id, "regime"), tuning)
    _put(lake, run_id, "evaluation", metrics)
    return metrics


def simulate_step(lake: Lake, run_id: str, *, keep_work: bool = False) -> TrainRun:
    """The deterministic trading simulation of the ensemble's signals; then the run's artifacts and
    manifest under `runs/<run_id>/`, exactly as `train` writes them; then (unless `keep_work`) the step
    results are deleted. A rerun after that returns the written run (a retried pod finds its work done)."""
    evaluation = _get(lake, run_id, "evaluation", missing_ok=True)
    if evaluation is None:
        written = _written_run(lake, run_id)
        if written is not None:
            return written
        evaluation = _get(lake, run_id, "evaluation")  # missing and no run written: names the step to run
    prep, tuning = _prepared(lake, run_id)
    results = _get(lake, run_id, "ensemble")
    metrics = with_simulation(prep, results, evaluation)
    run = persist_run(lake, prep, results, _get(lake, run_id, "regime"), tuning, metrics)
    if not keep_work:
        clear_work(lake, run_id)
    return run


def _written_run(lake: Lake, run_id: str) -> TrainRun | None:
    manifest = lake.read_json(f"runs/{run_id}/manifest.json")
    metrics = lake.read_json(f"runs/{run_id}/metrics.json")
    return TrainRun(run_id, metrics, manifest) if manifest is not None and metrics is not None else None


def clear_work(lake: Lake, run_id: str) -> int:
    """Delete a run's step results (after its manifest exists). Returns how many files went."""
    if lake.read_bytes(f"runs/{run_id}/manifest.json") is None:
        raise CoinlineError(f"training run {run_id} has no manifest yet; its step results are still needed")
    names = lake.list(f"work/{run_id}/")
    for name in names:
        lake.delete(name)
    return len(names)
