"""Text readers behind `coinline import`: Kraken OHLCVT and auto-detected CSV layouts.

Also holds what every file reader shares: `ParsedRows` (a file's rows parsed but not yet validated)
and `parse_times` (time cells -> epoch ms plus "recognized" and "on the interval grid" masks).
The public entry point is `coinline.providers.files.read_candle_file`.

Time rules (all formats):
- numeric times are unix epoch; the unit is chosen per file from the median magnitude
  (< 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, else nanoseconds);
- text times must be ISO-8601 (`2024-01-01`, `2024-01-01 05:00:00`, `2024-01-01T05:00:00.0000000Z`,
  with or without a zone); a time with an offset is converted to UTC, a naive time is taken AS UTC;
- an open time is on the grid when it is a whole multiple of the interval since the unix epoch.

Git conflict-marker lines (`<<<<<<< ours`, `=======`, `>>>>>>> theirs`, `||||||| base`) left in a text
file by an unfinished merge are rows of the file, rejected with the reason "git conflict marker" (never
counted as rows of another ticker); a conflict marker on line 1 makes the file unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coinline.errors import ImportFormatError

PRICES = ("open", "high", "low", "close")
NUMBERS = (*PRICES, "volume")

_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

# CSV header detection: names compared lower-cased with spaces, underscores, dashes and dots removed.
# Earlier candidates win (CoinAPI files carry both "Period Start" and "Time open"; the first is the grid
# time, the second the first trade's time).
TIME_NAMES = ("periodstart", "timeperiodstart", "opentime", "unix", "timestamp", "datetime", "date", "time")
VALUE_NAMES: dict[str, tuple[str, ...]] = {
    "open": ("open", "priceopen", "openprice"),
    "high": ("high", "pricehigh", "highprice"),
    "low": ("low", "pricelow", "lowprice"),
    "close": ("close", "priceclose", "closeprice"),
    "volume": ("volume", "volumetraded", "{symbol}volume", "volume{symbol}", "volumefrom", "basevolume", "vol"),
    "trade_count": ("numtrades", "tradescount", "tradecount", "numberoftrades", "trades", "count"),
}
TICKER_NAMES = ("ticker", "symbol")
_BINANCE_KLINE_MARKERS = {"quoteassetvolume", "takerbuybasevol", "takerbuybaseassetvolume"}
KRAKEN_COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades")
CONFLICT_MARKER = "git conflict marker"         # the reason of a conflict-marker row (see is_conflict_marker)
_CONFLICT_MARKER_RE = r"(?:<{7}|={7}|>{7}|\|{7})(?:\s|$)"


@dataclass
class ParsedRows:
    """A file's data rows, parsed but not validated. Arrays are aligned; position i is one row."""

    row: np.ndarray                      # 0-based index of the row among the file's data rows
    line: np.ndarray | None              # 1-based physical line (text formats), else None
    time_ms: np.ndarray                  # int64 epoch ms; meaningful only where time_ok
    time_ok: np.ndarray                  # False: time empty or not recognizable
    on_grid: np.ndarray                  # True: open time is a whole multiple of the interval
    numbers: dict[str, np.ndarray]       # open..volume and, when present, trade_count (float64, NaN=missing)
    cells: pd.DataFrame                  # original cells of time, open..volume(, trade_count), same order
    raw_row: Callable[[int], tuple[tuple[str, str], ...]]  # original (column, text) pairs of row i
    rows_read: int
    column_map: dict[str, str]           # canonical field -> column it was read from
    venue: str
    problems: list[str | None] | None = None   # reasons found while parsing (row shape, empty ticker)
    skipped_other_symbols: int = 0


