"""Benchmark: a no-op sync after many simulated hourly sync cycles, with `coinline maintain`, versus after 10
(issue 11 item 4; goal: <= 1.2 after maintenance at 10,000 cycles; files in raw_candles bounded).

One lake backfilled through the real path (`backfill` + `CoinAPISource` from an in-process replay venue,
`--history-days` of hourly candles for BTC, ETH, SOL x USD). Then `--cycles` hourly cycles: the venue's clock
and `now` move one hour on and `coinline.ingest.sync.sync` commits the newly closed candle of every series
(one commit per series per cycle, as `sync --follow` does), and every `--maintain-every` cycles
`coinline.lake.maintain.maintain` runs (retention 0: in a real deployment the files a weekly run removed are
older than its 6-hour retention at the next run; here the cycles take seconds of wall time). Timed (median
of `--repeats`, each a full `sync` with nothing new, which makes no request):
- no-op after 10 cycles (no maintenance yet: what the issue compares against);
- no-op after all cycles, before the final maintenance, and after it.
Reported: the ratios, raw_candles' active and stored data files and log entries before/after, and where a
no-op sync's time goes (opening raw_candles).

    python -m bench.maintain_cycles [--cycles N] [--maintain-every K] [--history-days D] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _replay
from bench._common import fmt_ratio, ratio, scaled

NAME = "maintain_cycles"
GOAL = 1.2
PAIRS = (("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("SOL", "USD", "1h"))


class _Lake:
    """The lake, its venue and source, and a clock on the hour grid (NOW is hh:05:30)."""

    def __init__(self, tmp: Path, history_days: int):
        from coinline.ingest.backfill import backfill
        from coinline.providers.coinapi import MAX_LIMIT
        from coinline.replay import ReplayServer

        self.now = _replay.NOW
        self.server = ReplayServer(_replay.market(history_days))
        self.server.start()
        self.source, self.gateway = _replay.source(self.server.coinapi_url, MAX_LIMIT)
        self.lake = _replay.fresh_lake(tmp / "lake")
        bad = [o for o in backfill(self.source, self.lake, PAIRS, now=self.now, progress=False) if o.status != "ok"]
        if bad:
            raise RuntimeError(f"backfill failed: {[o.to_dict() for o in bad]}")

    def sync(self) -> tuple[float, int, int]:
        from coinline.ingest.sync import sync

        before = len(self.server.requests)
        t0 = time.perf_counter()
        outcomes = sync(self.source, self.lake, PAIRS, now=self.now, progress=False)
        seconds = time.perf_counter() - t0
        bad = [o for o in outcomes if o.status != "ok"]
        if bad:
            raise RuntimeError(f"sync failed: {[o.to_dict() for o in bad]}")
        return seconds, len(self.server.requests) - before, sum(o.inserted for o in outcomes)

    def cycle(self) -> int:
        self.now += timedelta(hours=1)
        self.server.market.set_now(self.now)
        return self.sync()[2]

    def noop(self, repeats: int) -> dict[str, Any]:
        runs = [self.sync() for _ in range(repeats)]
        if any(inserted or requests for _s, requests, inserted in runs):
            raise RuntimeError("a no-op sync fetched or inserted candles")
        return {"median_s": statistics.median(s for s, _r, _i in runs), "runs_s": [round(s, 4) for s, _r, _i in runs]}

    def files(self) -> dict[str, Any]:
        from coinline.lake import maintain, tables

        dt = tables.open_table(self.lake, tables.RAW)
        log = Path(self.lake.base_path) / tables.RAW / "_delta_log"
        t0 = time.perf_counter()
        opens = []
        for _ in range(9):
            t0 = time.perf_counter()
            tables.file_index(self.lake, tables.RAW)
            opens.append(time.perf_counter() - t0)
        return {"version": dt.version(), "active_files": len(dt.get_add_actions(flatten=True)),
                "stored_files": len(maintain.stored_files(self.lake, tables.RAW)),
                "log_entries": sum(1 for p in log.iterdir() if p.name.endswith(".json")),
                "file_index_median_s": statistics.median(opens)}

    def close(self) -> None:
        self.gateway.client.close()
        self.server.stop()


def run(cycles: int | None = None, maintain_every: int = 168, history_days: int = 60, repeats: int = 7,
        quiet: bool = False) -> dict[str, Any]:
    from coinline.lake.maintain import maintain

    cycles = cycles or scaled(1000, minimum=20)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-maintain-"))
    side = None
    maintained = 0
    try:
        side = _Lake(tmp, history_days)
        side.sync()   # warm-up: lazy imports and caches
        for _ in range(10):
            side.cycle()
        after10 = {**side.noop(repeats), **side.files()}
        say(f"[{NAME}] after 10 cycles: no-op {after10['median_s'] * 1e3:.1f} ms, {after10['active_files']} files")
        t0 = time.perf_counter()
        for k in range(11, cycles + 1):
            side.cycle()
            if maintain_every and k % maintain_every == 0 and k < cycles:
                maintain(side.lake, now=side.now, retention_hours=0)
                maintained += 1
            if k % 100 == 0:
                say(f"[{NAME}] cycle {k}/{cycles} ({time.perf_counter() - t0:.0f} s)")
        before = {**side.noop(repeats), **side.files()}
        record = maintain(side.lake, now=side.now, retention_hours=0)
        maintained += 1
        after = {**side.noop(repeats), **side.files()}
        again = maintain(side.lake, now=side.now, retention_hours=0)
    finally:
        if side is not None:
            side.close()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"benchmark": NAME, "series": [" ".join(p) for p in PAIRS], "history_days": history_days,
              "cycles": cycles, "maintain_every": maintain_every, "maintenance_runs": maintained,
              "repeats": repeats, "after_10": after10, "before_maintenance": before, "after_maintenance": after,
              "final_maintenance_changed": record["changed"], "second_maintenance_changed": again["changed"]}
    result["ratios"] = {"maintained / after 10": ratio(after["median_s"], after10["median_s"]),
                        "before maintenance / after 10": ratio(before["median_s"], after10["median_s"])}
    result["goal"] = f"maintained / after 10 <= {GOAL}"
    say(report(result))
    return result


def report(r: dict[str, Any]) -> str:
    lines = [f"== no-op sync after {r['cycles']} hourly cycles ({', '.join(r['series'])}, {r['history_days']} days "
             f"backfilled; maintain every {r['maintain_every'] or 'never'} cycles, {r['maintenance_runs']} runs)"]
    for label, s in (("after 10 cycles     ", r["after_10"]), ("before maintenance  ", r["before_maintenance"]),
                     ("after maintenance   ", r["after_maintenance"])):
        lines.append(f"  {label} no-op {s['median_s'] * 1e3:8.1f} ms | raw_candles v{s['version']}: "
                     f"{s['active_files']} active files, {s['stored_files']} stored, {s['log_entries']} log entries "
                     f"| file index {s['file_index_median_s'] * 1e3:.1f} ms")
    x = r["ratios"]
    lines += [f"  maintained / after 10          {fmt_ratio(x['maintained / after 10'])}  (goal <= {GOAL})",
              f"  before maintenance / after 10  {fmt_ratio(x['before maintenance / after 10'])}",
              f"  a second maintenance changed something: {r['second_maintenance_changed']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=None, help="hourly sync cycles (default 1000 x COINLINE_BENCH_SCALE)")
    ap.add_argument("--maintain-every", type=int, default=168, help="cycles between maintenance runs (0: only at the end)")
    ap.add_argument("--history-days", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.cycles, args.maintain_every, args.history_days, args.repeats)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
