"""Benchmark: does anything get promoted on markets with nothing to find? (issue 10's random-walk goal)

For each seed, two synthetic markets of N_COINS hourly series with no predictable direction:
- independent: iid Student-t log returns per coin;
- correlated: the same, plus a shared market factor (each coin's return = beta * factor + idiosyncratic,
  beta ~ 0.8, so coins move together as crypto does: the case where a naive pooled test is anti-conservative).
Volatility is stochastic (a GARCH(1,1) variance per coin), so the series look like markets, but the sign of
the next return is independent of the past by construction.

Each market is committed to a fresh lake, materialized, trained (`training.run.train`, a reduced
configuration: tree families, two walk-forward folds of 300 bars, no tuning; in-process) and put through
`promotion.decide.promote` with the packaged default policy and nothing active (the champion is the base
rate). Printed per market: the decision and its reason codes, the served combiners' pooled skill verdict
(log loss and ECE vs the base rate's, Holm p) and the combiner each fold served at every served horizon. The
figure of merit is the count of PROMOTE over all runs (goal: 0) and the count of "significant skill"
verdicts (expected about alpha of the tests run). Nothing is asserted; it is a measurement. The load
average is printed (timing is not the point).

    python -m bench.random_walks [--seeds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import scale

NAME = "random_walks"
N_COINS = 5
BARS = 2400
SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "ADA")
START = datetime(2025, 1, 1, tzinfo=UTC)


def _garch_returns(rng: np.random.Generator, n: int, shocks: np.ndarray) -> np.ndarray:
    """GARCH(1,1) variance (omega, alpha, beta = 2e-6, 0.08, 0.9) driving unit-variance shocks."""
    var = np.empty(n)
    r = np.empty(n)
    var[0] = 1e-4
    for t in range(n):
        if t:
            var[t] = 2e-6 + 0.08 * r[t - 1] ** 2 + 0.9 * var[t - 1]
        r[t] = np.sqrt(var[t]) * shocks[t]
    return r


def market_returns(seed: int, correlated: bool, n_coins: int = N_COINS, bars: int = BARS) -> np.ndarray:
    """(coins, bars) log returns: Student-t(5) shocks scaled to unit variance, GARCH variance, optional
    shared factor. Martingale differences: E[r_t | past] = 0 for every coin."""
    rng = np.random.default_rng(seed)
    t_scale = np.sqrt(3.0 / 5.0)
    factor = rng.standard_t(5, bars) * t_scale
    out = np.empty((n_coins, bars))
    for i in range(n_coins):
        own = rng.standard_t(5, bars) * t_scale
        shocks = (0.8 * factor + 0.6 * own) if correlated else own
        out[i] = _garch_returns(rng, bars, shocks)
    return out


def commit_market(lake, returns: np.ndarray, *, seed: int) -> str:
    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.ingest.writer import commit_candles
    from coinline.providers.base import SeriesKey, candle_table
    from coinline.universe import load_universe

    rng = np.random.default_rng(seed + 1_000_003)
    bars = returns.shape[1]
    now = START + timedelta(hours=bars + 1)
    times = int(START.timestamp() * 1000) + np.arange(bars, dtype=np.int64) * 3_600_000
    for sym, r in zip(SYMBOLS, returns, strict=False):
        key = SeriesKey("sim", "RANDOMWALK", sym, "USD", "1h")
        close = 100.0 * np.exp(np.cumsum(r))
        open_ = np.concatenate([[100.0], close[:-1]])
        wick = np.abs(r) * 0.5 + 1e-4
        high = np.maximum(open_, close) * np.exp(wick * rng.random(bars))
        low = np.minimum(open_, close) * np.exp(-wick * rng.random(bars))
        volume = rng.lognormal(3, 0.5, bars)
        table = candle_table(key, times, open_, high, low, close, volume, rng.integers(1, 500, bars))
        commit_candles(lake, table, key=key, request={"generator": "bench.random_walks", "seed": seed}, now=now)
    spec = DatasetSpec("UNIVERSE_V1_TOP30_NON_STABLE", "1h", "sim", ("USD",))
    return materialize(lake, load_universe(spec.universe_version), spec, gap_tolerance=0, now=now).dataset_id


def config():
    from coinline.training.config import FoldConfig, TrainConfig, TuneConfig

    return TrainConfig(families=("xgboost", "lightgbm", "random_forest"),
                       folds=FoldConfig(n_folds=2, test_bars=300, min_train_bars=900),
                       tune=TuneConfig(trials=0), max_history_bars=None)


def one_market(seed: int, correlated: bool, root: Path) -> dict[str, Any]:
    from coinline.lake import open_lake, tables
    from coinline.promotion import load_policy, promote
    from coinline.training.run import served_model, train

    lake = open_lake(f"file://{root}")
    tables.ensure_tables(lake)
    dataset = commit_market(lake, market_returns(seed, correlated), seed=seed)
    cfg = config()
    run = train(lake, dataset, cfg, workers=1)
    metrics = lake.read_json(f"runs/{run.run_id}/metrics.json")
    by_model = metrics["skill"]["by_model"]
    judged = metrics["horizons"]["served"]
    served = {}
    for h in cfg.horizons:
        row = by_model.get(f"{h}/{served_model(h, cfg)}")
        if row is not None:
            folds = sorted((judged.get(str(h)) or {}).get("fold_combiners", {}).items(), key=lambda kv: int(kv[0]))
            served[str(h)] = {"model": row["model"], "log_loss": row["oos"]["log_loss"],
                              "combiners": "|".join("/".join(sorted(c)) for _, c in folds),
                              "base_rate_log_loss": row["base_rate"]["log_loss"], "ece": row["oos"]["ece"],
                              "base_rate_ece": row["base_rate"]["ece"],
                              "p_holm": row["p_value_holm"], "significant": bool(row["significant"])}
    decision = promote(lake, run.run_id, load_policy(), now=START + timedelta(days=400))
    return {"seed": seed, "market": "correlated" if correlated else "independent", "run_id": run.run_id,
            "decision": decision["outcome"], "reason_codes": decision["decision"]["reason_codes"],
            "served": served, "significant_any": sum(bool(r["significant"]) for r in by_model.values()),
            "tests": len(by_model)}


def run(seeds: int | None = None) -> dict[str, Any]:
    seeds = seeds or max(2, int(round(10 * scale())))
    os.environ.setdefault("COINLINE_TRAIN_WORKERS", "1")
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coinline-bench-rw-") as tmp:
        for seed in range(seeds):
            for correlated in (False, True):
                rows.append(one_market(seed, correlated, Path(tmp) / f"{seed}-{int(correlated)}"))
                r = rows[-1]
                print(f"  seed {seed:>2} {r['market']:<11} {r['decision']:<7} "
                      + " ".join(f"h{h}: {v['model']}[{v['combiners']}] ll {v['log_loss']:.4f}/"
                                 f"{v['base_rate_log_loss']:.4f} "
                                 f"ece {v['ece']:.3f}/{v['base_rate_ece']:.3f} p {v['p_holm']:.2f}"
                                 for h, v in r["served"].items()),
                      flush=True)
    eces = [v["ece"] for r in rows for v in r["served"].values()]
    base_eces = [v["base_rate_ece"] for r in rows for v in r["served"].values()]
    return {"name": NAME, "seeds": seeds, "markets": len(rows), "promoted": sum(r["decision"] == "PROMOTE" for r in rows),
            "served_significant": sum(v["significant"] for r in rows for v in r["served"].values()),
            "served_tests": sum(len(r["served"]) for r in rows),
            "any_model_significant": sum(r["significant_any"] for r in rows), "model_tests": sum(r["tests"] for r in rows),
            "ece_max": max(eces) if eces else None, "ece_median": float(np.median(eces)) if eces else None,
            "base_rate_ece_max": max(base_eces) if base_eces else None,
            "seconds": time.perf_counter() - t0, "load_average": os.getloadavg(), "rows": rows,
            "ratios": {"promoted/markets": sum(r["decision"] == "PROMOTE" for r in rows) / max(len(rows), 1)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=None, help="seeds per market kind (default 10 x COINLINE_BENCH_SCALE)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.seeds)
    print(f"{NAME}: {result['promoted']} of {result['markets']} markets promoted (goal 0); served combiners "
          f"significant in {result['served_significant']} of {result['served_tests']} tests; any model significant "
          f"in {result['any_model_significant']} of {result['model_tests']}; served ECE median "
          f"{result['ece_median']:.4f}, max {result['ece_max']:.4f} (goal <= 0.02; the base rate's own max "
          f"{result['base_rate_ece_max']:.4f}); load average "
          f"{', '.join(f'{x:.2f}' for x in result['load_average'])}; {result['seconds']:.0f} s")
    if args.json:
        print(json.dumps({k: v for k, v in result.items()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
