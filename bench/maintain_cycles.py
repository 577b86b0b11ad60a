"""Benchmark: a no-op sync after many simulated hourly sync cycles, with `coinline maintain`, versus after 10
(issue 11 item 4; goal: <= 1.2 after maintenance at 10,000 cycles; files in raw_candles bounded).

One lake backfilled through the real path (`backfill` + `CoinAPISource` from an in-process replay venue,
`--history-days` of hourly candles for BTC, ETH, SOL x USD). Then `--cycles` hourly cycles: the venue's clock
and `now` move one hour on and `coinline.ingest.sync.sync` commits the newly closed candle of every series
(one commit per series per cycle, as `sync --follow` does), and every `--maintain-every` cycles
`coinline.lake.maintain.maintain` runs (retention 0 and tombstones 0 hours: in a real deployment the files a
weekly run removed are older than its 6-hour retention at the next run, and their tombstones older than their
24 hours; here the cycles take seconds of wall time, and both clocks are wall clocks). Timed (median
of `--repeats`, each a full `sync` with nothing new, which makes no request):
- no-op after 10 cycles (no maintenance yet: what the issue compares against);
- no-op after all cycles, before the final maintenance, and after it.
Reported: the ratios, raw_candles' active and stored data files and log entries before/after, and where a
no-op sync's time goes (opening raw_candles).

Cycles: `--cycles`, else COINLINE_BENCH_MAINTAIN_CYCLES (an exact count, not scaled; 10000 for the issue's
goal), else 1000 x COINLINE_BENCH_SCALE (at least 20). The result and every report name the count run.

    python -m bench.maintain_cycles [--cycles N] [--maintain-every K] [--history-days D] [--repeats R] [--json]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _replay
from bench._common import (
    arguments,
    conclude,
    fmt_ratio,
    median_time,
    ratio,
    run_main,
    say_for,
    scaled,
    spread,
)

NAME = "maintain_cycles"
GOAL = 1.2
GOAL_CYCLES = 10_000         # the cycle count the goal is stated for
GOAL_SERIES = 90             # the series count the files goal is stated for (this bench runs len(PAIRS))
CYCLES_ENV = "COINLINE_BENCH_MAINTAIN_CYCLES"
MIN_CYCLES = 20
PAIRS = (("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("SOL", "USD", "1h"))


class _Lake(_replay.Venue):
    """The lake, its venue and source, and a clock on the hour grid (NOW is hh:05:30)."""

    def cycle(self) -> int:
        self.advance(self.now + timedelta(hours=1))
        return self.sync()[2]

    def maintain(self) -> dict[str, Any]:
        """`coinline maintain` at the venue's clock, retention and tombstones 0 hours (see the docstring)."""
        from coinline.lake.maintain import maintain

        return maintain(self.lake, now=self.now, retention_hours=0, tombstone_hours=0)

    def noop(self, repeats: int) -> dict[str, Any]:
        runs = [self.sync() for _ in range(repeats)]
        if any(inserted or requests for _s, requests, inserted in runs):
            raise RuntimeError("a no-op sync fetched or inserted candles")
        return spread([s for s, _r, _i in runs])

    def files(self) -> dict[str, Any]:
        """raw_candles' files and log, and the profile of what a no-op sync pays for them: table opens per
        no-op sync, the median open of raw_candles (delta-rs lists `_delta_log`, reads the newest checkpoint
        and the entries after it), the log's entries and the newest checkpoint's tombstones."""
        import pyarrow.parquet as pq

        from coinline.lake import maintain, tables

        dt = tables.open_table(self.lake, tables.RAW)
        log = Path(self.lake.base_path) / tables.RAW / "_delta_log"
        file_index_s, _ = median_time(lambda: tables.file_index(self.lake, tables.RAW), 9)
        open_s, _ = median_time(lambda: tables.open_table(self.lake, tables.RAW), 9)
        names = [p.name for p in log.iterdir()]
        hint = self.lake.read_json(f"{tables.RAW}/_delta_log/_last_checkpoint")
        tombstones = 0
        if isinstance(hint, dict) and (log / f"{hint['version']:020d}.checkpoint.parquet").exists():
            removes = pq.read_table(log / f"{hint['version']:020d}.checkpoint.parquet", columns=["remove"])["remove"]
            tombstones = len(removes) - removes.null_count
        return {"version": dt.version(), "active_files": len(dt.get_add_actions(flatten=True)),
                "stored_files": len(maintain.stored_files(self.lake, tables.RAW)),
                "log_entries": sum(1 for n in names if n.endswith(".json")),
                "log_files": len(names), "checkpoint_tombstones": tombstones,
                "opens_per_noop": self.opens_per_noop(),
                "file_index_median_s": file_index_s, "open_median_s": open_s}

    def opens_per_noop(self) -> int:
        """Delta table opens (any table) during one no-op sync."""
        from deltalake import DeltaTable

        opened = []
        init = DeltaTable.__init__

        def counting(table, *args, **kwargs):
            opened.append(1)
            init(table, *args, **kwargs)

        DeltaTable.__init__ = counting
        try:
            self.sync()
        finally:
            DeltaTable.__init__ = init
        return len(opened)


def default_cycles() -> int:
    """COINLINE_BENCH_MAINTAIN_CYCLES when set (exact, not scaled), else 1000 x COINLINE_BENCH_SCALE; >= MIN_CYCLES."""
    raw = os.environ.get(CYCLES_ENV, "").strip()
    if not raw:
        return scaled(1000, minimum=MIN_CYCLES)
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        raise SystemExit(f"{CYCLES_ENV}={raw!r} is not a whole number") from None
    if value < MIN_CYCLES:
        raise SystemExit(f"{CYCLES_ENV}={raw!r} must be at least {MIN_CYCLES}")
    return value