def cell_text(value: object) -> str:
    """A cell as text, for reasons and RejectedRow.raw ("" for a missing value)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def parse_times(cells: pd.Series, step_s: int, *, numeric_only: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time cells -> (epoch ms int64, recognized mask, on-grid mask). Never raises on a bad cell."""
    if isinstance(cells.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(cells.dtype):
        return _datetime_times(cells, step_s)
    if pd.api.types.is_numeric_dtype(cells.dtype) and not pd.api.types.is_bool_dtype(cells.dtype):
        return _numeric_times(_numeric_array(cells), step_s)
    if cells.dtype == object:                   # JSON values: plain numbers need no text round trip
        numeric = pd.to_numeric(cells, errors="coerce")
        if numeric.notna().sum() == cells.notna().sum():
            return _numeric_times(_numeric_array(numeric), step_s)
    if pd.api.types.is_string_dtype(cells.dtype) and cells.dtype != object:
        text = cells.fillna("").str.strip()
    else:
        text = cells.map(cell_text).str.strip()
    nonempty = (text != "").to_numpy()
    numeric = pd.to_numeric(text, errors="coerce")
    n_numeric = int(numeric.notna().to_numpy()[nonempty].sum())
    if numeric_only or (nonempty.any() and n_numeric * 2 > int(nonempty.sum())):
        return _numeric_times(_numeric_array(numeric), step_s)
    parsed = pd.to_datetime(text.where(text != ""), utc=True, format="ISO8601", errors="coerce")
    return _datetime_times(parsed, step_s)


def _numeric_array(values: pd.Series) -> np.ndarray:
    """int64 when every value is a whole number (exact for ns epochs), else float64 with NaN."""
    if pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
        return values.to_numpy(dtype=np.int64)
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _datetime_times(values: pd.Series, step_s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)   # naive datetimes are taken as UTC
    arr = values.to_numpy()
    ok = ~np.isnat(arr)
    unit = np.datetime_data(arr.dtype)[0]
    ints = np.where(ok, arr.view(np.int64), 0)
    return _on_grid(ints, ok, _UNIT_PER_SECOND[unit], step_s)


def _numeric_times(values: np.ndarray, step_s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if values.dtype.kind in "iu":
        ints, ok, integral = values.astype(np.int64), np.ones(len(values), bool), np.ones(len(values), bool)
        magnitude = np.abs(ints.astype(np.float64))
    else:
        values = values.astype(np.float64)
        ok = np.isfinite(values)
        magnitude = np.abs(np.where(ok, values, 0.0))
    median = float(np.median(magnitude[ok])) if ok.any() else 0.0
    per_s = 1 if median < 1e11 else 1_000 if median < 1e14 else 1_000_000 if median < 1e17 else 1_000_000_000
    ok &= magnitude / per_s < 1e11                     # within +-3000 years of 1970
    if values.dtype.kind not in "iu":
        floored = np.floor(np.where(ok, values, 0.0))
        integral = floored == np.where(ok, values, 0.0)
        ints = floored.astype(np.int64)
    ms, ok, grid = _on_grid(ints, ok, per_s, step_s)
    return ms, ok, grid & integral


def _on_grid(ints: np.ndarray, ok: np.ndarray, per_s: int, step_s: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ints = np.where(ok, ints, 0)
    on_grid = ok & (ints % (step_s * per_s) == 0)
    ms = ints * (1_000 // per_s) if per_s <= 1_000 else ints // (per_s // 1_000)
    return ms.astype(np.int64), ok, on_grid


def _norm(name: object) -> str:
    return re.sub(r"[\s_\-.]+", "", str(name)).lower()


def conflict_marker_rows(first_cells: pd.Series) -> np.ndarray:
    """True where a line is a git conflict marker: its first cell starts with seven `<`, `=`, `>` or `|`
    followed by a space or nothing. Vectorized over the file's first column."""
    return first_cells.fillna("").str.match(_CONFLICT_MARKER_RE).to_numpy(dtype=bool)


def _refuse_conflict_marker_on_line_1(path: Path) -> None:
    """A marker on line 1 would be taken as the header (or, headerless, fix the column count): refuse the
    file by name instead of reporting a confusing header or field-count error."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(200).decode("utf-8-sig", errors="replace").strip()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read: {exc}") from None
    if re.match(_CONFLICT_MARKER_RE, first):
        raise ImportFormatError(f"{path}: line 1: {first[:40]!r} is a {CONFLICT_MARKER}; finish the merge first")


def _read_text(path: Path, *, header: int | None) -> pd.DataFrame:
    """Every cell as text (empty cells stay ""), blank lines kept so row i sits on a known line."""
    _refuse_conflict_marker_on_line_1(path)
    try:
        return pd.read_csv(path, header=header, dtype=str, keep_default_na=False, na_values=[],
                           skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        if header is None:
            return pd.DataFrame(columns=range(len(KRAKEN_COLUMNS)), dtype=str)
        raise ImportFormatError(f"{path}: file is empty (no header line)") from None
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                "is it a binary file (feather, gzip)?") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise ImportFormatError(f"{path}: cannot read as CSV: {exc}") from None


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows where every cell is empty (blank lines): no data, so not rows of the file at all."""
    if frame.shape[1] == 0:
        return np.zeros(len(frame), bool)
    return (frame.apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()


def _parse(frame: pd.DataFrame, cols: dict[str, object], *, path: Path, step_s: int, first_line: int,
           rows_read: int, keep: np.ndarray, venue: str, problems: np.ndarray | None = None,
           skipped: int = 0, numeric_time: bool = False) -> ParsedRows:
    """Shared tail of the text readers: select kept rows, convert cells."""
    positions = np.flatnonzero(keep)
    kept = frame.iloc[positions].reset_index(drop=True)
    canonical = ["time", *NUMBERS] + (["trade_count"] if "trade_count" in cols else [])
    cells = pd.DataFrame({name: kept[cols[name]] for name in canonical})
    ms, ok, grid = parse_times(cells["time"], step_s, numeric_only=numeric_time)
    numbers = {name: pd.to_numeric(cells[name].str.strip(), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan) for name in canonical[1:]}
    names = [str(c) for c in frame.columns]
    values = kept.to_numpy(dtype=object)

    def raw_row(i: int) -> tuple[tuple[str, str], ...]:
        return tuple(zip(names, (cell_text(v) for v in values[i]), strict=True))

    return ParsedRows(
        row=positions, line=positions + first_line, time_ms=ms, time_ok=ok, on_grid=grid, numbers=numbers,
        cells=cells, raw_row=raw_row, rows_read=rows_read,
        column_map={k: str(v) for k, v in cols.items()}, venue=venue,
        problems=None if problems is None else list(problems[positions]), skipped_other_symbols=skipped,
    )


def read_kraken_ohlcvt(path: Path, step_s: int) -> ParsedRows:
    """Kraken's downloadable OHLCVT CSV: no header; unix seconds, open, high, low, close, volume, trades."""
    frame = _read_text(path, header=None)
    if frame.shape[1] != len(KRAKEN_COLUMNS):
        raise ImportFormatError(f"{path}: line 1 has {frame.shape[1]} fields; Kraken OHLCVT rows have 7 "
                                f"({', '.join(KRAKEN_COLUMNS)})")
    frame.columns = list(KRAKEN_COLUMNS)
    blank = _blank_rows(frame)
    if len(frame) and not blank[0] and pd.isna(pd.to_numeric(frame.iat[0, 0].strip(), errors="coerce")):
        raise ImportFormatError(f"{path}: line 1: {frame.iat[0, 0]!r} is not a unix time; Kraken OHLCVT "
                                "files have no header and start with unix seconds")
    cols: dict[str, object] = {c: c for c in ("time", *NUMBERS)} | {"trade_count": "trades"}
    markers = conflict_marker_rows(frame["time"])
    problems = np.where(markers, CONFLICT_MARKER, None) if markers.any() else None
    return _parse(frame, cols, path=path, step_s=step_s, first_line=1, rows_read=int((~blank).sum()),
                  keep=~blank, venue="KRAKEN", problems=problems, numeric_time=True)


def _find(header: dict[str, object], candidates: tuple[str, ...], symbol: str) -> object | None:
    for cand in candidates:
        key = cand.format(symbol=symbol.lower())
        if key in header:
            return header[key]
    return None


def ticker_matches(ticker: str, symbol: str, quote: str) -> bool:
    """True when a ticker cell names this series: "BTC", "btc", "BTC-USD", "BTC/USD", "BTCUSD"
    (for quote USD); False for another coin or another quote ("BTC-EUR", "BTCST")."""
    t = ticker.strip().upper()
    if t == symbol or t == symbol + quote:
        return True
    m = re.fullmatch(rf"{re.escape(symbol)}[-/_:. ]([A-Z0-9]+)(?::.*)?", t)
    return bool(m) and m.group(1) == quote


def ticker_match_mask(tickers: pd.Series, symbol: str, quote: str) -> np.ndarray:
    """`ticker_matches` over a whole column at once (pandas string ops, no per-row Python)."""
    t = tickers.fillna("").str.strip().str.upper()
    exact = (t == symbol) | (t == symbol + quote)
    paired = t.str.fullmatch(rf"{re.escape(symbol)}[-/_:. ]{re.escape(quote)}(?::.*)?")
    return (exact | paired.fillna(False)).to_numpy(dtype=bool)


def read_csv(path: Path, step_s: int, *, symbol: str, quote: str) -> ParsedRows:
    """A CSV with a header; time and value columns are found by name (see TIME_NAMES, VALUE_NAMES)."""
    frame = _read_text(path, header=0)
    if frame.shape[1] == 0:
        raise ImportFormatError(f"{path}: no columns in the header line")
    header: dict[str, object] = {}
    for col in frame.columns:
        header.setdefault(_norm(col), col)
    shown = ", ".join(repr(str(c)) for c in frame.columns[:12])
    cols: dict[str, object] = {}
    time_col = _find(header, TIME_NAMES, symbol)
    if time_col is None:
        raise ImportFormatError(f"{path}: line 1: no time column among {shown} (expected one of "
                                "datetime, date, time, timestamp, open_time, Period Start; "
                                "a headerless Kraken file needs format kraken-ohlcvt)")
    if _norm(time_col) == "date" and "time" in header:
        raise ImportFormatError(f"{path}: line 1: separate date and time columns are not supported; "
                                "combine them into one ISO-8601 datetime column")
    cols["time"] = time_col
    for name, candidates in VALUE_NAMES.items():
        found = _find(header, candidates, symbol)
        if found is not None:
            cols[name] = found
    missing = [n for n in NUMBERS if n not in cols]
    if missing:
        raise ImportFormatError(f"{path}: line 1: no {', '.join(missing)} column among {shown}")
    blank = _blank_rows(frame)
    keep = ~blank
    markers = conflict_marker_rows(frame.iloc[:, 0])
    problems = np.where(markers, CONFLICT_MARKER, None) if markers.any() else None
    skipped = 0
    ticker_col = _find(header, TICKER_NAMES, symbol)
    if ticker_col is not None:
        tickers = frame[ticker_col].str.strip()
        empty = (tickers == "").to_numpy() & ~markers
        match = ticker_match_mask(tickers, symbol, quote)
        other = keep & ~empty & ~match & ~markers      # a marker line is rejected, never "another ticker"
        skipped = int(other.sum())
        keep &= ~other
        problems = np.where(markers, CONFLICT_MARKER, np.where(empty, f"{ticker_col} is empty", None))
        cols["ticker"] = ticker_col
    venue = "BINANCE" if _BINANCE_KLINE_MARKERS & set(header) else "CSV"
    return _parse(frame, cols, path=path, step_s=step_s, first_line=2, rows_read=int((~blank).sum()),
                  keep=keep, venue=venue, problems=problems, skipped=skipped)
