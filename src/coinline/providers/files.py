"""`coinline import`: read candle files (Kraken OHLCVT, freqtrade caches, CSV) into canonical candles.

`read_candle_file(path, fmt, symbol=, quote=, interval=)` returns an `ImportResult`: the valid rows as a
`CANDLE_SCHEMA` table (built by `candle_table`, source `import:<fmt>`) and every invalid row as a
`RejectedRow` with its location, reason and original cells. Nothing is dropped or repaired silently:

- a row whose time is empty, unrecognizable or off the interval grid, whose price is empty, not a number,
  NaN/inf, zero or negative, whose prices break the OHLC invariants (high >= max(open, close),
  low <= min(open, close), hence high >= low), whose volume is empty, non-finite or negative, whose trade
  count is negative or fractional, or which is a git conflict-marker line, is rejected (all of its
  reasons, joined by "; "); the other rows are imported;
- a file that cannot be read in the stated format at all (unreadable, missing file or a directory,
  binary/gzip/feather/JSON errors, no header, no time column, missing value columns, wrong column count)
  raises `ImportFormatError` naming the file (and the line where one applies);
- a file whose own spacing is not the interval it is imported as raises `ImportFormatError` ("file X
  spacing is 1h, --interval says 1d"): the spacing is the most frequent gap between consecutive distinct
  open times (a tie that includes the interval passes). Without this, a 1h file imported as 1d would
  commit its midnight rows as daily candles. A spacing shorter than the interval is refused from the
  first gap (two candles of one interval cannot be closer than it); a longer one only from
  `SPACING_MIN_GAPS` gaps on, since a short file of a venue that omits intervals without trades (Kraken)
  cannot be told from a coarser file;
- an unknown format or interval, or an empty symbol or quote, raises `ConfigError` naming the argument
  and what is supported;
- a well-formed file with no rows (a header-only CSV, a 0-row freqtrade feather, `[]`) imports as an
  empty table;
- CSV rows of another ticker (a `ticker`/`symbol` column naming another coin or quote) are counted in
  `skipped_other_symbols`, not rejected; lines with no value at all (blank lines) are not rows.

Rows keep the file's order. Duplicate open times within a file are kept (the lake dedupes on the
natural key); `duplicate_open_times` counts them so the caller can report it. Gaps (Kraken omits
intervals without trades) are not filled.

Formats (`FORMATS`):
- `kraken-ohlcvt`: Kraken's downloadable OHLCVT CSV, no header, 7 fields (unix seconds, open, high, low,
  close, volume, trades). Default venue KRAKEN.
- `freqtrade`: freqtrade `download-data` caches, recognized by content: feather (columns date, open,
  high, low, close, volume; extra columns ignored), parquet (same columns), JSON `[[ts_ms, o, h, l, c, v],
  ...]` and gzipped JSON (`.json.gz`). Default venue BINANCE.
- `csv`: a CSV with a header; time/value/trade-count/ticker columns are found by name (see
  `files_csv`). Default venue BINANCE for python-binance kline dumps (quote_asset_volume column),
  CSV otherwise (CoinAPI, Yahoo, CryptoCompare files do not say which exchange they come from).
Times: see `files_csv` (unix epoch of any unit by magnitude, or ISO-8601; naive times are UTC).
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from coinline import jsonbody
from coinline.errors import ConfigError, ImportFormatError
from coinline.providers.base import SeriesKey, candle_table
from coinline.providers.files_csv import (
    CONFLICT_MARKER,
    NUMBERS,
    PRICES,
    ParsedRows,
    cell_text,
    parse_times,
    read_csv,
    read_kraken_ohlcvt,
)
from coinline.timeframes import interval_seconds, known_intervals

FORMATS = ("kraken-ohlcvt", "freqtrade", "csv")
FREQTRADE_COLUMNS = ("date", *NUMBERS)
SPACING_MIN_GAPS = 3        # gaps needed before a spacing LONGER than the interval is called a mismatch


@dataclass(frozen=True)
class RejectedRow:
    """One invalid row: where it is, why it was rejected, and its original cells as text."""

    row: int                              # 0-based index among the file's data rows
    line: int | None                      # 1-based line in a text file (None for feather/parquet/JSON)
    reason: str                           # every problem found, joined by "; "
    raw: tuple[tuple[str, str], ...]      # (column, original text) pairs

    def location(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.row}"

    def raw_dict(self) -> dict[str, str]:
        return dict(self.raw)


@dataclass(frozen=True)
class ImportResult:
    """The outcome of reading one file. rows_read == valid + rejected + skipped_other_symbols."""

    path: Path
    fmt: str
    key: SeriesKey
    candles: pa.Table                     # CANDLE_SCHEMA, valid rows in file order
    rejected: tuple[RejectedRow, ...]
    rows_read: int
    skipped_other_symbols: int = 0
    duplicate_open_times: int = 0         # rows whose open time already appeared among the valid rows
    column_map: dict[str, str] = field(default_factory=dict)   # canonical field -> source column


def check_import_arguments(fmt: str, symbol: str, quote: str, interval: str) -> None:
    """Refuse an unknown format or interval and an empty symbol or quote, naming the argument."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not a supported import format; supported: {', '.join(FORMATS)}")
    if interval not in known_intervals():
        raise ConfigError(f"--interval {interval!r} is not a supported interval; supported intervals: "
                          f"{', '.join(known_intervals())}")
    for name, value in (("--symbol", symbol), ("--quote", quote)):
        if not value.strip():
            raise ConfigError(f"{name} must be non-empty")


