"""The issue's benchmark goals in one place, judged from the results of one `bench.run_all` run.

Each goal names the benchmark whose result it is judged from and reuses that module's threshold constant.
A goal is "met" or "missed" by the figure of this run, whatever its size: where the run was smaller than
the size the goal is stated for (COINLINE_BENCH_SCALE < 1, fewer cycles, fewer series), the note says so.
A goal whose benchmark was not run, failed, or could not take the figure (freqtrade skipped) is "not
measured", with why. For a miss the note gives the reason the benchmark recorded, if any: a result may
carry `shortfall`, a string or {goal key: string}. Nothing here is asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import backfill_rss, ingest_kraken, ingest_throughput, maintain_cycles, materialize
from bench._common import DEFAULT_ROWS, KRAKEN_PAGE_ROWS, MAX_PAGE_ROWS

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"


@dataclass(frozen=True)
class Figure:
    """What a goal's check read from a result: the figure as printed, the value compared (None: not
    measured), whether it meets the goal (None: not measured), and a note (a smaller run, why not measured)."""
    measured: str
    value: float | None
    met: bool | None
    note: str = ""


@dataclass(frozen=True)
class Goal:
    key: str                                   # stable name, in latest.json and in a result's `shortfall`
    measure: str
    goal: str
    benchmark: str                             # the bench.run_all benchmark it is judged from
    check: Callable[[dict[str, Any]], Figure]


def _smaller(*sizes: tuple[int, int, str]) -> str:
    """"smaller run: RUN of FULL UNIT, ..." for each (run, full, unit) where run < full, else ""."""
    short = [f"{run:,} of {full:,} {unit}" for run, full, unit in sizes if run < full]
    return f"smaller run: {', '.join(short)}" if short else ""


def _notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _freqtrade_ratio(r: dict[str, Any], size: str, note: str, goal: float, key: str = "coinline/freqtrade") -> Figure:
    """The goal's ratio `key` of an ingest result, or "not measured" with why (freqtrade skipped)."""
    x = r["ratios"].get(key)
    if x is None:
        why = r.get("freqtrade", {}).get("skipped", f"no {key} figure")
        return Figure("n/a", None, None, _notes(f"freqtrade skipped: {why}", note))
    return Figure(f"{x:.3f} ({size})", x, x >= goal, note)


def _kraken(r: dict[str, Any]) -> Figure:
    """coinline's parser + writer (shared commit buffer, as sync and backfill) over freqtrade's download shape."""
    k = r.get("kraken")
    if k is None:
        return Figure("n/a", None, None, "run without the Kraken case (--no-kraken)")
    per_page = k["ratios"].get("coinline/freqtrade")
    note = _notes(_smaller((k["rows"], DEFAULT_ROWS, "rows")),
                  f"commit per page with HTTP vs freqtrade per page: {per_page:.3f}" if per_page else "")
    return _freqtrade_ratio(k, f"{k['rows']:,} rows; parser+writer vs freqtrade download", note, ingest_kraken.GOAL,
                            key="written/freqtrade_download")


def _coinapi(r: dict[str, Any]) -> Figure:
    return _freqtrade_ratio(r, f"{r['pages']} pages of {r['page_rows']:,} rows",
                            _smaller((r["page_rows"], MAX_PAGE_ROWS, "rows a page")), ingest_throughput.GOAL)


def _cycles_note(r: dict[str, Any], *more: tuple[int, int, str]) -> str:
    note = _smaller(*more, (r["cycles"], maintain_cycles.GOAL_CYCLES, "cycles"))
    full = r["cycles"] >= maintain_cycles.GOAL_CYCLES
    return note if full else f"{note} ({maintain_cycles.CYCLES_ENV}={maintain_cycles.GOAL_CYCLES} for the goal's)"


def _noop_after_cycles(r: dict[str, Any]) -> Figure:
    x = r["ratios"]["maintained / after 10"]
    if x is None:
        return Figure("n/a", None, None, "no ratio")
    return Figure(f"{x:.3f} after {r['cycles']:,} cycles", x, x <= maintain_cycles.GOAL, _cycles_note(r))


