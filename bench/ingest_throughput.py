"""Benchmark 1: ingest throughput of one-minute candles arriving as CoinAPI JSON pages.

Pages: `rows` (default 1,000,000) one-minute candles of one series as CoinAPI history bodies,
100,000 records per page (10 pages), built as bytes up front.

Measured, each over the same pages:
- coinline: the real adapter path. `CoinAPISource.fetch` through the `Gateway` over an
  `httpx.MockTransport` serving the prepared bytes (HTTP client, JSON parse, strict `parse_ohlcv`,
  `candle_table` rules), then `commit_candles` into a fresh local lake (dedupe against what is stored,
  versions, manifest, content hash; the writer batches the walk's pages into one Delta commit unless
  its buffer fills first), driven by `ingest_range`, the loop backfill uses.
- FLOOR: stdlib json.loads + a pyarrow table of the same rows + `pyarrow.parquet.write_table`, per page.
- freqtrade (in `.bench-venv`, a subprocess; see `bench._freqtrade_worker`): its own floor run in
  that same process is the reference for its ratio.

Ratios are rows/s over rows/s (higher is faster): coinline/floor (main process), freqtrade/floor
(subprocess), coinline/freqtrade (= the two floor-relative figures divided, so both sides are
measured against a floor in their own process).

Then the same rows as Kraken OHLC pages of 720 rows (`bench.ingest_kraken`, medians, the parser's
share measured apart), reported next to these unless `--no-kraken`.

    python -m bench.ingest_throughput [--rows N] [--repeats N] [--no-freqtrade] [--no-kraken] [--json]
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import _ingest
from bench._common import (
    MAX_PAGE_ROWS,
    START_S,
    STEP_S,
    best,
    floor_page,
    fmt_ratio,
    make_pages,
    page_rows_for,
    ratio,
    run_main,
    say_for,
    timed,
)

NAME = "ingest_throughput"
GOAL = 1.5                  # coinline/freqtrade over CoinAPI pages of 100,000 rows, each against its own floor


# ----------------------------------------------------------------------------------- coinline path


def _mock_transport(pages: list[bytes], page_rows: int) -> httpx.MockTransport:
    """Serves the listing and, for each page, the prepared bytes keyed by the request's time_start."""
    from coinline.providers.coinapi import iso_z

    by_start = {}
    for i, body in enumerate(pages):
        ts = datetime.fromtimestamp(START_S + STEP_S * page_rows * i, tz=UTC)
        by_start[iso_z(ts)] = body
    listing = json.dumps([{
        "symbol_id": "KRAKEN_SPOT_BTC_USD", "exchange_id": "KRAKEN", "symbol_type": "SPOT",
        "asset_id_base": "BTC", "asset_id_quote": "USD", "data_start": "2020-01-01",
        "data_trade_start": "2020-01-01T00:00:00.0000000Z",
    }]).encode()
    headers = {"content-type": "application/json; charset=utf-8"}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/symbols":
            return httpx.Response(200, content=listing, headers=headers)
        body = by_start.get(request.url.params.get("time_start", ""))
        if body is None:
            return httpx.Response(550, content=b'{"error": "no data"}', headers=headers)
        return httpx.Response(200, content=body, headers=headers)

    return httpx.MockTransport(handle)


def run_coinline(pages: list[bytes], page_rows: int, rows: int, workdir: Path) -> dict[str, Any]:
    from coinline.ingest.backfill import SeriesOutcome, ingest_range
    from coinline.providers.coinapi import CoinAPISource, coinapi_client
    from coinline.providers.http import Gateway
    from coinline.secrets import Secret
    from coinline.universe.model import load_universe

    lake, version = _ingest.fresh_raw(workdir)
    client = coinapi_client("http://coinapi.bench", Secret(""), transport=_mock_transport(pages, page_rows))
    gateway = Gateway("coinapi", client)
    source = CoinAPISource(gateway, load_universe("UNIVERSE_V1_TOP30_NON_STABLE"), page_limit=page_rows)
    ref = source.resolve("BTC", "USD", "1m")   # the one-off listing call, not timed
    start = datetime.fromtimestamp(START_S, tz=UTC)
    end = start + timedelta(seconds=STEP_S * rows)
    now = end + timedelta(hours=1)
    source = _ingest.TimedSource(source)
    outcome = SeriesOutcome(ref.key.label(), "BTC", "USD", "1m", "ok")
    requests_before = gateway.requests_made
    _, seconds = timed(ingest_range, source, lake, ref, start, end, outcome, now=now)
    client.close()
    return _ingest.coinline_run(lake, version, outcome, source, seconds, gateway.requests_made - requests_before)


# ----------------------------------------------------------------------------------- driver


