"""Run the quality suites over the lake and keep their results next to the data, in proportion to what changed.

Raw suite: every committed ingest batch, once; its result is stored at `quality/raw/<batch_id>.json`. The
batches committed since the last validation are read from the files added since (the Delta log says which)
and validated TOGETHER in one Great Expectations run: a run costs about a second whatever its size, so one
run per batch made a sync of 30 one-candle batches cost half a minute. In that run each batch is its own
series (its batch id joins the venue), so the per-series checks (uniqueness, order) stay per batch, exactly
as alone. A group that fails is split in halves until every failing batch is validated alone: a failed
batch's stored result is its own, a passing batch's names the group it passed in.
`quality/raw-state.json` records the raw_candles version validated through and every failed batch, so the
next run starts there, and a dataset's failed inputs are known without reading one result per batch.

Canonical (`coinline validate`): whole-series invariants (`quality.invariants`) per source, from the log's
file statistics where they prove a series dense and from the series' open times where they do not.
A batch whose raw suite failed blocks any dataset that would include it, and `validate` reports it on
every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import DeltaError
from tqdm import tqdm

from coinline.datasets.canonical import canonical_order
from coinline.errors import VersionGoneError
from coinline.ingest.gaps import known_gaps
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.providers.base import SeriesKey
from coinline.quality.invariants import (
    SeriesProfile,
    dense_profile,
    invariants_result,
    profile,
    step_ns,
    times_ns,
)
from coinline.quality.results import QualityResult
from coinline.quality.suites import validate_candles

STATE = "quality/raw-state.json"
GROUP_ROWS = 1_000_000   # rows per suite run at most (memory: the suite works on a pandas copy)


@dataclass(frozen=True)
class RawValidation:
    """Where raw validation stands: every candle batch committed up to `version` has a stored result;
    `failed` holds every batch whose suite failed (ever); `validated` the batches this call ran the suite
    on, `results` those runs (one per group run that decided something)."""

    version: int
    failed: frozenset[str]
    validated: frozenset[str] = frozenset()
    results: list[QualityResult] = field(default_factory=list)


def raw_result_name(batch_id: str) -> str:
    return f"quality/raw/{batch_id}.json"


def validate_new_batches(lake: Lake, *, progress: bool = False) -> RawValidation:
    """Validate every candle batch committed since the recorded state (on a lake without one: every batch
    without a stored result), store each batch's result, and record how far validation got."""
    state = lake.read_json(STATE) or {}
    since = int(state.get("raw_candles_version", -1))
    failed = set(state.get("failed") or [])
    table = tables.open_table(lake, tables.RAW)
    version = table.version()
    pending = {m["batch_id"]: m for m in tables.commit_manifests(lake, tables.RAW)
               if m.get("kind") == "candles" and since < m["table_version"] <= version}
    # a lake validated before the state was recorded: skip what has a result (one listing); afterwards a
    # batch past the recorded version is validated again even if a concurrent run stored a result (same result)
    stored = _stored_outcomes(lake, pending) if since < 0 else {}
    failed |= {b for b, ok in stored.items() if not ok}
    todo = {b: m for b, m in pending.items() if b not in stored}
    results: list[QualityResult] = []
    if todo:
        members = _members(lake, _new_files(lake, table, todo), todo)
        with tqdm(total=len(todo), desc="raw suite", unit="batch", disable=None if progress else True) as bar:
            for group in _groups(members, GROUP_ROWS):
                group_results, outcomes = _validate_group(lake, group, bar)
                results += group_results
                failed |= {b for b, ok in outcomes.items() if not ok}
    lake.write_json(STATE, {"raw_candles_version": version, "failed": sorted(failed)})
    return RawValidation(version, frozenset(failed), frozenset(todo), results)


def _stored_outcomes(lake: Lake, pending: dict[str, dict]) -> dict[str, bool]:
    """Success of the pending batches that already have a stored result."""
    names = {n.rsplit("/", 1)[-1].removesuffix(".json") for n in lake.list("quality/raw")}
    out = {}
    for batch_id in (b for b in pending if b in names):
        doc = lake.read_json(raw_result_name(batch_id))
        if doc is not None:
            out[batch_id] = bool(doc.get("success", False))
    return out


