"""The measured process of benchmark 4: imports what a backfill needs, notes its peak RSS (the
baseline), runs `coinline.ingest.backfill.backfill` against a replay venue in another process, notes
the peak RSS again, and prints one JSON line. Peak RSS is the kernel's VmHWM of this process.

    python -m bench._backfill_child URL LAKE_DIR --pairs BTC:USD:1m ... [--page-limit N] [--imports-only]
                                    [--gc-per-page]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path


def status_kb(field: str) -> int:
    """A `VmHWM`/`VmRSS` line of /proc/self/status, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _collect_after_each_page() -> None:
    import gc

    import coinline.ingest.backfill as backfill_module

    commit = backfill_module.commit_candles

    def commit_then_collect(*args, **kwargs):
        try:
            return commit(*args, **kwargs)
        finally:
            gc.collect()

    backfill_module.commit_candles = commit_then_collect


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("lake", type=Path)
    ap.add_argument("--pairs", nargs="+", required=True, help="SYMBOL:QUOTE:INTERVAL")
    ap.add_argument("--page-limit", type=int, default=100_000)
    ap.add_argument("--now", required=True)
    ap.add_argument("--imports-only", action="store_true")
    ap.add_argument("--gc-per-page", action="store_true",
                    help="diagnostic, not coinline's behaviour: gc.collect() after each committed page")
    args = ap.parse_args(argv)
    start_kb = status_kb("VmHWM")

    # everything the backfill itself imports (and the lake's Parquet/Delta writers), nothing run yet
    import deltalake  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from bench import _replay
    from coinline.ingest.backfill import backfill
    from coinline.lake import tables  # noqa: F401

    baseline_kb = status_kb("VmHWM")
    out = {"start_hwm_kb": start_kb, "baseline_hwm_kb": baseline_kb, "baseline_rss_kb": status_kb("VmRSS")}
    if args.gc_per_page:
        _collect_after_each_page()
    if not args.imports_only:
        source, gateway = _replay.source(args.url, args.page_limit)
        lake = _replay.fresh_lake(args.lake)
        pairs = [tuple(p.split(":")) for p in args.pairs]
        t0 = time.perf_counter()
        outcomes = backfill(source, lake, pairs, now=datetime.fromisoformat(args.now), progress=False)
        out.update({
            "seconds": time.perf_counter() - t0,
            "peak_hwm_kb": status_kb("VmHWM"), "end_rss_kb": status_kb("VmRSS"),
            "rows": sum(o.inserted for o in outcomes), "pages": sum(o.pages for o in outcomes),
            "requests": gateway.requests_made,
            "statuses": [f"{o.series}={o.status}" + (f" ({o.message[:200]})" if o.message else "") for o in outcomes],
        })
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
