"""Property tests for the CoinAPI OHLCV record parser (`parse_ohlcv`).

- any valid records (as they arrive through JSON) parse to exactly the same numbers, in the order received;
- any junk (wrong types, missing keys, non-finite or non-positive values, bad timestamps, non-objects)
  raises BadDataError, and arbitrary JSON never raises anything other than BadDataError.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coinline.errors import BadDataError
from coinline.providers import coinapi
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


# ------------------------------------------------------------------------------------ fast path == row parser
#
# `parse_ohlcv` parses a page column-wise when every record is plainly valid (`coinapi._columns_fast`)
# and otherwise record by record (`coinapi._columns_by_row`). Both must give the same table, and on
# anything the fast path does not take, exactly the row parser's error.

MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
MAX_MS = (datetime(9999, 12, 24, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


def outcome(body: Any, interval: str, *, fast: bool) -> Any:
    """The table parse_ohlcv gives (fast path allowed or not), or the text of its BadDataError."""
    with contextlib.nullcontext() if fast else mock.patch.object(coinapi, "_columns_fast", return_value=None):
        try:
            return parse_ohlcv(body, key_for(interval), where="GET /v1/ohlcv/X/history")
        except BadDataError as exc:
            return f"BadDataError: {exc}"


def assert_same_outcome(body: Any, interval: str) -> Any:
    fast, slow = outcome(copy.deepcopy(body), interval, fast=True), outcome(body, interval, fast=False)
    if isinstance(slow, str) or isinstance(fast, str):
        assert fast == slow
    else:
        assert fast.schema.equals(slow.schema, check_metadata=True)
        assert fast.equals(slow, check_metadata=True)
        assert fast.to_pylist() == slow.to_pylist()
    return fast


def iso_text(ms: int, digits: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS[.f * digits]Z` (zero-padded years, unlike strftime's %Y on glibc)."""
    ts = EPOCH + timedelta(milliseconds=ms)
    text = ts.replace(tzinfo=None).isoformat(timespec="microseconds")   # ...SS.ffffff
    base, micro = text.split(".")
    return f"{base}Z" if digits == 0 else f"{base}.{(micro + '000')[:digits]}Z"


