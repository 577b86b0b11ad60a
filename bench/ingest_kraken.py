"""Benchmark 1b: ingest of one-minute candles arriving as Kraken OHLC pages of 720 rows.

Pages: `rows` (default 1,000,000 x COINLINE_BENCH_SCALE) one-minute candles of one series as Kraken
`GET /0/public/OHLC` bodies of 720 rows (`bench._common.make_kraken_pages`): 719 closed candles and the
still-open one, values as strings, like every page `sync` and a Kraken backfill commit. Built up front.

Measured over the same pages, interleaved, `repeats` times; the MEDIAN run of each is reported:
- floor: stdlib json.loads + a pyarrow table of the closed rows (strings cast by Arrow) + one
  `pyarrow.parquet.write_table` per page (`bench._common.kraken_floor_page`);
- parse only: the provider body decode (`coinline.jsonbody`, as the Gateway decodes) and the adapter's
  `parse_ohlc_result` (the candle table of the closed rows) per page, no HTTP, no commit: the parser's own cost;
- fetch only: `KrakenOHLCSource.fetch` per page over an `httpx.MockTransport` (Gateway, HTTP client,
  JSON, parse, completeness check against `last`), no commit;
- coinline: the same fetch, then `ingest_range` commits the page into a fresh local lake (one call per
  page: a Kraken OHLC fetch is always `done`, so each sync or backfill of a series commits one page).
  Where `ingest_range` takes a shared commit `buffer` (batched commits), a second figure feeds every
  page into one buffer flushed when full and at the end, as one sync cycle over many series would;
- parser + writer (the goal's figure): the parse-only path's decode and parse, then every page into one
  `CommitBuffer` as sync and backfill feed it, no HTTP, as the freqtrade side has none;
- freqtrade (in `.bench-venv`, `bench._freqtrade_worker --format kraken`): the rows as ccxt's kraken
  parser hands them on, `ohlcv_to_dataframe` + `ohlcv_store` per page, and in its download shape (every
  page gathered, one store: what `freqtrade download-data` does), against its own floor there.

The goal (coinline / freqtrade >= 1.2) is judged as parser + writer over freqtrade's download shape: each
side's data path as its own tool runs it, each against the floor in its own process.

Ratios are rows/s over rows/s (higher is faster). The load average is recorded before and after.

    python -m bench.ingest_kraken [--rows N] [--repeats N] [--no-freqtrade] [--json]
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import _ingest
from bench._common import (
    KRAKEN_PAGE_ROWS,
    KRAKEN_PAIR,
    START_S,
    STEP_S,
    fmt_ratio,
    kraken_floor_page,
    make_kraken_pages,
    median,
    ratio,
    run_main,
    say_for,
)

NAME = "ingest_kraken"
GOAL = 1.2                  # coinline/freqtrade, each against the floor in its own process
ASSET_PAIRS = {KRAKEN_PAIR: {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD",
                             "status": "online"}}


def windows(rows: int, page_rows: int) -> list[tuple[int, int]]:
    """[start, end) in unix seconds of the closed candles of each page (`make_kraken_pages`' layout)."""
    closed = page_rows - 1
    return [(START_S + STEP_S * lo, START_S + STEP_S * min(rows, lo + closed)) for lo in range(0, rows, closed)]


def _transport(pages: list[bytes], page_rows: int, rows: int) -> httpx.MockTransport:
    """Serves page i for `since` = one minute before its first candle (Kraken's `since` is exclusive)."""
    by_since = {str(start - STEP_S): body for (start, _end), body in zip(windows(rows, page_rows), pages, strict=True)}
    headers = {"content-type": "application/json; charset=utf-8"}
    refused = json.dumps({"error": ["EGeneral:Invalid arguments"]}).encode()

    def handle(request: httpx.Request) -> httpx.Response:
        body = by_since.get(request.url.params.get("since", "")) if request.url.path == "/0/public/OHLC" else None
        return httpx.Response(200, content=refused if body is None else body, headers=headers)

    return httpx.MockTransport(handle)


def _source(pages: list[bytes], page_rows: int, rows: int, now: datetime):
    from coinline.providers.http import Gateway
    from coinline.providers.kraken import KrakenAssetPairs, KrakenOHLCSource, kraken_client

    client = kraken_client("http://kraken.bench", transport=_transport(pages, page_rows, rows))
    gateway = Gateway("kraken", client)
    source = KrakenOHLCSource(gateway, asset_pairs=KrakenAssetPairs(ASSET_PAIRS), clock=lambda: now)
    return client, gateway, source, source.resolve("BTC", "USD", "1m")


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _now(rows: int) -> datetime:
    return _at(START_S + STEP_S * rows) + timedelta(hours=1)


KEY = ("kraken", "KRAKEN", "BTC", "USD", "1m")


def _parse_page(body: bytes, key):
    """One page as the adapter parses it, without HTTP: the provider body decode (`coinline.jsonbody`),
    Kraken's envelope, and `parse_ohlc_result` (the candle table of the closed rows)."""
    from coinline import jsonbody
    from coinline.providers.kraken import parse_ohlc_result, unwrap

    result = unwrap(jsonbody.loads(body), provider="kraken", series=key.label(), request="bench")
    return parse_ohlc_result(result, key, provider="kraken", request="bench")[2]


def run_parse_only(pages: list[bytes]) -> dict[str, Any]:
    """`_parse_page` per page: what the decode and the parser themselves cost."""
    from coinline.providers.base import SeriesKey

    key = SeriesKey(*KEY)
    rows = 0
    t0 = time.perf_counter()
    for body in pages:
        rows += _parse_page(body, key).num_rows
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def run_fetch_only(pages: list[bytes], page_rows: int, rows: int) -> dict[str, Any]:
    """`KrakenOHLCSource.fetch` of every page over the MockTransport, nothing committed."""
    client, gateway, source, ref = _source(pages, page_rows, rows, _now(rows))
    got = 0
    t0 = time.perf_counter()
    for start, end in windows(rows, page_rows):
        got += source.fetch(ref, _at(start), _at(end)).candles.num_rows
    seconds = time.perf_counter() - t0
    client.close()
    return {"rows": got, "seconds": seconds, "rows_per_s": got / seconds, "requests": gateway.requests_made}


def run_parse_write(pages: list[bytes], workdir: Path, rows: int) -> dict[str, Any]:
    """coinline's own parser and writer, no HTTP (the issue's "through coinline's own parser and writer"; the
    freqtrade side has no HTTP either): `_parse_page` per page, the closed candles into one `CommitBuffer` as
    a sync cycle or a backfill walk feeds it (page manifests, dedupe against the stored series, versions),
    flushed when full and at the end, into a fresh lake."""
    from coinline.ingest.writer import CommitBuffer
    from coinline.lake import tables
    from coinline.providers.base import SeriesKey

    lake, version = _ingest.fresh_raw(workdir)
    key = SeriesKey(*KEY)
    now = _now(rows)
    buffer = CommitBuffer(lake)
    inserted = 0
    t0 = time.perf_counter()
    for i, body in enumerate(pages):
        buffer.add(_parse_page(body, key), key=key, request={"page": i}, now=now)
        if buffer.full():
            inserted += sum(r.inserted for r in buffer.flush())
    inserted += sum(r.inserted for r in buffer.flush())
    seconds = time.perf_counter() - t0
    return {"rows": inserted, "seconds": seconds, "rows_per_s": inserted / seconds,
            "commits": tables.open_table(lake, tables.RAW).version() - version}


def buffer_supported() -> bool:
    """Whether `ingest_range` takes a caller's commit buffer (batched commits across pages)."""
    from coinline.ingest.backfill import ingest_range

    return "buffer" in inspect.signature(ingest_range).parameters


def run_coinline(pages: list[bytes], page_rows: int, rows: int, workdir: Path, *, buffered: bool = False) -> dict[str, Any]:
    """fetch + `ingest_range` per page into a fresh lake; `buffered`: every page into one commit buffer."""
    from coinline.ingest.backfill import SeriesOutcome, ingest_range

    lake, version = _ingest.fresh_raw(workdir)
    now = _now(rows)
    client, gateway, source, ref = _source(pages, page_rows, rows, now)
    source = _ingest.TimedSource(source)
    outcome = SeriesOutcome(ref.key.label(), "BTC", "USD", "1m", "ok")
    shared: dict[str, Any] = {}
    if buffered:
        from coinline.ingest.writer import CommitBuffer

        shared["buffer"] = CommitBuffer(lake)
    t0 = time.perf_counter()
    for start, end in windows(rows, page_rows):
        ingest_range(source, lake, ref, _at(start), _at(end), outcome, now=now, **shared)
    if buffered:
        shared["buffer"].flush()
    seconds = time.perf_counter() - t0
    client.close()
    return _ingest.coinline_run(lake, version, outcome, source, seconds, gateway.requests_made)


def run(rows: int | None = None, repeats: int = 3, freqtrade: bool = True, quiet: bool = False) -> dict[str, Any]:
    rows = _ingest.default_rows(rows)
    page_rows = KRAKEN_PAGE_ROWS
    say = say_for(quiet)
    load_before = os.getloadavg()
    pages = _ingest.build_pages(NAME, make_kraken_pages, rows, page_rows, "Kraken OHLC pages", say)
    buffered = buffer_supported()
    paths = {"parse": lambda tmp: run_parse_only(pages),
             "fetch": lambda tmp: run_fetch_only(pages, page_rows, rows),
             "coinline": lambda tmp: run_coinline(pages, page_rows, rows, tmp / "lake")}
    if buffered:
        paths["buffered"] = lambda tmp: run_coinline(pages, page_rows, rows, tmp / "lake-buffered", buffered=True)
        paths["written"] = lambda tmp: run_parse_write(pages, tmp / "lake-written", rows)
    warm_rows = min(rows, page_rows - 1)         # warm-up on one page: imports, deltalake init
    got, ft = _ingest.measure(
        NAME, pages, paths, floor_page=kraken_floor_page,
        warm=lambda tmp: run_coinline(pages[:1], page_rows, warm_rows, tmp / "warm-lake"), repeats=repeats,
        pick=median, freqtrade=freqtrade, fmt="kraken", say=say, prefix="coinline-bench-kraken-")
    for name, r in got.items():
        if name != "floor" and r["rows"] != rows:
            raise SystemExit(f"[{NAME}] {name} handled {r['rows']:,} rows, expected {rows:,}")

    floor = got["floor"]["rows_per_s"]
    coin = got["coinline"]
    x: dict[str, float | None] = {
        "coinline/floor": ratio(coin["rows_per_s"], floor),
        "fetch_only/floor": ratio(got["fetch"]["rows_per_s"], floor),
        "parse_only/floor": ratio(got["parse"]["rows_per_s"], floor),
        "buffered/floor": ratio(got["buffered"]["rows_per_s"], floor) if buffered else None,
        # shares of the full path's time: fetch (HTTP + parse) as timed inside it, and the parse alone
        "fetch_share": coin["fetch_seconds"] / coin["seconds"],
        "parse_share": got["parse"]["seconds"] / coin["seconds"],
    }
    x["written/floor"] = ratio(got["written"]["rows_per_s"], floor) if buffered else None
    x.update(_ingest.freqtrade_ratios(ft, floor, {"coinline": x["coinline/floor"], "buffered": x["buffered/floor"]},
                                      extra=("download",)))
    # the goal's figure: coinline's parser and writer as sync and backfill commit (one shared buffer), against
    # freqtrade's data path as its download runs it (every page gathered, one store); neither side has HTTP
    dl = x.get("freqtrade_download/floor")
    x["written/freqtrade_download"] = ratio(x["written/floor"], dl) if dl and x["written/floor"] else None
    x["buffered/freqtrade_download"] = ratio(x["buffered/floor"], dl) if dl and x["buffered/floor"] else None
    result: dict[str, Any] = {"benchmark": NAME, "rows": rows, "pages": len(pages), "page_rows": page_rows,
                              "repeats": repeats, **got, "freqtrade": ft, "ratios": x,
                              "load_average": {"before": list(load_before), "after": list(os.getloadavg())}}
    w = x["written/freqtrade_download"]
    if w is not None and w < GOAL:
        wr, parse = got["written"], got["parse"]
        result["shortfall"] = {"ingest_kraken_vs_freqtrade": (
            f"parser + writer took {wr['seconds']:.2f} s: decode and parse {parse['seconds']:.2f} s "
            f"({parse['seconds'] / wr['seconds']:.0%}, the parse-only path), the commit buffer the rest (per page: "
            f"series checks, closed-candle filter, dedupe against the stored series, a manifest with a content hash; "
            f"then {wr['commits']} Delta commits); freqtrade's download shape converts and writes all pages once, "
            f"with no per-page record")}
    result["summary"] = summary_line(result)
    if not quiet:
        print(report(result), flush=True)
    return result


def summary_line(r: dict[str, Any]) -> str:
    x = r["ratios"]
    return (f"Kraken 720-row pages: parser+writer/freqtrade download {fmt_ratio(x.get('written/freqtrade_download'))} "
            f"(goal >= {GOAL}); {_ingest.headline(x)} (commit per page, with HTTP)")


def _line(label: str, v: dict[str, Any]) -> str:
    return f"    {label:<44} {v['rows_per_s']:>12,.0f} rows/s  {v['seconds']:7.2f} s  runs {v['all_seconds']}"


def report(r: dict[str, Any]) -> str:
    x, ft, c = r["ratios"], r["freqtrade"], r["coinline"]
    load = r["load_average"]
    lines = [
        f"== 1b. ingest throughput: {r['rows']:,} one-minute candles, {r['pages']:,} Kraken OHLC pages of "
        f"{r['page_rows']} (median of {r['repeats']}; load average {load['before'][0]:.2f} before, "
        f"{load['after'][0]:.2f} after)",
        "  main process (coinline venv):",
        _line("floor     json + pa.table + pq.write_table", r["floor"]),
        _line("parse     coinline's decode + Kraken parse", r["parse"]),
        _line("fetch     KrakenOHLCSource.fetch (MockTransport)", r["fetch"]),
        _line("coinline  fetch + ingest_range, commit per page", c),
        f"              of which fetch+parse {c['fetch_seconds']:.2f} s, commit {c['commit_seconds']:.2f} s; "
        f"{c['requests']} requests, {c['commits']} commits to the raw table, {c['stored_rows']:,} rows stored",
    ]
    if "buffered" in r:
        b = r["buffered"]
        lines += [_line("coinline  same, one shared commit buffer", b),
                  f"              of which fetch+parse {b['fetch_seconds']:.2f} s, commit {b['commit_seconds']:.2f} s; "
                  f"{b['commits']} commits to the raw table, {b['stored_rows']:,} rows stored"]
    if "written" in r:
        lines.append(_line("coinline  parse + CommitBuffer (no HTTP)", r["written"])
                     + f"  {r['written']['commits']} commits")
    if "skipped" in ft:
        lines.append(f"  freqtrade: skipped ({ft['skipped']})")
    else:
        lines += [f"  .bench-venv subprocess (freqtrade {ft.get('freqtrade_version', '?')}), rows as ccxt's kraken parser "
                  "gives them:", _line("floor     json + pa.table + pq.write_table", ft["floor"]),
                  _line("freqtrade per page, parquet handler", ft["parquet"]),
                  _line("freqtrade per page, feather handler", ft["feather"]),
                  _line("freqtrade download shape, parquet", ft["download"])]
    lines += [
        "  ratios (rows/s over rows/s; >1 is faster than the reference):",
        f"    coinline/floor       {fmt_ratio(x['coinline/floor'])}   (commit per page)"
        + (f";  shared buffer {fmt_ratio(x['buffered/floor'])}" if x["buffered/floor"] is not None else ""),
        f"    freqtrade/floor      {fmt_ratio(x['freqtrade/floor'])}   (parquet per page, subprocess floor)",
        f"    coinline/freqtrade   {fmt_ratio(x['coinline/freqtrade'])}   (each against its own process's floor; goal >= {GOAL})"
        + (f";  shared buffer {fmt_ratio(x['buffered/freqtrade'])}" if x["buffered/freqtrade"] is not None else ""),
        f"    goal figure: parser+writer (shared buffer, no HTTP) / freqtrade download shape  "
        f"{fmt_ratio(x.get('written/freqtrade_download'))}  ({fmt_ratio(x.get('written/floor'))} / "
        f"{fmt_ratio(x.get('freqtrade_download/floor'))}; goal >= {GOAL}); with HTTP (fetch + ingest_range, shared "
        f"buffer) {fmt_ratio(x.get('buffered/freqtrade_download'))}",
        f"    parse only/floor {fmt_ratio(x['parse_only/floor'])}, fetch only/floor {fmt_ratio(x['fetch_only/floor'])}; "
        f"share of the full path: fetch+parse {x['fetch_share']:.0%}, parse alone {x['parse_share']:.0%}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = _ingest.ingest_arguments(__doc__, "median")
    return run_main(ap, argv, lambda args: run(rows=args.rows, repeats=args.repeats, freqtrade=not args.no_freqtrade))


if __name__ == "__main__":
    sys.exit(main())
