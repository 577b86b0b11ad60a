"""Great Expectations suites for raw ingest batches and for the canonical candle view.

`validate_candles(table, stage=...)` checks a table that may hold many series at once (a series is
(source, venue, symbol, quote, interval)). Per-series notions that Great Expectations cannot express
on its own are first computed as small derived columns in numpy/pandas, then checked with ordinary
expectations:

- `_q_step_ms`         open_time minus the open_time of the previous row *of the same series*, in the
                       table's own row order (NaN for a series' first row);
- `_q_canonical_order` canonical stage only, on rows whose previous row belongs to another series:
                       1 when the row sorts at or after the previous row by (symbol, quote, interval,
                       open_time), -1 when it sorts before it (NaN elsewhere);
- `_q_grid_offset_ms`  open_time modulo the interval length, in ms (0 on the grid);
- a per-series frame (canonical stage) with the candles missing between each series' first and
  last open_time, those covered by `known_gaps`, and the rest (`unexplained_missing`).

"Strictly increasing time per series" is the conjunction of two checks that each own one defect:
`order.series_time` (no step < 0: time never goes back within a series) and `unique.natural_key`
(no step == 0: no key twice). A duplicate key therefore fails only the uniqueness check, and a
swapped pair of candles only the order check.

Validation never raises for bad data and never prints: a missing column or a wrong type is a failed
schema check in the result, and checks that need the missing column are listed as skipped.
Only programmer errors raise (an unknown stage, a negative tolerance, a malformed `known_gaps`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from coinline.providers.base import CANDLE_SCHEMA, PRICE_COLUMNS, SeriesKey
from coinline.quality.results import MAX_EXAMPLES, CheckResult, QualityResult, json_safe
from coinline.timeframes import interval_ms, known_intervals

Stage = Literal["raw", "canonical"]

KEY_COLUMNS = ("source", "venue", "symbol", "quote", "interval")
NATURAL_KEY = (*KEY_COLUMNS, "open_time")
NOT_NULL_COLUMNS = (*NATURAL_KEY, *PRICE_COLUMNS, "volume")
KNOWN_GAP_COLUMNS = (*KEY_COLUMNS, "gap_start", "gap_end")
SUITE_NAMES = {"raw": "candles.raw", "canonical": "candles.canonical"}

SERIES_COL = "series"
STEP_COL = "_q_step_ms"
ORDER_COL = "_q_canonical_order"
GRID_COL = "_q_grid_offset_ms"
UNEXPLAINED_COL = "unexplained_missing"

# Unexpected rows GX keeps per check: the source of the examples and of the offending series names.
PARTIAL_UNEXPECTED = 200
_FLOAT_MAX = sys.float_info.max
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# A fixed run id: the ephemeral context stores each run's result under (suite, run id, batch), so a
# fixed id overwrites instead of accumulating results in a long-running process, and GX sees no clock.
_RUN_NAME = "coinline-quality"
_RUN_TIME = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)

_GX_DTYPES = {
    **dict.fromkeys(KEY_COLUMNS, "str"),
    **dict.fromkeys((*PRICE_COLUMNS, "volume"), "float64"),
    "trade_count": "Int64",  # arrow int64 is converted to pandas' nullable Int64 (nulls allowed)
}


# --------------------------------------------------------------------------------------------------
# Check definitions


@dataclass(frozen=True)
class _Check:
    name: str
    frame: Literal["rows", "series"]
    expectation: Callable[[Any, dict[str, Any]], Any]  # (gx.expectations module, meta) -> Expectation
    columns: tuple[str, ...]     # columns the expectation runs on (derived ones must have been made)
    needs: tuple[str, ...]       # table columns that must be present
    typed: tuple[str, ...] = ()  # table columns that must also have a numeric/string/timestamp type
    description: str = ""


def _plan(stage: Stage) -> list[_Check]:
    """Every check of a stage, in report order."""
    checks: list[_Check] = [
        _Check("schema.columns", "rows",
               lambda ge, m: ge.ExpectTableColumnsToMatchSet(
                   column_set=list(CANDLE_SCHEMA.names), exact_match=False, meta=m),
               (), (), description="every CANDLE_SCHEMA column is present (extra columns allowed)"),
    ]
    for col, dtype in _GX_DTYPES.items():
        checks.append(_Check(
            f"schema.dtype.{col}", "rows",
            lambda ge, m, col=col, dtype=dtype: ge.ExpectColumnTypeToBe(column=col, type_=dtype, meta=m),
            (col,), (col,), (), description=f"{col} has pandas dtype {dtype}"))
    checks.append(_Check(
        "schema.open_time_utc", "rows",
        lambda ge, m: ge.ExpectColumnTypeToBe(column="open_time", type_="datetime64[ms, UTC]", meta=m),
        ("open_time",), ("open_time",), (),
        description="open_time is timestamp[ms, UTC] (a naive or non-UTC open_time fails here)"))
    for col in NOT_NULL_COLUMNS:
        checks.append(_Check(
            f"not_null.{col}", "rows",
            lambda ge, m, col=col: ge.ExpectColumnValuesToNotBeNull(column=col, meta=m),
            (col,), (col,), (), description=f"{col} has no null (or NaN)"))
    checks += [
        _Check("unique.natural_key", "rows",
               lambda ge, m: ge.ExpectCompoundColumnsToBeUnique(column_list=list(NATURAL_KEY), meta=m),
               NATURAL_KEY, NATURAL_KEY, (),
               description="no (source, venue, symbol, quote, interval, open_time) occurs twice"),
        _Check("interval.known", "rows",
               lambda ge, m: ge.ExpectColumnValuesToBeInSet(
                   column="interval", value_set=known_intervals(), meta=m),
               ("interval",), ("interval",), description="interval is a canonical interval name"),
        _Check("order.series_time", "rows",
               lambda ge, m: ge.ExpectColumnValuesToBeBetween(column=STEP_COL, min_value=0, meta=m),
               (STEP_COL,), ("open_time",),
               description=f"{STEP_COL} (open_time minus the previous open_time of the same series, "
                           "in row order) is >= 0; with unique.natural_key: strictly increasing"),
    ]
    if stage == "canonical":
        checks.append(_Check(
            "order.canonical", "rows",
            lambda ge, m: ge.ExpectColumnValuesToBeBetween(column=ORDER_COL, min_value=0, meta=m),
            (ORDER_COL,), ("open_time",),
            description=f"rows are already in canonical order (symbol, quote, interval, open_time): "
                        f"{ORDER_COL} is -1 where a row sorts before the previous row of another series"))
    for a, b in (("high", "open"), ("high", "close"), ("open", "low"), ("close", "low"), ("high", "low")):
        checks.append(_Check(
            f"ohlc.{a}_ge_{b}", "rows",
            lambda ge, m, a=a, b=b: ge.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing", meta=m),
            (a, b), (a, b), (a, b), description=f"{a} >= {b} (rows with a missing value are left to not_null)"))
    for col in PRICE_COLUMNS:
        checks.append(_Check(
            f"price.positive.{col}", "rows",
            lambda ge, m, col=col: ge.ExpectColumnValuesToBeBetween(
                column=col, min_value=0, strict_min=True, max_value=_FLOAT_MAX, meta=m),
            (col,), (col,), (col,), description=f"{col} is finite and > 0"))
    checks += [
        _Check("volume.non_negative", "rows",
               lambda ge, m: ge.ExpectColumnValuesToBeBetween(
                   column="volume", min_value=0, max_value=_FLOAT_MAX, meta=m),
               ("volume",), ("volume",), ("volume",), description="volume is finite and >= 0"),
        _Check("grid.aligned", "rows",
               lambda ge, m: ge.ExpectColumnValuesToBeBetween(
                   column=GRID_COL, min_value=0, max_value=0, meta=m),
               (GRID_COL,), ("open_time", "interval"),
               description=f"{GRID_COL} (open_time modulo the interval, ms; epoch-anchored UTC grid) is 0"),
    ]
    if stage == "canonical":
        checks.append(_Check(
            "gaps.within_tolerance", "series",
            lambda ge, m: ge.ExpectColumnValuesToBeBetween(
                column=UNEXPLAINED_COL, min_value=0, max_value={"$PARAMETER": "gap_tolerance"}, meta=m),
            (UNEXPLAINED_COL,), ("open_time", "interval"),
            description="per series, candles missing on the interval grid between its first and last "
                        "open_time and not covered by known_gaps are <= gap_tolerance"))
    return checks


# --------------------------------------------------------------------------------------------------
# The Great Expectations context (one ephemeral context per process, created on first use)

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}


def _gx() -> dict[str, Any]:
    with _LOCK:
        if _STATE:
            return _STATE
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import great_expectations as gx
            from great_expectations.core.run_identifier import RunIdentifier
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            )
            ctx = gx.get_context(mode="ephemeral", project_config=config)
            source = ctx.data_sources.add_pandas("coinline_quality")
            batches = {
                frame: source.add_dataframe_asset(f"candle_{frame}").add_batch_definition_whole_dataframe("whole")
                for frame in ("rows", "series")
            }
        _STATE.update(gx=gx, ctx=ctx, batches=batches, definitions={},
                      run_id=RunIdentifier(run_name=_RUN_NAME, run_time=_RUN_TIME))
        return _STATE


def _definition(stage: Stage, frame: str, checks: Sequence[_Check]) -> Any:
    """The validation definition for this set of checks, created once and reused."""
    state = _gx()
    key = (stage, frame, tuple(c.name for c in checks))
    defs = state["definitions"]
    if key not in defs:
        gx = state["gx"]
        name = f"{SUITE_NAMES[stage]}.{frame}.{len(defs)}"
        suite = gx.ExpectationSuite(name=name)
        for c in checks:
            suite.add_expectation(c.expectation(gx.expectations, {"check": c.name}))
        suite = state["ctx"].suites.add(suite)
        defs[key] = state["ctx"].validation_definitions.add(
            gx.ValidationDefinition(name=name, data=state["batches"][frame], suite=suite))
    return defs[key]


# --------------------------------------------------------------------------------------------------
# Derived columns


@dataclass
class _Prepared:
    rows: pd.DataFrame
    series: pd.DataFrame | None
    series_count: int
    usable: set[str]
    sid: np.ndarray
    labels: list[str]

    def row_labels(self, row: int) -> str:
        """The series label of a row position."""
        return self.labels[int(self.sid[row])]


def _usable_columns(table: pa.Table) -> set[str]:
    """Present columns whose arrow type the derivations and value checks can work with."""
    ok: set[str] = set()
    for f in table.schema:
        t = f.type
        if f.name in KEY_COLUMNS and (pa.types.is_string(t) or pa.types.is_large_string(t)
                                      or pa.types.is_string_view(t)):
            ok.add(f.name)
        elif f.name in (*PRICE_COLUMNS, "volume", "trade_count") and (
                pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            ok.add(f.name)
        elif f.name == "open_time" and pa.types.is_timestamp(t):
            ok.add(f.name)
    return ok


def _time_ns(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ns since epoch, valid mask) of a timestamp column of any unit and zone."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    raw = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return raw * _UNIT_NS[arr.type.unit], valid


def _factorize(df: pd.DataFrame, col: str) -> tuple[np.ndarray, list[Any]]:
    """Sorted codes of a key column (nulls get a code, sorted last); a missing column is one value."""
    if col not in df.columns:
        return np.zeros(len(df), dtype=np.int64), [None]
    codes, uniques = pd.factorize(df[col], sort=True, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False), [None if pd.isna(u) else u for u in uniques]


def _combine(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Lexicographic combination of several code arrays into dense codes that sort the same way."""
    code = np.zeros(len(parts[0][0]), dtype=np.int64)
    bound = 1
    for codes, card in parts:
        if bound * card >= 2**62:
            _, code = np.unique(code, return_inverse=True)
            code = code.astype(np.int64)
            bound = int(code.max()) + 1 if len(code) else 1
        code = code * card + codes
        bound *= card
    _, dense = np.unique(code, return_inverse=True)
    return dense.astype(np.int64).reshape(-1)