@st.composite
def coinapi_page(draw) -> tuple[str, list[dict[str, Any]]]:
    """Pages shaped like CoinAPI's: one time width per column (7 fractional digits mostly), any year
    1..9999, ends present, absent or null, prices as floats or small ints, trades_count int/null/absent."""
    interval = draw(st.sampled_from(INTERVALS))
    step = interval_ms(interval)
    start_digits = draw(st.sampled_from([7, 7, 7, 0, 1, 3, 6, 9]))
    end_digits = draw(st.sampled_from([start_digits, 7, 0, 3]))
    end_mode = draw(st.sampled_from(["all", "all", "none", "mixed"]))
    near = draw(st.booleans())
    lo = BASE_MS if near else MIN_MS
    hi = BASE_MS + SPAN_MS if near else MAX_MS
    records = []
    for _ in range(draw(st.integers(1, 12))):
        ms = draw(st.integers(lo // step + 1, hi // step - 1)) * step
        rec: dict[str, Any] = {"time_period_start": iso_text(ms, start_digits)}
        if end_mode == "all" or (end_mode == "mixed" and draw(st.booleans())):
            rec["time_period_end"] = iso_text(ms + step, end_digits)
        elif end_mode == "mixed" and draw(st.booleans()):
            rec["time_period_end"] = None
        rec["time_open"], rec["time_close"] = iso_text(ms, 7), None
        for name in PRICE_FIELDS:
            rec[name] = draw(st.one_of(st.floats(min_value=1e-12, max_value=1e12), st.integers(2, 2**53)))
        rec["volume_traded"] = draw(st.one_of(st.floats(min_value=0.0, max_value=1e15), st.integers(0, 2**53)))
        choice = draw(st.integers(0, 3))
        if choice:
            rec["trades_count"] = None if choice == 1 else draw(st.integers(0, 2**63 - 1))
        records.append(rec)
    return interval, records


@SETTINGS
@given(coinapi_page())
def test_coinapi_shaped_pages_take_the_fast_path_and_match_the_row_parser(case):
    interval, records = case
    wire = json.loads(json.dumps(records))
    assert coinapi._columns_fast(wire, interval_ms(interval)) is not None   # no fallback for these
    table = assert_same_outcome(wire, interval)
    assert table.num_rows == len(records)
    got = [(row["open_time"] - EPOCH) // timedelta(milliseconds=1) for row in table.to_pylist()]
    assert got == [expected_ms(rec["time_period_start"]) for rec in records]


@SETTINGS
@given(valid_body())
def test_fast_path_and_row_parser_agree_on_valid_pages(case):
    interval, records = case
    assert_same_outcome(json.loads(json.dumps(records)), interval)


@SETTINGS
@given(junk_body())
def test_fast_path_and_row_parser_agree_on_junk(case):
    interval, body = case
    assert_same_outcome(body, interval)


# one cell of a CoinAPI-shaped page made into something the fast path must not take as it stands
EDGE_TIMES = [
    "2023-02-29T00:00:00.0000000Z", "2024-02-30T00:00:00.0000000Z", "2024-04-31T00:00:00.0000000Z",
    "2024-13-01T00:00:00.0000000Z", "2024-00-01T00:00:00.0000000Z", "2024-01-00T00:00:00.0000000Z",
    "2024-01-01T24:00:00.0000000Z", "2024-01-01T00:60:00.0000000Z", "2024-01-01T00:00:60.0000000Z",
    "0000-01-01T00:00:00.0000000Z", "2024-01-01T00:00:00.0001000Z", "2024-01-01T00:00:00.0000001Z",
    "2024-01-01T00:00:00.0000000+00:00", "2024-01-01T00:00:00.0000000-00:00", "2024-01-01T00:00:00.0000000",
    "2024-01-01T05:30:00.0000000+05:30", "2024-01-01T00:00:00.0000000z", "2024-01-01t00:00:00.0000000Z",
    "2024-01-01 00:00:00.0000000Z", " 2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z ",
    "2024-01-01T00:00:00,0000000Z", "2024/01/01T00:00:00.0000000Z", "2024-01-01T00:00:00.00000000Z",
    "\u0662024-01-01T00:00:00.000000Z", "\uff12024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000\u00e9",
    "+2024-01-01T00:00:00.000000Z", "-024-01-01T00:00:00.0000000Z", "2024-01-01T00:00:00.Z",
    "2024-01-01T00:00:00.0000000000Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z", "",
    # valid times off the one-hour grid: the same candle_table error, quoting the same open_time
    "2024-02-29T00:00:00.1230000Z", "2024-02-29T00:00:00.0120000Z", "2024-02-29T00:00:00.0010000Z",
    "2024-02-29T00:00:00.999Z", "2024-02-29T00:00:00.5Z", "2024-02-29T00:00:00.45Z", "2024-02-29T00:00:01.0000000Z",
]
EDGE_NUMBERS = [True, False, None, "1.5", 2**53 + 1, 2**60, -(2**60), 10**400, 0, 0.0, -0.0, 1, 1.0, -1.5,
                math.nan, math.inf, [1.0], {"v": 1.0}]
EDGE_COUNTS = [True, False, 4.0, 4.5, -1, 2**63, 2**63 - 1, 2**64, "4", [4], math.nan, 0]


@SETTINGS
@given(coinapi_page(), st.data())
def test_fast_path_and_row_parser_agree_on_edge_cells(case, data):
    interval, records = case
    rec = records[data.draw(st.integers(0, len(records) - 1))]
    where = data.draw(st.sampled_from(["time_period_start", "time_period_end", *PRICE_FIELDS, "volume_traded",
                                       "trades_count", "shift_end", "drop"]))
    if where in ("time_period_start", "time_period_end"):
        rec[where] = data.draw(st.sampled_from(EDGE_TIMES))
    elif where == "trades_count":
        rec[where] = data.draw(st.sampled_from(EDGE_COUNTS))
    elif where == "shift_end":
        ms = expected_ms(rec["time_period_start"]) + interval_ms(interval) * data.draw(st.sampled_from([0, 2, -1]))
        rec["time_period_end"] = iso_text(ms, 7)
    elif where == "drop":
        del rec[data.draw(st.sampled_from(REQUIRED))]
    else:
        rec[where] = data.draw(st.sampled_from(EDGE_NUMBERS))
    assert_same_outcome(records, interval)


def edge_page(**override: Any) -> list[dict[str, Any]]:
    """Three one-hour CoinAPI records; `override` replaces fields of the middle one."""
    rows = []
    for i, start in enumerate(["2024-02-28T23:00:00.0000000Z", "2024-02-29T00:00:00.0000000Z",
                               "2024-02-29T01:00:00.0000000Z"]):
        ms = expected_ms(start)
        rows.append({"time_period_start": start, "time_period_end": iso_text(ms + 3_600_000, 7),
                     "time_open": start, "time_close": None, "price_open": 1.0, "price_high": 2.0, "price_low": 1.0,
                     "price_close": 1.5, "volume_traded": 0.0, "trades_count": 4, **(override if i == 1 else {})})
    return rows


def test_edge_page_itself_takes_the_fast_path():
    assert coinapi._columns_fast(edge_page(), 3_600_000) is not None


@pytest.mark.parametrize("text", EDGE_TIMES + ["2023-03-32T00:00:00.0000000Z", "2024-03-32T00:00:00.0000000Z",
                                               "1900-02-29T00:00:00.0000000Z", "2100-02-29T00:00:00.0000000Z"])
@pytest.mark.parametrize("field", ["time_period_start", "time_period_end"])
def test_fast_path_and_row_parser_agree_on_edge_times(field, text):
    page = edge_page(**{field: text})
    if field == "time_period_start":
        page[1].pop("time_period_end")
    assert_same_outcome(page, "1h")


@pytest.mark.parametrize("text", [
    "2024-02-29T00:00:00.0000000Z", "2000-02-29T00:00:00.0000000Z", "1600-02-29T00:00:00.0000000Z",
    "0004-02-29T00:00:00.0000000Z", "0001-01-01T00:00:00.0000000Z", "9999-12-31T23:00:00.0000000Z",
    "1969-12-31T23:00:00.0000000Z", "1970-01-01T00:00:00.0000000Z", "2024-01-31T00:00:00.0000000Z",
    "2024-04-30T00:00:00.0000000Z", "2024-12-31T23:00:00.0000000Z", "1999-12-31T23:00:00.0000000Z",
])
def test_fast_path_takes_calendar_edges_and_matches_the_row_parser(text):
    ms = expected_ms(text)
    page = [{"time_period_start": text, "price_open": 1.0, "price_high": 1.0, "price_low": 1.0, "price_close": 1.0,
             "volume_traded": 0}]
    if ms + 3_600_000 < expected_ms("9999-12-31T23:59:59Z"):
        page[0]["time_period_end"] = iso_text(ms + 3_600_000, 7)
    assert coinapi._columns_fast(page, 3_600_000) is not None
    table = assert_same_outcome(page, "1h")
    assert table.column("open_time").cast("int64").to_pylist() == [ms]


@pytest.mark.parametrize("field", [*PRICE_FIELDS, "volume_traded"])
@pytest.mark.parametrize("value", EDGE_NUMBERS, ids=repr)
def test_fast_path_and_row_parser_agree_on_edge_numbers(field, value):
    assert_same_outcome(edge_page(**{field: value}), "1h")


@pytest.mark.parametrize("value", EDGE_COUNTS, ids=repr)
def test_fast_path_and_row_parser_agree_on_edge_counts(value):
    assert_same_outcome(edge_page(trades_count=value), "1h")


@pytest.mark.parametrize("texts", [
    ("2024-02-28T23:00:00.0000000Z", "2024-02-29T00:00:00.000000Z", "2024-02-29T01:00:00.00000000Z"),
    ("2024-02-28T23:00:00.000Z", "2024-02-29T00:00:00Z", "2024-02-29T01:00:00.0000000Z"),
])
def test_fast_path_and_row_parser_agree_on_mixed_time_widths(texts):
    page = edge_page()
    for rec, text in zip(page, texts, strict=True):
        rec["time_period_start"] = text
    assert_same_outcome(page, "1h")


def test_fast_path_declines_what_it_cannot_tell_apart():
    """pyarrow would read true as 1.0 and 4.0 as the int 4: the fast path must hand those over."""
    for override in ({"price_open": True}, {"volume_traded": False}, {"trades_count": 4.0}, {"trades_count": True},
                     {"price_close": None}, {"trades_count": -1}, {"price_high": 2**60}):
        assert coinapi._columns_fast(edge_page(**override), 3_600_000) is None, override
