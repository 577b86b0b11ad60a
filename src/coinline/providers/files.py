"""`coinline import`: read candle files (Kraken OHLCVT, freqtrade caches, CSV) into canonical candles.

`read_candle_file(path, fmt, symbol=, quote=, interval=)` returns an `ImportResult`: the valid rows as a
`CANDLE_SCHEMA` table (built by `candle_table`, source `import:<fmt>`) and every invalid row as a
`RejectedRow` with its location, reason and original cells. Nothing is dropped or repaired silently:

- a row whose time is empty, unrecognizable or off the interval grid, whose price is empty, not a number,
  NaN/inf, zero or negative, whose volume is empty, non-finite or negative, or whose trade count is
  negative or fractional, is rejected (all of its reasons, joined by "; "); the other rows are imported;
- a file that cannot be read in the stated format at all (unreadable or missing file, binary/gzip/
  feather/JSON errors, no header, no time column, missing value columns, wrong column count)
  raises `ImportFormatError` naming the file (and the line where one applies);
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

from coinline.errors import ImportFormatError
from coinline.providers.base import SeriesKey, candle_table
from coinline.providers.files_csv import (
    NUMBERS,
    PRICES,
    ParsedRows,
    cell_text,
    parse_times,
    read_csv,
    read_kraken_ohlcvt,
)
from coinline.timeframes import interval_seconds

FORMATS = ("kraken-ohlcvt", "freqtrade", "csv")
FREQTRADE_COLUMNS = ("date", *NUMBERS)


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


def read_candle_file(path: Path, fmt: str, *, symbol: str, quote: str, interval: str,
                     venue: str | None = None) -> ImportResult:
    """Read one file of candles for (symbol, quote, interval) in format `fmt` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; known: {', '.join(FORMATS)}")
    step_s = interval_seconds(interval)       # ValueError names an unknown interval
    symbol, quote = symbol.strip().upper(), quote.strip().upper()
    if not symbol or not quote:
        raise ValueError("symbol and quote must be non-empty")
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    if fmt == "kraken-ohlcvt":
        parsed = read_kraken_ohlcvt(path, step_s)
    elif fmt == "freqtrade":
        parsed = _read_freqtrade(path, step_s)
    else:
        parsed = read_csv(path, step_s, symbol=symbol, quote=quote)
    key = SeriesKey(source=f"import:{fmt}", venue=(venue or parsed.venue).strip().upper(), symbol=symbol,
                    quote=quote, interval=interval)
    return _finish(path, fmt, key, parsed)


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
        rows = json.loads(data)
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

    problems = [shape_problem(r) for r in rows]
    if rows and problems[0] is not None:
        raise ImportFormatError(f"{path}: row 0: {problems[0]} ([ts_ms, open, high, low, close, volume])")
    good = [r if p is None else [None] * width for r, p in zip(rows, problems, strict=True)]
    frame = pd.DataFrame(good, columns=list(FREQTRADE_COLUMNS), dtype=object)   # null stays None: "empty"

    def raw_row(i: int) -> tuple[tuple[str, str], ...]:
        r = rows[i]
        if not isinstance(r, list):
            return (("row", json.dumps(r)),)
        names = [*FREQTRADE_COLUMNS, *(f"extra{k}" for k in range(width, len(r)))]
        return tuple((n, cell_text(v)) for n, v in zip(names, r, strict=False))

    return _freqtrade_rows(frame, step_s, problems=problems if any(problems) else None, raw_row=raw_row)


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


def _reasons(parsed: ParsedRows, i: int, interval: str) -> str:
    reasons: list[str] = []
    if parsed.problems is not None and parsed.problems[i] is not None:
        reasons.append(parsed.problems[i])
        if parsed.problems[i].startswith("row "):     # malformed JSON row: its cells mean nothing
            return "; ".join(reasons)
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
