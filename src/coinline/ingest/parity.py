"""Venue parity: compare the historical provider's canonical candles with Kraken's on overlapping
open times, per series, and flag divergence beyond a tolerance (in basis points of close)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from coinline.datasets.canonical import series_candles
from coinline.lake import tables
from coinline.lake.store import Lake


@dataclass(frozen=True)
class ParityRow:
    symbol: str
    quote: str
    interval: str
    reference: str          # the historical provider's series
    venue: str              # the venue series compared against it
    overlap: int            # candles present in both
    max_close_bps: float | None
    mean_close_bps: float | None
    breaches: int           # candles beyond the tolerance
    flagged: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _closes(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    t = table["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
    return t, table["close"].to_numpy()


def parity(lake: Lake, *, reference_source: str, venue_source: str = "kraken",
           tolerance_bps: float = 50.0) -> list[ParityRow]:
    keys = [k for k, *_ in tables.series_in(lake)]
    venue = {(k.symbol, k.quote, k.interval): k for k in keys if k.source == venue_source}
    rows = []
    for ref in sorted((k for k in keys if k.source == reference_source), key=lambda k: (k.symbol, k.quote, k.interval)):
        other = venue.get((ref.symbol, ref.quote, ref.interval))
        if other is None:
            continue
        b = series_candles(lake, other)
        if b.num_rows == 0:
            continue
        ta, ca = _closes(series_candles(lake, ref, start=b["open_time"][0].as_py()))
        tb, cb = _closes(b)
        common, ia, ib = np.intersect1d(ta, tb, assume_unique=True, return_indices=True)
        if len(common) == 0:
            rows.append(ParityRow(ref.symbol, ref.quote, ref.interval, ref.label(), other.label(), 0, None, None, 0, False))
            continue
        bps = np.abs(ca[ia] - cb[ib]) / cb[ib] * 1e4
        breaches = int((bps > tolerance_bps).sum())
        rows.append(ParityRow(ref.symbol, ref.quote, ref.interval, ref.label(), other.label(), len(common),
                              round(float(bps.max()), 4), round(float(bps.mean()), 4), breaches, breaches > 0))
    return rows
