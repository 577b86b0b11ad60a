"""A training run: dataset -> features -> look-ahead check -> regime model -> tuning -> per-coin fan-out
-> ensemble -> evaluation (baselines, chance tests, hindcast/forward, simulation) -> artifacts.

The run id is derived from its inputs (dataset hash, config hash, symbols, cut-off), so the same training
twice writes the same artifacts with the same content hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from coinline.datasets.materialize import load_dataset
from coinline.errors import CoinlineError
from coinline.evaluation.checks import forward, hindcast, rolling_summary
from coinline.evaluation.simulation import simulate
from coinline.features.frame import CoinFrame, build_coin_frames
from coinline.features.lookahead import lookahead_check
from coinline.lake.store import Lake
from coinline.models.stacking import pooled_choice
from coinline.timeframes import interval_ms
from coinline.training.artifacts import write_run
from coinline.training.coin_task import (
    CoinResult,
    coin_folds,
    finish_coin,
    stacking_params,
    stacking_record,
    train_specialists,
)
from coinline.training.config import TrainConfig
from coinline.training.executor import map_tasks
from coinline.training.regime_task import (
    RegimeResult,
    close_matrix,
    posteriors_for,
    regime_inputs,
    train_regime,
)
from coinline.training.risk_check import risk_metrics
from coinline.training.skill import pooled_skill
from coinline.training.tune import tune_family

log = logging.getLogger("coinline")


class LeakageError(CoinlineError):
    """The look-ahead check found a feature that changes when future bars are removed."""


@dataclass(frozen=True)
class TrainRun:
    run_id: str
    metrics: dict[str, Any]
    manifest: dict[str, Any]


def _candles(lake: Lake, dataset_id: str, quote: str, symbols, until: datetime | None) -> tuple[pd.DataFrame, dict]:
    table, manifest = load_dataset(lake, dataset_id)
    df = table.to_pandas()
    df = df[df["quote"] == quote]
    if symbols:
        df = df[df["symbol"].isin([s.upper() for s in symbols])]
    if until is not None:
        df = df[df["open_time"] <= pd.Timestamp(until)]
    if df.empty:
        raise CoinlineError(f"dataset {dataset_id} has no {quote} candles for symbols={symbols or 'all'}")
    return df.reset_index(drop=True), manifest


def _run_id(dataset_hash: str, cfg: TrainConfig, symbols: list[str], until: datetime | None) -> str:
    key = json.dumps([dataset_hash, cfg.config_hash(), symbols, until.isoformat() if until else None])
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _regime(closes: pd.DataFrame, cfg: TrainConfig) -> RegimeResult:
    X, times, market = regime_inputs(closes, cfg)
    return train_regime(X, times, market, cfg)


def _tune(frames: dict[str, CoinFrame], cfg: TrainConfig, workers: int | None) -> dict[str, Any]:
    tuned, logs = {}, {}
    symbol = next((s for s in cfg.tune.tune_symbols if s in frames), sorted(frames)[0])
    frame = frames[symbol]
    fold = coin_folds(frame, cfg)[0]
    targets = frame.targets[cfg.primary_horizon]
    ok = np.isfinite(targets["dir"])
    tr, ca = fold.train_idx[ok[fold.train_idx]], fold.calib_idx[ok[fold.calib_idx]]
    for family in ("xgboost", "lightgbm", "random_forest"):
        if family not in cfg.families or cfg.tune.trials <= 0:
            continue
        if workers != 1:
            from coinline.training.executor import ensure_ray

            ensure_ray(workers)
        result = tune_family(family, frame.F, targets, train_idx=tr, calib_idx=ca, trials=cfg.tune.trials,
                             seed=cfg.seed)
        tuned[family] = dict(result.best_params)
        logs[family] = {"symbol": symbol, "best_params": result.best_params, "best_score": result.best_score,
                        "metric": result.metric, "trials": list(result.trials)}
    return {"params": tuned, "log": logs}


def _finish_one(item: tuple[CoinFrame, CoinResult, np.ndarray, dict | None], cfg: TrainConfig) -> CoinResult:
    frame, result, post, pooled = item
    return finish_coin(frame, cfg, result, post, pooled)


def finish_coins(frames: dict[str, CoinFrame], specialists: list[CoinResult], regime: RegimeResult,
                 cfg: TrainConfig, workers: int | None) -> list[CoinResult]:
    """The ensemble step of every coin: at every horizon each coin's selection losses per fold (cheap
    logistic fits, here), one combiner per (horizon, fold) pooled over the coins
    (`models.stacking.pooled_choice` under `stacking_params(cfg, h)`: the stack is a candidate at the
    primary horizon only), then per coin (Ray tasks) the stack fitted on its own rows, the pooled combiners
    served, and the coin's metric package. Pooled because a per-coin choice on a few hundred
    rows picks whichever candidate got lucky."""
    posts = {r.symbol: posteriors_for(frames[r.symbol].times, regime) for r in specialists}
    pooled: dict[str, dict[int, dict]] = {r.symbol: {} for r in specialists}
    for h in cfg.horizons:
        records = {r.symbol: stacking_record(frames[r.symbol], cfg, r, posts[r.symbol], h) for r in specialists}
        for symbol, per_fold in pooled_choice(records, stacking_params(cfg, h)).items():
            pooled[symbol][h] = per_fold
    items = [(frames[r.symbol], r, posts[r.symbol], pooled[r.symbol]) for r in specialists]
    return map_tasks(_finish_one, items, shared=(cfg,), workers=workers)


@dataclass
class Prepared:
    """A run's inputs, fixed before any model is fitted: the candles' close matrix (the regime model's
    input), per-coin feature frames, the dataset manifest, the run id and the look-ahead report."""
    run_id: str
    cfg: TrainConfig
    quote: str
    interval: str
    closes: pd.DataFrame
    frames: dict[str, CoinFrame]
    dataset: dict[str, Any]
    lookahead: dict[str, Any]


def prepare(lake: Lake, dataset_id: str, cfg: TrainConfig, *, symbols: list[str] | None = None,
            until: datetime | None = None, quote: str = "USD", interval: str = "1h",
            feature_builder=build_coin_frames) -> Prepared:
    """Load the dataset, build features, derive the run id and run the look-ahead check (LeakageError,
    with the report stored under `runs/<run_id>/lookahead.json`, when a feature reads the future)."""
    df, ds_manifest = _candles(lake, dataset_id, quote, symbols, until)
    built = feature_builder(df, cfg, quote=quote, interval=interval)
    frames = {s: f.tail(cfg.max_history_bars) for s, f in built.items()}
    run_id = _run_id(ds_manifest["content_hash"], cfg, sorted(frames), until)
    leak = _lookahead(df, cfg, frames, feature_builder, quote, interval)
    if not leak.passed:
        lake.write_json(f"runs/{run_id}/lookahead.json", leak.to_dict())
        raise LeakageError(f"look-ahead check failed for run {run_id}: {leak.violations[:3]}")
    return Prepared(run_id, cfg, quote, interval, close_matrix(df), frames, ds_manifest, leak.to_dict())


def train_global(prep: Prepared) -> RegimeResult:
    """The global regime classifier over the whole universe (walk-forward, out-of-sample posteriors)."""
    return _regime(prep.closes, prep.cfg)


def tune(prep: Prepared, workers: int | None) -> dict[str, Any]:
    return _tune(prep.frames, prep.cfg, workers)


def evaluate(prep: Prepared, results: list[CoinResult], regime: RegimeResult, tuning: dict) -> dict[str, Any]:
    """The metric package without the trading simulation (see `with_simulation`)."""
    return _metric_package(prep.run_id, prep.dataset, prep.cfg, prep.frames, results, regime, tuning,
                           prep.lookahead, prep.interval, prep.quote)


def with_simulation(prep: Prepared, results: list[CoinResult], metrics: dict[str, Any]) -> dict[str, Any]:
    """The metric package completed by the deterministic simulation of the ensemble's signals."""
    signals, opens, closes = _signals(prep.frames, results, prep.cfg)
    cfg = prep.cfg
    sim = simulate(signals, opens, closes, fee_bps=cfg.fee_bps, slippage_bps=cfg.slippage_bps,
                   max_position=cfg.max_position, max_exposure=cfg.max_exposure, horizon_bars=cfg.primary_horizon,
                   interval_ms=interval_ms(prep.interval))
    return {**metrics, "simulation": sim.to_dict()}