def read_candle_file(path: Path, fmt: str, *, symbol: str, quote: str, interval: str,
                     venue: str | None = None) -> ImportResult:
    """Read one file of candles for (symbol, quote, interval) in format `fmt` (one of FORMATS)."""
    check_import_arguments(fmt, symbol, quote, interval)
    step_s = interval_seconds(interval)
    symbol, quote = symbol.strip().upper(), quote.strip().upper()
    path = Path(path)
    if path.is_dir():
        raise ImportFormatError(f"{path}: is a directory, not a candle file (name the files inside it)")
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    if fmt == "kraken-ohlcvt":
        parsed = read_kraken_ohlcvt(path, step_s)
    elif fmt == "freqtrade":
        parsed = _read_freqtrade(path, step_s)
    else:
        parsed = read_csv(path, step_s, symbol=symbol, quote=quote)
    _check_spacing(path, parsed.time_ms[parsed.time_ok], interval)
    key = SeriesKey(source=f"import:{fmt}", venue=(venue or parsed.venue).strip().upper(), symbol=symbol,
                    quote=quote, interval=interval)
    return _finish(path, fmt, key, parsed)


# --- spacing ------------------------------------------------------------------------------------

def modal_spacing_ms(times_ms: np.ndarray) -> tuple[np.ndarray, int]:
    """(the most frequent gaps between consecutive distinct times, sorted; the number of gaps).
    Several gaps when they tie; none when there are fewer than two distinct times."""
    gaps = np.diff(np.unique(times_ms))
    if len(gaps) == 0:
        return gaps, 0
    values, counts = np.unique(gaps, return_counts=True)
    return values[counts == counts.max()], len(gaps)


def _check_spacing(path: Path, times_ms: np.ndarray, interval: str) -> None:
    """Refuse a file whose own spacing is not `interval` (see the module docstring for the rule)."""
    step_ms = interval_seconds(interval) * 1000
    modes, n_gaps = modal_spacing_ms(times_ms)
    if n_gaps == 0 or step_ms in modes:
        return
    spacing = int(modes[0])
    if spacing > step_ms and n_gaps < SPACING_MIN_GAPS:
        return
    raise ImportFormatError(f"file {path} spacing is {duration_text(spacing)}, --interval says {interval} "
                            f"(most frequent gap between its {n_gaps + 1} distinct open times)")


def duration_text(ms_value: int) -> str:
    """A gap in the largest whole unit: 86400000 -> "1d", 5400000 -> "90m", 7000 -> "7s"."""
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms_value % size == 0:
            return f"{ms_value // size}{unit}"
    return f"{ms_value}ms"


# --- freqtrade ---------------------------------------------------------------------------------

def _read_freqtrade(path: Path, step_s: int) -> ParsedRows:
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read: {exc}") from None
    if magic.startswith((b"ARROW1", b"FEA1")):
        return _freqtrade_table(path, step_s, "feather")
    if magic.startswith(b"PAR1"):
        return _freqtrade_table(path, step_s, "parquet")
    return _freqtrade_json(path, step_s, gzipped=magic.startswith(b"\x1f\x8b"))


def _freqtrade_table(path: Path, step_s: int, kind: str) -> ParsedRows:
    try:
        table = feather.read_table(path) if kind == "feather" else pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ImportFormatError(f"{path}: cannot read as freqtrade {kind}: {exc}") from None
    if table.num_columns == 0:
        raise ImportFormatError(f"{path}: {kind} file has no columns")
    missing = [c for c in FREQTRADE_COLUMNS if c not in table.column_names]
    if missing:
        raise ImportFormatError(f"{path}: {kind} file lacks column(s) {', '.join(missing)}; freqtrade "
                                f"candles have {', '.join(FREQTRADE_COLUMNS)} (found {table.column_names})")
    frame = table.select(list(FREQTRADE_COLUMNS)).to_pandas()
    return _freqtrade_rows(frame, step_s, problems=None, raw_row=_frame_raw(frame))