def run(rows: int | None = None, repeats: int = 3, freqtrade: bool = True, quiet: bool = False,
        kraken: bool = True) -> dict[str, Any]:
    rows = _ingest.default_rows(rows)
    page_rows = page_rows_for(rows)
    say = say_for(quiet)
    pages = _ingest.build_pages(NAME, make_pages, rows, page_rows, "pages", say)
    got, ft = _ingest.measure(
        NAME, pages, {"coinline": lambda tmp: run_coinline(pages, page_rows, rows, tmp / "lake")}, floor_page=floor_page,
        warm=lambda tmp: run_coinline(pages[:1], page_rows, page_rows, tmp / "warm-lake"), repeats=repeats, pick=best,
        freqtrade=freqtrade, fmt="coinapi", say=say, prefix="coinline-bench-ingest-")
    floor, coin = got["floor"], got["coinline"]
    coin_vs_floor = ratio(coin["rows_per_s"], floor["rows_per_s"])
    against_ft = _ingest.freqtrade_ratios(ft, floor["rows_per_s"], {"coinline": coin_vs_floor}, extra=("feather", "download"))
    result: dict[str, Any] = {
        "benchmark": NAME, "rows": rows, "pages": len(pages), "page_rows": page_rows, "repeats": repeats,
        "floor": floor, "coinline": coin, "ratios": {"coinline/floor": coin_vs_floor, **against_ft},
    }
    result["freqtrade"] = ft
    if kraken:
        from bench import ingest_kraken

        say(f"[{NAME}] the same {rows:,} rows as Kraken OHLC pages of 720 (bench.ingest_kraken) ...")
        result["kraken"] = ingest_kraken.run(rows=rows, repeats=repeats, freqtrade=freqtrade, quiet=True)
    shortfall = dict(result.get("kraken", {}).get("shortfall", {}))
    x = result["ratios"].get("coinline/freqtrade")
    if x is not None and x < GOAL:
        shortfall["ingest_coinapi_vs_freqtrade"] = (
            f"coinline's path took {coin['seconds']:.2f} s: fetch (HTTP, JSON decode, parse) {coin['fetch_seconds']:.2f} s "
            f"({coin['fetch_seconds'] / coin['seconds']:.0%}), commit {coin['commit_seconds']:.2f} s "
            f"({coin['commit_seconds'] / coin['seconds']:.0%}); coinline/floor {fmt_ratio(coin_vs_floor)} against "
            f"freqtrade/floor {fmt_ratio(result['ratios'].get('freqtrade/floor'))}")
    if shortfall:
        result["shortfall"] = shortfall
    result["summary"] = summary_line(result)
    if not quiet:
        print(report(result), flush=True)
    return result


def summary_line(r: dict[str, Any]) -> str:
    line = _ingest.headline(r["ratios"])
    return f"{line}; {r['kraken']['summary']}" if "kraken" in r else line


def report(r: dict[str, Any]) -> str:
    f, c, ft, x = r["floor"], r["coinline"], r["freqtrade"], r["ratios"]
    lines = [
        f"== 1. ingest throughput: {r['rows']:,} one-minute candles, {r['pages']} CoinAPI pages of {r['page_rows']:,} "
        f"(best of {r['repeats']})",
        "  main process (coinline venv):",
        f"    floor     json.loads + pa.table + pq.write_table  {f['rows_per_s']:>12,.0f} rows/s  {f['seconds']:7.2f} s  "
        f"runs {f['all_seconds']}",
        f"    coinline  fetch(MockTransport) + commit_candles   {c['rows_per_s']:>12,.0f} rows/s  {c['seconds']:7.2f} s  "
        f"runs {c['all_seconds']}",
        f"              of which fetch+parse {c['fetch_seconds']:.2f} s, commit {c['commit_seconds']:.2f} s; "
        f"{c['requests']} requests, {c['commits']} Delta commits, {c['stored_rows']:,} rows stored",
    ]
    if "skipped" in ft:
        lines.append(f"  freqtrade: skipped ({ft['skipped']})")
    else:
        sf = ft["floor"]
        lines += [
            f"  .bench-venv subprocess (freqtrade {ft.get('freqtrade_version', '?')}):",
            f"    floor     json.loads + pa.table + pq.write_table  {sf['rows_per_s']:>12,.0f} rows/s  "
            f"{sf['seconds']:7.2f} s  runs {sf['all_seconds']}",
        ]
        for key, label in (("parquet", "per page, parquet handler "), ("feather", "per page, feather handler "),
                           ("download", "download shape, parquet    ")):
            v = ft[key]
            lines.append(f"    freqtrade {label}            {v['rows_per_s']:>12,.0f} rows/s  {v['seconds']:7.2f} s  "
                         f"runs {v['all_seconds']}")
    lines += [
        "  ratios (rows/s over rows/s; >1 is faster than the reference):",
        f"    coinline/floor       {fmt_ratio(x['coinline/floor'])}   (main process)",
        f"    freqtrade/floor      {fmt_ratio(x['freqtrade/floor'])}   (parquet per page, subprocess floor)",
        f"    coinline/freqtrade   {fmt_ratio(x['coinline/freqtrade'])}   (each against its own process's floor; "
        f"goal >= {GOAL} at {MAX_PAGE_ROWS:,}-row pages)",
    ]
    if "skipped" not in ft:
        lines += [
            f"    freqtrade feather/floor {fmt_ratio(x['freqtrade_feather/floor'])}, "
            f"download-shape/floor {fmt_ratio(x['freqtrade_download/floor'])}, "
            f"subprocess floor/main floor {fmt_ratio(x['subprocess_floor/main_floor'])}",
        ]
    if "kraken" in r:
        from bench import ingest_kraken

        lines.append(ingest_kraken.report(r["kraken"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = _ingest.ingest_arguments(__doc__, "best")
    ap.add_argument("--no-kraken", action="store_true", help="skip the Kraken 720-row page case")
    return run_main(ap, argv, lambda args: run(rows=args.rows, repeats=args.repeats, freqtrade=not args.no_freqtrade,
                                               kraken=not args.no_kraken))


if __name__ == "__main__":
    sys.exit(main())