def _label(values: Sequence[Any]) -> str:
    parts = ["<null>" if v is None else str(v) for v in values]
    return SeriesKey(*parts).label()


def _prepare(table: pa.Table, stage: Stage, known_gaps: pa.Table | None) -> _Prepared:
    present = [c for c in CANDLE_SCHEMA.names if c in table.column_names]
    usable = _usable_columns(table.select(present))
    df = table.select(present).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    n = len(df)

    # Series ids, dense and in (symbol, quote, interval, source, venue) order.
    order_cols = ("symbol", "quote", "interval", "source", "venue")
    fact = {c: _factorize(df, c) for c in order_cols}
    sid = _combine([(fact[c][0], len(fact[c][1])) for c in order_cols])
    triple = _combine([(fact[c][0], len(fact[c][1])) for c in order_cols[:3]])
    uniq_ids, first = np.unique(sid, return_index=True)
    n_series = len(uniq_ids)
    keys = [tuple(fact[c][1][fact[c][0][i]] for c in KEY_COLUMNS) for i in first]
    labels = _unique_labels([_label(k) for k in keys])

    time_ok = "open_time" in usable
    interval_ok = "interval" in df.columns
    series_frame: pd.DataFrame | None = None
    if time_ok:
        t, valid = _time_ns(table["open_time"])
        df[STEP_COL] = _series_step_ms(sid, t, valid)
        if stage == "canonical":
            df[ORDER_COL] = _canonical_order(sid, triple, t, valid)
        if interval_ok:
            step_of = np.array([_interval_ns(v) for v in fact["interval"][1]], dtype=np.int64)
            step = step_of[fact["interval"][0]]
            on = valid & (step > 0)
            offset = np.full(n, np.nan)
            offset[on] = (t[on] % step[on]) / 1e6
            df[GRID_COL] = offset
            if stage == "canonical":
                series_frame = _gap_frame(sid, t, step, on, n_series, labels, keys, known_gaps)
    df.index = pd.RangeIndex(n)  # GX reports unexpected rows by index: keep it the row position
    return _Prepared(rows=df, series=series_frame, series_count=n_series, usable=usable, sid=sid,
                     labels=labels)


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        k = seen.get(lab, 0)
        seen[lab] = k + 1
        out.append(lab if k == 0 else f"{lab}#{k + 1}")
    return out