def persist_run(lake: Lake, prep: Prepared, results: list[CoinResult], regime: RegimeResult, tuning: dict,
                metrics: dict[str, Any]) -> TrainRun:
    manifest = write_run(lake, prep.run_id, cfg=prep.cfg, dataset=prep.dataset, metrics=metrics, results=results,
                         regime=regime, tuning=tuning, frames=prep.frames, quote=prep.quote,
                         interval=prep.interval)
    return TrainRun(prep.run_id, metrics, manifest)


def train(lake: Lake, dataset_id: str, cfg: TrainConfig, *, symbols: list[str] | None = None,
          until: datetime | None = None, quote: str = "USD", interval: str = "1h",
          workers: int | None = None, feature_builder=build_coin_frames, persist: bool = True) -> TrainRun:
    """The whole run in one process (per-coin work fanned out on Ray). `training.stages` runs the same
    steps one at a time with their results kept in the lake (the Kubeflow components).
    `feature_builder` is the features function under test by the look-ahead check (tests plant a
    peeking feature through it); production runs use `build_coin_frames`."""
    prep = prepare(lake, dataset_id, cfg, symbols=symbols, until=until, quote=quote, interval=interval,
                   feature_builder=feature_builder)
    regime = train_global(prep)
    tuning = tune(prep, workers)
    frames = [prep.frames[s] for s in sorted(prep.frames)]
    specialists = map_tasks(train_specialists, frames, shared=(cfg, tuning["params"]), workers=workers)
    results = finish_coins(prep.frames, specialists, regime, cfg, workers)
    metrics = with_simulation(prep, results, evaluate(prep, results, regime, tuning))
    if not persist:  # audit replays compare without touching the stored evidence
        return TrainRun(prep.run_id, metrics, {})
    return persist_run(lake, prep, results, regime, tuning, metrics)


