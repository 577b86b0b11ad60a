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

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    DEFAULT_ROWS,
    START_S,
    STEP_S,
    best,
    fmt_ratio,
    make_pages,
    page_rows_for,
    ratio,
    run_floor,
    scale,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
NAME = "ingest_throughput"


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


class _TimedSource:
    """Delegates to the real source; adds up the time spent in fetch (HTTP + JSON + parse_ohlcv)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.fetch_seconds = 0.0

    def fetch(self, ref, cursor, end):
        t0 = time.perf_counter()
        try:
            return self.inner.fetch(ref, cursor, end)
        finally:
            self.fetch_seconds += time.perf_counter() - t0


def run_coinline(pages: list[bytes], page_rows: int, rows: int, workdir: Path) -> dict[str, Any]:
    from coinline.ingest.backfill import SeriesOutcome, ingest_range
    from coinline.lake import open_lake, tables
    from coinline.providers.coinapi import CoinAPISource, coinapi_client
    from coinline.providers.http import Gateway
    from coinline.secrets import Secret
    from coinline.universe.model import load_universe

    if workdir.exists():
        shutil.rmtree(workdir)
    lake = open_lake(f"file://{workdir}")
    tables.ensure_tables(lake)
    version_before = tables.open_table(lake, tables.RAW).version()
    client = coinapi_client("http://coinapi.bench", Secret(""), transport=_mock_transport(pages, page_rows))
    gateway = Gateway("coinapi", client)
    source = CoinAPISource(gateway, load_universe("UNIVERSE_V1_TOP30_NON_STABLE"), page_limit=page_rows)
    ref = source.resolve("BTC", "USD", "1m")   # the one-off listing call, not timed
    start = datetime.fromtimestamp(START_S, tz=UTC)
    end = start + timedelta(seconds=STEP_S * rows)
    now = end + timedelta(hours=1)
    timed = _TimedSource(source)
    outcome = SeriesOutcome(ref.key.label(), "BTC", "USD", "1m", "ok")
    requests_before = gateway.requests_made
    t0 = time.perf_counter()
    ingest_range(timed, lake, ref, start, end, outcome, now=now)
    seconds = time.perf_counter() - t0
    client.close()
    stored = sum(n for _k, n, _a, _b in tables.series_in(lake))
    commits = tables.open_table(lake, tables.RAW).version() - version_before   # Delta commits, not pages
    return {"rows": outcome.inserted, "seconds": seconds, "rows_per_s": outcome.inserted / seconds,
            "fetch_seconds": timed.fetch_seconds, "commit_seconds": seconds - timed.fetch_seconds,
            "pages": outcome.pages, "requests": gateway.requests_made - requests_before,
            "commits": commits, "stored_rows": stored}


# ----------------------------------------------------------------------------------- freqtrade


FREQTRADE_SPEC = "freqtrade==2026.9"    # the version these figures were first taken with (wheels only, TA-Lib included)
INSTALL_TIMEOUT_S = 300


def ensure_freqtrade(say=print) -> tuple[Path | None, str]:
    """The `.bench-venv` python when freqtrade imports there; otherwise try once to create the venv and
    install freqtrade (at most INSTALL_TIMEOUT_S; COINLINE_BENCH_NO_INSTALL=1 forbids it).
    Returns (python or None, why not)."""
    py = BENCH_VENV / "bin" / "python"

    def importable() -> bool:
        try:
            return subprocess.run([str(py), "-c", "import freqtrade.data.converter"], capture_output=True,
                                  timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if py.exists() and importable():
        return py, ""
    if os.environ.get("COINLINE_BENCH_NO_INSTALL", "").strip() not in ("", "0"):
        return None, f"{BENCH_VENV.name} has no freqtrade and COINLINE_BENCH_NO_INSTALL is set"
    say(f"[{NAME}] installing {FREQTRADE_SPEC} into {BENCH_VENV.name} (once; at most {INSTALL_TIMEOUT_S} s) ...")
    t0 = time.monotonic()
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True, capture_output=True,
                           timeout=120)
        left = max(10.0, INSTALL_TIMEOUT_S - (time.monotonic() - t0))
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", FREQTRADE_SPEC],
                              capture_output=True, text=True, timeout=left)
    except subprocess.TimeoutExpired:
        return None, f"installing {FREQTRADE_SPEC} took over {INSTALL_TIMEOUT_S} s; skipped"
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not create {BENCH_VENV.name}: {exc}"
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        return None, f"pip install {FREQTRADE_SPEC} failed: {tail[:300]}"
    if not importable():
        return None, f"{FREQTRADE_SPEC} installed but does not import"
    say(f"[{NAME}] installed {FREQTRADE_SPEC} in {time.monotonic() - t0:.0f} s")
    return py, ""


def run_freqtrade(pages: list[bytes], tmp: Path, repeats: int, say=print, fmt: str = "coinapi") -> dict[str, Any]:
    """freqtrade + its own floor, in one `.bench-venv` subprocess over the same pages written as files
    (`fmt`: what the pages are, "coinapi" or "kraken"; see `bench._freqtrade_worker`)."""
    py, why = ensure_freqtrade(say)
    if py is None:
        return {"skipped": why}
    pages_dir = tmp / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(pages):
        (pages_dir / f"page-{i:04d}.json").write_bytes(body)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(ROOT)   # for `bench._common` only; coinline is not installed there
    try:
        proc = subprocess.run([str(py), "-m", "bench._freqtrade_worker", str(pages_dir), str(tmp / "ft-work"),
                               "--repeats", str(repeats), "--format", fmt], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
    except subprocess.TimeoutExpired:
        return {"skipped": "freqtrade worker ran past 900 s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"skipped": f"freqtrade worker failed (exit {proc.returncode}): {' | '.join(tail)}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"skipped": f"freqtrade worker printed no result: {proc.stdout[-300:]!r}"}


# ----------------------------------------------------------------------------------- driver


def run(rows: int | None = None, repeats: int = 3, freqtrade: bool = True, quiet: bool = False,
        kraken: bool = True) -> dict[str, Any]:
    rows = rows or max(1000, int(round(DEFAULT_ROWS * scale())))
    page_rows = page_rows_for(rows)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    t0 = time.perf_counter()
    pages = make_pages(rows, page_rows)
    say(f"[{NAME}] {rows:,} rows in {len(pages)} pages of {page_rows:,} "
        f"({sum(map(len, pages)) / 1e6:.0f} MB of JSON) built in {time.perf_counter() - t0:.1f}s")
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-ingest-"))
    try:
        run_coinline(pages[:1], page_rows, page_rows, tmp / "warm-lake")   # warm-up: imports, deltalake init
        run_floor(pages[:1], tmp / "warm-floor")
        floors, coinlines = [], []
        for _ in range(max(1, repeats)):   # interleaved so drift hits both alike
            floors.append(run_floor(pages, tmp / "floor"))
            coinlines.append(run_coinline(pages, page_rows, rows, tmp / "lake"))
        floor, coin = best(floors), best(coinlines)
        say(f"[{NAME}] floor {floor['rows_per_s']:,.0f} rows/s, coinline {coin['rows_per_s']:,.0f} rows/s")
        ft = run_freqtrade(pages, tmp / "ft", repeats, say) if freqtrade else {"skipped": "--no-freqtrade"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    coin_vs_floor = ratio(coin["rows_per_s"], floor["rows_per_s"])
    result: dict[str, Any] = {
        "benchmark": NAME, "rows": rows, "pages": len(pages), "page_rows": page_rows, "repeats": repeats,
        "floor": floor, "coinline": coin,
        "ratios": {"coinline/floor": coin_vs_floor},
    }
    if "skipped" in ft:
        result["freqtrade"] = ft
        result["ratios"]["freqtrade/floor"] = None
        result["ratios"]["coinline/freqtrade"] = None
    else:
        ft_vs_floor = ratio(ft["parquet"]["rows_per_s"], ft["floor"]["rows_per_s"])
        result["freqtrade"] = ft
        result["ratios"].update({
            "freqtrade/floor": ft_vs_floor,
            "coinline/freqtrade": ratio(coin_vs_floor, ft_vs_floor),
            "freqtrade_feather/floor": ratio(ft["feather"]["rows_per_s"], ft["floor"]["rows_per_s"]),
            "freqtrade_download/floor": ratio(ft["download"]["rows_per_s"], ft["floor"]["rows_per_s"]),
            "subprocess_floor/main_floor": ratio(ft["floor"]["rows_per_s"], floor["rows_per_s"]),
        })
    if kraken:
        from bench import ingest_kraken

        say(f"[{NAME}] the same {rows:,} rows as Kraken OHLC pages of 720 (bench.ingest_kraken) ...")
        result["kraken"] = ingest_kraken.run(rows=rows, repeats=repeats, freqtrade=freqtrade, quiet=True)
    result["summary"] = summary_line(result)
    if not quiet:
        print(report(result), flush=True)
    return result


def summary_line(r: dict[str, Any]) -> str:
    x = r["ratios"]
    line = (f"coinline/floor {fmt_ratio(x['coinline/floor'])}, freqtrade/floor {fmt_ratio(x['freqtrade/floor'])}, "
            f"coinline/freqtrade {fmt_ratio(x['coinline/freqtrade'])}")
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
        f"    coinline/freqtrade   {fmt_ratio(x['coinline/freqtrade'])}   (each against its own process's floor)",
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=None, help=f"candles in all (default {DEFAULT_ROWS:,} x COINLINE_BENCH_SCALE)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each path; the best is kept (default 3)")
    ap.add_argument("--no-freqtrade", action="store_true", help="skip the freqtrade subprocess")
    ap.add_argument("--no-kraken", action="store_true", help="skip the Kraken 720-row page case")
    ap.add_argument("--json", action="store_true", help="print the result as JSON as well")
    args = ap.parse_args(argv)
    result = run(rows=args.rows, repeats=args.repeats, freqtrade=not args.no_freqtrade, kraken=not args.no_kraken)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
