"""Small in-memory collaborators shared by the lake/ingest tests (no network, no replay server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from coinline.errors import NotListedError
from coinline.providers.base import Capabilities, Page, SeriesKey, SeriesRef, candle_table
from coinline.timeframes import interval_ms

T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEY = SeriesKey("fake", "FAKEX", "BTC", "USD", "1h")


def candles(key: SeriesKey = KEY, start: datetime = T0, n: int = 10, price: float = 100.0, skip=()) -> pa.Table:
    step = interval_ms(key.interval)
    idx = np.array([i for i in range(n) if i not in set(skip)], dtype=np.int64)
    t = int(start.timestamp() * 1000) + idx * step
    p = price + idx.astype(float)
    return candle_table(key, t, p, p + 1, p - 1, p + 0.5, np.full(len(idx), 2.0), idx)


@dataclass
class FakeSource:
    """A time-paginated provider over a fixed candle table; records every request."""

    table: pa.Table
    page_limit: int = 4
    listed: tuple[tuple[str, str], ...] = (("BTC", "USD"),)
    name: str = "fake"
    calls: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(self.page_limit, "time", "full", False, ("1h",))

    def resolve(self, symbol, quote, interval) -> SeriesRef:
        if (symbol, quote) not in self.listed:
            raise NotListedError("pair not listed", provider=self.name, series=f"{symbol}-{quote}")
        return SeriesRef(SeriesKey(self.name, "FAKEX", symbol, quote, interval), f"{symbol}{quote}")

    def earliest(self, ref):
        return self.table["open_time"][0].as_py() if self.table.num_rows else None

    def fetch(self, ref, cursor, end) -> Page:
        self.calls.append((cursor, end))
        t = self.table["open_time"]
        mask = pa.compute.and_(pa.compute.greater_equal(t, pa.scalar(cursor, t.type)),
                               pa.compute.less(t, pa.scalar(end, t.type)))
        rows = self.table.filter(mask).slice(0, self.page_limit)
        done = rows.num_rows < self.page_limit
        nxt = rows["open_time"][-1].as_py() + timedelta(hours=1) if rows.num_rows else None
        return Page(rows, {"cursor": cursor.isoformat(), "end": end.isoformat()}, nxt, done)
