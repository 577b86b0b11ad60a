"""`coinline import`: commit candle files into the lake like any provider page.

What is refused outright (nothing of any named file is committed, the error names the file or argument):
an unsupported format or interval (the error lists the supported ones), a symbol that is not in the
configured universe (unless the caller passes `universe=None`, the CLI's `--allow-unknown-symbol`), a
missing file or a directory, a file that cannot be read in its format, and a file whose own spacing is
not the stated interval ("file X spacing is 1h, --interval says 1d"). Every file is read and checked
before the first one is committed, so one refused file leaves the lake as it was.

Bad ROWS do not refuse the file: each one is rejected (empty, zero or negative prices, broken OHLC
invariants, off-grid times, git conflict markers, ...; see `coinline.providers.files`) and the file's
good rows are committed. Why: real files carry a few dirty rows (Yahoo's zero-price days, a vendor's
high below its open) among thousands of good ones, and refusing the whole file for them would make the
data unusable without hand-editing it. The rejection is never silent: every rejected row is reported
with its line (or row) and reason in the report's `rejected_rows`, written to
`imports/rejected/<sha256 of the file>.json` (re-importing the same file rewrites the same record), and
the CLI exits 2 when any row was rejected, so a script notices.

Every row read is accounted for in the report, and `import_files` checks it:
    rows_read = inserted + duplicates + revised + rejected + not_yet_closed + skipped_other_symbols
(`not_yet_closed`: candles whose interval has not ended at `now`, which the writer never commits;
`skipped_other_symbols`: rows of a CSV ticker column naming another coin or quote).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from coinline.errors import ConfigError
from coinline.ingest.writer import commit_candles
from coinline.lake import tables
from coinline.lake.lease import series_lease
from coinline.lake.store import Lake
from coinline.providers.files import ImportResult, check_import_arguments, read_candle_file
from coinline.universe import Universe

# The report fields whose sum must equal rows_read (see the module docstring).
ACCOUNTED = ("inserted", "duplicates", "revised", "rejected", "not_yet_closed", "skipped_other_symbols")


def import_files(lake: Lake, paths: list[Path], *, fmt: str, symbol: str, quote: str, interval: str,
                 venue: str | None, now: datetime, universe: Universe | None = None) -> list[dict[str, Any]]:
    """Read every file, then commit each one's good rows; one report per file (see the module docstring).
    `universe`: refuse a symbol it does not hold; None accepts any symbol."""
    check_import_arguments(fmt, symbol, quote, interval)
    check_symbol(symbol, universe)
    results = [read_candle_file(Path(p), fmt, symbol=symbol, quote=quote, interval=interval, venue=venue)
               for p in paths]
    tables.ensure_tables(lake)
    return [_commit(lake, result, now) for result in results]


def check_symbol(symbol: str, universe: Universe | None) -> None:
    """Refuse a symbol outside `universe` by name: a typo (`--symbol BTCC`) would otherwise create a
    series nothing else reads."""
    if universe is None or symbol.strip().upper() in universe.symbols():
        return
    raise ConfigError(f"--symbol {symbol.strip().upper()!r} is not in universe {universe.version} "
                      f"({', '.join(universe.symbols())}); pass --allow-unknown-symbol to import it anyway")


def _commit(lake: Lake, result: ImportResult, now: datetime) -> dict[str, Any]:
    """Commit one file's candles, record its rejected rows, and return its accounted-for report."""
    path = result.path
    request = {"file": str(path), "format": result.fmt, "rows_read": result.rows_read,
               "rejected": len(result.rejected), "skipped_other_symbols": result.skipped_other_symbols}
    with series_lease(lake, result.key):
        commit = commit_candles(lake, result.candles, key=result.key, request=request, now=now)
    rejected_rows = [{"line": r.line, "row": r.row, "reason": r.reason} for r in result.rejected]
    record = None
    if result.rejected:
        record = f"imports/rejected/{_file_sha256(path)}.json"
        lake.write_json(record, {
            "file": str(path), "format": result.fmt, "series": result.key.label(),
            "rejected": [{"row": r.row, "line": r.line, "reason": r.reason, "raw": dict(r.raw)}
                         for r in result.rejected]})
    report = {"path": str(path), "series": result.key.label(), "rows_read": result.rows_read,
              "inserted": commit.inserted, "duplicates": commit.duplicates, "revised": commit.revised,
              "rejected": len(result.rejected), "not_yet_closed": commit.not_closed,
              "skipped_other_symbols": result.skipped_other_symbols, "batch_id": commit.batch_id,
              "rejected_rows": rejected_rows, "rejected_record": record}
    gap = unaccounted(report)
    if gap:
        raise RuntimeError(f"{path}: {gap} row(s) unaccounted for: rows_read {report['rows_read']} != "
                            + " + ".join(f"{k} {report[k]}" for k in ACCOUNTED))
    return report


def unaccounted(report: dict[str, Any]) -> int:
    """rows_read minus every outcome a row can have; 0 when each row is accounted for exactly once."""
    return int(report["rows_read"]) - sum(int(report[k]) for k in ACCOUNTED)


def rejected_lines(reports: list[dict[str, Any]]) -> list[str]:
    """One human line per rejected row: "<file> line 5: high 9 is below open 10 (...)"."""
    return [f"{r['path']} {'line ' + str(row['line']) if row['line'] is not None else 'row ' + str(row['row'])}: "
            f"{row['reason']}" for r in reports for row in r["rejected_rows"]]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