def _interval_ns(value: Any) -> int:
    try:
        return interval_ms(value) * 1_000_000
    except (ValueError, TypeError):
        return 0


def _series_step_ms(sid: np.ndarray, t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """open_time minus the previous valid open_time of the same series, in row order (ms)."""
    out = np.full(len(sid), np.nan)
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(sid[idx], kind="stable")]
    s, ts = sid[order], t[order]
    same = s[1:] == s[:-1]
    out[order[1:][same]] = (ts[1:][same] - ts[:-1][same]) / 1e6
    return out


def _canonical_order(sid: np.ndarray, triple: np.ndarray, t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """At rows whose previous row is another series: 1 if it sorts at/after it, -1 if before."""
    out = np.full(len(sid), np.nan)
    if len(sid) < 2:
        return out
    boundary = sid[1:] != sid[:-1]
    g_cur, g_prev = triple[1:], triple[:-1]
    later_time = t[1:] >= t[:-1]
    ok = (g_cur > g_prev) | ((g_cur == g_prev) & later_time)
    value = np.where(ok, 1.0, -1.0)
    unknown = (g_cur == g_prev) & ~(valid[1:] & valid[:-1])
    value[unknown] = np.nan
    out[1:][boundary] = value[boundary]
    return out


def _gap_frame(sid: np.ndarray, t: np.ndarray, step: np.ndarray, on: np.ndarray, n_series: int,
               labels: list[str], keys: list[tuple], known_gaps: pa.Table | None) -> pd.DataFrame:
    """Per series: candles missing on the grid between its first and last open_time."""
    idx = np.flatnonzero(on)
    order = idx[np.lexsort((t[idx], sid[idx]))]
    s, ts, st = sid[order], t[order], step[order]
    if len(s):
        keep = np.ones(len(s), dtype=bool)
        keep[1:] = (s[1:] != s[:-1]) | (ts[1:] != ts[:-1])
        s, ts, st = s[keep], ts[keep], st[keep]
    same = s[1:] == s[:-1]
    rs, rstep = s[1:][same], st[1:][same]
    # Grid slots (open_time floored to the grid) of consecutive candles; the slots strictly between
    # them are missing. Flooring keeps an off-grid series (grid.aligned's business) from also
    # counting a gap between every pair of candles.
    a, b = (ts[:-1][same] // rstep) * rstep, (ts[1:][same] // rstep) * rstep
    per_run = np.maximum((b - a) // rstep - 1, 0)
    missing = np.bincount(rs, weights=per_run, minlength=n_series)
    explained = np.zeros(n_series)
    for k, (gs, ge) in _gaps_by_series(known_gaps, keys).items():
        lo, hi = np.searchsorted(rs, [k, k + 1])
        if hi == lo:
            continue
        stp = int(rstep[lo])
        covered = _grid_points_below(b[lo:hi], gs, ge, stp) - _grid_points_below(a[lo:hi] + stp, gs, ge, stp)
        explained[k] = np.maximum(covered, 0).sum()
    has_step = np.zeros(n_series, dtype=bool)
    has_step[np.unique(s)] = True
    unexplained = np.where(has_step, missing - explained, np.nan)
    return pd.DataFrame({
        SERIES_COL: labels,
        "missing": np.where(has_step, missing, np.nan),
        "explained_by_known_gaps": np.where(has_step, explained, np.nan),
        UNEXPLAINED_COL: unexplained,
    })


def _ceil_div(x: np.ndarray, d: int) -> np.ndarray:
    return -(-x // d)


def _grid_points_below(x: np.ndarray, starts: np.ndarray, ends: np.ndarray, step: int) -> np.ndarray:
    """Number of grid points p < x inside the union of the disjoint, sorted [start, end) gaps."""
    per_gap = _ceil_div(ends, step) - _ceil_div(starts, step)
    cum = np.concatenate([[0], np.cumsum(per_gap)])
    k = np.searchsorted(starts, x, side="right") - 1
    kk = np.clip(k, 0, None)
    partial = _ceil_div(np.minimum(ends[kk], x), step) - _ceil_div(starts[kk], step)
    return np.where(k >= 0, cum[kk] + np.maximum(partial, 0), 0)


def _gaps_by_series(known_gaps: pa.Table | None, keys: list[tuple]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Merged known gaps (ns, [start, end)) per series id present in the table."""
    if known_gaps is None or known_gaps.num_rows == 0:
        return {}
    index = {k: i for i, k in enumerate(keys)}
    gs, gs_ok = _time_ns(known_gaps["gap_start"])
    ge, ge_ok = _time_ns(known_gaps["gap_end"])
    key_rows = zip(*(known_gaps[c].to_pylist() for c in KEY_COLUMNS), strict=True)
    spans: dict[int, list[tuple[int, int]]] = {}
    for i, key in enumerate(key_rows):
        k = index.get(tuple(key))
        if k is None or not (gs_ok[i] and ge_ok[i]) or ge[i] <= gs[i]:
            continue
        spans.setdefault(k, []).append((int(gs[i]), int(ge[i])))
    return merge_spans(spans)


def merge_spans(spans: dict) -> dict:
    """{key: [(start, end), ...]} -> {key: (starts, ends)}: each key's spans sorted and overlapping or
    touching ones merged, as int64 arrays."""
    out = {}
    for k, items in spans.items():
        merged: list[list[int]] = []
        for lo, hi in sorted(items):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        arr = np.array(merged, dtype=np.int64)
        out[k] = (arr[:, 0], arr[:, 1])
    return out


# --------------------------------------------------------------------------------------------------
# Running and reading results


def validate_candles(
    table: pa.Table,
    *,
    stage: Stage,
    known_gaps: pa.Table | None = None,
    gap_tolerance: int = 0,
) -> QualityResult:
    """Run the `candles.raw` or `candles.canonical` suite over `table` (any number of series).

    Returns a QualityResult; failing data never raises. `known_gaps` (canonical stage) holds
    source, venue, symbol, quote, interval, gap_start, gap_end (exclusive) [, answer]: missing
    candles inside a known gap are not counted against `gap_tolerance`.
    """
    if stage not in SUITE_NAMES:
        raise ValueError(f"unknown stage {stage!r}; expected 'raw' or 'canonical'")
    if not isinstance(table, pa.Table):
        raise TypeError(f"validate_candles needs a pyarrow.Table, got {type(table).__name__}")
    if isinstance(gap_tolerance, bool) or not isinstance(gap_tolerance, int | np.integer) or gap_tolerance < 0:
        raise ValueError(f"gap_tolerance must be an int >= 0, got {gap_tolerance!r}")
    if known_gaps is not None:
        _check_known_gaps(known_gaps)

    prepared = _prepare(table, stage, known_gaps if stage == "canonical" else None)
    present = set(prepared.rows.columns) | (set(prepared.series.columns) if prepared.series is not None else set())
    planned = _plan(stage)
    runnable: dict[str, list[_Check]] = {"rows": [], "series": []}
    skipped: list[str] = []
    for c in planned:
        if (all(col in table.column_names for col in c.needs if col in CANDLE_SCHEMA.names)
                and all(col in prepared.usable for col in c.typed)
                and all(col in present for col in c.columns)):
            runnable[c.frame].append(c)
        else:
            skipped.append(c.name)

    raw: dict[str, Any] = {}
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = _gx()
        for frame, df in (("rows", prepared.rows), ("series", prepared.series)):
            checks = runnable[frame]
            if not checks or df is None:
                continue
            result = _definition(stage, frame, checks).run(
                batch_parameters={"dataframe": df},
                expectation_parameters={"gap_tolerance": int(gap_tolerance)},
                # No unexpected_index_column_names: GX builds those row by row in Python (minutes
                # for a million bad rows). Its partial index list gives row positions instead,
                # which are mapped to series labels here.
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED},
                run_id=state["run_id"],
            )
            labels = prepared.row_labels if frame == "rows" else prepared.series[SERIES_COL].tolist()
            for r in result.results:
                raw[r.expectation_config.meta["check"]] = (r, labels)

    results = tuple(_check_result(c, *raw[c.name]) for c in planned if c.name in raw)
    params: dict[str, Any] = {"stage": stage}
    if stage == "canonical":
        params["gap_tolerance"] = int(gap_tolerance)
        params["known_gaps"] = 0 if known_gaps is None else known_gaps.num_rows
    return QualityResult(
        suite=SUITE_NAMES[stage],
        success=all(c.success for c in results),
        checks=results,
        row_count=table.num_rows,
        series_count=prepared.series_count,
        skipped=tuple(skipped),
        parameters=params,
    )


def _check_known_gaps(known_gaps: pa.Table) -> None:
    if not isinstance(known_gaps, pa.Table):
        raise TypeError(f"known_gaps must be a pyarrow.Table, got {type(known_gaps).__name__}")
    missing = [c for c in KNOWN_GAP_COLUMNS if c not in known_gaps.column_names]
    if missing:
        raise ValueError(f"known_gaps lacks column(s) {', '.join(missing)}")
    for c in ("gap_start", "gap_end"):
        if not pa.types.is_timestamp(known_gaps.schema.field(c).type):
            raise ValueError(f"known_gaps.{c} must be a timestamp, got {known_gaps.schema.field(c).type}")


def _check_result(check: _Check, r: Any, labels: Callable[[int], str] | Sequence[str]) -> CheckResult:
    res = dict(r.result or {})
    error = _exception_message(r.exception_info)
    examples: list[Any] = []
    series: list[str] = []
    observed = None
    if "partial_unexpected_list" in res:
        examples = [json_safe(v) for v in res["partial_unexpected_list"][:MAX_EXAMPLES]]
        for row in res.get("partial_unexpected_index_list") or []:
            if not isinstance(row, int | np.integer):
                continue
            label = labels(int(row)) if callable(labels) else labels[int(row)]
            if label not in series:
                series.append(label)
                if len(series) == MAX_EXAMPLES:
                    break
    elif check.name == "schema.columns":
        mismatched = (res.get("details") or {}).get("mismatched") or {}
        missing = sorted(mismatched.get("missing") or [])
        observed = {"missing": missing}
        examples = missing[:MAX_EXAMPLES]
    else:
        observed = json_safe(res.get("observed_value"))
    return CheckResult(
        name=check.name,
        expectation=r.expectation_config.type,
        columns=check.columns,
        description=check.description,
        success=bool(r.success),
        element_count=_int_or_none(res.get("element_count")),
        unexpected_count=_int_or_none(res.get("unexpected_count")),
        examples=tuple(examples),
        series=tuple(series),
        observed=observed,
        error=error,
    )


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _exception_message(info: Any) -> str | None:
    if not info:
        return None
    if isinstance(info, dict) and "raised_exception" in info:
        infos = [info]
    elif isinstance(info, dict):
        infos = [v for v in info.values() if isinstance(v, dict)]
    else:
        return None
    for i in infos:
        if i.get("raised_exception"):
            msg = str(i.get("exception_message") or "exception").strip().splitlines()
            return msg[0] if msg else "exception"
    return None
