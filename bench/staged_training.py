"""Benchmark: the cost of running training as separate pipeline steps (`coinline.training.stages`, what the
Kubeflow components do) instead of one in-process `train`.

Same dataset (replay market, 6 coins x scale, USD 1h, the Ray benchmark's reduced-but-real config: all five
families, horizons 1/4/24, two folds), both in-process (workers=1). Reference: the second of two `train`
runs (the first pays one-off import and warm-up costs). Measured: the six
steps run back to back in this process, each writing its result to the lake (pickles under work/<run_id>/)
and the next reading it back; in a cluster each step is also a pod start, not measured here. Checked, not
timed: both write byte-identical runs/<run_id>/ files. Printed: wall time per step, the staged/whole
ratio, and the bytes of step results kept in the lake.

    python -m bench.staged_training
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import training
from bench._common import fmt_ratio, ratio, scale

NAME = "staged_training"
COINS = 6


def run(quiet: bool = False) -> dict[str, Any]:
    from coinline.training import stages
    from coinline.training.run import train

    say = print if not quiet else (lambda *a, **k: None)
    symbols = training._coins()[:max(2, int(round(COINS * scale())))]
    cfg = training.ray_config()
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-staged-"))
    try:
        lake, dataset_id, setup = training.make_lake(tmp / "lake", symbols)
        say(f"== staged vs whole training: {len(symbols)} coins x {cfg.max_history_bars:,} bars, workers=1, "
            f"load average {training._load()}")
        def whole_run() -> tuple[Any, float]:
            t0 = time.perf_counter()
            done = train(lake, dataset_id, cfg, workers=1)
            return done, time.perf_counter() - t0

        whole, first_s = whole_run()  # also pays the one-off costs (imports, first fits): timed, not used
        whole, whole_s = whole_run()
        whole_files = {n: lake.read_bytes(n) for n in lake.list(f"runs/{whole.run_id}/")}
        for name in whole_files:
            lake.delete(name)
        steps: dict[str, float] = {}

        def timed(step: str, fn, *args, **kw):
            s0 = time.perf_counter()
            out = fn(*args, **kw)
            steps[step] = time.perf_counter() - s0
            return out

        run_id = timed("prepare", stages.prepare_run, lake, dataset_id, cfg, workers=1).run_id
        timed("specialists", stages.train_specialists_step, lake, run_id, workers=1)
        timed("global regime", stages.train_global_step, lake, run_id)
        timed("ensemble", stages.ensemble_step, lake, run_id, workers=1)
        timed("evaluate", stages.evaluate_step, lake, run_id)
        timed("simulate + write run", stages.simulate_step, lake, run_id)
        staged_s = sum(steps.values())
        work_bytes = sum(len(lake.read_bytes(n) or b"") for n in lake.list(f"work/{run_id}/"))
        identical = all(lake.read_bytes(n) == data for n, data in whole_files.items())
        say(f"  whole train: {whole_s:.1f} s (reference; the first, cold run took {first_s:.1f} s)")
        for step, s in steps.items():
            say(f"  step {step:<22} {s:6.1f} s")
        say(f"  staged total {staged_s:.1f} s = {fmt_ratio(ratio(staged_s, whole_s))} x whole; step results kept "
            f"in the lake: {work_bytes / 1e6:,.1f} MB; runs/ files identical: {'yes' if identical else 'NO'}")
        return {"benchmark": NAME, "coins": len(symbols), "dataset": setup, "whole_seconds": whole_s,
                "whole_cold_seconds": first_s,
                "steps_seconds": steps, "staged_seconds": staged_s, "work_bytes": work_bytes,
                "identical": identical, "ratios": {"staged/whole": ratio(staged_s, whole_s)}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
