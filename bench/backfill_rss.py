"""Benchmark 4: peak RSS of a 5,000,000-row backfill (goal < 1 GB).

The replay venue runs in its own process (`bench._replay_serve`), so the market paths it generates
are not counted. The measured backfill runs in a child process (`bench._backfill_child`): BTC, ETH,
XRP, SOL x USD at 1m, page_limit 100,000 (CoinAPI's maximum and the default), enough days of history
for ~5,000,000 rows x COINLINE_BENCH_SCALE. Reported:
- the child's peak RSS (VmHWM) after imports only: the baseline, the reference;
- its peak RSS after the backfill; the ratio peak/baseline and the increment peak - baseline;
- cross-checks from the parent: `os.wait4` ru_maxrss of that child, and of a second child that only
  imports (the same baseline measured from outside).

    python -m bench.backfill_rss [--rows N] [--json]
"""

from __future__ import annotations

import argparse
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
from bench._common import fmt_ratio, ratio, scale

NAME = "backfill_rss"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROWS = 5_000_000
GOAL_BYTES = 1_000_000_000
PAIRS = ("BTC:USD:1m", "ETH:USD:1m", "XRP:USD:1m", "SOL:USD:1m")
PAGE_LIMIT = 100_000


def _own_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _child(args: list[str], timeout: float) -> tuple[dict[str, Any], int]:
    """Run a Python child, return (its JSON line, its ru_maxrss in KiB from wait4).
    Linux keeps the high-water mark across exec, so that figure also counts this (parent) process's
    RSS at fork time: it confirms the child's own VmHWM only when the parent is smaller."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:   # files: no pipe to fill
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out_f, stderr=err_f)
        deadline = time.monotonic() + timeout
        while True:   # poll with wait4 (not Popen.wait) so this child's own rusage comes back
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args[:2])} exited {proc.returncode}: {err.strip()[-800:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss


def run(rows: int | None = None, quiet: bool = False, gc_per_page: bool = False) -> dict[str, Any]:
    rows = rows or max(10_000, int(round(DEFAULT_ROWS * scale())))
    days = max(1, math.ceil(rows / (len(PAIRS) * 1440)))
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-rss-"))
    server = subprocess.Popen([sys.executable, "-m", "bench._replay_serve", "--days", str(days)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"replay server process exited ({server.poll()}) before printing its URL")
        url = json.loads(line)["url"]
        say(f"[{NAME}] replay venue (pid {server.pid}) at {url}: {', '.join(PAIRS)}, {days} days, "
            f"page_limit {PAGE_LIMIT:,}")
        common = [url, str(tmp / "lake"), "--pairs", *PAIRS, "--page-limit", str(PAGE_LIMIT),
                  "--now", _replay.NOW.isoformat()]
        parent_rss = _own_rss_kb() * 1024
        imports_only, imports_maxrss = _child(["-m", "bench._backfill_child", *common, "--imports-only"], 300)
        t0 = time.perf_counter()
        child, child_maxrss = _child(["-m", "bench._backfill_child", *common,
                                      *(["--gc-per-page"] if gc_per_page else [])], 1800)
        wall = time.perf_counter() - t0
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    base, peak = child["baseline_hwm_kb"] * 1024, child["peak_hwm_kb"] * 1024
    result = {
        "benchmark": NAME, "target_rows": rows, "history_days": days, "pairs": list(PAIRS), "page_limit": PAGE_LIMIT,
        "rows": child["rows"], "pages": child["pages"], "requests": child["requests"], "statuses": child["statuses"],
        "backfill_seconds": child["seconds"], "child_wall_seconds": wall,
        "baseline_peak_rss_bytes": base, "peak_rss_bytes": peak, "increment_bytes": peak - base,
        "end_rss_bytes": child["end_rss_kb"] * 1024,
        "wait4_maxrss_bytes": child_maxrss * 1024, "imports_only_wait4_maxrss_bytes": imports_maxrss * 1024,
        "imports_only_hwm_bytes": imports_only["baseline_hwm_kb"] * 1024, "parent_rss_at_fork_bytes": parent_rss,
        "ratios": {"peak/baseline": ratio(peak, base), "peak/goal": ratio(peak, GOAL_BYTES)},
        "goal": "peak RSS < 1 GB", "gc_per_page": gc_per_page,
    }
    result["summary"] = (f"peak {peak / 1e6:,.0f} MB vs baseline {base / 1e6:,.0f} MB (x{fmt_ratio(ratio(peak, base))}, "
                         f"+{(peak - base) / 1e6:,.0f} MB); goal < 1,000 MB")
    say(report(result))
    return result


def report(r: dict[str, Any]) -> str:
    mb = 1e6
    return "\n".join([
        f"== 4. peak RSS of a backfill of {r['rows']:,} rows ({', '.join(r['pairs'])}, {r['history_days']} days, "
        f"{r['pages']} pages of <= {r['page_limit']:,}, {r['requests']} requests, {r['backfill_seconds']:.1f} s); "
        f"replay venue in its own process"
        + (" [DIAGNOSTIC: gc.collect() after each page]" if r.get("gc_per_page") else ""),
        f"  baseline (same child, after imports only)  {r['baseline_peak_rss_bytes'] / mb:8,.0f} MB",
        f"  peak after the backfill                    {r['peak_rss_bytes'] / mb:8,.0f} MB   "
        f"(RSS at the end {r['end_rss_bytes'] / mb:,.0f} MB)",
        f"  peak/baseline {fmt_ratio(r['ratios']['peak/baseline'])}, increment "
        f"{r['increment_bytes'] / mb:,.0f} MB, peak/goal(1 GB) {fmt_ratio(r['ratios']['peak/goal'])}",
        f"  cross-check from the parent (wait4 ru_maxrss): backfill child {_wait4(r['wait4_maxrss_bytes'], r)}, "
        f"imports-only child {_wait4(r['imports_only_wait4_maxrss_bytes'], r)}",
        f"  series: {'; '.join(r['statuses'])}",
    ])


def _wait4(value: int, r: dict[str, Any]) -> str:
    parent = r["parent_rss_at_fork_bytes"]
    if value <= parent * 1.05:   # the parent's own RSS at fork is what it shows
        return f"{value / 1e6:,.0f} MB (inconclusive: the parent had {parent / 1e6:,.0f} MB at fork)"
    return f"{value / 1e6:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=None, help=f"rows to backfill (default {DEFAULT_ROWS:,} x scale)")
    ap.add_argument("--gc-per-page", action="store_true",
                    help="diagnostic: the child runs gc.collect() after each committed page (not coinline's behaviour)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(rows=args.rows, gc_per_page=args.gc_per_page)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
