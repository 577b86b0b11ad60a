"""Seeded hyperparameter search for the tree families on Ray Tune.

The candidate configurations are drawn up front from
`np.random.default_rng(derive_seed(seed, family, "tune-candidates"))` over the search space, so the
same seed gives the same candidates on any cluster (and each family its own stream); Ray Tune only
runs them (a grid over the candidate index, 1 CPU per trial). Each trial fits the family on the first `inner_fraction` of
`train_idx`, calibrates on the rest of `train_idx`, and scores log loss on `calib_idx` (the validation
slice). All trials fit with one seed, `derive_seed(seed, family, "tune-fit")`, so they differ only in their
parameters. Every fit is single-threaded and seeded, so scores, and hence the winner (lowest score, ties
broken by trial index), are identical across runs and worker counts.

Ray: as every per-coin fan-out gets it (`training.executor.ensure_ray`): an already initialized Ray is used
as is, else the cluster `RAY_ADDRESS` names, else a local Ray over `num_cpus` (default: the CPUs this
process may use). Tune's result files go to a temporary directory removed afterwards.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from coinline.models.base import derive_seed
from coinline.models.trees import SEARCH_SPACES, TREE_FAMILIES, make_tree_model
from coinline.training.executor import ensure_ray

METRIC = "val_log_loss"


@dataclass(frozen=True)
class TuneResult:
    family: str
    best_params: dict[str, Any]          # the winning candidate (overrides of DEFAULT_PARAMS[family])
    best_score: float
    trials: tuple[dict[str, Any], ...]   # {"trial_index", "params", "score"[, "error"]}, by trial index
    metric: str = METRIC
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "metric": self.metric,
            "seed": self.seed,
            "best_params": dict(self.best_params),
            "best_score": self.best_score,
            "trials": [dict(t) for t in self.trials],
        }


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


def sample_candidates(space: Mapping[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` parameter dicts drawn from `space` with `np.random.default_rng(seed)` (keys in sorted order).

    A spec is ("int" | "logint" | "uniform" | "loguniform", lo, hi) with inclusive bounds, or
    ("choice", (v, ...)); any other value is passed through unchanged.
    """
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        params: dict[str, Any] = {}
        for key in sorted(space):
            spec = space[key]
            kind = spec[0] if isinstance(spec, tuple) and spec and isinstance(spec[0], str) else None
            if kind == "int":
                params[key] = int(rng.integers(int(spec[1]), int(spec[2]) + 1))
            elif kind == "logint":
                lo, hi = math.log(spec[1]), math.log(spec[2] + 1)
                params[key] = int(min(spec[2], max(spec[1], math.floor(math.exp(rng.uniform(lo, hi))))))
            elif kind == "uniform":
                params[key] = _sig(rng.uniform(spec[1], spec[2]))
            elif kind == "loguniform":
                params[key] = _sig(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
            elif kind == "choice":
                choices = list(spec[1])
                v = choices[int(rng.integers(len(choices)))]
                params[key] = v.item() if isinstance(v, np.generic) else v
            else:
                params[key] = spec
        out.append(params)
    return out


def inner_split(train_idx: np.ndarray, inner_fraction: float = 0.8, gap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, calibration rows) inside train_idx: the first `inner_fraction`, then the rest after `gap`."""
    train_idx = np.asarray(train_idx)
    k = int(round(len(train_idx) * inner_fraction))
    return train_idx[:k], train_idx[k + gap:]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def score_candidate(family: str, params: Mapping[str, Any], F: np.ndarray, targets: Mapping[str, np.ndarray], *,
                    fit_idx: np.ndarray, inner_calib_idx: np.ndarray, val_idx: np.ndarray, seed: int) -> float:
    """Validation log loss of one candidate (the same computation every Tune trial runs)."""
    model = make_tree_model(family, params).fit(F, targets, train_idx=fit_idx, calib_idx=inner_calib_idx, seed=seed)
    y = np.asarray(targets["dir"])[np.asarray(val_idx)]
    return _log_loss(y, model.predict_proba(F, val_idx))


def _trial(config: dict[str, Any], *, F: np.ndarray, targets: Mapping[str, np.ndarray], family: str,
           candidates: list[dict[str, Any]], fit_idx: np.ndarray, inner_calib_idx: np.ndarray,
           val_idx: np.ndarray, fit_seed: int) -> None:
    from ray import tune

    i = int(config["trial_index"])
    score = score_candidate(family, candidates[i], F, targets, fit_idx=fit_idx, inner_calib_idx=inner_calib_idx,
                            val_idx=val_idx, seed=fit_seed)
    tune.report({METRIC: score, "trial_index": i})


def tune_family(family: str, F: np.ndarray, targets: Mapping[str, np.ndarray], *, train_idx: np.ndarray,
                calib_idx: np.ndarray, trials: int, seed: int, space: Mapping[str, Any] | None = None,
                inner_fraction: float = 0.8, gap: int = 0, num_cpus: int | None = None,
                storage_path: str | None = None) -> TuneResult:
    """Search `trials` seeded candidates for `family`; best = lowest validation log loss on calib_idx.

    `gap` rows are skipped between the inner fit and inner calibration parts of train_idx (use the label
    horizon to purge overlapping labels). `num_cpus` only applies when this call starts a local Ray.
    """
    if family not in TREE_FAMILIES:
        raise ValueError(f"unknown tree family {family!r}; expected one of {TREE_FAMILIES}")
    if trials < 1:
        raise ValueError("trials must be >= 1")
    space = SEARCH_SPACES[family] if space is None else space
    candidates = sample_candidates(space, trials, derive_seed(seed, family, "tune-candidates"))
    fit_idx, inner_calib_idx = inner_split(train_idx, inner_fraction, gap)
    val_idx = np.asarray(calib_idx)
    if len(fit_idx) == 0 or len(val_idx) == 0:
        raise ValueError("tuning needs non-empty train and validation (calib) rows")
    fit_seed = derive_seed(seed, family, "tune-fit")

    from ray import tune

    ensure_ray(num_cpus)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, F=np.asarray(F), targets={k: np.asarray(v) for k, v in targets.items()}, family=family,
            candidates=candidates, fit_idx=fit_idx, inner_calib_idx=inner_calib_idx, val_idx=val_idx,
            fit_seed=fit_seed,
        ),
        {"cpu": 1},
    )
    tmp = tempfile.mkdtemp(prefix="coinline-tune-")
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial_index": tune.grid_search(list(range(trials)))},
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", num_samples=1, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"tune-{family}", storage_path=storage_path or tmp, verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        with contextlib.redirect_stdout(sys.stderr):   # Tune prints its tables even at verbose=0; stdout is
            grid = tuner.fit()                           # the CLI's (pure JSON with --json)
        scores: dict[int, float] = {}
        errors: dict[int, str] = {}
        for r in grid:
            i = int(r.config["trial_index"])
            if r.error is not None or not r.metrics or METRIC not in r.metrics:
                errors[i] = repr(r.error)[:500] if r.error is not None else "no metric reported"
            else:
                scores[i] = float(r.metrics[METRIC])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    log: list[dict[str, Any]] = []
    for i, params in enumerate(candidates):
        entry: dict[str, Any] = {"trial_index": i, "params": dict(params), "score": scores.get(i, math.inf)}
        if i not in scores:
            entry["error"] = errors.get(i, "trial missing from results")
        log.append(entry)
    if not scores:
        raise RuntimeError(f"all {trials} {family} tuning trials failed: {log[0].get('error')}")
    best = min((e for e in log if "error" not in e), key=lambda e: (e["score"], e["trial_index"]))
    return TuneResult(family=family, best_params=dict(best["params"]), best_score=float(best["score"]),
                      trials=tuple(log), metric=METRIC, seed=int(seed))
