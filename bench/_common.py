"""Shared helpers for the benchmarks that must NOT import coinline.

`bench._freqtrade_worker` imports this module from a separate virtualenv (`.bench-venv`, where
freqtrade lives and coinline is not installed), so everything here depends only on the standard
library, numpy and pyarrow: the synthetic CoinAPI pages and the FLOOR pipeline (stdlib json + pyarrow
table + parquet write), which both processes time the same way; and the timing, reporting and
command-line helpers the benchmarks share.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_ROWS = 1_000_000
MAX_PAGE_ROWS = 100_000            # CoinAPI's documented maximum `limit`
# 2020-01-01T00:00:00Z in unix seconds: the first candle of the synthetic pages
START_S = 1_577_836_800
STEP_S = 60                        # one-minute candles


def scale() -> float:
    """COINLINE_BENCH_SCALE (float, default 1.0): shrinks every benchmark for smoke runs."""
    raw = os.environ.get("COINLINE_BENCH_SCALE", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"COINLINE_BENCH_SCALE={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise SystemExit(f"COINLINE_BENCH_SCALE={raw!r} must be a positive number")
    return value


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, int(round(n * scale())))


def page_rows_for(rows: int) -> int:
    """100,000 rows per page at full size; smaller runs keep ~10 pages so paging is still exercised."""
    return max(1, min(MAX_PAGE_ROWS, math.ceil(rows / 10)))


def _walk(rng: np.random.Generator, n: int, digits: int) -> tuple[np.ndarray, ...]:
    """`n` consecutive one-minute candles from START_S as a random walk from 30,000 drawn from `rng`, prices
    rounded to `digits`: (open times in unix seconds, open, high, low, close, volume (unrounded), trade
    counts). Both page builders draw these first, in this order, so their bytes stay what they were."""
    times = START_S + STEP_S * np.arange(n, dtype=np.int64)
    close = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n))), digits)
    open_ = np.round(np.concatenate([[30_000.0], close[:-1]]), digits)
    wig = np.abs(rng.normal(0.0, 0.0005, (2, n)))
    high = np.round(np.maximum(open_, close) * (1 + wig[0]), digits)
    low = np.round(np.minimum(open_, close) * (1 - wig[1]), digits)
    volume = rng.gamma(2.0, 1.5, n) + 1e-8
    counts = rng.integers(1, 400, n)
    return times, open_, high, low, close, volume, counts


def make_pages(rows: int, page_rows: int, *, seed: int = 20240101) -> list[bytes]:
    """CoinAPI `/v1/ohlcv/{symbol}/history` bodies (JSON arrays of records shaped exactly like
    shared/data/api/coinapi/spec_examples/ohlcv_symbol_history.json), one-minute candles of one
    series, consecutive from START_S. Built once, up front, as bytes."""
    rng = np.random.default_rng(seed)
    starts, open_, high, low, close, volume, trades = _walk(rng, rows, 2)
    volume = np.round(volume, 8)
    first_trade = rng.integers(0, 20, rows)
    last_trade = rng.integers(40, 60, rows)

    def iso(seconds: np.ndarray) -> list[str]:
        text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
        return [f"{t}.0000000Z" for t in text.tolist()]

    pages = []
    for lo in range(0, rows, page_rows):
        hi = min(rows, lo + page_rows)
        s = starts[lo:hi]
        t_start, t_end = iso(s), iso(s + STEP_S)
        t_open, t_close = iso(s + first_trade[lo:hi]), iso(s + last_trade[lo:hi])
        records = [
            {"time_period_start": a, "time_period_end": b, "time_open": c, "time_close": d,
             "price_open": o, "price_high": h, "price_low": lo_, "price_close": cl,
             "volume_traded": v, "trades_count": n}
            for a, b, c, d, o, h, lo_, cl, v, n in zip(
                t_start, t_end, t_open, t_close, open_[lo:hi].tolist(), high[lo:hi].tolist(),
                low[lo:hi].tolist(), close[lo:hi].tolist(), volume[lo:hi].tolist(), trades[lo:hi].tolist(),
                strict=True)
        ]
        pages.append(json.dumps(records).encode())
    return pages


KRAKEN_PAGE_ROWS = 720             # Kraken OHLC: the 720 most recent candles, the last one still open
KRAKEN_PAIR = "XXBTZUSD"


def make_kraken_pages(rows: int, page_rows: int = KRAKEN_PAGE_ROWS, *, seed: int = 20240101) -> list[bytes]:
    """Kraken `GET /0/public/OHLC` bodies (`{"error": [], "result": {pair: [[time, o, h, l, c, vwap,
    volume, count], ...], "last": t}}`, values as strings like the captures in shared/data/api/kraken)
    holding `rows` closed one-minute candles of one series, consecutive from START_S, built up front.

    Each body has `page_rows` rows of which the last is the still-open candle (the first candle of the
    next body, as Kraken serves it one page later) and `last` is the newest closed one, so body i closes
    candles [i * (page_rows - 1), (i + 1) * (page_rows - 1)); the final body may close fewer."""
    closed = page_rows - 1
    total = rows + 1                    # every closed candle and the one still open after them
    times, open_, high, low, close, volume, counts = _walk(np.random.default_rng(seed), total, 1)
    vwap = np.round((high + low + close) / 3, 1)

    def text(values: np.ndarray, digits: int) -> list[str]:
        return [f"{v:.{digits}f}" for v in values.tolist()]

    cells = list(zip(times.tolist(), text(open_, 1), text(high, 1), text(low, 1), text(close, 1), text(vwap, 1),
                     text(volume, 8), counts.tolist(), strict=True))
    pages = []
    for lo in range(0, rows, closed):
        hi = min(rows, lo + closed)
        body_rows = [list(c) for c in cells[lo:hi + 1]]           # + the still-open candle
        pages.append(json.dumps({"error": [], "result": {KRAKEN_PAIR: body_rows, "last": body_rows[-2][0]}},
                                separators=(",", ":")).encode())
    return pages


def kraken_rows(body: bytes) -> list[list]:
    """The closed rows of a Kraken OHLC body (the last row, the still-open candle, is never stored)."""
    result = json.loads(body)["result"]
    return next(v for k, v in result.items() if k != "last")[:-1]


def kraken_floor_page(body: bytes, out: Path) -> int:
    """`floor_page` for a Kraken OHLC body: stdlib json.loads, the closed rows as a pyarrow table (the
    numeric strings cast by Arrow) and one `pyarrow.parquet.write_table`. No validation at all."""
    rows = kraken_rows(body)
    table = pa.table({
        "open_time": pa.array([r[0] * 1000 for r in rows], pa.int64()).cast(pa.timestamp("ms", "UTC")),
        **{name: pa.array([r[j] for r in rows], pa.string()).cast(pa.float64())
           for name, j in (("open", 1), ("high", 2), ("low", 3), ("close", 4), ("volume", 6))},
        "trade_count": pa.array([r[7] for r in rows], pa.int64()),
    })
    pq.write_table(table, out)
    return table.num_rows


def page_time_start(index: int, page_rows: int) -> int:
    return START_S + STEP_S * page_rows * index


# ------------------------------------------------------------------------------------------ the floor


def floor_page(body: bytes, out: Path) -> int:
    """The least work that turns one page into a stored columnar file: stdlib json.loads, the same
    rows as a pyarrow table (open time parsed to timestamp[ms, UTC], OHLCV, trade count), and one
    `pyarrow.parquet.write_table`. No validation, no dedupe, no versions, no hash, no commit log."""
    records = json.loads(body)
    table = pa.table({
        "open_time": pa.array([r["time_period_start"] for r in records], pa.string())
        .cast(pa.timestamp("ns", "UTC")).cast(pa.timestamp("ms", "UTC")),
        "open": pa.array([r["price_open"] for r in records], pa.float64()),
        "high": pa.array([r["price_high"] for r in records], pa.float64()),
        "low": pa.array([r["price_low"] for r in records], pa.float64()),
        "close": pa.array([r["price_close"] for r in records], pa.float64()),
        "volume": pa.array([r["volume_traded"] for r in records], pa.float64()),
        "trade_count": pa.array([r.get("trades_count") for r in records], pa.int64()),
    })
    pq.write_table(table, out)
    return table.num_rows


def run_floor(pages: list[bytes], workdir: Path, page=floor_page) -> dict[str, Any]:
    """The floor over every page (`page`: `floor_page` for CoinAPI bodies, `kraken_floor_page`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = sum(page(body, workdir / f"page-{i:04d}.parquet") for i, body in enumerate(pages))
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of several timed runs (the least disturbed), with every time taken."""
    fastest = min(runs, key=lambda r: r["seconds"])
    return {**fastest, "all_seconds": [round(r["seconds"], 4) for r in runs]}


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the lower middle one of an even count), with every time taken: steadier
    than the fastest where other work shares the machine."""
    middle = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
    return {**middle, "all_seconds": [round(r["seconds"], 4) for r in runs]}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# ------------------------------------------------------------------- timing, reporting and main


def say_for(quiet: bool) -> Callable[..., None]:
    """What a benchmark prints its progress with: `print(..., flush=True)`, or nothing when `quiet`."""
    return (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))