def _new_files(lake: Lake, table, todo: dict[str, dict]) -> pa.Table:
    """The file index of the files added since the first of the `todo` commits (every file when the log
    cannot travel back that far: a version `coinline maintain` cleaned out of the log, or an older delta-rs
    cleaned up): where their rows are, whatever happened to the files before."""
    index = tables.table_index(table)
    first = min(m["table_version"] for m in todo.values())
    try:
        before = tables.file_index(lake, tables.RAW, first - 1)["path"] if first > 0 else pa.array([], pa.string())
    except (DeltaError, VersionGoneError):
        return index
    return index.filter(pc.invert(pc.is_in(index["path"], value_set=pa.array(before.to_pylist(), pa.string()))))


def _members(lake: Lake, index: pa.Table, todo: dict[str, dict]) -> Iterator[tuple[str, str, pa.Table]]:
    """(batch id, series label, the batch's rows in stored order) for every todo batch, by series then batch
    id; each series' new files are read once, when its turn comes (memory: about one suite group)."""
    keys = {k.label(): k for k in _keys_of(index)}
    by_series: dict[str, list[str]] = {}
    for batch_id, m in todo.items():
        by_series.setdefault(m["series"], []).append(batch_id)
    for label, batch_ids in sorted(by_series.items()):
        key = keys.get(label)
        rows = _ms(tables.read(lake, tables.RAW, series=key, index=index) if key else tables.RAW_SCHEMA.empty_table())
        rows = rows.filter(pc.is_in(rows["batch_id"], value_set=pa.array(sorted(batch_ids), pa.string())))
        by_batch = _split_by_batch(rows)
        for batch_id in sorted(batch_ids):
            yield batch_id, label, by_batch.get(batch_id, rows.schema.empty_table())


def _ms(rows: pa.Table) -> pa.Table:
    """Delta stores microseconds; the suites check the canonical millisecond type."""
    return rows.set_column(rows.schema.get_field_index("open_time"), "open_time",
                           rows["open_time"].cast(pa.timestamp("ms", tz="UTC")))


def _split_by_batch(rows: pa.Table) -> dict[str, pa.Table]:
    """The rows of each batch id, each in stored order."""
    enc = pc.dictionary_encode(rows["batch_id"]).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(enc.dictionary) + 1))
    return {enc.dictionary[i].as_py(): rows.take(pa.array(order[starts[i]:starts[i + 1]]))
            for i in range(len(enc.dictionary))}


def _groups(members: Iterable[tuple[str, str, pa.Table]], max_rows: int) -> Iterator[list]:
    group: list = []
    rows = 0
    for m in members:
        if group and rows + m[2].num_rows > max_rows:
            yield group
            group, rows = [], 0
        group.append(m)
        rows += m[2].num_rows
    if group:
        yield group


def _validate_group(lake: Lake, members: Sequence[tuple[str, str, pa.Table]],
                    bar: tqdm) -> tuple[list[QualityResult], dict[str, bool]]:
    """Validate the batches in one suite run; split a failing group in halves down to single batches."""
    if len(members) == 1:
        batch_id, label, rows = members[0]
        result = validate_candles(rows, stage="raw")
        lake.write_json(raw_result_name(batch_id), {"batch_id": batch_id, "series": label, **result.to_dict()})
        bar.update(1)
        return [result], {batch_id: result.success}
    result = validate_candles(_tagged(members), stage="raw")
    if result.success:
        total = sum(m[2].num_rows for m in members)
        for batch_id, label, rows in members:
            lake.write_json(raw_result_name(batch_id), {
                "batch_id": batch_id, "series": label, **result.to_dict(), "row_count": rows.num_rows,
                "series_count": int(rows.num_rows > 0),
                "group": {"batches": len(members), "rows": total,
                          "note": "validated in one suite run with the group's other batches, each its own "
                                  "series; element counts of the checks are the group's"}})
        bar.update(len(members))
        return [result], dict.fromkeys((m[0] for m in members), True)
    half = len(members) // 2
    first, second = _validate_group(lake, members[:half], bar), _validate_group(lake, members[half:], bar)
    return first[0] + second[0], {**first[1], **second[1]}


