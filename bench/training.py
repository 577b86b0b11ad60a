"""Benchmark 5: training -- wall time per family and per coin, Ray speedup on 2 workers, peak memory of a run.

Candles come from the replay market (`bench._replay`: UNIVERSE_V1_TOP30_NON_STABLE, seed 7, the pinned
clock), USD at 1h, i.e. the same synthetic-but-realistic series the other benchmarks backfill.

1. Per family (in this process): BTC's frame built as a training run builds it (every coin's candles ->
   `build_coin_frames` -> `tail(max_history_bars)` = 6,000 rows after warmup) with the DEFAULT TrainConfig;
   its LAST walk-forward fold (`coin_task.coin_folds`, the largest one, whose models are the deployed ones)
   at the primary horizon, rows filtered by `valid_rows` exactly as `train_coin` does. Each family is fitted
   (train + calibration rows) and predicts the fold's test rows: one untimed warm-up round, then the best of
   REPEATS timed rounds. Reference: the fastest family. Then the whole `train_coin` for BTC once (every family,
   fold and horizon, stacking over real out-of-sample regime posteriors, metrics with chance tests). Tree
   families use their default parameters (a default run tunes them first; tuning is not timed here).
2. Ray speedup (in this process): a reduced-but-real configuration (all five families, horizons 1/4/24, two
   folds, no tuning, fewer sequence epochs, 1,500 bars per coin) for all 30 coins, committed to a fresh lake
   and materialized like a real dataset. `train(workers=1)` (in-process: the reference), then Ray start-up
   (`executor.ensure_ray(2)` + its two workers answering a no-op, a separate figure), then `train(workers=2)`.
   speedup = t(1 worker) / t(2 workers) (goal >= 1.6x); also the fan-out alone (`map_tasks`, timed by
   wrapping it) and whether the two runs wrote byte-identical metrics.json (they must). Diagnostic, between
   the two: `train(workers=1)` again with every OpenMP/BLAS pool limited to one thread (threadpoolctl), as
   Ray runs its workers (OMP_NUM_THREADS=1, checked in the workers). The in-process default limits the
   pools to one thread during the per-coin fan-out only (`executor.map_tasks`); this diagnostic limits the
   whole run, so t(that run)/t(2 workers) is the speedup of parallelism alone.
   CPU seconds (this process + its live descendants) and cores busy = CPU/wall are printed for every run.
3. Peak memory: the workers=2 run of (2) in a child process (`python -m bench.training --child ...`) that
   imports everything a training run imports and notes its RSS (the baseline, the reference); this process
   samples the RSS of the child plus all its descendants (raylet, gcs, agents, Ray workers) every 0.5 s with
   psutil (vendored by Ray) and reports the peak total, its make-up, and the driver's own peak (with the
   child's VmHWM as a cross-check). PSS (shared pages split between processes) is sampled alongside: summed
   RSS counts the shared libraries of every Python process once per process.

COINLINE_BENCH_SCALE shrinks (1) by rows (6,000 x scale; fold sizes scaled alike, so at 1.0 it is exactly
the default config) and (2)/(3) by coins (30 x scale, at least 4; the per-coin configuration is unchanged).
Nothing is asserted; the load average is printed because every figure here is CPU time on a shared box.

    python -m bench.training [--parts 1 2 3] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _replay
from bench._common import fmt_ratio, ratio, scale, scaled

NAME = "training"
ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("xgboost", "lightgbm", "random_forest", "lstm", "transformer")
SYMBOL = "BTC"
FULL_ROWS = 6000                 # part 1: rows of BTC's frame after warmup (the default max_history_bars)
REPEATS = 2                      # part 1: timed rounds per family (best of)
COINS = 30                       # parts 2, 3: the whole universe
BARS = 1500                      # parts 2, 3: max_history_bars per coin
WARMUP_BARS = 240                # > the longest feature window (168 bars) + margin
SPEEDUP_GOAL = 1.6
SAMPLE_S = 0.5


def _say(quiet: bool):
    return (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _history_days(rows: int) -> int:
    return math.ceil((rows + WARMUP_BARS) / 24) + 1


def _candles(symbols: list[str], rows: int):
    """USD 1h candles of `symbols` from the replay market, enough history for `rows` rows after warmup."""
    import pyarrow as pa

    market = _replay.market(_history_days(rows))
    return pa.concat_tables([market.candles(s, "USD", "1h") for s in symbols])


def _coins() -> list[str]:
    symbols = list(_replay.universe().symbols())    # BTC first: its mkt_btc_* features exist in every run
    return symbols[:max(4, min(COINS, int(round(COINS * scale()))))]


# ------------------------------------------------------------------------------- 1. per family, per coin


def part1_config():
    from dataclasses import replace

    from coinline.training.config import TrainConfig

    cfg = TrainConfig()
    if scale() == 1.0:
        return cfg
    f = cfg.folds
    return replace(cfg, max_history_bars=scaled(FULL_ROWS, 600),
                   folds=replace(f, test_bars=scaled(f.test_bars, 60), min_train_bars=scaled(f.min_train_bars, 200)))


def per_family(say) -> dict[str, Any]:
    from dataclasses import asdict

    import numpy as np

    from coinline.features.frame import build_coin_frames, valid_rows
    from coinline.models.base import derive_seed
    from coinline.training.coin_task import _model, coin_folds, train_coin
    from coinline.training.regime_task import posteriors_for
    from coinline.training.run import _closes, _regime

    cfg = part1_config()
    rows = cfg.max_history_bars
    load0 = _load()
    t0 = time.perf_counter()
    candles = _candles(list(_replay.universe().symbols()), rows)
    df = candles.to_pandas()
    frames = build_coin_frames(candles, cfg)
    frame = frames[SYMBOL].tail(rows)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    regime = _regime(_closes(df), cfg)
    regime_s = time.perf_counter() - t0
    post = posteriors_for(frame.times, regime)

    h = cfg.primary_horizon
    folds = coin_folds(frame, cfg)
    fold = folds[-1]
    usable = np.zeros(len(frame), dtype=bool)
    usable[valid_rows(frame, h)] = True
    tr, ca, te = (idx[usable[idx]] for idx in (fold.train_idx, fold.calib_idx, fold.test_idx))
    targets = frame.targets[h]
    say(f"== 5.1 wall time per family: {SYMBOL}, {len(frame):,} hourly rows x {frame.F.shape[1]} features "
        f"(candles of {len(frames)} coins, {_history_days(rows)} days; frame built in {build_s:.1f} s), "
        f"fold {fold.index + 1}/{len(folds)} of the {'default' if scale() == 1.0 else 'scaled default'} "
        f"TrainConfig at the primary horizon h={h}: {len(tr):,} train / {len(ca):,} calib / {len(te):,} test rows "
        f"(embargo {fold.embargo_bars}); load average {load0}")

    def once(fam: str) -> tuple[float, float, Any, float]:
        model = _model(fam, cfg, {})
        a, cpu = time.perf_counter(), time.process_time()
        model.fit(frame.F, targets, train_idx=tr, calib_idx=ca, seed=derive_seed(cfg.seed, SYMBOL, fam, fold.index, h))
        b = time.perf_counter()
        p = model.predict_proba(frame.F, te)
        c = time.perf_counter()
        return b - a, c - b, p, time.process_time() - cpu

    families: dict[str, dict[str, Any]] = {}
    for fam in cfg.families:
        warm_fit, warm_pred, p0, _ = once(fam)
        runs = [once(fam) for _ in range(REPEATS)]
        fit_s, pred_s, p, cpu_s = min(runs, key=lambda r: r[0] + r[1])
        families[fam] = {"fit_s": fit_s, "predict_s": pred_s, "seconds": fit_s + pred_s, "cpu_seconds": cpu_s,
                         "all_seconds": [round(r[0] + r[1], 4) for r in runs],
                         "warmup_seconds": round(warm_fit + warm_pred, 4),
                         "same_predictions_every_round": all(np.array_equal(p0, r[2]) for r in runs)}
    fastest = min(families, key=lambda k: families[k]["seconds"])
    ref = families[fastest]["seconds"]
    one_fold_sum = sum(v["seconds"] for v in families.values())
    for v in families.values():
        v["ratio_to_fastest"] = ratio(v["seconds"], ref)

    t0, c0 = time.perf_counter(), time.process_time()
    result = train_coin(frame, cfg, {}, post)
    coin_s, coin_cpu = time.perf_counter() - t0, time.process_time() - c0
    fits = sum(len(result.predictions[hh]) for hh in result.predictions) * len(folds)
    load1 = _load()
    out = {
        "symbol": SYMBOL, "rows": len(frame), "features": int(frame.F.shape[1]), "horizon": h,
        "fold": {"index": fold.index, "of": len(folds), "train_rows": len(tr), "calib_rows": len(ca),
                 "test_rows": len(te), "embargo_bars": fold.embargo_bars},
        "config": {"default": scale() == 1.0, "max_history_bars": rows, "folds": asdict(cfg.folds),
                   "sequence": asdict(cfg.sequence)},
        "families": families, "fastest": fastest, "fastest_seconds": ref, "one_fold_sum_seconds": one_fold_sum,
        "train_coin_seconds": coin_s, "train_coin_cpu_seconds": coin_cpu, "train_coin_fits": fits, "train_coin_folds": len(folds),
        "train_coin_horizons": list(cfg.horizons),
        "train_coin_n_oos": {str(k): int(len(v)) for k, v in result.oos_rows.items()},
        "regime_seconds": regime_s, "frame_build_seconds": build_s, "load_average": [load0, load1],
    }
    w = max(len(f) for f in families)
    say(f"  {'family'.ljust(w)}   fit s  predict s   total s   x fastest   CPU s (cores)   "
        f"(best of {REPEATS}; warm-up round untimed)")
    for fam, v in families.items():
        flag = "" if v["same_predictions_every_round"] else "   (predictions differ between rounds!)"
        say(f"  {fam.ljust(w)}  {v['fit_s']:6.2f}  {v['predict_s']:9.3f}  {v['seconds']:8.2f}   "
            f"{fmt_ratio(v['ratio_to_fastest']):>9}   {v['cpu_seconds']:5.2f} ({v['cpu_seconds'] / v['seconds']:.2f}){flag}")
    say(f"  reference: {fastest} {ref:.2f} s; the five families on this one fold: {one_fold_sum:.1f} s")
    say(f"  whole train_coin({SYMBOL}): {coin_s:.1f} s ({coin_cpu:.1f} CPU s, {coin_cpu / coin_s:.2f} cores) = {fmt_ratio(ratio(coin_s, one_fold_sum))} x the one-fold sum "
        f"({len(folds)} folds x horizons {list(cfg.horizons)}: {fits} fits (trees on every horizon, sequence nets on "
        f"h={h}), stacking, metrics; OOS rows {out['train_coin_n_oos']}); regime model (once per run, driver) "
        f"{regime_s:.1f} s; load average after {load1}")
    return out


# ------------------------------------------------------------------------------- 2. Ray speedup


def ray_config():
    from coinline.training.config import FoldConfig, SequenceConfig, TrainConfig, TuneConfig

    return TrainConfig(max_history_bars=BARS, folds=FoldConfig(n_folds=2, test_bars=250, min_train_bars=700),
                       sequence=SequenceConfig(epochs=2, max_train_samples=600), tune=TuneConfig(trials=0))


def make_lake(path: Path, symbols: list[str]) -> tuple[Any, str, dict[str, Any]]:
    """Commit each coin's candles as one batch (as a backfill would) and materialize the dataset."""
    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.ingest.writer import commit_candles
    from coinline.providers.base import SeriesKey

    t0 = time.perf_counter()
    lake = _replay.fresh_lake(path)
    market = _replay.market(_history_days(BARS))
    rows = 0
    for sym in symbols:
        table = market.candles(sym, "USD", "1h")
        rows += table.num_rows
        commit_candles(lake, table, key=SeriesKey(_replay_source(), "REPLAY", sym, "USD", "1h"),
                       request={"benchmark": NAME}, now=_replay.NOW)
    spec = DatasetSpec(_replay.UNIVERSE, "1h", _replay_source(), ("USD",))
    dataset = materialize(lake, _replay.universe(), spec, gap_tolerance=0, now=_replay.NOW)
    return lake, dataset.dataset_id, {"rows": rows, "series": len(symbols), "seconds": time.perf_counter() - t0,
                                      "history_days": _history_days(BARS)}


