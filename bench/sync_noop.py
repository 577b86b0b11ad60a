"""Benchmark 3: a sync with nothing new on 5 years of history versus on 1 month (goal <= 1.2x: no rescans).

Two lakes backfilled through the real path (`backfill` + `CoinAPISource`, page_limit 100,000, the
CoinAPI maximum and the default) from two in-process replay venues with the same seed and clock:
BTC, ETH, SOL x USD at 1h and BTC x USD at 1m, one with 5 years of history (x COINLINE_BENCH_SCALE,
at least 60 days), one with 30 days. Then, interleaved, `coinline.ingest.sync.sync` on each:
- no-op: the same `now` as the backfill, nothing new to fetch (expected: no request at all);
- one new candle: the venue's clock and `now` move one minute on, so exactly one 1m candle has closed
  (each repeat moves one more minute, inside the hour, so no hourly candle closes).
Median of the repeats; ratio = 5-year median / 1-month median.

    python -m bench.sync_noop [--years Y] [--repeats N] [--json]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import _replay
from bench._common import arguments, conclude, fmt_ratio, median_time, ratio, run_main, say_for, scale, spread

NAME = "sync_noop"
GOAL = 1.2
PAIRS = (("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("SOL", "USD", "1h"), ("BTC", "USD", "1m"))
SHORT_DAYS = 30


class _Side(_replay.Venue):
    """One lake with its own replay venue and source, and the timings taken on it."""

    def __init__(self, label: str, days: int, tmp: Path):
        from coinline.lake import tables

        super().__init__(tmp / label, PAIRS, days, label)
        self.label, self.days = label, days
        self.rows = sum(n for _k, n, _a, _b in tables.series_in(self.lake))
        self.files = tables.file_index(self.lake, tables.RAW).num_rows
        self.noop: list[float] = []
        self.one: list[float] = []
        self.noop_requests = self.one_requests = 0
        self.one_inserted: list[int] = []

    def delta_open(self, repeats: int = 15) -> tuple[float, int]:
        """Median seconds to open raw_candles (the Delta log replay every sync does at least once)."""
        from coinline.lake import tables

        seconds, table = median_time(lambda: tables.open_table(self.lake, tables.RAW), repeats)
        return seconds, table.version()

    def stats(self) -> dict[str, Any]:
        open_s, version = self.delta_open()
        return {"history_days": self.days, "rows": self.rows, "raw_files": self.files,
                "delta_version": version, "delta_open_median_s": open_s,
                "backfill_seconds": round(self.backfill_seconds, 2),
                **spread(self.noop, "noop"), "noop_requests": self.noop_requests,
                **spread(self.one, "one_new"), "one_new_requests": self.one_requests,
                "one_new_inserted": self.one_inserted}


def run(years: float | None = None, repeats: int = 7, quiet: bool = False) -> dict[str, Any]:
    long_days = int(round(365.25 * years)) if years else max(60, int(round(5 * 365.25 * scale())))
    say = say_for(quiet)
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-sync-"))
    repeats = max(1, min(repeats, 50))   # one-minute steps must stay inside the hour (NOW is hh:05:30)
    sides: list[_Side] = []
    try:
        for label, days in (("long", long_days), ("short", SHORT_DAYS)):
            sides.append(_Side(label, days, tmp))
            s = sides[-1]
            say(f"[{NAME}] {label} lake: {days} days, {s.rows:,} rows in {s.files} files, "
                f"backfilled in {s.backfill_seconds:.1f} s")
        long, short = sides
        for s in sides:   # warm-up: first sync pays lazy imports and caches
            s.sync()
        for _ in range(repeats):
            for s in sides:
                seconds, requests, _ins = s.sync()
                s.noop.append(seconds)
                s.noop_requests += requests
        for k in range(1, repeats + 1):
            for s in sides:
                s.advance(_replay.NOW + timedelta(minutes=k))
                seconds, requests, inserted = s.sync()
                s.one.append(seconds)
                s.one_requests += requests
                s.one_inserted.append(inserted)
        result = {"benchmark": NAME, "repeats": repeats, "pairs": [" ".join(p) for p in PAIRS],
                  "long": long.stats(), "short": short.stats()}
    finally:
        for s in sides:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)
    lg, sh = result["long"], result["short"]
    x = {"noop long/short": ratio(lg["noop_median_s"], sh["noop_median_s"]),
         "one-new long/short": ratio(lg["one_new_median_s"], sh["one_new_median_s"])}
    return conclude(result, x, f"long/short <= {GOAL}", report, say,
                    summary=f"no-op long/short {fmt_ratio(x['noop long/short'])}, one-new long/short "
                            f"{fmt_ratio(x['one-new long/short'])} (goal <= {GOAL})")


def report(r: dict[str, Any]) -> str:
    lg, sh, x = r["long"], r["short"], r["ratios"]
    lines = [f"== 3. sync with nothing new: {lg['history_days']} days vs {sh['history_days']} days of history "
             f"({', '.join(r['pairs'])}), median of {r['repeats']}"]
    for name, s in (("long ", lg), ("short", sh)):
        lines.append(f"  {name} lake {s['rows']:>10,} rows {s['raw_files']:>4} files | no-op {s['noop_median_s'] * 1e3:8.1f} ms "
                     f"({s['noop_requests']} requests in {r['repeats']} syncs) | one new candle {s['one_new_median_s'] * 1e3:8.1f} ms "
                     f"({s['one_new_requests']} requests in {r['repeats']} syncs, inserted per sync "
                     f"{sorted(set(s['one_new_inserted']))})")
    lines.append(f"  where it goes: opening raw_candles (Delta log replay, done 1x per no-op sync, ~4x per sync that "
                 f"commits) {lg['delta_open_median_s'] * 1e3:.1f} ms at version {lg['delta_version']} vs "
                 f"{sh['delta_open_median_s'] * 1e3:.1f} ms at version {sh['delta_version']}")
    lines += [f"  no-op          long/short {fmt_ratio(x['noop long/short'])}  (goal <= {GOAL})",
              f"  one new candle long/short {fmt_ratio(x['one-new long/short'])}  (goal <= {GOAL})",
              f"  runs (s): no-op long {lg['noop_runs_s']}, short {sh['noop_runs_s']}",
              f"            one-new long {lg['one_new_runs_s']}, short {sh['one_new_runs_s']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__)
    ap.add_argument("--years", type=float, default=None, help="history of the long lake (default 5 x scale)")
    ap.add_argument("--repeats", type=int, default=7, help="timed syncs per lake and variant (median; max 50)")
    return run_main(ap, argv, lambda args: run(years=args.years, repeats=args.repeats))


if __name__ == "__main__":
    sys.exit(main())