def _frame_raw(frame: pd.DataFrame):
    names = [str(c) for c in frame.columns]
    values = frame.to_numpy(dtype=object)
    return lambda i: tuple(zip(names, (cell_text(v) for v in values[i]), strict=True))


def _freqtrade_json(path: Path, step_s: int, *, gzipped: bool) -> ParsedRows:
    what = "gzipped JSON" if gzipped else "JSON"
    try:
        data = path.read_bytes()
        if gzipped:
            data = gzip.decompress(data)
        rows = jsonbody.loads(data)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}: not freqtrade {what}: line {exc.lineno} column {exc.colno}: "
                                f"{exc.msg}") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: cannot read as freqtrade {what}: {exc}") from None
    if not isinstance(rows, list):
        raise ImportFormatError(f"{path}: freqtrade {what} must be a list of [ts_ms, open, high, low, "
                                f"close, volume] rows, found a {type(rows).__name__}")
    width = len(FREQTRADE_COLUMNS)

    def shape_problem(r: object) -> str | None:
        if not isinstance(r, list):
            return f"row is a {type(r).__name__}, not a list of {width} values"
        return None if len(r) == width else f"row has {len(r)} values, expected {width}"

    uniform = _uniform_rows(rows, width)
    if uniform is not None:                     # the normal file: no row to check one by one
        problems: list[str | None] = [None]
        frame = pd.DataFrame(uniform, columns=list(FREQTRADE_COLUMNS))
    else:
        problems = [shape_problem(r) for r in rows]
        if rows and problems[0] is not None:
            raise ImportFormatError(f"{path}: row 0: {problems[0]} ([ts_ms, open, high, low, close, volume])")
        good = [r if p is None else [None] * width for r, p in zip(rows, problems, strict=True)]
        frame = pd.DataFrame(good, columns=list(FREQTRADE_COLUMNS), dtype=object)  # null stays None: "empty"

    def raw_row(i: int) -> tuple[tuple[str, str], ...]:
        r = rows[i]
        if not isinstance(r, list):
            return (("row", json.dumps(r)),)
        names = [*FREQTRADE_COLUMNS, *(f"extra{k}" for k in range(width, len(r)))]
        return tuple((n, cell_text(v)) for n, v in zip(names, r, strict=False))

    return _freqtrade_rows(frame, step_s, problems=problems if any(problems) else None, raw_row=raw_row)


def _uniform_rows(rows: list, width: int) -> np.ndarray | None:
    """The rows as an (n, width) object array when every one is a list of `width` scalars, built by numpy
    in C rather than a Python loop over the rows; None when any row is not (the caller then checks each
    row for its reason) or there are none."""
    if not rows:
        return None
    try:
        values = np.array(rows, dtype=object)
    except ValueError:                          # ragged rows
        return None
    return values if values.ndim == 2 and values.shape[1] == width else None


def _freqtrade_rows(frame: pd.DataFrame, step_s: int, *, problems, raw_row) -> ParsedRows:
    n = len(frame)
    ms, ok, grid = parse_times(frame["date"], step_s)
    numbers = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
               for c in NUMBERS}
    cells = frame.rename(columns={"date": "time"})
    return ParsedRows(row=np.arange(n), line=None, time_ms=ms, time_ok=ok, on_grid=grid, numbers=numbers,
                      cells=cells, raw_row=raw_row, rows_read=n,
                      column_map={"time": "date", **{c: c for c in NUMBERS}}, venue="BINANCE",
                      problems=problems)


# --- validation --------------------------------------------------------------------------------