def _replay_source() -> str:
    from coinline.replay.market import SOURCE

    return SOURCE


class _Timed:
    """Wraps `coinline.training.run.map_tasks` to time the per-coin fan-out inside `train`."""

    def __init__(self):
        import coinline.training.run as run_module

        self.module, self.original, self.seconds = run_module, run_module.map_tasks, []

    def __enter__(self):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds.append(time.perf_counter() - t0)

        self.module.map_tasks = timed
        return self

    def __exit__(self, *exc):
        self.module.map_tasks = self.original


def ray_speedup(lake, dataset_id: str, symbols: list[str], say) -> dict[str, Any]:
    import ray

    from coinline.training.executor import ensure_ray
    from coinline.training.run import train

    cfg = ray_config()
    say(f"== 5.2 Ray speedup: train {len(symbols)} coins x USD 1h, {cfg.max_history_bars:,} bars each, all five "
        f"families, horizons {list(cfg.horizons)}, {cfg.folds.n_folds} folds x {cfg.folds.test_bars} test bars "
        f"(min train {cfg.folds.min_train_bars}), tune trials {cfg.tune.trials}, sequence epochs "
        f"{cfg.sequence.epochs} on <= {cfg.sequence.max_train_samples} samples; {os.cpu_count()} CPUs; "
        f"load average {_load()}")
    if ray.is_initialized():
        say("  (Ray was already initialized in this process: the start-up figure is not measured)")
    out: dict[str, Any] = {"coins": len(symbols), "config_hash": cfg.config_hash(), "bars": cfg.max_history_bars,
                           "folds": cfg.folds.n_folds, "test_bars": cfg.folds.test_bars,
                           "sequence_epochs": cfg.sequence.epochs}
    try:
        with _Timed() as timer:
            t0, c0 = time.perf_counter(), _cpu_seconds()
            serial = train(lake, dataset_id, cfg, workers=1)
            out["workers1_seconds"] = time.perf_counter() - t0
            out["workers1_cpu_seconds"] = _cpu_seconds() - c0
            out["workers1_fanout_seconds"] = timer.seconds[-1]
            serial_bytes = lake.read_bytes(f"runs/{serial.run_id}/metrics.json")
            say(f"  workers=1 (in-process, reference): {out['workers1_seconds']:.1f} s, of which the per-coin "
                f"fan-out {out['workers1_fanout_seconds']:.1f} s; {out['workers1_cpu_seconds']:.1f} CPU s "
                f"({out['workers1_cpu_seconds'] / out['workers1_seconds']:.2f} cores busy); load average {_load()}")

            # diagnostic: the same in-process run with every OpenMP/BLAS pool (numpy, scipy, sklearn, torch)
            # limited to one thread, as Ray runs its workers (OMP_NUM_THREADS=1)
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                t0, c0 = time.perf_counter(), _cpu_seconds()
                single = train(lake, dataset_id, cfg, workers=1)
                out["workers1_1thread_seconds"] = time.perf_counter() - t0
                out["workers1_1thread_cpu_seconds"] = _cpu_seconds() - c0
                out["workers1_1thread_fanout_seconds"] = timer.seconds[-1]
            out["workers1_1thread_metrics_identical"] = (
                lake.read_bytes(f"runs/{single.run_id}/metrics.json") == serial_bytes)
            say(f"  diagnostic, workers=1 with OpenMP/BLAS thread pools limited to 1 (threadpoolctl; Ray workers run "
                f"with OMP_NUM_THREADS=1): {out['workers1_1thread_seconds']:.1f} s, fan-out "
                f"{out['workers1_1thread_fanout_seconds']:.1f} s; {out['workers1_1thread_cpu_seconds']:.1f} CPU s "
                f"({out['workers1_1thread_cpu_seconds'] / out['workers1_1thread_seconds']:.2f} cores busy); "
                f"metrics.json {'identical to' if out['workers1_1thread_metrics_identical'] else 'DIFFERENT from'} "
                f"the reference's")

            t0 = time.perf_counter()
            ensure_ray(2)
            out["ray_init_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            noop = ray.remote(num_cpus=1)(lambda: (os.getpid(), os.environ.get("OMP_NUM_THREADS")))
            answers = ray.get([noop.remote() for _ in range(2)])
            out["ray_worker_pids"] = sorted({pid for pid, _ in answers})
            out["ray_worker_omp_num_threads"] = sorted({str(omp) for _, omp in answers})
            out["ray_workers_ready_seconds"] = time.perf_counter() - t0

            t0, c0 = time.perf_counter(), _cpu_seconds()
            parallel = train(lake, dataset_id, cfg, workers=2)
            out["workers2_seconds"] = time.perf_counter() - t0
            out["workers2_cpu_seconds"] = _cpu_seconds() - c0
            out["workers2_fanout_seconds"] = timer.seconds[-1]
            parallel_bytes = lake.read_bytes(f"runs/{parallel.run_id}/metrics.json")
    finally:
        ray.shutdown()
    out["run_id"] = serial.run_id
    out["metrics_sha256"] = hashlib.sha256(serial_bytes).hexdigest()
    out["metrics_bytes"] = len(serial_bytes)
    out["metrics_identical"] = serial_bytes == parallel_bytes
    out["manifest_identical"] = serial.manifest["content_hash"] == parallel.manifest["content_hash"]
    out["run_ids_equal"] = serial.run_id == parallel.run_id
    if not out["metrics_identical"]:
        a, b = serial_bytes.decode().splitlines(), parallel_bytes.decode().splitlines()
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
        out["metrics_first_differences"] = [(a[i].strip(), b[i].strip()) for i in diff[:5]]
        out["metrics_differing_lines"] = len(diff) + abs(len(a) - len(b))
    out["speedup"] = ratio(out["workers1_seconds"], out["workers2_seconds"])
    out["fanout_speedup"] = ratio(out["workers1_fanout_seconds"], out["workers2_fanout_seconds"])
    out["speedup_vs_1thread"] = ratio(out["workers1_1thread_seconds"], out["workers2_seconds"])
    out["threads_penalty"] = ratio(out["workers1_seconds"], out["workers1_1thread_seconds"])
    out["load_average_after"] = _load()
    serial_part = out["workers1_seconds"] - out["workers1_fanout_seconds"]
    say(f"  Ray start-up (ensure_ray(2) = ray.init): {out['ray_init_seconds']:.1f} s, + two workers answering a no-op: "
        f"{out['ray_workers_ready_seconds']:.1f} s (both outside the timed run); OMP_NUM_THREADS in the workers: "
        f"{', '.join(out['ray_worker_omp_num_threads'])}")
    say(f"  workers=2 (Ray): {out['workers2_seconds']:.1f} s, of which the fan-out {out['workers2_fanout_seconds']:.1f} s "
        f"(cold workers: each imports coinline/torch/xgboost/lightgbm on its first task); "
        f"{out['workers2_cpu_seconds']:.1f} CPU s in this process and its Ray processes "
        f"({out['workers2_cpu_seconds'] / out['workers2_seconds']:.2f} cores busy); load average "
        f"{out['load_average_after']}")
    say(f"  speedup t(1)/t(2) = {fmt_ratio(out['speedup'])} (goal >= {SPEEDUP_GOAL}: "
        f"{'met' if (out['speedup'] or 0) >= SPEEDUP_GOAL else 'MISSED'}); fan-out alone "
        f"{fmt_ratio(out['fanout_speedup'])}; the driver-only part of a run (features, look-ahead check, regime, "
        f"metrics, artifacts) took {serial_part:.1f} s of the 1-worker run")
    say(f"  against the 1-thread in-process run: speedup {fmt_ratio(out['speedup_vs_1thread'])} (parallelism alone); "
        f"the default in-process run is {fmt_ratio(out['threads_penalty'])} x the 1-thread one")
    say(f"  metrics.json ({len(serial_bytes):,} bytes, sha256 {out['metrics_sha256'][:16]}): "
        + ("byte-identical across workers=1 and workers=2" if out["metrics_identical"]
           else f"DIFFERENT between workers=1 and workers=2 ({out['metrics_differing_lines']} lines), first: "
                f"{out['metrics_first_differences'][:2]}")
        + f"; manifest content hash {'identical' if out['manifest_identical'] else 'DIFFERENT'}")
    return out


# ------------------------------------------------------------------------------- 3. peak memory (child)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def child_main(lake_dir: Path, dataset_id: str, workers: int) -> int:
    """The measured process: import what a training run imports, note RSS, train, note peaks, one JSON line."""
    start_hwm = _status_kb("VmHWM")
    import deltalake  # noqa: F401
    import lightgbm  # noqa: F401
    import ray
    import sklearn  # noqa: F401
    import torch  # noqa: F401
    import xgboost  # noqa: F401

    from coinline.lake import open_lake
    from coinline.training.run import train

    out: dict[str, Any] = {"start_hwm_kb": start_hwm, "baseline_hwm_kb": _status_kb("VmHWM"),
                           "baseline_rss_kb": _status_kb("VmRSS"), "baseline_at": time.time()}
    lake = open_lake(f"file://{lake_dir}")
    t0 = time.perf_counter()
    try:
        run = train(lake, dataset_id, ray_config(), workers=workers)
        out["seconds"] = time.perf_counter() - t0
        out["peak_hwm_kb"], out["end_rss_kb"] = _status_kb("VmHWM"), _status_kb("VmRSS")
        out["run_id"] = run.run_id
        out["metrics_sha256"] = hashlib.sha256(lake.read_bytes(f"runs/{run.run_id}/metrics.json")).hexdigest()
    finally:
        t1 = time.perf_counter()
        ray.shutdown()
        out["ray_shutdown_seconds"] = time.perf_counter() - t1
    print(json.dumps(out), flush=True)
    return 0


def _kind(proc) -> str:
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline()[:3])
    except Exception:  # noqa: BLE001 - gone or unreadable: counted as "other"
        return "other"
    if name.startswith("ray::") or "default_worker.py" in cmd:
        return "ray workers"
    return "ray system"