def _tagged(members: Sequence[tuple[str, str, pa.Table]]) -> pa.Table:
    """The batches' rows in one table, each batch a series of its own: "<venue>@<batch id>"."""
    parts = []
    for batch_id, _label, rows in members:
        if rows.num_rows:
            venue = pc.binary_join_element_wise(rows["venue"], pa.scalar(f"@{batch_id}"), "")
            parts.append(rows.set_column(rows.schema.get_field_index("venue"), "venue", venue))
    return pa.concat_tables(parts) if parts else members[0][2]


def validate_lake(lake: Lake, *, gap_tolerance: int, progress: bool = False) -> list[QualityResult]:
    """`coinline validate`: the raw suite over new batches (and every earlier failure again), then the
    whole-series invariants of every stored series, one result per source."""
    raw = validate_new_batches(lake, progress=progress)
    results = list(raw.results)
    for batch_id in sorted(raw.failed - raw.validated):
        doc = lake.read_json(raw_result_name(batch_id))
        if doc is not None:
            results.append(QualityResult.from_dict(doc))
    index = tables.file_index(lake, tables.RAW, raw.version)
    by_source: dict[str, list[SeriesKey]] = {}
    for key in _keys_of(index):
        by_source.setdefault(key.source, []).append(key)
    gaps = known_gaps(lake)
    with tqdm(total=sum(map(len, by_source.values())), desc="canonical invariants", unit="series",
              disable=None if progress else True) as bar:
        for source, keys in sorted(by_source.items()):
            profiles = []
            for key in canonical_order(keys):
                profiles.append(lake_profile(lake, key, index))
                bar.update(1)
            result = invariants_result(profiles, known_gaps=gaps, gap_tolerance=gap_tolerance,
                                       parameters={"raw_candles_version": raw.version,
                                                   "series_from_log": sum(p.from_log for p in profiles)})
            lake.write_json(f"quality/canonical/{source.replace(':', '-')}.json", result.to_dict())
            results.append(result)
    return results


def _keys_of(index: pa.Table) -> list[SeriesKey]:
    cols = [index[f"partition.{c}"].to_pylist() for c in tables.SERIES_COLUMNS]
    return sorted({SeriesKey(*k) for k in zip(*cols, strict=True)})


def lake_profile(lake: Lake, key: SeriesKey, index: pa.Table) -> SeriesProfile:
    """The canonical series' profile: from the file statistics when they prove it dense (`dense_span`),
    else from its distinct open times (the canonical view holds one row per open_time)."""
    files = _files_of(index, key)
    span = dense_span(files, step_ns(key.interval))
    if span is not None:
        return dense_profile(key, *span)
    times = np.sort(times_ns(tables.read(lake, tables.RAW, series=key, columns=["open_time"], index=index)["open_time"]))
    return profile(key, times[np.concatenate([[True], times[1:] != times[:-1]])] if len(times) else times)


def _files_of(index: pa.Table, key: SeriesKey) -> pa.Table:
    mask = None
    for c in tables.SERIES_COLUMNS:
        m = pc.equal(index[f"partition.{c}"], getattr(key, c))
        mask = m if mask is None else pc.and_(mask, m)
    return index.filter(mask)


def dense_span(files: pa.Table, step: int) -> tuple[int, int] | None:
    """(first, last) open time in ns when the log's statistics alone prove that the series holds every grid
    slot between them: each file holds ONE batch (its min and max batch_id agree; a batch that passed the raw
    suite has unique on-grid open times), starts and ends on the grid, has as many rows as slots between its
    min and max, and the files' spans leave no slot uncovered. None when they do not prove it."""
    needed = ("num_records", "min.open_time", "max.open_time", "min.batch_id", "max.batch_id")
    if not step or files.num_rows == 0 or any(c not in files.column_names for c in needed):
        return None
    files = files.filter(pc.greater(files["num_records"], 0))
    if files.num_rows == 0 or any(files[c].null_count for c in needed):
        return None
    if not pc.all(pc.equal(files["min.batch_id"], files["max.batch_id"])).as_py():
        return None
    lo, hi = times_ns(files["min.open_time"]), times_ns(files["max.open_time"])
    rows = files["num_records"].to_numpy(zero_copy_only=False).astype(np.int64)
    if (lo % step).any() or (hi % step).any() or ((hi - lo) // step + 1 != rows).any():
        return None
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    reach = np.maximum.accumulate(hi)
    if (lo[1:] > reach[:-1] + step).any():
        return None
    return int(lo[0]), int(reach[-1])
