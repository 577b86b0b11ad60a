"""What a replay route answers, and the time formats the providers use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = "application/json; charset=utf-8"


@dataclass
class Reply:
    """A route's answer. `rows` is the list inside `payload` that page faults rewrite (same object)."""

    status: int = 200
    payload: Any = None
    body: bytes | None = None
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    rows: list | None = None

    def encode(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps(self.payload, separators=(",", ":")).encode()


def iso7(ns: int) -> str:
    """CoinAPI's ISO-8601 with 7 fractional digits: 2017-01-01T00:01:08.0000000Z."""
    secs, rem = divmod(int(ns), 1_000_000_000)
    return f"{datetime.fromtimestamp(secs, tz=UTC):%Y-%m-%dT%H:%M:%S}.{rem // 100:07d}Z"


def iso_ms(ms: int) -> str:
    """CoinGecko's ISO-8601 with milliseconds: 2022-08-30T00:06:02.240Z."""
    secs, rem = divmod(int(ms), 1000)
    return f"{datetime.fromtimestamp(secs, tz=UTC):%Y-%m-%dT%H:%M:%S}.{rem:03d}Z"
