"""`coinline import`: commit candle files into the lake like any provider page.

Rows the importer rejects (empty, zero or negative prices, off-grid times, ...) are never dropped
silently: they are written to `imports/rejected/<sha256 of the file>.json` with their line and reason (re-importing
the same file rewrites the same record), and counted in the report.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from coinline.ingest.writer import commit_candles
from coinline.lake import tables
from coinline.lake.lease import series_lease
from coinline.lake.store import Lake
from coinline.providers.files import read_candle_file


def import_files(lake: Lake, paths: list[Path], *, fmt: str, symbol: str, quote: str, interval: str,
                 venue: str | None, now: datetime) -> list[dict[str, Any]]:
    tables.ensure_tables(lake)
    reports = []
    for path in paths:
        result = read_candle_file(path, fmt, symbol=symbol, quote=quote, interval=interval, venue=venue)
        request = {"file": str(path), "format": fmt, "rows_read": result.rows_read,
                   "rejected": len(result.rejected), "skipped_other_symbols": result.skipped_other_symbols}
        with series_lease(lake, result.key):
            commit = commit_candles(lake, result.candles, key=result.key, request=request, now=now)
        if result.rejected:
            lake.write_json(f"imports/rejected/{_file_sha256(path)}.json", {
                "file": str(path), "format": fmt, "series": result.key.label(),
                "rejected": [{"row": r.row, "line": r.line, "reason": r.reason, "raw": dict(r.raw)}
                             for r in result.rejected]})
        reports.append({"path": str(path), "series": result.key.label(), "rows_read": result.rows_read,
                        "inserted": commit.inserted, "duplicates": commit.duplicates, "revised": commit.revised,
                        "rejected": len(result.rejected), "skipped_other_symbols": result.skipped_other_symbols,
                        "batch_id": commit.batch_id})
    return reports


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
