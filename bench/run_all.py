"""`make bench`: run every benchmark, print a compact summary, write bench/results/latest.json.

Every figure is a ratio against a reference measured in the same run (plus the absolute numbers);
nothing is asserted: a missed goal is printed, never a failure. A benchmark that crashes is reported
as an error and the others still run. COINLINE_BENCH_SCALE (default 1.0) shrinks every benchmark.
After the per-benchmark table, the issue's goals (`bench._goals`) are judged from this run's results:
met, missed or not measured, each with the size it was measured at; also under "goals" in latest.json.
maintain_cycles runs `--maintain-cycles` cycles, else COINLINE_BENCH_MAINTAIN_CYCLES, else 1000 x scale.

    python -m bench.run_all [--only NAME ...] [--skip NAME ...] [--no-freqtrade] [--maintain-cycles N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    _goals,
    backfill_requests,
    backfill_rss,
    forecasting,
    ingest_kraken,
    ingest_throughput,
    maintain_cycles,
    materialize,
    random_walks,
    real_study,
    staged_training,
    sync_noop,
    training,
)
from bench._common import MAX_PAGE_ROWS, fmt_ratio, scale

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = {
    "ingest_throughput": lambda opts: ingest_throughput.run(freqtrade=not opts.no_freqtrade),
    "backfill_requests": lambda opts: backfill_requests.run(),
    "sync_noop": lambda opts: sync_noop.run(),
    "maintain_cycles": lambda opts: maintain_cycles.run(cycles=opts.maintain_cycles),
    "materialize": lambda opts: materialize.run(),
    "backfill_rss": lambda opts: backfill_rss.run(),
    "training": lambda opts: training.run(),
    "staged_training": lambda opts: staged_training.run(),
    "forecasting": lambda opts: forecasting.run(),
    "real_study": lambda opts: real_study.run(),
    "random_walks": lambda opts: random_walks.run(),
}


def _rows(name: str, r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, measured, reference, ratio) lines of the summary table."""
    if "error" in r:
        return [(name, "ERROR", r["error"][:60], "", "")]
    x = r["ratios"]
    if name == "ingest_throughput":
        c, f, ft = r["coinline"], r["floor"], r["freqtrade"]
        out = [(name, "coinline / floor (rows/s)", f"{c['rows_per_s']:,.0f}", f"{f['rows_per_s']:,.0f}",
                fmt_ratio(x["coinline/floor"]))]
        if "skipped" in ft:
            out.append((name, "freqtrade", "skipped", "", ""))
        else:
            out += [(name, "freqtrade / its floor (rows/s)", f"{ft['parquet']['rows_per_s']:,.0f}",
                     f"{ft['floor']['rows_per_s']:,.0f}", fmt_ratio(x["freqtrade/floor"])),
                    (name, f"coinline / freqtrade (floor-relative; goal >= {ingest_throughput.GOAL} at "
                           f"{MAX_PAGE_ROWS:,}-row pages, here {r['page_rows']:,})", fmt_ratio(x["coinline/floor"]),
                     fmt_ratio(x["freqtrade/floor"]), fmt_ratio(x["coinline/freqtrade"]))]
        if "kraken" in r:
            k, kx = r["kraken"], r["kraken"]["ratios"]
            out += [(name, "Kraken 720-row pages: coinline / floor (median)", f"{k['coinline']['rows_per_s']:,.0f}",
                     f"{k['floor']['rows_per_s']:,.0f}", fmt_ratio(kx["coinline/floor"])),
                    (name, "  parse only / floor", f"{k['parse']['rows_per_s']:,.0f}", f"{k['floor']['rows_per_s']:,.0f}",
                     fmt_ratio(kx["parse_only/floor"])),
                    (name, "  coinline / freqtrade per page, floor-relative", fmt_ratio(kx["coinline/floor"]),
                     fmt_ratio(kx["freqtrade/floor"]), fmt_ratio(kx["coinline/freqtrade"]))]
            if kx.get("written/freqtrade_download") is not None:
                out.append((name, f"  parser+writer / freqtrade download, floor-relative (goal >= {ingest_kraken.GOAL})",
                            fmt_ratio(kx["written/floor"]), fmt_ratio(kx["freqtrade_download/floor"]),
                            fmt_ratio(kx["written/freqtrade_download"])))
        return out
    if name == "backfill_requests":
        return [(name, f"history requests / minimum (goal <= {backfill_requests.GOAL})", str(r["history_requests"]),
                 str(r["minimum_requests"]), fmt_ratio(x["requests/minimum"])),
                (name, "rerun, same clock: history requests", str(r["rerun_history_requests"]), "0", "")]
    if name == "sync_noop":
        lg, sh = r["long"], r["short"]
        return [(name, f"no-op sync {lg['history_days']}d / {sh['history_days']}d (goal <= {sync_noop.GOAL})",
                 f"{lg['noop_median_s'] * 1e3:.1f} ms", f"{sh['noop_median_s'] * 1e3:.1f} ms",
                 fmt_ratio(x["noop long/short"])),
                (name, f"one-new-candle sync (goal <= {sync_noop.GOAL})", f"{lg['one_new_median_s'] * 1e3:.1f} ms",
                 f"{sh['one_new_median_s'] * 1e3:.1f} ms", fmt_ratio(x["one-new long/short"]))]
    if name == "maintain_cycles":
        ten, pre, post = r["after_10"], r["before_maintenance"], r["after_maintenance"]
        series = r.get("series_count", len(r["series"]))

        def ms(s: dict[str, Any]) -> str:
            return f"{s['median_s'] * 1e3:.1f} ms"

        def files(s: dict[str, Any]) -> str:
            return f"{s['active_files']:,} / {s['stored_files']:,}"

        return [(name, f"no-op sync after {r['cycles']:,} cycles, maintained / after 10 (goal <= {maintain_cycles.GOAL} "
                       f"at {maintain_cycles.GOAL_CYCLES:,})", ms(post), ms(ten), fmt_ratio(x["maintained / after 10"])),
                (name, "  before the final maintenance / after 10", ms(pre), ms(ten),
                 fmt_ratio(x["before maintenance / after 10"])),
                (name, f"  raw_candles files active / stored, after maintenance ({series} series; ref: after 10)",
                 files(post), files(ten), ""),
                (name, "  raw_candles files active / stored, before maintenance", files(pre), files(ten), "")]
    if name == "materialize":
        return [(name, f"one new candle per series / full build, {r['rows']:,} rows (goal <= {materialize.GOAL})",
                 f"{r['one_new_median_s']:.2f} s", f"{r['full_median_s']:.2f} s", fmt_ratio(x["one-new/full"])),
                (name, "  nothing new / full build", f"{r['warm_seconds']:.2f} s", f"{r['full_median_s']:.2f} s",
                 fmt_ratio(x["warm/full"])),
                (name, "  incremental == full build (hash, bytes)", "yes" if r["identical"] else "NO", "", ""),
                (name, "validate after one new candle / cold", f"{r['validate_one_new_s']:.2f} s",
                 f"{r['validate_cold_s']:.2f} s", fmt_ratio(x["validate one-new/cold"])),
                (name, "  load average start / end", r["load_average_start"], r["load_average_end"], "")]
    if name == "backfill_rss":
        goal_mb = f"{backfill_rss.GOAL_BYTES / 1e6:,.0f} MB"
        return [(name, f"peak RSS, {r['rows']:,}-row backfill (goal < {goal_mb})", f"{r['peak_rss_bytes'] / 1e6:,.0f} MB",
                 f"{r['baseline_peak_rss_bytes'] / 1e6:,.0f} MB", fmt_ratio(x["peak/baseline"])),
                (name, "peak RSS / goal", f"{r['peak_rss_bytes'] / 1e6:,.0f} MB", goal_mb,
                 fmt_ratio(x["peak/goal"]))]
    if name == "training":
        out = []
        if "per_family" in r:
            p = r["per_family"]
            rows = f"{p['fold']['train_rows']:,}+{p['fold']['calib_rows']:,} rows"
            out += [(name, f"{fam} fit+predict, {rows} (ref: fastest)", f"{v['seconds']:.2f} s",
                     f"{p['fastest']} {p['fastest_seconds']:.2f} s", fmt_ratio(v["ratio_to_fastest"]))
                    for fam, v in p["families"].items()]
            out.append((name, f"train_coin {p['symbol']} {p['rows']:,} rows / one-fold families",
                        f"{p['train_coin_seconds']:.1f} s", f"{p['one_fold_sum_seconds']:.1f} s",
                        fmt_ratio(x["train_coin/one-fold families"])))
        if "ray" in r:
            g = r["ray"]
            out += [(name, f"{g['coins']} coins: t(1 worker)/t(2 Ray) (goal >= 1.6)", f"{g['workers2_seconds']:.1f} s",
                     f"{g['workers1_seconds']:.1f} s", fmt_ratio(g["speedup"])),
                    (name, "  per-coin fan-out alone", f"{g['workers2_fanout_seconds']:.1f} s",
                     f"{g['workers1_fanout_seconds']:.1f} s", fmt_ratio(g["fanout_speedup"])),
                    (name, "  vs in-process limited to 1 thread", f"{g['workers2_seconds']:.1f} s",
                     f"{g['workers1_1thread_seconds']:.1f} s", fmt_ratio(g["speedup_vs_1thread"])),
                    (name, "  Ray start-up (ray.init + 2 workers)",
                     f"{g['ray_init_seconds'] + g['ray_workers_ready_seconds']:.1f} s", "", ""),
                    (name, "  metrics.json identical, 1 vs 2 workers", "yes" if g["metrics_identical"] else "NO", "", "")]
        if "memory" in r:
            m = r["memory"]
            out += [(name, f"peak RSS, run + Ray processes ({m['coins']} coins)", f"{m['peak_total_rss_bytes'] / 1e6:,.0f} MB",
                     f"{m['baseline_bytes'] / 1e6:,.0f} MB", fmt_ratio(x["peak total/baseline"])),
                    (name, "  driver's own peak RSS",
                     f"{max(m['peak_driver_rss_bytes'], m['driver_hwm_bytes']) / 1e6:,.0f} MB",
                     f"{m['baseline_bytes'] / 1e6:,.0f} MB", fmt_ratio(x["driver peak/baseline"]))]
        return out
    if name == "staged_training":
        return [(name, f"{r['coins']} coins: six pipeline steps / one train", f"{r['staged_seconds']:.1f} s",
                 f"{r['whole_seconds']:.1f} s", fmt_ratio(x["staged/whole"])),
                (name, "  step results kept in the lake", f"{r['work_bytes'] / 1e6:,.1f} MB", "", ""),
                (name, "  runs/ files identical", "yes" if r["identical"] else "NO", "", "")]
    if name == "forecasting":
        w, c, s, u = r["warm"], r["cli"], r["scoring"], r["setup"]
        return [(name, f"{r['coins']} coins x 3 h: warm forecast / load_candles (median of 5)",
                 f"{w['forecast_median_s'] * 1e3:,.0f} ms", f"{w['read_median_s'] * 1e3:,.0f} ms", fmt_ratio(x["forecast/read"])),
                (name, "  load the set once (load_run_set)", f"{w['load_set_seconds']:.2f} s", "", ""),
                (name, "  forecast record=True (once) / record=False", f"{w['record_seconds'] * 1e3:,.0f} ms",
                 f"{w['forecast_median_s'] * 1e3:,.0f} ms", fmt_ratio(x["forecast record=True/record=False"])),
                (name, "cold CLI forecast / python -c 'import coinline.cli'", f"{c['cli_median_s']:.2f} s",
                 f"{c['import_floor_median_s']:.2f} s", fmt_ratio(x["cli/import floor"])),
                (name, "  cold CLI / python -c 'import <what a forecast imports>'", f"{c['cli_median_s']:.2f} s",
                 f"{c['forecast_imports_median_s']:.2f} s", fmt_ratio(x["cli/forecast imports"])),
                (name, f"ledger append, {s['inserted']:,} rows in {s['batches']} MERGEs",
                 f"{s['append_rows_per_s']:,.0f} rows/s", "", ""),
                (name, "ledger.read / plain Delta read (time)",
                 f"{s['read_rows_per_s']:,.0f} rows/s", f"{s['plain_read_rows_per_s']:,.0f} rows/s",
                 fmt_ratio(x["ledger.read/plain read"])),
                (name, "  realized_outcomes", f"{s['outcomes_rows_per_s']:,.0f} rows/s", "", ""),
                (name, f"  score (n_boot {s['n_boot']})", f"{s['score_rows_per_s']:,.0f} rows/s", "", ""),
                (name, "scoring (outcomes + score) / ledger.read (time)", f"{s['scoring_seconds']:.2f} s",
                 f"{s['read_seconds']:.2f} s", fmt_ratio(x["scoring/read"])),
                (name, f"  set-up: lake + one training run ({u['coins']} coins)", f"{u['seconds']:.0f} s", "", ""),
                (name, "  load average start / end (single run)", r["load_average_start"], r["load_average_end"], "")]
    if name == "random_walks":
        return [(name, f"markets promoted (goal 0; {r['seeds']} seeds x independent/correlated)", str(r["promoted"]),
                 str(r["markets"]), fmt_ratio(x["promoted/markets"])),
                (name, "  served horizons significant vs base rate (Holm)", str(r["served_significant"]),
                 str(r["served_tests"]), ""),
                (name, "  served ECE median / max (goal <= 0.02)", f"{r['ece_median']:.4f}", f"{r['ece_max']:.4f}", "")]
    if name == "real_study":
        if "skipped" in r:
            return [(name, "skipped", r["skipped"][:60], "", "")]
        out = []
        for h in r["horizons"]:
            sv = r["served"][str(h)]["served"]
            w = r["walk_forward"][f"{h}/{sv}"]
            out += [(name, f"h={h} walk-forward {sv} / base rate (log loss)", f"{w['log_loss']:.4f}",
                     f"{w['base_rate_log_loss']:.4f}", fmt_ratio(w["model/base_rate"])),
                    (name, f"  h={h} walk-forward momentum / base rate", f"{w['momentum_log_loss']:.4f}",
                     f"{w['base_rate_log_loss']:.4f}", fmt_ratio(w["momentum/base_rate"]))]
            fz = r["frozen_set"].get(str(h))
            if fz:
                out.append((name, f"  h={h} frozen set from 2024-01-01: served / base rate", f"{fz['log_loss']:.4f}",
                            f"{fz['base_rate_log_loss']:.4f}", fmt_ratio(fz["served/base_rate"])))
            rk = r["risk"][str(h)]
            out.append((name, f"  h={h} risk head / HAR-RV (QLIKE; EWMA / HAR {fmt_ratio(rk['ewma']['qlike/har'])})",
                        f"{rk['served']['qlike']:.4f}", f"{rk['har']['qlike']:.4f}",
                        fmt_ratio(rk["served"]["qlike/har"])))
        e = r["ensemble_check"]["pooled"]
        if e:
            out.append((name, f"ensemble / best member {e['best_member']} (h={r['ensemble_check']['horizon']})",
                        f"{e['ensemble']:.4f}", f"{e['best_member_log_loss']:.4f}",
                        fmt_ratio(x.get("ensemble/best member"))))
        out += [(name, f"  {len(r['coins'])} coins: train / whole study (wall)", f"{r['steps_seconds']['train']:.0f} s",
                 f"{r['study_seconds']:.0f} s", fmt_ratio(r["steps_seconds"]["train"] / r["study_seconds"])),
                (name, "  load average start / end (single run)", r["load_average_start"], r["load_average_end"], "")]
        return out
    return [(name, "?", "", "", "")]