def peak_memory(lake_dir: Path, dataset_id: str, symbols: list[str], say,
                expect_sha256: str | None = None) -> dict[str, Any]:
    psutil = _psutil()
    cfg = ray_config()
    say(f"== 5.3 peak memory: the workers=2 run of 5.2 ({len(symbols)} coins) in a child process; RSS of the child "
        f"and all its descendants sampled every {SAMPLE_S} s; load average {_load()}")
    args = [sys.executable, "-m", "bench.training", "--child", str(lake_dir), dataset_id, "--workers", "2"]
    samples = 0
    peak: dict[str, Any] = {"rss": 0, "t": 0.0, "by_kind": {}, "processes": 0, "members": []}
    peak_pss, peak_driver, peak_procs, sample_cost = 0, 0, 0, 0.0
    seen: dict[int, Any] = {}
    kinds: dict[int, str] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out_f, stderr=err_f)
        root = psutil.Process(proc.pid)
        deadline = time.monotonic() + 1800
        while proc.poll() is None:
            s0 = time.perf_counter()
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            total = pss = driver = 0
            by_kind: dict[str, int] = {}
            members: list[tuple[str, int]] = []
            for p in tree:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                if p.pid not in seen:
                    seen[p.pid] = p
                    kinds[p.pid] = "driver" if p.pid == proc.pid else _kind(p)
                try:
                    pss += p.memory_full_info().pss
                except psutil.Error:
                    pss += rss
                total += rss
                by_kind[kinds[p.pid]] = by_kind.get(kinds[p.pid], 0) + rss
                members.append(("driver" if p.pid == proc.pid else _label(p), rss))
                if p.pid == proc.pid:
                    driver = rss
            samples += 1
            if total > peak["rss"]:
                peak = {"rss": total, "t": time.perf_counter() - t0, "by_kind": by_kind, "processes": len(tree),
                        "members": sorted(members, key=lambda m: -m[1])}
            peak_pss, peak_driver = max(peak_pss, pss), max(peak_driver, driver)
            peak_procs = max(peak_procs, len(tree))
            sample_cost += time.perf_counter() - s0
            if time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(max(0.0, SAMPLE_S - (time.perf_counter() - s0)))
        proc.wait()
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
    leftovers = [p for p in seen.values() if p.pid != proc.pid and _alive(p)]
    for p in leftovers:   # processes this benchmark started (descendants of its child): end them by pid
        try:
            p.kill()
        except psutil.Error:
            pass
    if proc.returncode != 0:
        raise RuntimeError(f"training child exited {proc.returncode}: {err.strip()[-1500:]}")
    child = json.loads(out.strip().splitlines()[-1])
    base = child["baseline_hwm_kb"] * 1024
    result = {
        "coins": len(symbols), "config_hash": cfg.config_hash(), "child_wall_seconds": wall,
        "train_seconds": child["seconds"], "samples": samples, "sample_every_s": SAMPLE_S,
        "mean_sample_cost_s": sample_cost / max(1, samples),
        "baseline_bytes": base, "baseline_rss_bytes": child["baseline_rss_kb"] * 1024,
        "peak_total_rss_bytes": peak["rss"], "peak_at_seconds": peak["t"], "peak_by_kind_bytes": peak["by_kind"],
        "peak_processes": [{"process": name, "rss_bytes": rss} for name, rss in peak["members"]],
        "processes_at_peak": peak["processes"], "max_processes": peak_procs, "processes_seen": len(seen),
        "peak_total_pss_bytes": peak_pss, "peak_driver_rss_bytes": peak_driver,
        "driver_hwm_bytes": child["peak_hwm_kb"] * 1024, "driver_end_rss_bytes": child["end_rss_kb"] * 1024,
        "leftover_processes": len(leftovers), "run_id": child["run_id"], "metrics_sha256": child["metrics_sha256"],
        "metrics_match_part2": None if expect_sha256 is None else child["metrics_sha256"] == expect_sha256,
        "ratios": {},
    }
    mb = 1e6
    result["ratios"] = {"peak total/baseline": ratio(peak["rss"], base),
                        "driver peak/baseline": ratio(max(peak_driver, result["driver_hwm_bytes"]), base)}
    say(f"  child baseline after imports (reference)      {base / mb:8,.0f} MB   (RSS {result['baseline_rss_bytes'] / mb:,.0f} MB)")
    say(f"  peak total RSS, child + descendants         {peak['rss'] / mb:8,.0f} MB   x{fmt_ratio(result['ratios']['peak total/baseline'])} "
        f"at {peak['t']:.0f} s of {wall:.0f} s, {peak['processes']} processes: "
        + ", ".join(f"{k} {v / mb:,.0f} MB" for k, v in sorted(peak["by_kind"].items())))
    say("    at the peak: " + ", ".join(f"{name} {rss / mb:,.0f}" for name, rss in peak["members"]) + " (MB)")
    say(f"  peak total PSS (shared pages split)         {peak_pss / mb:8,.0f} MB")
    say(f"  driver's own peak RSS (sampled / VmHWM)     {peak_driver / mb:8,.0f} MB / {result['driver_hwm_bytes'] / mb:,.0f} MB"
        f"   x{fmt_ratio(result['ratios']['driver peak/baseline'])}")
    say(f"  {samples} samples ({result['mean_sample_cost_s'] * 1e3:.0f} ms each), {len(seen)} processes seen, at most "
        f"{peak_procs} at once; train() {child['seconds']:.1f} s in the child (Ray start-up included); "
        f"leftover processes after exit: {len(leftovers)}"
        + ("" if expect_sha256 is None else
           f"; metrics.json {'identical to' if result['metrics_match_part2'] else 'DIFFERENT from'} 5.2's"))
    return result


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and every live descendant (Ray's raylet, gcs, workers)."""
    psutil = _psutil()
    total = time.process_time()
    for p in psutil.Process().children(recursive=True):
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def _psutil():
    """psutil as Ray vendors it (ray/thirdparty_files, on sys.path once ray is imported)."""
    import importlib

    import ray  # noqa: F401

    return importlib.import_module("psutil")


def _label(proc) -> str:
    """A short name: the process name, or the script a Python process runs (raylet, gcs_server, agent.py...)."""
    try:
        name, cmd = proc.name(), proc.cmdline()
    except Exception:  # noqa: BLE001
        return "?"
    if name.startswith("ray::"):
        return name
    script = next((Path(a).name for a in cmd[1:4] if a.endswith(".py")), None)
    return script or name


def _alive(p) -> bool:
    try:
        return p.is_running() and p.status() != "zombie"
    except Exception:  # noqa: BLE001
        return False


# ------------------------------------------------------------------------------- driver


def run(parts: tuple[int, ...] = (1, 2, 3), quiet: bool = False) -> dict[str, Any]:
    say = _say(quiet)
    result: dict[str, Any] = {"benchmark": NAME, "scale": scale(), "cpus": os.cpu_count(), "parts": list(parts),
                              "load_average_start": _load(), "ratios": {}}
    x = result["ratios"]
    if 1 in parts:
        p1 = result["per_family"] = per_family(say)
        for fam, v in p1["families"].items():
            x[f"{fam}/fastest"] = v["ratio_to_fastest"]
        x["train_coin/one-fold families"] = ratio(p1["train_coin_seconds"], p1["one_fold_sum_seconds"])
    if 2 in parts or 3 in parts:
        symbols = _coins()
        tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-train-"))
        try:
            lake, dataset_id, setup = make_lake(tmp / "lake", symbols)
            result["dataset"] = {"dataset_id": dataset_id, **setup}
            say(f"  (dataset for 5.2/5.3: {setup['series']} series, {setup['rows']:,} candles, "
                f"{setup['history_days']} days, committed and materialized in {setup['seconds']:.1f} s)")
            sha = None
            if 2 in parts:
                p2 = result["ray"] = ray_speedup(lake, dataset_id, symbols, say)
                sha = p2["metrics_sha256"]
                x["speedup (1 worker / 2 workers)"] = p2["speedup"]
                x["fan-out speedup"] = p2["fanout_speedup"]
                x["speedup/goal"] = ratio(p2["speedup"], SPEEDUP_GOAL)
                x["speedup vs 1-thread in-process"] = p2["speedup_vs_1thread"]
                x["in-process default / 1-thread"] = p2["threads_penalty"]
            if 3 in parts:
                p3 = result["memory"] = peak_memory(tmp / "lake", dataset_id, symbols, say, expect_sha256=sha)
                x.update(p3.pop("ratios"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_end"] = _load()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", type=int, choices=(1, 2, 3), default=[1, 2, 3])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("LAKE_DIR", "DATASET_ID"), help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(Path(args.child[0]), args.child[1], args.workers)
    result = run(tuple(args.parts))
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
