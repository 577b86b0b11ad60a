"""Benchmark 2: HTTP requests a backfill makes versus the minimum, ceil(rows / page_limit) per series.

`coinline.ingest.backfill.backfill` with a `CoinAPISource` against an in-process `ReplayServer` over
a `SimulatedMarket` (pinned clock, 180 days of history x COINLINE_BENCH_SCALE):
- BTC, ETH, SOL x USD at 1h and BTC x CAD at 1h (a series with no-trade gaps), page_limit 1000;
- BTC x USD at 1m, page_limit 10000.
Requests are counted from the server's request log (cross-checked with the Gateway's
`requests_made`); the one-off `/v1/symbols` listing call of each source is reported separately and
is not in the ratio. A second run with the same clock (nothing new) shows what a rerun costs.
Goal: ratio <= 1.05 (reported, never asserted).

    python -m bench.backfill_requests [--days N] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import _replay
from bench._common import fmt_ratio, ratio, scale

NAME = "backfill_requests"
GOAL = 1.05
SCENARIOS = (
    (1000, (("BTC", "USD", "1h"), ("ETH", "USD", "1h"), ("SOL", "USD", "1h"), ("BTC", "CAD", "1h"))),
    (10_000, (("BTC", "USD", "1m"),)),
)


@contextlib.contextmanager
def _removed(path: Path):
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(days: int | None = None, quiet: bool = False) -> dict[str, Any]:
    from coinline.ingest.backfill import backfill
    from coinline.lake import tables
    from coinline.providers.coinapi import period_id
    from coinline.replay import ReplayServer

    days = days or max(20, int(round(180 * scale())))
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-requests-"))
    t0 = time.perf_counter()
    series_rows: list[dict[str, Any]] = []
    listing_calls = gateway_requests = rerun_history = rerun_total = 0
    statuses: Counter[str] = Counter()
    with ReplayServer(_replay.market(days)) as srv, _removed(tmp):
        lake = _replay.fresh_lake(tmp / "lake")
        sources = []
        for page_limit, pairs in SCENARIOS:
            src, gw = _replay.source(srv.coinapi_url, page_limit)
            sources.append((src, gw, page_limit, pairs))
            start = len(srv.requests)
            outcomes = backfill(src, lake, pairs, now=_replay.NOW, progress=False)
            log = srv.requests[start:]
            statuses.update(o.status for o in outcomes)
            listing_calls += sum(1 for r in log if r["path"].startswith("/v1/symbols"))
            gateway_requests += gw.requests_made
            hist = _replay.history_requests(log)
            stored = {k: n for k, n, _a, _b in tables.series_in(lake)}
            for (symbol, quote, interval), outcome in zip(pairs, outcomes, strict=True):
                sid, pid = src.symbol_id(symbol, quote), period_id(interval)
                made = [r for r in hist if f"/{sid}/" in r["path"] and r["params"].get("period_id") == pid]
                rows = next((n for k, n in stored.items() if k.label() == outcome.series), 0)
                minimum = math.ceil(rows / page_limit)
                series_rows.append({
                    "series": f"{symbol}-{quote} {interval}", "page_limit": page_limit, "rows": rows,
                    "requests": len(made), "minimum": minimum, "ratio": ratio(len(made), minimum),
                    "status": outcome.status, "pages": outcome.pages,
                    "probe_requests": sum(1 for r in made if r["params"].get("limit") == "1"),
                })
        seconds = time.perf_counter() - t0
        # the same clock again: nothing new has closed, so a rerun should request nothing
        start = len(srv.requests)
        for src, _gw, _limit, pairs in sources:
            backfill(src, lake, pairs, now=_replay.NOW, progress=False)
        rerun_log = srv.requests[start:]
        rerun_history = len(_replay.history_requests(rerun_log))
        rerun_total = len(rerun_log)
    total = sum(s["requests"] for s in series_rows)
    minimum = sum(s["minimum"] for s in series_rows)
    result = {
        "benchmark": NAME, "history_days": days, "series": series_rows, "history_requests": total,
        "minimum_requests": minimum, "listing_requests": listing_calls,
        "gateway_requests_made": gateway_requests, "rerun_history_requests": rerun_history,
        "rerun_requests": rerun_total, "statuses": dict(statuses), "seconds": seconds,
        "ratios": {"requests/minimum": ratio(total, minimum)}, "goal": f"requests/minimum <= {GOAL}",
    }
    result["summary"] = f"requests/minimum {fmt_ratio(result['ratios']['requests/minimum'])} (goal <= {GOAL})"
    say(report(result))
    return result


def report(r: dict[str, Any]) -> str:
    lines = [f"== 2. backfill requests vs minimum ceil(rows/page_limit): replay venue, {r['history_days']} days of "
             f"history, backfill took {r['seconds']:.1f} s",
             f"  {'series':<14}{'page_limit':>11}{'rows':>10}{'requests':>10}{'minimum':>9}{'ratio':>8}  status"]
    for s in r["series"]:
        lines.append(f"  {s['series']:<14}{s['page_limit']:>11,}{s['rows']:>10,}{s['requests']:>10}{s['minimum']:>9}"
                     f"{fmt_ratio(s['ratio']):>8}  {s['status']}"
                     + (f" ({s['probe_requests']} earliest-probe)" if s["probe_requests"] else ""))
    lines += [
        f"  total history requests {r['history_requests']} vs minimum {r['minimum_requests']}: "
        f"ratio {fmt_ratio(r['ratios']['requests/minimum'])} (goal <= {GOAL})",
        f"  not in the ratio: {r['listing_requests']} /v1/symbols listing call(s) (one per source); Gateway "
        f"requests_made {r['gateway_requests_made']} = history + listing",
        f"  rerun with the same clock: {r['rerun_history_requests']} history requests, {r['rerun_requests']} in all",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=None, help="history depth of the simulated market (default 180 x scale)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(days=args.days)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