def timed(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, float]:
    """fn(*args, **kw) and the seconds it took."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The median seconds of `repeats` calls of fn() (statistics.median), and what the last call returned."""
    times = []
    for _ in range(repeats):
        out, seconds = timed(fn)
        times.append(seconds)
    return statistics.median(times), out


def spread(seconds: list[float], name: str = "", digits: int = 4) -> dict[str, Any]:
    """`{name}_median_s` (statistics.median) and `{name}_runs_s` (each run rounded to `digits`) of timed runs."""
    prefix = f"{name}_" if name else ""
    return {f"{prefix}median_s": statistics.median(seconds), f"{prefix}runs_s": [round(x, digits) for x in seconds]}


def profiled(fn: Callable[[], Any], parts: dict[str, tuple[str, str]]) -> tuple[Any, dict[str, float]]:
    """fn() under cProfile: what it returned, and {label: cumulative seconds} of the functions `parts` names
    as (file path suffix, function name), plus "total". A function that calls itself counts once (cProfile's
    cumulative time); parts may nest (the shares of a shortfall's profile, not a partition of the total)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        total = time.perf_counter() - t0
        prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, name): (calls, primitive calls, own s, cumulative s, callers)}
    seconds = {label: sum(v[3] for (f, _line, name), v in stats.items() if f.endswith(suffix) and name == func)
               for label, (suffix, func) in parts.items()}
    return out, {**seconds, "total": total}


def shares(seconds: dict[str, float]) -> str:
    """"label 12% (0.34 s), ..." of a `profiled` result, largest first, over its total."""
    total = seconds["total"] or 1.0
    ranked = sorted(((k, v) for k, v in seconds.items() if k != "total"), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / total:.0%} ({v:.2f} s)" for k, v in ranked)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as printed next to figures a busy machine may have skewed."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def conclude(result: dict[str, Any], ratios: dict[str, float | None], goal: str, report: Callable[[dict], str],
             say: Callable[..., None], summary: str | None = None) -> dict[str, Any]:
    """Adds the ratios, the goal and (when given) the one-line summary to `result`, prints its report."""
    result["ratios"] = ratios
    result["goal"] = goal
    if summary is not None:
        result["summary"] = summary
    say(report(result))
    return result


def arguments(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line, described by the first line of its module docstring."""
    return argparse.ArgumentParser(description=doc.split("\n")[0])


def run_main(ap: argparse.ArgumentParser, argv: list[str] | None,
             run: Callable[[argparse.Namespace], dict[str, Any]]) -> int:
    """Adds `--json`, parses `argv`, runs the benchmark (which prints its report) and prints its result as
    JSON as well when asked."""
    ap.add_argument("--json", action="store_true", help="print the result as JSON as well")
    args = ap.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0