def _lookahead(df: pd.DataFrame, cfg: TrainConfig, frames: dict[str, CoinFrame], builder, quote: str, interval: str):
    """Rebuild features on data truncated at three cut times inside the evaluated span; any feature value
    that differs from the full-data build means the feature reads the future."""
    picks = sorted(frames)[:3]
    by_symbol = {s: df[df["symbol"] == s].reset_index(drop=True) for s in picks}
    times = frames[picks[0]].times
    cuts = [int(times[int(len(times) * q)]) for q in (0.5, 0.75, 0.95)]
    return lookahead_check(by_symbol, cfg, cuts, builder=builder, quote=quote, interval=interval)


def _signals(frames, results, cfg) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    sig, opens, closes = {}, {}, {}
    h = cfg.primary_horizon
    for r in results:
        if "p" not in r.ensemble:
            continue
        f = frames[r.symbol]
        rows = r.oos_rows[h]
        sig[r.symbol] = pd.Series(r.ensemble["p"], index=f.times[rows])
        opens[r.symbol] = pd.Series(f.open_next, index=f.times)
        closes[r.symbol] = pd.Series(f.close, index=f.times)
    signals = pd.DataFrame(sig).sort_index()
    index = signals.index
    return signals, pd.DataFrame(opens).reindex(index), pd.DataFrame(closes).reindex(index)


def _metric_package(run_id, ds_manifest, cfg, frames, results, regime, tuning, leak: dict, interval,
                    quote) -> dict[str, Any]:
    h = cfg.primary_horizon
    checks: dict[str, Any] = {}
    for r in results:
        if "p" not in r.ensemble:
            continue
        f = frames[r.symbol]
        rows = r.oos_rows[h]
        ends = r.test_ends
        hc = hindcast(f.times[rows], r.ensemble["p"], f.targets[h]["dir"][rows], window_ends_ms=ends,
                      interval_ms=interval_ms(interval), horizon_bars=h)
        fw = forward(f.times[rows], {h: r.ensemble["p"]}, T_ms=int(f.times[rows][-1]), horizons=(h,),
                     interval_ms=interval_ms(interval))
        checks[r.symbol] = {"hindcast": hc, "hindcast_summary": rolling_summary(hc), "forward": fw}
    skill = pooled_skill(_pooled(frames, results, cfg), seed=cfg.seed, block=max(24, 2 * h))
    combiners = fold_combiners(results, cfg)
    return {
        "run_id": run_id,
        "dataset_id": ds_manifest["dataset_id"],
        "dataset_hash": ds_manifest["content_hash"],
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "primary_horizon": h,
        "symbols": sorted(frames),
        "skill": skill,
        "per_coin": {r.symbol: r.metrics for r in results},
        "in_sample": {r.symbol: r.in_sample for r in results},
        "stacking_weights": {r.symbol: r.stacking_weights for r in results},
        "horizon_combiners": {r.symbol: {str(k): v for k, v in sorted(r.horizon_weights.items())} for r in results},
        "ensemble_check": ensemble_check(frames, results, cfg),
        "horizons": judge_horizons(skill, cfg, combiners),
        "risk": risk_metrics(frames, cfg),
        "regime": regime.metrics,
        "tuning": tuning["log"],
        "lookahead": leak,
        "checks": checks,
        "quote": quote,
        "interval": interval,
        "evidence_note": "all metrics under per_coin/*/models/*/oos are out-of-sample (walk-forward test "
                         "blocks); in_sample is stored for reference and is never evidence",
    }


