"""What the two ingest benchmarks (`bench.ingest_throughput`, CoinAPI pages, and `bench.ingest_kraken`,
Kraken OHLC pages) share: the pages built up front, the timed loop (warm-up, interleaved repeats of the
floor and coinline's paths, one run kept of each, then freqtrade in its `.bench-venv` subprocess), the
result of one coinline run into a fresh lake, and the freqtrade-relative ratios.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import DEFAULT_ROWS, arguments, fmt_ratio, ratio, run_floor, scale

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
FREQTRADE_SPEC = "freqtrade==2026.9"    # the version these figures were first taken with (wheels only, TA-Lib included)
INSTALL_TIMEOUT_S = 300

Run = dict[str, Any]


def default_rows(rows: int | None) -> int:
    return rows or max(1000, int(round(DEFAULT_ROWS * scale())))


def ingest_arguments(doc: str, kept: str) -> argparse.ArgumentParser:
    """The options both ingest benchmarks take (`kept`: which of the timed runs is reported)."""
    ap = arguments(doc)
    ap.add_argument("--rows", type=int, default=None, help=f"candles in all (default {DEFAULT_ROWS:,} x COINLINE_BENCH_SCALE)")
    ap.add_argument("--repeats", type=int, default=3, help=f"timed runs of each path; the {kept} is kept (default 3)")
    ap.add_argument("--no-freqtrade", action="store_true", help="skip the freqtrade subprocess")
    return ap


def build_pages(name: str, make: Callable[[int, int], list[bytes]], rows: int, page_rows: int, what: str,
                say: Callable[..., None]) -> list[bytes]:
    """`make(rows, page_rows)`, timed and announced (`what`: the kind of pages)."""
    t0 = time.perf_counter()
    pages = make(rows, page_rows)
    say(f"[{name}] {rows:,} rows in {len(pages):,} {what} of {page_rows:,} "
        f"({sum(map(len, pages)) / 1e6:.0f} MB of JSON) built in {time.perf_counter() - t0:.1f}s")
    return pages


# ----------------------------------------------------------------------------------- coinline path


class TimedSource:
    """Delegates to the real source; adds up the time spent in fetch (HTTP + JSON + parse)."""

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


def fresh_raw(workdir: Path):
    """A fresh local lake at `workdir` and its raw table's version, to count the commits a run makes."""
    from bench._replay import fresh_lake
    from coinline.lake import tables

    lake = fresh_lake(workdir)
    return lake, tables.open_table(lake, tables.RAW).version()


def coinline_run(lake, version_before: int, outcome, source: TimedSource, seconds: float, requests: int) -> Run:
    """One timed coinline run: rows inserted and rows/s, its fetch (HTTP + parse) and commit time, the pages
    fetched, `requests`, the Delta commits it made to the raw table (pages are batched into few) and the
    rows the lake then stores."""
    from coinline.lake import tables

    stored = sum(n for _k, n, _a, _b in tables.series_in(lake))
    commits = tables.open_table(lake, tables.RAW).version() - version_before
    return {"rows": outcome.inserted, "seconds": seconds, "rows_per_s": outcome.inserted / seconds,
            "fetch_seconds": source.fetch_seconds, "commit_seconds": seconds - source.fetch_seconds,
            "pages": outcome.pages, "requests": requests, "commits": commits, "stored_rows": stored}


# ----------------------------------------------------------------------------------- the timed loop


def measure(name: str, pages: list[bytes], paths: dict[str, Callable[[Path], Run]], *, floor_page,
            warm: Callable[[Path], Any], repeats: int, pick: Callable[[list[Run]], Run], freqtrade: bool,
            fmt: str, say: Callable[..., None], prefix: str) -> tuple[dict[str, Run], dict[str, Any]]:
    """In a temporary folder (`prefix`) removed afterwards: `warm(tmp)` (one page through coinline:
    imports, deltalake init) and the floor (`floor_page`) over one page, then `repeats` rounds of the
    floor and each of `paths` (name -> fn(tmp) -> timed run), interleaved so drift hits every path alike,
    of which `pick` (`best` or `median`) keeps one each; then, unless not `freqtrade`, freqtrade and its
    own floor over the same pages (`fmt`) in the `.bench-venv` subprocess. Returns (the kept run of the
    floor and of each path, by name; freqtrade's result, or {"skipped": why})."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        warm(tmp)
        run_floor(pages[:1], tmp / "warm-floor", page=floor_page)
        every = {"floor": lambda t: run_floor(pages, t / "floor", page=floor_page), **paths}
        runs: dict[str, list[Run]] = {path: [] for path in every}
        for _ in range(max(1, repeats)):
            for path, fn in every.items():
                runs[path].append(fn(tmp))
        got = {path: pick(r) for path, r in runs.items()}
        say(f"[{name}] floor {got['floor']['rows_per_s']:,.0f} rows/s, coinline {got['coinline']['rows_per_s']:,.0f} rows/s")
        ft = run_freqtrade(pages, tmp / "ft", repeats, say, fmt=fmt) if freqtrade else {"skipped": "--no-freqtrade"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return got, ft


def freqtrade_ratios(ft: dict[str, Any], floor_rows_per_s: float, against: dict[str, float | None],
                     extra: tuple[str, ...] = ()) -> dict[str, float | None]:
    """freqtrade/floor (its parquet handler per page over the floor in its own process), then for each of
    `against` (NAME: NAME/floor in this process) NAME/freqtrade, so both sides are measured against a floor
    in their own process; then freqtrade_VARIANT/floor for each of its `extra` variants and the subprocess
    floor over this one's. Where freqtrade was skipped: freqtrade/floor and the NAME/freqtrade, as None."""
    if "skipped" in ft:
        return {"freqtrade/floor": None, **{f"{k}/freqtrade": None for k in against}}
    own_floor = ft["floor"]["rows_per_s"]
    ft_vs_floor = ratio(ft["parquet"]["rows_per_s"], own_floor)
    return {"freqtrade/floor": ft_vs_floor,
            **{f"{k}/freqtrade": ratio(v, ft_vs_floor) for k, v in against.items()},
            **{f"freqtrade_{k}/floor": ratio(ft[k]["rows_per_s"], own_floor) for k in extra},
            "subprocess_floor/main_floor": ratio(own_floor, floor_rows_per_s)}


def headline(x: dict[str, float | None]) -> str:
    """The three ratios a summary line gives: coinline/floor, freqtrade/floor, coinline/freqtrade."""
    return (f"coinline/floor {fmt_ratio(x['coinline/floor'])}, freqtrade/floor {fmt_ratio(x['freqtrade/floor'])}, "
            f"coinline/freqtrade {fmt_ratio(x['coinline/freqtrade'])}")


# ----------------------------------------------------------------------------------- freqtrade


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
    say(f"[ingest_throughput] installing {FREQTRADE_SPEC} into {BENCH_VENV.name} (once; at most {INSTALL_TIMEOUT_S} s) ...")
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
    say(f"[ingest_throughput] installed {FREQTRADE_SPEC} in {time.monotonic() - t0:.0f} s")
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
