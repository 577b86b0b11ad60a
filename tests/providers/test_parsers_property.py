"""Property tests for the CoinAPI OHLCV record parser (`parse_ohlcv`).

- any valid records (as they arrive through JSON) parse to exactly the same numbers, in the order received;
- any junk (wrong types, missing keys, non-finite or non-positive values, bad timestamps, non-objects)
  raises BadDataError, and arbitrary JSON never raises anything other than BadDataError.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coinline.errors import BadDataError
from coinline.providers.base import SeriesKey
from coinline.providers.coinapi import parse_ohlcv
from coinline.timeframes import interval_ms

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
PRICE_FIELDS = ("price_open", "price_high", "price_low", "price_close")
REQUIRED = ("time_period_start", *PRICE_FIELDS, "volume_traded")
BASE_MS = 1_230_768_000_000  # 2009-01-01
SPAN_MS = 3_000_000_000_000  # ~95 years of open times after BASE_MS


def key_for(interval: str) -> SeriesKey:
    return SeriesKey("coinapi", "KRAKEN", "BTC", "USD", interval)


def fmt_time(ms: int, style: int) -> str:
    ts = EPOCH + timedelta(milliseconds=ms)
    if style == 0:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}0Z"     # CoinAPI: 7 digits
    if style == 1:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 2:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+00:00"
    return (ts + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S+05:30")


positive = st.one_of(
    st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=2**53),
)
non_negative = st.one_of(
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=2**53),
)
counts = st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))


@st.composite
def valid_record(draw, interval: str) -> dict[str, Any]:
    step = interval_ms(interval)
    ms = BASE_MS - BASE_MS % step + draw(st.integers(0, SPAN_MS // step)) * step
    rec: dict[str, Any] = {"time_period_start": fmt_time(ms, draw(st.integers(0, 3)))}
    if draw(st.booleans()):
        rec["time_period_end"] = fmt_time(ms + step, draw(st.integers(0, 3)))
    if draw(st.booleans()):
        rec["time_open"] = draw(st.one_of(st.none(), st.just(fmt_time(ms + 1000, 0))))
        rec["time_close"] = None
    for name in PRICE_FIELDS:
        rec[name] = draw(positive)
    rec["volume_traded"] = draw(non_negative)
    choice = draw(st.integers(0, 2))
    if choice:
        rec["trades_count"] = draw(counts)
    return rec


@st.composite
def valid_body(draw) -> tuple[str, list[dict[str, Any]]]:
    interval = draw(st.sampled_from(INTERVALS))
    return interval, draw(st.lists(valid_record(interval), max_size=12))


def expected_ms(text: str) -> int:
    from coinline.timeframes import parse_iso_utc

    return (parse_iso_utc(text) - EPOCH) // timedelta(milliseconds=1)


@SETTINGS
@given(valid_body())
def test_valid_records_round_trip_to_the_same_numbers(case):
    interval, records = case
    wire = json.loads(json.dumps(records))          # exactly what the gateway would hand over
    table = parse_ohlcv(wire, key_for(interval), where="GET /v1/ohlcv/X/history")
    assert table.num_rows == len(records)
    rows = table.to_pylist()
    for rec, row in zip(records, rows, strict=True):  # same order as received, nothing dropped
        got_ms = (row["open_time"] - EPOCH) // timedelta(milliseconds=1)
        assert got_ms == expected_ms(rec["time_period_start"])
        for field, col in zip(PRICE_FIELDS, ("open", "high", "low", "close"), strict=True):
            assert row[col] == float(rec[field]) and type(row[col]) is float
        assert row["volume"] == float(rec["volume_traded"])
        assert row["trade_count"] == rec.get("trades_count")
        assert (row["source"], row["venue"], row["symbol"], row["quote"], row["interval"]) == (
            "coinapi", "KRAKEN", "BTC", "USD", interval)


# ------------------------------------------------------------------------------------ junk

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
not_a_number = st.one_of(st.none(), st.booleans(), st.text(max_size=12), st.lists(json_scalars, max_size=2),
                         st.dictionaries(st.text(max_size=4), json_scalars, max_size=2))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
non_positive = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0))
negative = st.one_of(st.floats(max_value=-1e-300, allow_nan=False), st.integers(max_value=-1))
not_a_time_text = st.one_of(
    st.text(max_size=30).filter(lambda s: not s.strip()[:1].isdigit()),
    st.sampled_from([
        "2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01",
        "2024-01-01 00:00:00Z", "20240101T000000Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00",
        "0000-01-01T00:00:00Z", "2024-01-01T00:00:00+99:99", "2024-01-01T00:00:00.0000001Z",
        "2024-01-01T00:00:00.0005Z", "1704067200",
    ]),
)


@st.composite
def off_grid_time(draw, interval: str) -> str:
    step = interval_ms(interval)
    ms = BASE_MS - BASE_MS % step + draw(st.integers(0, 10_000)) * step + draw(st.integers(1, step - 1))
    return fmt_time(ms, 2)


@st.composite
def junk_body(draw) -> tuple[str, Any]:
    """A valid body with exactly one thing broken."""
    interval = draw(st.sampled_from(INTERVALS))
    records = draw(st.lists(valid_record(interval), min_size=1, max_size=6))
    row = draw(st.integers(0, len(records) - 1))
    rec = records[row]
    kind = draw(st.sampled_from([
        "missing", "wrong-type", "non-finite", "non-positive-price", "negative-volume", "huge", "bad-time",
        "time-type", "off-grid", "bad-end", "count-type", "count-range", "row-not-object", "body-not-list",
    ]))
    if kind == "missing":
        del rec[draw(st.sampled_from(REQUIRED))]
    elif kind == "wrong-type":
        rec[draw(st.sampled_from((*PRICE_FIELDS, "volume_traded")))] = draw(not_a_number)
    elif kind == "non-finite":
        rec[draw(st.sampled_from((*PRICE_FIELDS, "volume_traded")))] = draw(non_finite)
    elif kind == "non-positive-price":
        rec[draw(st.sampled_from(PRICE_FIELDS))] = draw(non_positive)
    elif kind == "negative-volume":
        rec["volume_traded"] = draw(negative)
    elif kind == "huge":
        value = draw(st.one_of(st.integers(min_value=10**309, max_value=10**330), st.just(10**5000)))
        rec[draw(st.sampled_from((*PRICE_FIELDS, "volume_traded")))] = value * draw(st.sampled_from([1, -1]))
    elif kind == "bad-time":
        rec["time_period_start"] = draw(not_a_time_text)
    elif kind == "time-type":
        rec["time_period_start"] = draw(st.one_of(st.integers(), st.just(10**5000), st.floats(), st.booleans(), st.none(),
                                                  st.lists(st.text(max_size=3), max_size=2)))
    elif kind == "off-grid":
        rec["time_period_start"] = draw(off_grid_time(interval))
        rec.pop("time_period_end", None)
    elif kind == "bad-end":
        rec["time_period_end"] = draw(st.one_of(not_a_time_text, st.integers(), st.booleans(),
                                                st.just(rec["time_period_start"])))
    elif kind == "count-type":
        rec["trades_count"] = draw(st.one_of(st.booleans(), st.text(max_size=5), non_finite,
                                             st.floats(allow_nan=False, allow_infinity=False),
                                             st.lists(st.integers(), max_size=2)))
    elif kind == "count-range":
        rec["trades_count"] = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63),
                                             st.sampled_from([10**5000, -(10**5000)])))
    elif kind == "row-not-object":
        records[row] = draw(st.one_of(json_scalars, st.lists(json_scalars, max_size=3)))
    else:
        return interval, draw(st.one_of(json_scalars, st.dictionaries(st.text(max_size=6), json_values, max_size=3)))
    return interval, records


@SETTINGS
@given(junk_body())
def test_junk_raises_bad_data_error_and_nothing_else(case):
    interval, body = case
    with pytest.raises(BadDataError) as info:
        parse_ohlcv(body, key_for(interval), where="GET /v1/ohlcv/X/history")
    text = str(info.value)
    assert "provider=coinapi" in text and f"series=coinapi:KRAKEN:BTC-USD:{interval}" in text
    assert "request=GET /v1/ohlcv/X/history" in text


@SETTINGS
@given(st.sampled_from(INTERVALS), st.one_of(json_values, st.lists(json_values, max_size=5),
                                             st.lists(st.dictionaries(st.sampled_from([*REQUIRED, "trades_count",
                                                                                       "time_period_end"]),
                                                                      json_values), max_size=5)))
def test_arbitrary_json_is_parsed_or_rejected_with_bad_data_error(interval, body):
    try:
        table = parse_ohlcv(body, key_for(interval))
    except BadDataError:
        return
    # whatever got through obeys the candle rules
    for row in table.to_pylist():
        assert all(math.isfinite(row[c]) and row[c] > 0 for c in ("open", "high", "low", "close"))
        assert math.isfinite(row["volume"]) and row["volume"] >= 0
        assert row["trade_count"] is None or 0 <= row["trade_count"] < 2**63


@SETTINGS
@given(valid_body(), st.data())
def test_mixed_type_fields_with_right_values_still_parse(case, data):
    """ints where floats are usual (JSON `1005` vs `1005.0`) are numbers, not junk."""
    interval, records = case
    assume(records)
    for rec in records:
        for name in (*PRICE_FIELDS, "volume_traded"):
            if isinstance(rec[name], float) and rec[name].is_integer() and abs(rec[name]) < 2**53:
                rec[name] = int(rec[name]) if data.draw(st.booleans()) else rec[name]
    table = parse_ohlcv(records, key_for(interval))
    assert table.column("close").to_pylist() == [float(r["price_close"]) for r in records]