def served_model(h: int, cfg: TrainConfig) -> str:
    """The skill-table name of what a model set serves at horizon h: "ensemble" at every horizon, the
    combiner chosen per fold pooled over the coins (the regime-gated stack among the candidates at the
    primary horizon; base rate, mean or one member elsewhere). Runs stored before that served the
    unconditional mean off the primary horizon, under the name "mean"."""
    return "ensemble"


def fold_combiners(results: list[CoinResult], cfg: TrainConfig) -> dict[str, dict[str, dict[str, int]]]:
    """{horizon: {fold: {combiner: coins serving it}}}: what each fold served at each horizon."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for r in results:
        for h in cfg.horizons:
            weights = r.stacking_weights if h == cfg.primary_horizon else r.horizon_weights.get(h, {})
            for k, w in weights.items():
                slot = out.setdefault(str(h), {}).setdefault(str(k), {})
                slot[w["choice"]] = slot.get(w["choice"], 0) + 1
    return {h: {k: dict(sorted(v.items())) for k, v in sorted(f.items(), key=lambda kv: int(kv[0]))}
            for h, f in sorted(out.items(), key=lambda kv: int(kv[0]))}


def judge_horizons(skill: dict[str, Any], cfg: TrainConfig,
                   combiners: dict[str, dict[str, dict[str, int]]] | None = None) -> dict[str, Any]:
    """Every horizon judged: the served combiner's pooled OOS verdict against the base rate (with the
    combiners its folds served, `fold_combiners`, when given), and every (horizon, model) that loses to the
    base rate out of sample."""
    rows = skill["by_model"]
    served = {}
    for h in cfg.horizons:
        row = rows.get(f"{h}/{served_model(h, cfg)}")
        folds = {} if combiners is None else {"fold_combiners": combiners.get(str(h), {})}
        if row is None:
            served[str(h)] = {"served": served_model(h, cfg), "evidence": "none", **folds}
            continue
        ll, base = row["oos"]["log_loss"], row["base_rate"]["log_loss"]
        served[str(h)] = {"served": row["model"], "log_loss": ll, "base_rate_log_loss": base,
                          "worse_than_base_rate": bool(ll > base), "p_value_holm": row["p_value_holm"],
                          "significant": bool(row["significant"]),
                          "evidence": "skill" if row["significant"] else "none", **folds}
    worse = sorted(k for k, r in rows.items() if r["oos"]["log_loss"] > r["base_rate"]["log_loss"])
    return {"served": served, "worse_than_base_rate": worse}


def ensemble_check(frames, results, cfg) -> dict[str, Any]:
    """Is the ensemble worse out of sample (primary horizon, same rows) than its best single member, or than
    the base rate (the climatology P(up) the skill tests use)? Per coin and pooled over coins.
    `worse_beyond_tolerance` / `worse_than_base_rate_beyond_tolerance` list the coins where it loses by more
    than cfg.ensemble_tolerance in log loss. Per coin, `fold_combiners` is the combiner each fold served (the
    pooled choice) and `coin_fold_combiners` what the coin's own selection would have picked;
    `fold_combiners` at the top counts, per fold, the coins serving each combiner."""
    from coinline.evaluation.metrics import classification_metrics

    h, tol = cfg.primary_horizon, cfg.ensemble_tolerance
    per_coin, ys, ens, bases, members, folds = {}, [], [], [], {}, {}
    for r in results:
        if "p" not in r.ensemble or h not in r.predictions:
            continue
        y = frames[r.symbol].targets[h]["dir"][r.oos_rows[h]].astype(int)
        ll = {f: classification_metrics(y, p)["log_loss"] for f, p in r.predictions[h].items()}
        best = min(ll, key=lambda f: (ll[f], f))
        e = classification_metrics(y, r.ensemble["p"])["log_loss"]
        b = classification_metrics(y, r.base_rate[h])["log_loss"]
        ordered = sorted(r.stacking_weights.items())
        choices = [w.get("choice", "stack") for _, w in ordered]
        per_coin[r.symbol] = {"ensemble": e, "best_member": best, "best_member_log_loss": ll[best],
                              "gap": e - ll[best], "base_rate_log_loss": b, "gap_vs_base_rate": e - b,
                              "fold_combiners": choices,
                              "coin_fold_combiners": [w.get("coin_choice") for _, w in ordered]}
        for k, c in zip((k for k, _ in ordered), choices, strict=True):
            slot = folds.setdefault(str(k), {})
            slot[c] = slot.get(c, 0) + 1
        ys.append(y)
        ens.append(r.ensemble["p"])
        bases.append(r.base_rate[h])
        for f, p in r.predictions[h].items():
            members.setdefault(f, []).append(p)
    pooled = None
    if ys:
        y = np.concatenate(ys)
        ll = {f: classification_metrics(y, np.concatenate(v))["log_loss"] for f, v in members.items()
              if len(v) == len(ys)}
        best = min(ll, key=lambda f: (ll[f], f))
        e = classification_metrics(y, np.concatenate(ens))["log_loss"]
        b = classification_metrics(y, np.concatenate(bases))["log_loss"]
        pooled = {"ensemble": e, "best_member": best, "best_member_log_loss": ll[best], "gap": e - ll[best],
                  "base_rate_log_loss": b, "gap_vs_base_rate": e - b}
    worse = sorted(s for s, c in per_coin.items() if c["gap"] > tol)
    worse_base = sorted(s for s, c in per_coin.items() if c["gap_vs_base_rate"] > tol)
    return {"horizon": h, "tolerance": tol, "pooled": pooled, "per_coin": per_coin,
            "fold_combiners": {k: dict(sorted(v.items())) for k, v in sorted(folds.items(), key=lambda kv: int(kv[0]))},
            "worse_beyond_tolerance": worse, "worse_than_base_rate_beyond_tolerance": worse_base,
            "pooled_within_tolerance": None if pooled is None else pooled["gap"] <= tol,
            "pooled_within_tolerance_of_base_rate": None if pooled is None else pooled["gap_vs_base_rate"] <= tol}


def _pooled(frames, results, cfg) -> dict:
    pooled: dict = {}
    for r in results:
        f = frames[r.symbol]
        for h, fams in r.predictions.items():
            y = f.targets[h]["dir"][r.oos_rows[h]]
            models = dict(fams)
            served = r.served_p(h, cfg.primary_horizon)
            if served is not None:   # what the model set serves at h (`served_model`)
                models["ensemble"] = served
            for name, p in models.items():
                slot = pooled.setdefault((h, name), {"y": [], "p": [], "base": [], "t": []})
                slot["y"].append(y)
                slot["p"].append(p)
                slot["base"].append(r.base_rate[h])
                slot["t"].append(f.times[r.oos_rows[h]])
    return pooled


def as_table(results: list[CoinResult], frames: dict[str, CoinFrame], cfg: TrainConfig) -> pa.Table:
    """Out-of-fold predictions of every coin, horizon and family (and "ensemble", the served combiner, at
    every horizon) as one table."""
    rows = []
    for r in results:
        f = frames[r.symbol]
        for h, fams in r.predictions.items():
            idx = r.oos_rows[h]
            y = f.targets[h]["dir"][idx]
            served = r.served_p(h, cfg.primary_horizon)
            for fam, p in {**fams, **({} if served is None else {"ensemble": served})}.items():
                rows.append(pd.DataFrame({"symbol": r.symbol, "horizon": h, "family": fam, "open_time_ms": f.times[idx],
                                          "fold": r.oos_fold[h], "p_up": p, "y": y}))
    return pa.Table.from_pandas(pd.concat(rows, ignore_index=True), preserve_index=False) if rows else pa.table({})
