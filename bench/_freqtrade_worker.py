"""Runs inside `.bench-venv` (freqtrade installed, coinline not): times freqtrade's data path and the
FLOOR over the same CoinAPI page files, in this one process, and prints one JSON object on stdout.

    .bench-venv/bin/python -m bench._freqtrade_worker PAGES_DIR WORK_DIR [--repeats N] [--format coinapi|kraken]

freqtrade path per page: stdlib json.loads, the ISO open times to epoch ms and the records to
ccxt-style rows `[ms, o, h, l, c, v]` (what freqtrade's exchange layer hands on), then
`freqtrade.data.converter.ohlcv_to_dataframe` and the data handler's `ohlcv_store`.
Variants: parquet handler per page (the headline, same shape as the floor: one file per page),
feather handler per page (freqtrade's default format), and the "download" shape freqtrade itself
uses (all pages' rows gathered, one ohlcv_to_dataframe, one ohlcv_store).

`--format kraken`: the pages are Kraken OHLC bodies; rows go to freqtrade as ccxt's kraken
`parse_ohlcv` hands them on (`[time * 1000, float(o), float(h), float(l), float(c), float(volume)]`),
the still-open last row left out as freqtrade's `drop_incomplete` would, and the floor is
`kraken_floor_page`. Same freqtrade calls after that.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from bench._common import best, kraken_floor_page, kraken_rows, median, run_floor

PAIR = "BTC/USD"
TIMEFRAME = "1m"


def _ccxt_rows(body: bytes) -> list[list]:
    records = json.loads(body)
    ms = pd.to_datetime([r["time_period_start"] for r in records], utc=True, format="ISO8601").as_unit("ms").asi8
    return [[t, r["price_open"], r["price_high"], r["price_low"], r["price_close"], r["volume_traded"]]
            for t, r in zip(ms.tolist(), records, strict=True)]


def _kraken_ccxt_rows(body: bytes) -> list[list]:
    return [[r[0] * 1000, float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[6])] for r in kraken_rows(body)]


FORMATS = {"coinapi": (_ccxt_rows, None), "kraken": (_kraken_ccxt_rows, kraken_floor_page)}


def run_freqtrade(pages: list[bytes], workdir: Path, data_format: str, shape: str, to_rows=_ccxt_rows) -> dict:
    from freqtrade.data.converter import ohlcv_to_dataframe
    from freqtrade.data.history.datahandlers import get_datahandler
    from freqtrade.enums import CandleType

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    rows = 0
    t0 = time.perf_counter()
    if shape == "per-page":
        for i, body in enumerate(pages):
            datadir = workdir / f"page-{i:04d}"
            datadir.mkdir()
            df = ohlcv_to_dataframe(to_rows(body), TIMEFRAME, PAIR, fill_missing=False, drop_incomplete=False)
            get_datahandler(datadir, data_format).ohlcv_store(PAIR, TIMEFRAME, df, CandleType.SPOT)
            rows += len(df)
    else:  # "download": freqtrade gathers every page, converts once, stores once
        gathered: list[list] = []
        for body in pages:
            gathered.extend(to_rows(body))
        df = ohlcv_to_dataframe(gathered, TIMEFRAME, PAIR, fill_missing=False, drop_incomplete=False)
        get_datahandler(workdir, data_format).ohlcv_store(PAIR, TIMEFRAME, df, CandleType.SPOT)
        rows = len(df)
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pages_dir", type=Path)
    ap.add_argument("work_dir", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--format", choices=sorted(FORMATS), default="coinapi", help="what the page files hold")
    args = ap.parse_args(argv)
    to_rows, floor_page = FORMATS[args.format]
    floor = {} if floor_page is None else {"page": floor_page}
    try:
        import freqtrade
        from freqtrade.data.converter import ohlcv_to_dataframe  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - report any import failure as a clean skip
        print(json.dumps({"skipped": f"freqtrade not importable: {type(exc).__name__}: {exc}"}))
        return 0
    pages = [p.read_bytes() for p in sorted(args.pages_dir.glob("page-*.json"))]
    # warm-up on one page (imports, lazy pandas/pyarrow setup) so neither side pays it in the timing
    run_floor(pages[:1], args.work_dir / "warm-floor", **floor)
    run_freqtrade(pages[:1], args.work_dir / "warm-ft", "parquet", "per-page", to_rows)
    results: dict[str, list[dict]] = {"floor": [], "parquet": [], "feather": [], "download": []}
    for _ in range(max(1, args.repeats)):   # interleaved so drift hits every variant alike
        results["floor"].append(run_floor(pages, args.work_dir / "floor", **floor))
        results["parquet"].append(run_freqtrade(pages, args.work_dir / "ft-parquet", "parquet", "per-page", to_rows))
        results["feather"].append(run_freqtrade(pages, args.work_dir / "ft-feather", "feather", "per-page", to_rows))
        results["download"].append(run_freqtrade(pages, args.work_dir / "ft-download", "parquet", "download", to_rows))
    pick = best if args.format == "coinapi" else median      # the Kraken case reports medians
    out: dict = {name: pick(runs) for name, runs in results.items()}
    out["freqtrade_version"] = freqtrade.__version__
    out["pandas_version"] = pd.__version__
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
