"""Benchmark: materialize (and validate) after one new candle per series versus a full build (goal <= 0.1).

One lake backfilled through the real path (`backfill` + `CoinAPISource`, page_limit 100,000) from an in-process
replay venue: 30 coins x USD at 1h with ~1,400 days of history, about 1M candles (x COINLINE_BENCH_SCALE, at
least 30 days). Then, timed:
- cold: the first `materialize` (validates every batch, builds every series, full canonical suite);
- warm: `materialize` again with nothing new (the previous dataset is found again);
- one new candle per series, the venue's clock one hour on and a sync committed (30 one-candle batches), then
  from that same state on two copies of the lake: `materialize` (incremental: from the previous dataset)
  versus `materialize(full=True)` (every series from raw); both validate the 30 new batches first.
  Each repeat moves the clock one more hour. The two datasets must be identical (hash, bytes): checked.
- validate: `coinline validate` after one new candle per series, and cold (no stored result at all).
Median of the repeats; ratio = incremental / full.

    python -m bench.materialize [--days D] [--repeats N] [--json]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _replay
from bench._common import (
    arguments,
    conclude,
    fmt_ratio,
    load_average,
    profiled,
    ratio,
    run_main,
    say_for,
    scale,
    shares,
    spread,
    timed,
)

NAME = "materialize"
GOAL = 0.1
COINS = 30
DAYS = 1400              # x 24 h x 30 coins: ~1M candles


def run(days: int | None = None, repeats: int = 3, quiet: bool = False) -> dict[str, Any]:
    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.lake import open_lake, tables
    from coinline.quality.lake_checks import validate_lake
    from coinline.quality.suites import validate_candles

    days = days or max(30, int(round(DAYS * scale())))
    say = say_for(quiet)
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-materialize-"))
    universe = _replay.universe()
    pairs = [(s, "USD", "1h") for s in universe.symbols()[:COINS]]
    spec = DatasetSpec(_replay.UNIVERSE, "1h", "coinapi", ("USD",))
    load_start = load_average()
    venue = None
    try:
        venue = _replay.Venue(tmp / "lake", pairs, days)
        lake = venue.lake
        rows = sum(n for _k, n, _a, _b in tables.series_in(lake))
        say(f"[{NAME}] {len(pairs)} series, {rows:,} candles, backfilled in {venue.backfill_seconds:.1f} s")
        validate_candles(lake_sample(lake), stage="raw")   # first suite run pays Great Expectations' set-up

        def build(target, now, **kw):
            return materialize(target, universe, spec, gap_tolerance=0, now=now, **kw)

        cold, cold_s = timed(build, lake, _replay.NOW)
        _, warm_s = timed(build, lake, _replay.NOW)
        one, full, identical = [], [], []
        for k in range(1, repeats + 1):
            now = _replay.NOW + timedelta(hours=k)
            venue.advance(now)
            inserted = venue.sync()[2]
            if inserted != len(pairs):
                raise RuntimeError(f"sync inserted {inserted} candles, expected one per series")
            shutil.rmtree(tmp / "copy", ignore_errors=True)
            shutil.copytree(tmp / "lake", tmp / "copy")
            copy = open_lake(f"file://{tmp / 'copy'}")
            a, a_s = timed(build, lake, now)
            b, b_s = timed(build, copy, now, full=True)
            one.append(a_s)
            full.append(b_s)
            identical.append(a.content_hash == b.content_hash and lake.read_bytes(f"datasets/{a.dataset_id}/data.parquet")
                             == copy.read_bytes(f"datasets/{b.dataset_id}/data.parquet"))
        # where an incremental build's time goes: one more new candle per series, built under cProfile
        venue.advance(_replay.NOW + timedelta(hours=repeats + 1))
        venue.sync()
        _, profile = profiled(lambda: build(lake, _replay.NOW + timedelta(hours=repeats + 1)), PROFILE_PARTS)
        # validate after one new candle per series (the batches not validated yet), then from nothing
        venue.advance(_replay.NOW + timedelta(hours=repeats + 2))
        venue.sync()
        _, validate_one_s = timed(validate_lake, lake, gap_tolerance=0)
        shutil.rmtree(tmp / "lake" / "quality")
        _, validate_cold_s = timed(validate_lake, lake, gap_tolerance=0)
        result = {"benchmark": NAME, "series": len(pairs), "history_days": days, "rows": rows,
                  "dataset_rows": cold.row_count, "repeats": repeats,
                  "backfill_seconds": round(venue.backfill_seconds, 2), "cold_seconds": cold_s, "warm_seconds": warm_s,
                  **spread(one, "one_new", 3), **spread(full, "full", 3),
                  "identical": all(identical), "validate_one_new_s": validate_one_s,
                  "validate_cold_s": validate_cold_s, "incremental_profile_s": profile, "load_average_start": load_start,
                  "load_average_end": load_average()}
    finally:
        if venue is not None:
            venue.close()
        shutil.rmtree(tmp, ignore_errors=True)
    r = result
    x = {"one-new/full": ratio(r["one_new_median_s"], r["full_median_s"]),
         "warm/full": ratio(r["warm_seconds"], r["full_median_s"]),
         "validate one-new/cold": ratio(r["validate_one_new_s"], r["validate_cold_s"])}
    if x["one-new/full"] is not None and x["one-new/full"] > GOAL:
        r["shortfall"] = {"materialize_one_new_vs_full": f"profile of one incremental build (cProfile, cumulative): "
                                                         f"{shares(profile)}"}
    return conclude(r, x, f"one-new/full <= {GOAL}", report, say,
                    summary=f"one new candle per series / full build {fmt_ratio(x['one-new/full'])} "
                            f"(goal <= {GOAL}), identical datasets: {'yes' if r['identical'] else 'NO'}")


# what an incremental build spends its time on (`profiled`): (file suffix, function)
PROFILE_PARTS = {
    "raw suite over the new batches (Great Expectations)": ("coinline/quality/lake_checks.py", "validate_new_batches"),
    "gap check": ("coinline/datasets/materialize.py", "refuse_unexplained_gaps"),
    "commit manifests read": ("coinline/lake/tables.py", "commit_manifests"),
    "changed series re-derived": ("coinline/datasets/incremental.py", "incremental_build"),
    "whole-series invariants": ("coinline/quality/invariants.py", "invariants_result"),
    "content hash of every row": ("coinline/hashing.py", "table_sha256"),
    "Parquet of every row": ("coinline/datasets/incremental.py", "data_bytes"),
    "dataset written": ("coinline/lake/store.py", "write_bytes"),
}


def lake_sample(lake):
    """A few stored candles (to warm the suite up outside the timings)."""
    from coinline.lake import tables

    key = tables.series_in(lake)[0][0]
    t = tables.read(lake, tables.RAW, series=key)
    return t.slice(0, 10)


def report(r: dict[str, Any]) -> str:
    x = r["ratios"]
    return "\n".join([
        f"== materialize: {r['series']} series x {r['history_days']} days = {r['rows']:,} candles, "
        f"median of {r['repeats']} (load average {r['load_average_start']} -> {r['load_average_end']})",
        f"  cold (first build, every batch validated)     {r['cold_seconds']:8.2f} s",
        f"  warm (nothing new)                            {r['warm_seconds']:8.2f} s   warm/full {fmt_ratio(x['warm/full'])}",
        f"  one new candle per series: incremental        {r['one_new_median_s']:8.2f} s   runs {r['one_new_runs_s']}",
        f"                             full build         {r['full_median_s']:8.2f} s   runs {r['full_runs_s']}",
        f"  one-new / full {fmt_ratio(x['one-new/full'])}  (goal <= {GOAL}); incremental == full (hash, bytes): "
        f"{'yes' if r['identical'] else 'NO'}",
        f"  validate after one new candle per series      {r['validate_one_new_s']:8.2f} s",
        f"  validate cold (no stored result)              {r['validate_cold_s']:8.2f} s   ratio "
        f"{fmt_ratio(x['validate one-new/cold'])}",
        f"  an incremental build's profile ({r['incremental_profile_s']['total']:.2f} s under cProfile): "
        f"{shares(r['incremental_profile_s'])}",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__)
    ap.add_argument("--days", type=int, default=None, help=f"history per series (default {DAYS} x scale, >= 30)")
    ap.add_argument("--repeats", type=int, default=3, help="one-new-candle rounds (median)")
    return run_main(ap, argv, lambda args: run(days=args.days, repeats=max(1, args.repeats)))


if __name__ == "__main__":
    sys.exit(main())
