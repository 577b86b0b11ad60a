"""Per-series coverage: first, last, canonical rows, gaps (unexplained and known), corrections. A series
with a recorded unexplained gap is listed even when it holds no candle (e.g. its first page was empty)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from coinline.datasets.canonical import committed_corrections
from coinline.ingest.completeness import series_with_unexplained
from coinline.ingest.gaps import detect
from coinline.lake import tables
from coinline.lake.store import Lake


@dataclass(frozen=True)
class Coverage:
    series: str
    first: str | None
    last: str | None
    rows: int
    missing_candles: int
    known_gap_candles: int
    corrections: int

    def to_dict(self) -> dict:
        return asdict(self)


def coverage(lake: Lake) -> list[Coverage]:
    tables.ensure_tables(lake)
    corr = committed_corrections(lake)
    labels = [(f"{r['source']}:{r['venue']}:{r['symbol']}-{r['quote']}:{r['interval']}", r["reason"])
              for r in corr.select(["source", "venue", "symbol", "quote", "interval", "reason"]).to_pylist()]
    per_series = Counter(label for label, _ in labels)
    stored_versions = Counter(label for label, reason in labels if reason == "revised")
    out = []
    series = {key: (rows, first, last) for key, rows, first, last in tables.series_in(lake)}
    for key in series_with_unexplained(lake):
        series.setdefault(key, (0, None, None))
    for key, (raw_rows, first, last) in sorted(series.items()):
        gaps = detect(lake, key)
        out.append(Coverage(
            key.label(), first.isoformat() if first else None, last.isoformat() if last else None,
            raw_rows - stored_versions.get(key.label(), 0),
            sum(g.missing_candles for g in gaps if g.status == "unexplained"),
            sum(g.missing_candles for g in gaps if g.status == "known"),
            per_series.get(key.label(), 0),
        ))
    return out
