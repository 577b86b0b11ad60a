"""Candle intervals: one canonical spelling ("1m", "1h", "1d"), conversions, and the UTC grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_SECONDS = {
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "4h": 14400, "1d": 86400, "1w": 604800,
}


def interval_seconds(interval: str) -> int:
    """Seconds in a canonical interval; a clear error names an unknown one."""
    try:
        return _SECONDS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; known: {', '.join(_SECONDS)}") from None


def known_intervals() -> list[str]:
    return list(_SECONDS)


def interval_ms(interval: str) -> int:
    return interval_seconds(interval) * 1000


def floor_to_interval(ts: datetime, interval: str) -> datetime:
    """Largest grid point <= ts (grid anchored at the unix epoch, UTC)."""
    step = interval_seconds(interval)
    secs = int(ts.timestamp())
    return datetime.fromtimestamp(secs - secs % step, tz=UTC)


def last_closed_open_time(now: datetime, interval: str) -> datetime:
    """Open time of the newest candle that has closed at `now` (the candle open at now is excluded)."""
    return floor_to_interval(now, interval) - timedelta(seconds=interval_seconds(interval))


def to_utc(ts: datetime) -> datetime:
    """Reject naive datetimes rather than guess their zone."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts.isoformat()} given; coinline needs timezone-aware UTC times")
    return ts.astimezone(UTC)


def ms(ts: datetime) -> int:
    return int(to_utc(ts).timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def parse_iso_utc(text: str) -> datetime:
    """Parse ISO-8601 with any number of fractional digits (CoinAPI sends 7) and a Z or offset."""
    import re

    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?", text.strip())
    if not m:
        raise ValueError(f"not an ISO-8601 UTC time: {text!r}")
    base, frac, zone = m.groups()
    micro = (frac or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(UTC)