def _files_after_maintenance(r: dict[str, Any]) -> Figure:
    a, ten = r["after_maintenance"], r["after_10"]
    series = r.get("series_count", len(r["series"]))
    bounded = a["active_files"] <= ten["active_files"] and a["stored_files"] <= ten["stored_files"]
    return Figure(f"{a['active_files']} active, {a['stored_files']} stored ({series} series, {r['cycles']:,} cycles)",
                  a["active_files"], bounded,
                  _cycles_note(r, (series, maintain_cycles.GOAL_SERIES, "series")))


def _materialize(r: dict[str, Any]) -> Figure:
    x = r["ratios"]["one-new/full"]
    if x is None:
        return Figure("n/a", None, None, "no ratio")
    same = r["identical"]
    small = r["history_days"] < materialize.DAYS
    return Figure(f"{x:.3f} ({r['rows']:,} rows)", x, x <= materialize.GOAL and same,
                  _notes(f"smaller run: {r['rows']:,} of ~{materialize.COINS * materialize.DAYS * 24:,} rows"
                         if small else "", "" if same else "incremental and full datasets differ"))


def _rss(r: dict[str, Any]) -> Figure:
    peak = r["peak_rss_bytes"]
    return Figure(f"{peak / 1e6:,.0f} MB ({r['rows']:,} rows)", peak, peak < backfill_rss.GOAL_BYTES,
                  _smaller((r["rows"], backfill_rss.DEFAULT_ROWS, "rows")))


GOALS: tuple[Goal, ...] = (
    Goal("ingest_kraken_vs_freqtrade", f"ingest, Kraken {KRAKEN_PAGE_ROWS}-row pages, coinline / freqtrade (both vs the floor)",
         f">= {ingest_kraken.GOAL}", "ingest_throughput", _kraken),
    Goal("ingest_coinapi_vs_freqtrade", f"ingest, CoinAPI {MAX_PAGE_ROWS // 1000}k-row pages, coinline / freqtrade",
         f">= {ingest_throughput.GOAL}", "ingest_throughput", _coinapi),
    Goal("noop_sync_after_cycles", f"no-op sync after {maintain_cycles.GOAL_CYCLES:,} hourly sync cycles vs after 10",
         f"<= {maintain_cycles.GOAL} (after maintenance)", "maintain_cycles", _noop_after_cycles),
    Goal("raw_files_after_maintenance",
         f"files in raw_candles after {maintain_cycles.GOAL_CYCLES:,} cycles on {maintain_cycles.GOAL_SERIES} series, "
         "after maintenance", "bounded (<= after 10 cycles), stated", "maintain_cycles", _files_after_maintenance),
    Goal("materialize_one_new_vs_full", "materialize after one new candle per series vs a full build (1M rows)",
         f"<= {materialize.GOAL}", "materialize", _materialize),
    Goal("backfill_peak_rss", f"peak RSS of a {backfill_rss.DEFAULT_ROWS // 1_000_000}M-row backfill",
         f"< {backfill_rss.GOAL_BYTES / 1e9:g} GB", "backfill_rss", _rss),
)


def _shortfall(r: dict[str, Any], key: str) -> str:
    s = r.get("shortfall")
    if isinstance(s, dict):
        s = s.get(key)
    return str(s) if s else ""


def judge(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict a goal (key, measure, goal, benchmark, measured, value, status, note) from run_all's results."""
    out = []
    for g in GOALS:
        r = results.get(g.benchmark)
        if r is None:
            fig = Figure("", None, None, f"{g.benchmark} not run (--only / --skip)")
        elif "error" in r:
            fig = Figure("", None, None, f"{g.benchmark} failed: {r['error'][:80]}")
        else:
            fig = g.check(r)
        status = NOT_MEASURED if fig.met is None else MET if fig.met else MISSED
        note = fig.note
        if status == MISSED:
            note = _notes(_shortfall(r, g.key) or "no reason recorded by the bench", note)
        out.append({"key": g.key, "measure": g.measure, "goal": g.goal, "benchmark": g.benchmark,
                    "measured": fig.measured, "value": fig.value, "status": status, "note": note})
    return out


def rows(judged: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The goals table's lines (a header first) for `bench.run_all.grid`."""
    return [("measure", "goal", "measured", "status", "note"),
            *((j["measure"], j["goal"], j["measured"], j["status"], j["note"]) for j in judged)]