def run(cycles: int | None = None, maintain_every: int = 168, history_days: int = 60, repeats: int = 7,
        quiet: bool = False) -> dict[str, Any]:
    cycles = cycles or default_cycles()
    if cycles < MIN_CYCLES:
        raise ValueError(f"cycles={cycles} must be at least {MIN_CYCLES}")
    say = say_for(quiet)
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-maintain-"))
    side = None
    maintained = 0
    try:
        side = _Lake(tmp / "lake", PAIRS, history_days)
        side.sync()   # warm-up: lazy imports and caches
        for _ in range(10):
            side.cycle()
        after10 = {**side.noop(repeats), **side.files()}
        say(f"[{NAME}] after 10 cycles: no-op {after10['median_s'] * 1e3:.1f} ms, {after10['active_files']} files")
        t0 = time.perf_counter()
        for k in range(11, cycles + 1):
            side.cycle()
            if maintain_every and k % maintain_every == 0 and k < cycles:
                side.maintain()
                maintained += 1
            if k % 100 == 0:
                say(f"[{NAME}] cycle {k}/{cycles} ({time.perf_counter() - t0:.0f} s)")
        before = {**side.noop(repeats), **side.files()}
        record = side.maintain()
        maintained += 1
        after = {**side.noop(repeats), **side.files()}
        again = side.maintain()
    finally:
        if side is not None:
            side.close()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"benchmark": NAME, "series": [" ".join(p) for p in PAIRS], "series_count": len(PAIRS),
              "history_days": history_days, "cycles": cycles, "goal_cycles": GOAL_CYCLES,
              "maintain_every": maintain_every, "maintenance_runs": maintained,
              "repeats": repeats, "after_10": after10, "before_maintenance": before, "after_maintenance": after,
              "final_maintenance_changed": record["changed"], "second_maintenance_changed": again["changed"]}
    x = {"maintained / after 10": ratio(after["median_s"], after10["median_s"]),
         "before maintenance / after 10": ratio(before["median_s"], after10["median_s"])}
    if x["maintained / after 10"] is not None and x["maintained / after 10"] > GOAL:
        result["shortfall"] = {"noop_sync_after_cycles": shortfall(result)}
    return conclude(result, x, f"maintained / after 10 <= {GOAL} at {GOAL_CYCLES:,} cycles", report, say,
                    summary=summary_line(result, x))


def shortfall(r: dict[str, Any]) -> str:
    """Why the no-op sync after maintenance costs more than after 10 cycles, from this run's own profile."""
    a10, am = r["after_10"], r["after_maintenance"]
    return (f"a no-op sync opens {am['opens_per_noop']} Delta tables; raw_candles opened in "
            f"{a10['open_median_s'] * 1e3:.1f} ms after 10 cycles ({a10['log_files']} log files, "
            f"{a10['checkpoint_tombstones']} tombstones in its checkpoint) and {am['open_median_s'] * 1e3:.1f} ms "
            f"after maintenance ({am['log_files']} log files, {am['checkpoint_tombstones']} tombstones); a no-op "
            f"took {a10['median_s'] * 1e3:.1f} ms and {am['median_s'] * 1e3:.1f} ms")


def summary_line(r: dict[str, Any], x: dict[str, float | None]) -> str:
    a = r["after_maintenance"]
    return (f"no-op sync after {r['cycles']:,} cycles, maintained / after 10 {fmt_ratio(x['maintained / after 10'])} "
            f"(goal <= {GOAL} at {GOAL_CYCLES:,} cycles); raw_candles after maintenance: {a['active_files']} active, "
            f"{a['stored_files']} stored files ({r['series_count']} series)")


def report(r: dict[str, Any]) -> str:
    lines = [f"== no-op sync after {r['cycles']} hourly cycles ({', '.join(r['series'])}, {r['history_days']} days "
             f"backfilled; maintain every {r['maintain_every'] or 'never'} cycles, {r['maintenance_runs']} runs)"]
    for label, s in (("after 10 cycles     ", r["after_10"]), ("before maintenance  ", r["before_maintenance"]),
                     ("after maintenance   ", r["after_maintenance"])):
        lines.append(f"  {label} no-op {s['median_s'] * 1e3:8.1f} ms ({s['opens_per_noop']} table opens) | raw_candles "
                     f"v{s['version']}: {s['active_files']} active files, {s['stored_files']} stored, {s['log_entries']} "
                     f"log entries ({s['log_files']} log files), {s['checkpoint_tombstones']} checkpoint tombstones "
                     f"| open {s['open_median_s'] * 1e3:.1f} ms, file index {s['file_index_median_s'] * 1e3:.1f} ms")
    x = r["ratios"]
    lines += [f"  maintained / after 10          {fmt_ratio(x['maintained / after 10'])}  (goal <= {GOAL} at "
              f"{GOAL_CYCLES:,} cycles; this run: {r['cycles']:,})",
              f"  before maintenance / after 10  {fmt_ratio(x['before maintenance / after 10'])}",
              f"  a second maintenance changed something: {r['second_maintenance_changed']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__)
    ap.add_argument("--cycles", type=int, default=None,
                    help=f"hourly sync cycles (default ${CYCLES_ENV}, else 1000 x COINLINE_BENCH_SCALE; "
                         f"the goal is for {GOAL_CYCLES:,})")
    ap.add_argument("--maintain-every", type=int, default=168, help="cycles between maintenance runs (0: only at the end)")
    ap.add_argument("--history-days", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=7)
    return run_main(ap, argv, lambda args: run(args.cycles, args.maintain_every, args.history_days, args.repeats))


if __name__ == "__main__":
    sys.exit(main())
