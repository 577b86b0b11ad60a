"""Benchmark: forecasting -- latency of one forecast (30 coins x 3 horizons) from a warm process and from a cold
CLI start, and the scoring throughput of the ledger (rows/s) over a year of hourly forecasts.

Set-up (timed, printed, not a figure): the training benchmark's lake (replay market, UNIVERSE_V1_TOP30_NON_STABLE,
seed 7, the pinned clock, USD 1h, `bench.training.make_lake`) for 30 coins x scale (at least 2), and one
in-process training run (workers=1) of its reduced-but-real configuration (`bench.training.ray_config`: all five
families, horizons 1/4/24, two folds, no tuning, two sequence epochs, 1,500 bars per coin).

1. Warm process: `load_run_set` once (its own figure: every artifact hash-checked and unpickled), then
   `service.forecast(at=the pinned clock, record=False)` -- the newest closed candle, every coin, every horizon
   -- REPEATS times after one untimed warm-up call; median. Reference, in the same process: reading the input
   candles alone (`service.load_candles`, the forecast's first step), median of as many calls; ratio
   forecast/read. Then the same forecast once with record=True (a Delta MERGE into the ledger; the empty
   ledger table is created beforehand, untimed).
2. Cold CLI: `coinline --now <clock> forecast --run RUN --json` in a fresh subprocess (OBJECT_STORE_URL=file://lake,
   COINLINE_SYMBOLS = the coins, cwd a scratch folder so no .env applies), CLI_REPEATS times, median wall. The
   CLI records too: its rows are the ones already recorded in (1), so each call merges and inserts nothing.
   Reference: `python -c "import coinline.cli"` (interpreter start + the CLI's import floor), median of as many.
   Diagnostic (not the reference): `python -c "import <FORECAST_IMPORTS>"`, the modules a forecast ends up
   importing (torch, xgboost, lightgbm, scikit-learn, deltalake via the service): the CLI's lazy imports make the
   floor small, so this shows how much of the cold start is imports and how much is loading + forecasting.
3. Scoring throughput: a synthetic year (8,760 x scale hourly decision times, at least 500) of forecasts for
   30 coins x 3 horizons, shaped like the ledger (FORECASTS_SCHEMA), over random-walk candles of the same
   coins, in a lake of its own. Written through `ledger.record` in twelve monthly batches (ledger append,
   rows/s; the first and last batch times show how a MERGE grows with the table), then timed: `ledger.read`
   (reference: the bare `DeltaTable(...).to_pyarrow_table()` of the same table), `scoring.realized_outcomes`
   (ledger rows x candle closes) and `scoring.score` (default n_boot, every group and pooled joint chance test).
   ratio scoring/read = (realized_outcomes + score seconds) / ledger.read seconds.

Nothing is asserted; the load average is printed with the figures: every figure here is wall time on a shared
box, from a single run of this benchmark.

    python -m bench.forecasting [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _replay, training
from bench._common import fmt_ratio, ratio, scale, scaled

NAME = "forecasting"
ROOT = Path(__file__).resolve().parent.parent
COINS = 30
REPEATS = 5                 # warm forecast / candle read: timed calls (median)
CLI_REPEATS = 3             # cold CLI / import floor: subprocesses (median)
YEAR_HOURS = 8760
BATCHES = 12                # ledger appends of the synthetic year (monthly)
SEED = 20240601
# diagnostic beside the import floor: the modules a forecast ends up importing (load_run_set unpickles
# xgboost / lightgbm / scikit-learn models and torch nets; the service reads Delta tables)
FORECAST_IMPORTS = ("coinline.cli", "coinline.forecasting.service", "coinline.forecasting.modelset",
                    "coinline.models.trees", "coinline.models.sequence", "coinline.models.regime",
                    "coinline.models.stacking", "xgboost", "lightgbm", "sklearn.ensemble")


def _say(quiet: bool):
    return (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))


def _coins() -> list[str]:
    symbols = list(_replay.universe().symbols())    # BTC first: its mkt_btc_* features exist in every run
    return symbols[:max(2, min(COINS, int(round(COINS * scale()))))]


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------- set-up


def setup(path: Path, symbols: list[str], say) -> tuple[Any, str, dict[str, Any]]:
    from coinline.training.run import train

    cfg = training.ray_config()
    load0 = training._load()
    t0 = time.perf_counter()
    lake, dataset_id, data = training.make_lake(path, symbols)
    t1 = time.perf_counter()
    done = train(lake, dataset_id, cfg, workers=1)
    t2 = time.perf_counter()
    out = {"coins": len(symbols), "candles": data["rows"], "history_days": data["history_days"],
           "lake_seconds": t1 - t0, "train_seconds": t2 - t1, "seconds": t2 - t0, "run_id": done.run_id,
           "config_hash": cfg.config_hash(), "bars": cfg.max_history_bars, "horizons": list(cfg.horizons),
           "families": list(cfg.families), "load_average": [load0, training._load()]}
    say(f"  set-up: {len(symbols)} coins x USD 1h ({data['rows']:,} candles, {data['history_days']} days) committed "
        f"and materialized in {out['lake_seconds']:.1f} s; one training run ({', '.join(cfg.families)}; horizons "
        f"{list(cfg.horizons)}; {cfg.folds.n_folds} folds, {cfg.max_history_bars:,} bars, tune trials "
        f"{cfg.tune.trials}, sequence epochs {cfg.sequence.epochs}; workers=1) in {out['train_seconds']:.1f} s: "
        f"{out['seconds']:.1f} s in all; load average {out['load_average'][0]} -> {out['load_average'][1]}")
    return lake, done.run_id, out


# ------------------------------------------------------------------------------- 1. warm process


def warm(lake, run_id: str, symbols: list[str], say) -> dict[str, Any]:
    from coinline.forecasting import ledger, service
    from coinline.forecasting.modelset import load_run_set

    at = now = _replay.NOW
    t0 = time.perf_counter()
    ms_ = load_run_set(lake, run_id)
    load_s = time.perf_counter() - t0
    decision = service.decision_time(at, ms_.interval)

    def once() -> tuple[float, Any]:
        s0 = time.perf_counter()
        batches = service.forecast(lake, [ms_], at=at, now=now, record=False)
        return time.perf_counter() - s0, batches[0]

    def read() -> tuple[float, int]:
        s0 = time.perf_counter()
        df = service.load_candles(lake, ms_, last_decision_ms=decision)
        return time.perf_counter() - s0, len(df)

    load_avg0 = training._load()
    warmup_s, first = once()
    read()
    runs = [once() for _ in range(REPEATS)]
    reads = [read() for _ in range(REPEATS)]
    forecast_s = _median([r[0] for r in runs])
    read_s = _median([r[0] for r in reads])
    rows = first.rows
    same = all(r[1].rows.equals(rows) for r in runs)
    ledger.ensure_ledger(lake)                      # the empty table exists already, as in a live lake
    s0 = time.perf_counter()
    rec = service.forecast(lake, [ms_], at=at, now=now, record=True)[0]
    record_s = time.perf_counter() - s0
    load_avg1 = training._load()
    out = {"at": _iso(at), "forecast_time": str(rows["forecast_time"].max()) if len(rows) else None,
           "rows": len(rows), "coins": int(rows["symbol"].nunique()) if len(rows) else 0,
           "horizons": sorted(int(h) for h in rows["horizon"].unique()) if len(rows) else [],
           "skipped": first.skipped, "combiners": sorted(set(rows["combiner"])) if len(rows) else [],
           "load_set_seconds": load_s, "first_forecast_seconds": warmup_s,
           "forecast_median_s": forecast_s, "forecast_all_s": [round(r[0], 4) for r in runs],
           "read_median_s": read_s, "read_all_s": [round(r[0], 4) for r in reads], "candles_read": reads[0][1],
           "record_seconds": record_s, "recorded": rec.recorded, "same_rows_every_call": same,
           "load_average": [load_avg0, load_avg1]}
    say(f"== forecast from a warm process: {out['coins']} coins x horizons {out['horizons']} = {out['rows']} rows at "
        f"{out['at']} (forecast time {out['forecast_time']}); combiners {out['combiners']}"
        + (f"; skipped {first.skipped}" if first.skipped else ""))
    say(f"  load the set (load_run_set, hash-checked)   {load_s:8.3f} s")
    say(f"  forecast, record=False (median of {REPEATS})      {forecast_s:8.3f} s   x{fmt_ratio(ratio(forecast_s, read_s))} "
        f"the read; all {out['forecast_all_s']}; first call {warmup_s:.3f} s (untimed)")
    say(f"  reference: load_candles alone (median)      {read_s:8.3f} s   ({reads[0][1]:,} candles; all {out['read_all_s']})")
    say(f"  forecast, record=True (once)                {record_s:8.3f} s   x{fmt_ratio(ratio(record_s, forecast_s))} "
        f"the record=False median; {rec.recorded.get('inserted')} rows inserted into the ledger")
    say(f"  same rows every call: {'yes' if same else 'NO'}; load average {load_avg0} -> {load_avg1}")
    return out


# ------------------------------------------------------------------------------- 2. cold CLI


def _timed_subprocess(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return seconds, proc.stdout


def cold_cli(lake_dir: Path, run_id: str, symbols: list[str], scratch: Path, say) -> dict[str, Any]:
    scratch.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HIST_MARKET_DATA_API_KEY", "COINLINE_VENUE", "COINLINE_TRAIN_CONFIG")}
    env.update(OBJECT_STORE_URL=f"file://{lake_dir}", COINLINE_SYMBOLS=",".join(symbols))
    exe = Path(sys.executable).parent / "coinline"
    cli = [str(exe), "--now", _iso(_replay.NOW), "forecast", "--run", run_id, "--json"]
    floor = [sys.executable, "-c", "import coinline.cli"]
    heavy = [sys.executable, "-c", f"import {', '.join(FORECAST_IMPORTS)}"]
    load0 = training._load()
    _timed_subprocess(floor, env, scratch)          # untimed: pages the interpreter and the .pyc files in
    floors = [_timed_subprocess(floor, env, scratch)[0] for _ in range(CLI_REPEATS)]
    heavies = [_timed_subprocess(heavy, env, scratch)[0] for _ in range(CLI_REPEATS)]
    calls = [_timed_subprocess(cli, env, scratch) for _ in range(CLI_REPEATS)]
    doc = json.loads(calls[-1][1])
    cli_s, floor_s, heavy_s = _median([c[0] for c in calls]), _median(floors), _median(heavies)
    out = {"command": " ".join(["coinline", *cli[1:]]), "cli_median_s": cli_s,
           "cli_all_s": [round(c[0], 3) for c in calls], "import_floor_median_s": floor_s,
           "import_floor_all_s": [round(s, 3) for s in floors], "forecast_imports": list(FORECAST_IMPORTS),
           "forecast_imports_median_s": heavy_s, "forecast_imports_all_s": [round(s, 3) for s in heavies],
           "rows": len(doc["forecasts"]),
           "inserted": [json.loads(c[1])["sets"][0]["inserted"] for c in calls],
           "load_average": [load0, training._load()]}
    say(f"== forecast from a cold CLI start: {out['command']} ({out['rows']} rows; inserted {out['inserted']}: "
        f"already in the ledger)")
    say(f"  CLI wall (median of {CLI_REPEATS})                   {cli_s:8.3f} s   x{fmt_ratio(ratio(cli_s, floor_s))} the "
        f"import floor; all {out['cli_all_s']}")
    say(f"  reference: python -c 'import coinline.cli'  {floor_s:8.3f} s   all {out['import_floor_all_s']}; "
        f"load average {out['load_average'][0]} -> {out['load_average'][1]}")
    say(f"  diagnostic: python -c 'import <what a forecast imports>' {heavy_s:.3f} s (all {out['forecast_imports_all_s']}; "
        f"{', '.join(FORECAST_IMPORTS)}): the CLI is x{fmt_ratio(ratio(cli_s, heavy_s))} that")
    return out


# ------------------------------------------------------------------------------- 3. scoring throughput


def _synthetic_year(symbols: list[str], hours: int, seed: int):
    """(ledger rows, candle closes): random-walk hourly closes for every coin, and forecasts at every hour."""
    import numpy as np
    import pandas as pd

    from coinline.forecasting.schema import REGIME_COLUMNS
    from coinline.timeframes import ms

    rng = np.random.default_rng(seed)
    step = 3_600_000
    t0 = ms(_replay.NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours + 48))
    n_candles = hours + 25                                  # every target (h <= 24) has its candle
    candle_times = t0 + step * np.arange(n_candles, dtype=np.int64)
    closes = pd.DataFrame({
        "symbol": np.repeat(symbols, n_candles), "quote": "USD", "interval": "1h", "source": "sim",
        "open_time": pd.to_datetime(np.tile(candle_times, len(symbols)), unit="ms", utc=True),
        "close": np.concatenate([100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n_candles))) for _ in symbols]),
    })
    decision = candle_times[:hours]
    parts = []
    for sym in symbols:
        for h in (1, 4, 24):
            n = hours
            p = np.clip(0.5 + rng.normal(0, 0.03, n), 0.01, 0.99)
            vol = 0.01 * np.sqrt(h) * rng.uniform(0.7, 1.3, n)
            abs_move = vol * 0.8
            post = rng.dirichlet(np.ones(len(REGIME_COLUMNS)), n)
            parts.append(pd.DataFrame({
                "model_set": "run-synthetic-year", "set_hash": "0" * 64, "symbol": sym, "quote": "USD",
                "interval": "1h", "source": "sim", "horizon": np.int32(h),
                "decision_time": pd.to_datetime(decision, unit="ms", utc=True),
                "forecast_time": pd.to_datetime(decision + step, unit="ms", utc=True),
                "target_time": pd.to_datetime(decision + (h + 1) * step, unit="ms", utc=True),
                "p_up": p, "expected_move": (2 * p - 1) * abs_move, "expected_abs_move": abs_move,
                "volatility": vol, "confidence": np.abs(2 * p - 1),
                **{c: post[:, i] for i, c in enumerate(REGIME_COLUMNS)},
                "p_base_rate": np.clip(0.5 + rng.normal(0, 0.01, n), 0.01, 0.99),
                "p_momentum": np.clip(0.5 + rng.normal(0, 0.02, n), 0.01, 0.99),
                "combiner": "stacked" if h == 4 else "mean", "dataset_hash": "1" * 64,
                "input_hash": [f"{i:064x}" for i in rng.integers(0, 2**62, n)],
            }))
    rows = pd.concat(parts, ignore_index=True)
    now = _replay.NOW.replace(minute=0, second=0, microsecond=0)
    return rows, closes, now


def scoring_throughput(path: Path, symbols: list[str], say) -> dict[str, Any]:
    import numpy as np
    from deltalake import DeltaTable

    from coinline.forecasting import ledger
    from coinline.forecasting.scoring import realized_outcomes, score
    from coinline.timeframes import ms

    hours = scaled(YEAR_HOURS, 500)
    t0 = time.perf_counter()
    rows, closes, now = _synthetic_year(symbols, hours, SEED)
    build_s = time.perf_counter() - t0
    lake = _replay.fresh_lake(path)
    ledger.ensure_ledger(lake)
    load0 = training._load()
    say(f"== ledger scoring throughput: a synthetic year of hourly forecasts, {len(symbols)} coins x 3 horizons x "
        f"{hours:,} decision times = {len(rows):,} ledger rows over {len(closes):,} random-walk closes "
        f"(built in {build_s:.1f} s); load average {load0}")
    # monthly batches, in decision-time order, as a live forecaster's ledger grows
    edges = np.linspace(0, hours, BATCHES + 1).astype(int)
    times = rows["decision_time"].to_numpy()
    uniq = np.sort(rows["decision_time"].unique())
    batch_s, inserted = [], 0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        part = rows[(times >= uniq[a]) & (times <= uniq[b - 1])]
        s0 = time.perf_counter()
        rec = ledger.record(lake, part, role="champion", now=now, request={"benchmark": NAME})
        batch_s.append(time.perf_counter() - s0)
        inserted += rec["inserted"]
    append_s = sum(batch_s)

    s0 = time.perf_counter()
    df = ledger.read(lake)
    read_s = time.perf_counter() - s0
    s0 = time.perf_counter()
    plain = DeltaTable(lake.uri(ledger.FORECASTS), storage_options=lake.storage_options).to_pyarrow_table()
    plain_s = time.perf_counter() - s0
    s0 = time.perf_counter()
    outcomes = realized_outcomes(df, closes, interval_ms=3_600_000, now_ms=ms(now))
    outcomes_s = time.perf_counter() - s0
    s0 = time.perf_counter()
    board = score(outcomes, seed=42)
    score_s = time.perf_counter() - s0
    load1 = training._load()
    n = len(df)
    matured = int(outcomes["matured"].sum())
    scoring_s = outcomes_s + score_s
    out = {"coins": len(symbols), "hours": hours, "rows": len(rows), "inserted": inserted, "read_rows": n,
           "plain_read_rows": plain.num_rows, "matured": matured, "batches": BATCHES,
           "build_seconds": build_s, "append_seconds": append_s, "append_batch_seconds": [round(s, 3) for s in batch_s],
           "append_rows_per_s": inserted / append_s, "read_seconds": read_s, "read_rows_per_s": n / read_s,
           "plain_read_seconds": plain_s, "plain_read_rows_per_s": plain.num_rows / plain_s,
           "outcomes_seconds": outcomes_s, "outcomes_rows_per_s": n / outcomes_s,
           "score_seconds": score_s, "score_rows_per_s": matured / score_s, "n_boot": board["n_boot"],
           "groups": len(board["groups"]), "pooled": len(board["pooled"]),
           "scoring_seconds": scoring_s, "scoring_rows_per_s": n / scoring_s,
           "load_average": [load0, load1]}
    say(f"  ledger append ({BATCHES} record() MERGEs)      {append_s:8.2f} s   {out['append_rows_per_s']:12,.0f} rows/s   "
        f"({inserted:,} inserted; first batch {batch_s[0]:.2f} s, last {batch_s[-1]:.2f} s)")
    say(f"  ledger.read (pandas, key order)          {read_s:8.2f} s   {out['read_rows_per_s']:12,.0f} rows/s   "
        f"x{fmt_ratio(ratio(read_s, plain_s))} the plain read")
    say(f"  reference: DeltaTable.to_pyarrow_table   {plain_s:8.2f} s   {out['plain_read_rows_per_s']:12,.0f} rows/s")
    say(f"  realized_outcomes                         {outcomes_s:8.2f} s   {out['outcomes_rows_per_s']:12,.0f} rows/s   "
        f"({matured:,} matured)")
    say(f"  score                                    {score_s:8.2f} s   {out['score_rows_per_s']:12,.0f} rows/s   "
        f"(n_boot {board['n_boot']}, {len(board['groups'])} groups, {len(board['pooled'])} pooled joint tests)")
    say(f"  scoring (outcomes + score) / ledger.read: {fmt_ratio(ratio(scoring_s, read_s))} ({scoring_s:.2f} s, "
        f"{out['scoring_rows_per_s']:,.0f} rows/s); load average {load0} -> {load1}")
    return out


# ------------------------------------------------------------------------------- driver


def run(quiet: bool = False) -> dict[str, Any]:
    say = _say(quiet)
    symbols = _coins()
    result: dict[str, Any] = {"benchmark": NAME, "scale": scale(), "cpus": os.cpu_count(), "coins": len(symbols),
                              "single_run": True, "load_average_start": training._load(), "ratios": {}}
    say(f"== forecasting: {len(symbols)} coins, {os.cpu_count()} CPUs, load average {result['load_average_start']} "
        f"(a single run of each figure set; medians over repeats within it)")
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-forecast-"))
    try:
        lake, run_id, setup_info = setup(tmp / "lake", symbols, say)
        result["setup"] = setup_info
        w = result["warm"] = warm(lake, run_id, symbols, say)
        c = result["cli"] = cold_cli(tmp / "lake", run_id, symbols, tmp / "cwd", say)
        s = result["scoring"] = scoring_throughput(tmp / "ledger-lake", symbols, say)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_end"] = training._load()
    result["ratios"] = {
        "forecast/read": ratio(w["forecast_median_s"], w["read_median_s"]),
        "forecast record=True/record=False": ratio(w["record_seconds"], w["forecast_median_s"]),
        "cli/import floor": ratio(c["cli_median_s"], c["import_floor_median_s"]),
        "cli/forecast imports": ratio(c["cli_median_s"], c["forecast_imports_median_s"]),
        "cli/warm forecast": ratio(c["cli_median_s"], w["forecast_median_s"]),
        "ledger.read/plain read": ratio(s["read_seconds"], s["plain_read_seconds"]),
        "scoring/read": ratio(s["scoring_seconds"], s["read_seconds"]),
    }
    say(f"  load average at the end {result['load_average_end']}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run()
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