def _finish(path: Path, fmt: str, key: SeriesKey, parsed: ParsedRows) -> ImportResult:
    nums = parsed.numbers
    bad = ~parsed.time_ok | ~parsed.on_grid
    for name in PRICES:
        bad |= ~np.isfinite(nums[name]) | (nums[name] <= 0)
    bad |= ohlc_violations(nums).any(axis=0)
    bad |= ~np.isfinite(nums["volume"]) | (nums["volume"] < 0)
    counts = nums.get("trade_count")
    if counts is not None:
        present = ~np.isnan(counts)
        bad |= present & (~np.isfinite(counts) | (counts < 0) | (np.floor(counts) != counts))
    if parsed.problems is not None:
        bad |= np.array([p is not None for p in parsed.problems], dtype=bool)

    rejected = tuple(
        RejectedRow(row=int(parsed.row[i]), line=None if parsed.line is None else int(parsed.line[i]),
                    reason=_reasons(parsed, int(i), key.interval), raw=parsed.raw_row(int(i)))
        for i in np.flatnonzero(bad)
    )
    good = ~bad
    trade_count = None
    if counts is not None:
        kept = counts[good]
        trade_count = pd.array(np.where(np.isnan(kept), 0, kept).astype(np.int64), dtype="Int64")
        trade_count[np.isnan(kept)] = pd.NA
    times = parsed.time_ms[good]
    table = candle_table(key, times, *(nums[c][good] for c in NUMBERS), trade_count=trade_count,
                         where=f"file={path}")
    return ImportResult(
        path=path, fmt=fmt, key=key, candles=table, rejected=rejected, rows_read=parsed.rows_read,
        skipped_other_symbols=parsed.skipped_other_symbols,
        duplicate_open_times=int(len(times) - len(np.unique(times))), column_map=parsed.column_map,
    )


def ohlc_violations(nums: dict[str, np.ndarray]) -> np.ndarray:
    """Three row masks, as a (3, n) array: high < max(open, close), low > min(open, close), high < low.
    Only rows whose four prices are valid (finite, > 0) can break them: a missing or zero price has its
    own reason, and comparing it would only add noise."""
    o, h, lo, c = (nums[name] for name in PRICES)
    valid = np.logical_and.reduce([np.isfinite(x) & (x > 0) for x in (o, h, lo, c)])
    return np.stack([h < np.maximum(o, c), lo > np.minimum(o, c), h < lo]) & valid


def _ohlc_reasons(parsed: ParsedRows, i: int) -> list[str]:
    """The OHLC invariants row i breaks, with the prices as the file wrote them."""
    text = {name: cell_text(parsed.cells[name].iat[i]).strip() for name in PRICES}
    high_low, low_high, crossed = ohlc_violations({n: parsed.numbers[n][i:i + 1] for n in PRICES})[:, 0]
    o, c = parsed.numbers["open"][i], parsed.numbers["close"][i]
    top, bottom = ("open" if o >= c else "close"), ("open" if o <= c else "close")   # a tie names open
    reasons = []
    if high_low:
        reasons.append(f"high {text['high']} is below {top} {text[top]} (high must be >= max(open, close))")
    if low_high:
        reasons.append(f"low {text['low']} is above {bottom} {text[bottom]} (low must be <= min(open, close))")
    if crossed:
        reasons.append(f"high {text['high']} is below low {text['low']}")
    return reasons


def _reasons(parsed: ParsedRows, i: int, interval: str) -> str:
    reasons: list[str] = []
    if parsed.problems is not None and parsed.problems[i] is not None:
        reasons.append(parsed.problems[i])
        if parsed.problems[i].startswith("row ") or parsed.problems[i] == CONFLICT_MARKER:
            return "; ".join(reasons)                   # malformed JSON row or merge debris: cells mean nothing
    cells = parsed.cells
    if not parsed.time_ok[i]:
        text = cell_text(cells["time"].iat[i]).strip()
        reasons.append("time is empty" if text == "" else f"time {text!r} is not a recognizable time")
    elif not parsed.on_grid[i]:
        when = np.datetime64(int(parsed.time_ms[i]), "ms").astype(str) + "Z"
        reasons.append(f"open time {when} is not on the {interval} grid")
    for name in (*NUMBERS, "trade_count"):
        if name in parsed.numbers:
            reason = _value_reason(name, cell_text(cells[name].iat[i]).strip(), float(parsed.numbers[name][i]))
            if reason:
                reasons.append(reason)
    reasons.extend(_ohlc_reasons(parsed, i))
    return "; ".join(reasons)


def _value_reason(name: str, text: str, value: float) -> str | None:
    if name == "trade_count":
        if np.isnan(value) and text == "":
            return None                                 # trade count is optional
        if np.isfinite(value) and value >= 0 and value == np.floor(value):
            return None
    elif np.isfinite(value) and (value > 0 or (name == "volume" and value == 0)):
        return None
    if text == "":
        return f"{name} is empty"
    if np.isnan(value):
        try:
            float(text)
        except ValueError:
            return f"{name} {text!r} is not a number"
    if not np.isfinite(value):
        return f"{name} is {text} (not finite)"
    if name in PRICES:
        return f"{name} is {text} (prices must be > 0)"
    if name == "volume":
        return f"volume is {text} (must be >= 0)"
    return f"trade_count is {text} (must be a whole number >= 0)"