def grid(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    """Aligned columns (the first row a header, underlined); the columns in `right` right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(w) if j in right else cell.ljust(w)
                               for j, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [("benchmark", "figure", "measured", "reference", "ratio")]
    for name, r in results.items():
        rows += _rows(name, r)
    return grid(rows, right=(2, 3, 4))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run just these")
    ap.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[], help="leave these out")
    ap.add_argument("--no-freqtrade", action="store_true", help="skip the freqtrade subprocess of ingest_throughput")
    ap.add_argument("--maintain-cycles", type=int, default=None, metavar="N",
                    help=f"hourly sync cycles of maintain_cycles (default ${maintain_cycles.CYCLES_ENV}, else 1000 x "
                         f"COINLINE_BENCH_SCALE; the goal is for {maintain_cycles.GOAL_CYCLES:,})")
    ap.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    opts = ap.parse_args(argv)
    names = [n for n in (opts.only or BENCHMARKS) if n not in opts.skip]
    # backfill_rss first: its children are forked from this process, and Linux carries a process's RSS
    # high-water mark across fork+exec into the child's ru_maxrss; this process is smallest at the start
    # (the in-child VmHWM figures do not depend on it). The summary keeps the 1..4 order.
    run_order = sorted(names, key=lambda n: n != "backfill_rss")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    print(f"coinline benchmarks: {', '.join(names)} (COINLINE_BENCH_SCALE={scale():g}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()})", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for name in run_order:
        print(f"\n--- {name} ---", flush=True)
        b0 = time.perf_counter()
        try:
            results[name] = BENCHMARKS[name](opts)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            results[name] = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}"}
        results[name]["wall_seconds"] = round(time.perf_counter() - b0, 2)
    results = {n: results[n] for n in names}
    total = time.perf_counter() - t0
    print(f"\n=== summary (ratios against the reference measured in the same run; goals reported, not asserted; "
          f"{total:.0f} s in all)")
    print(table(results))
    goals = _goals.judge(results)
    print("\n=== goals (judged from this run, at the sizes it ran; nothing asserted)")
    print(grid(_goals.rows(goals)))
    doc = {"started_at": started.isoformat(), "total_seconds": round(total, 2), "scale": scale(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "goals": goals, "results": results}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\nwrote {opts.out.relative_to(Path.cwd()) if opts.out.is_relative_to(Path.cwd()) else opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
