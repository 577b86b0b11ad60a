"""Property tests for the Kraken parsers: the column-wise fast paths give exactly what the row parsers give.

- `parse_ohlc_rows` / `parse_trade_rows` convert a page column-wise when every row is plainly valid and
  otherwise row by row; both paths must give the same arrays, and on anything the fast path does not take,
  exactly the row parser's error (same type, same text);
- pages shaped like Kraken's take the fast path (else it would be dead code);
- `number_column` (and Arrow's parse of plain decimal strings inside it) gives `to_number`'s values;
- arbitrary JSON rows raise BadDataError or DamagedAnswerError, nothing else;
- the vectorized trade aggregation equals the pandas named-aggregation groupby it replaced, bit for bit.
"""

from __future__ import annotations

import copy
import json
import math
from contextlib import nullcontext
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coinline.errors import BadDataError, DamagedAnswerError
from coinline.providers import kraken, kraken_trades
from coinline.providers.base import SeriesKey
from coinline.providers.kraken import MAX_TIME_S, number_column, parse_ohlc_rows, to_number
from coinline.providers.kraken_trades import (
    AGG_COLUMNS,
    Trades,
    aggregate_trades,
    bucket_of,
    parse_trade_rows,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = SeriesKey("kraken", "KRAKEN", "BTC", "USD", "1m")
CTX = {"provider": "kraken", "series": KEY.label(), "request": "GET /0/public/X"}

# cells a page may hold where a number, a time, a count or a trade id is due: right, wrong and borderline
EDGE_TEXTS = ["1.5", "-1.5", "0", "-0", "0.0", "1.", ".5", "-.5", "007", "1e5", "1E-3", "+2", " 1.5", "1.5 ", "1_000",
              "nan", "NaN", "inf", "-Infinity", "", ".", "-", "1-2", "1.2.3", "--1", "0x10", "\u0661\u0662",
              "\uff11", "1.5\n", "9" * 400, "1" * 309 + ".5", "0." + "0" * 400 + "1", "123456789.123456789123456789"]
EDGE_VALUES = [*EDGE_TEXTS, True, False, None, 0, 1, -1, 2.5, -0.0, math.nan, math.inf, 2**53 + 1, 2**63 - 1, 2**63,
               -(2**63) - 1, 10**400, -(10**400), [1.0], {"v": 1}, 1594728000.0, 1594728000.5]


def outcome(parse, rows: Any, fast_name: str, module, *, fast: bool) -> Any:
    """What `parse(rows)` gives (fast path allowed or not): its arrays as lists, or the error's text."""
    patch = nullcontext() if fast else mock.patch.object(module, fast_name, return_value=None)
    with patch:
        try:
            got = parse(rows)
        except (BadDataError, DamagedAnswerError) as exc:
            return f"{type(exc).__name__}: {exc}"
    arrays = got if isinstance(got, dict) else {f: getattr(got, f) for f in ("time", "price", "volume", "trade_id")}
    return {k: (v.dtype.str, v.tolist()) for k, v in arrays.items()}


def same_nan(a: Any, b: Any) -> bool:
    """Equality of outcomes where NaN equals NaN (a NaN price is still parsed; candle rules reject it later)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def ohlc(rows: Any) -> dict:
    return parse_ohlc_rows(rows, KEY, provider=CTX["provider"], request=CTX["request"])


def trades(rows: Any) -> Trades:
    return parse_trade_rows(rows, seq_start=11, **CTX)


def assert_ohlc_paths_agree(rows: Any) -> Any:
    fast = outcome(ohlc, copy.deepcopy(rows), "_ohlc_columns_fast", kraken, fast=True)
    slow = outcome(ohlc, rows, "_ohlc_columns_fast", kraken, fast=False)
    assert same_nan(fast, slow), (fast, slow)
    return fast


def assert_trade_paths_agree(rows: Any) -> Any:
    fast = outcome(trades, copy.deepcopy(rows), "_trade_columns_fast", kraken_trades, fast=True)
    slow = outcome(trades, rows, "_trade_columns_fast", kraken_trades, fast=False)
    assert same_nan(fast, slow), (fast, slow)
    return fast


# ------------------------------------------------------------------------------------------ pages as Kraken sends

decimal_text = st.builds(lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
                         st.integers(0, 10**12), st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12)))


@st.composite
def ohlc_page(draw) -> list[list]:
    """Rows `[time, o, h, l, c, vwap, volume, count]` with Kraken's types: int times on a one-minute grid,
    strictly increasing, decimal strings (or, rarely, JSON numbers), int counts."""
    n = draw(st.integers(1, 30))
    start = draw(st.integers(0, MAX_TIME_S // 60 - 100)) * 60
    gaps = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    times = [start + 60 * sum(gaps[:i]) for i in range(n)]
    number = st.one_of(decimal_text, decimal_text.map(lambda s: "-" + s),
                       st.floats(min_value=1e-9, max_value=1e12), st.integers(0, 2**53))
    return [[t, *(draw(number) for _ in range(6)), draw(st.integers(0, 2**63 - 1))] for t in times]


@SETTINGS
@given(ohlc_page())
def test_kraken_shaped_ohlc_pages_take_the_fast_path_and_match_the_row_parser(rows):
    wire = json.loads(json.dumps(rows))
    assert kraken._ohlc_columns_fast(wire) is not None
    got = assert_ohlc_paths_agree(wire)
    assert got["time"][1] == [r[0] for r in rows]
    assert got["close"][1] == [float(r[4]) for r in rows]


@SETTINGS
@given(ohlc_page(), st.data())
def test_ohlc_paths_agree_on_edge_cells(rows, data):
    row = rows[data.draw(st.integers(0, len(rows) - 1))]
    what = data.draw(st.sampled_from(["cell", "cell", "cell", "short", "long", "not-a-list", "repeat", "swap"]))
    if what == "cell":
        row[data.draw(st.integers(0, 7))] = data.draw(st.sampled_from(EDGE_VALUES))
    elif what == "short":
        del row[data.draw(st.integers(0, 7)):]
    elif what == "long":
        row.append(data.draw(st.sampled_from(EDGE_VALUES)))
    elif what == "not-a-list":
        rows[rows.index(row)] = data.draw(st.sampled_from([None, 5, "row", {"t": 1}, tuple(row)]))
    elif what == "repeat":
        rows.append(list(rows[-1]))
    elif len(rows) > 1:
        rows[0], rows[-1] = rows[-1], rows[0]
    assert_ohlc_paths_agree(rows)


@st.composite
def trade_page(draw) -> list[list]:
    """Rows `[price, volume, time, side, ordertype, misc(, trade_id)]` with Kraken's types: decimal
    strings, float times (ties allowed), int ids, all rows with or all without an id."""
    n = draw(st.integers(1, 30))
    with_id = draw(st.booleans())
    base = draw(st.floats(0, 2e9))
    rows = []
    for _ in range(n):
        row = [draw(decimal_text.filter(lambda s: float(s) > 0)), draw(decimal_text),
               draw(st.one_of(st.just(base), st.floats(0, 2e9), st.integers(0, 2**31))), "b", "l", ""]
        if with_id:
            row.append(draw(st.integers(-(2**63), 2**63 - 1)))
        rows.append(row)
    return rows


@SETTINGS
@given(trade_page())
def test_kraken_shaped_trade_pages_take_the_fast_path_and_match_the_row_parser(rows):
    wire = json.loads(json.dumps(rows))
    assert kraken_trades._trade_columns_fast(wire, 0) is not None
    got = assert_trade_paths_agree(wire)
    assert got["price"][1] == [float(r[0]) for r in rows]


@SETTINGS
@given(trade_page(), st.data())
def test_trade_paths_agree_on_edge_cells(rows, data):
    row = rows[data.draw(st.integers(0, len(rows) - 1))]
    what = data.draw(st.sampled_from(["cell", "cell", "cell", "short", "long", "not-a-list"]))
    if what == "cell":
        row[data.draw(st.integers(0, len(row) - 1))] = data.draw(st.sampled_from(EDGE_VALUES))
    elif what == "short":
        del row[data.draw(st.integers(0, len(row) - 1)):]
    elif what == "long":
        row.append(data.draw(st.sampled_from(EDGE_VALUES)))
    else:
        rows[rows.index(row)] = data.draw(st.sampled_from([None, 5, "row", {"t": 1}, tuple(row)]))
    assert_trade_paths_agree(rows)


def plain_ohlc_page() -> list[list]:
    return [[1_594_724_400 + 60 * i, "9249.9", "9250.1", "9249.0", "9250.0", "9249.5", "0.12500000", 7 + i]
            for i in range(4)]


def plain_trade_page(with_id: bool) -> list[list]:
    return [["30243.4", "0.34507674", 1688669583.5 + i, "s", "l", "", *([61044952 + i] if with_id else [])]
            for i in range(4)]


@pytest.mark.parametrize("column", range(8))
def test_ohlc_paths_agree_on_every_edge_value_in_every_column(column):
    assert kraken._ohlc_columns_fast(plain_ohlc_page()) is not None
    for value in EDGE_VALUES:
        rows = plain_ohlc_page()
        rows[2][column] = value
        assert_ohlc_paths_agree(rows)


@pytest.mark.parametrize("with_id", [True, False])
def test_trade_paths_agree_on_every_edge_value_in_every_column(with_id):
    assert kraken_trades._trade_columns_fast(plain_trade_page(with_id), 0) is not None
    for column in range(len(plain_trade_page(with_id)[0])):
        for value in EDGE_VALUES:
            rows = plain_trade_page(with_id)
            rows[2][column] = value
            assert_trade_paths_agree(rows)


# ------------------------------------------------------------------------------------------ numbers


def to_number_or_error(value: Any) -> float | str:
    try:
        return to_number(value)
    except ValueError:
        return "refused"


def column_or_error(values: tuple) -> list[float] | str | None:
    try:
        got = number_column(values)
    except (ValueError, OverflowError):
        return "refused"
    return None if got is None else got.tolist()


@SETTINGS
@given(st.lists(st.one_of(st.text("0123456789.-", max_size=12), st.text(max_size=8), st.sampled_from(EDGE_TEXTS)),
                min_size=1, max_size=6))
def test_number_column_gives_to_numbers_values_or_refuses_what_it_refuses(texts):
    expected = [to_number_or_error(t) for t in texts]
    got = column_or_error(tuple(texts))
    if "refused" in expected:
        assert got == "refused"
    else:
        assert same_nan(got, expected)


@SETTINGS
@given(st.lists(st.text("0123456789.-", min_size=1, max_size=40), min_size=1, max_size=6))
def test_arrow_parse_of_decimal_strings_is_pythons_float(texts):
    got = kraken._decimal_strings(tuple(texts))
    try:
        expected = [float(t) for t in texts]
    except ValueError:
        assert got is None        # Arrow must never take what float refuses
        return
    if got is not None:
        assert got.tolist() == expected


def test_arrow_never_sees_what_it_might_read_differently():
    """Whitespace, '_', '+', exponents, nan/inf words and non-ASCII digits go to numpy (Python's float)."""
    for text in (" 1.5", "1.5\n", "1_000", "+2", "1e5", "nan", "inf", "Infinity", "\u0661", "\uff11"):
        assert kraken._decimal_strings(("1.5", text)) is None, text
    assert kraken._decimal_strings(("30243.4", "-0.5", "7.", ".25")).tolist() == [30243.4, -0.5, 7.0, 0.25]


def test_number_column_declines_what_numpy_would_misread():
    for values in ((True, "1"), ("1", None), ("1", [1.0]), ({"v": 1},)):
        assert number_column(values) is None, values


# ------------------------------------------------------------------------------------------ arbitrary JSON

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                         st.sampled_from([2**63, -(2**63) - 1, 10**400, MAX_TIME_S + 1]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=9),
                                                                 st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                           max_leaves=20)


@SETTINGS
@given(st.lists(st.one_of(st.lists(json_scalars, min_size=6, max_size=9), json_values), max_size=5))
def test_arbitrary_rows_are_parsed_or_rejected_with_typed_errors_only(rows):
    for parse in (ohlc, trades):
        try:
            parse(rows)
        except (BadDataError, DamagedAnswerError) as exc:
            assert "provider=kraken" in str(exc) and "request=GET /0/public/X" in str(exc)


@pytest.mark.parametrize(("row", "match"), [
    ([MAX_TIME_S + 60 - (MAX_TIME_S + 60) % 60, "1", "1", "1", "1", "1", "1", 1], "after the year 9999"),
    ([10**400, "1", "1", "1", "1", "1", "1", 1], "after the year 9999"),
    ([1594728000, "1", "1", "1", "1", "1", "1", 2**63], "out of the int64 range"),
    ([1594728000, 10**400, "1", "1", "1", "1", "1", 1], "too large for a float"),
])
def test_ohlc_values_past_the_int64_and_float_ranges_are_bad_data(row, match):
    with pytest.raises(BadDataError, match=match):
        ohlc([row])


@pytest.mark.parametrize(("row", "match"), [
    (["5", "1", float(MAX_TIME_S + 1), "b", "m", "", 1], "after the year 9999"),
    (["5", "1", 10**400, "b", "m", "", 1], "after the year 9999"),
    (["5", "1", 9.0, "b", "m", "", 2**63], "out of the int64 range"),
    (["5", 10**400, 9.0, "b", "m", "", 1], "too large for a float"),
])
def test_trade_values_past_the_int64_and_float_ranges_are_bad_data(row, match):
    with pytest.raises(BadDataError, match=match):
        trades([row])


# ------------------------------------------------------------------------------------------ aggregation


def named_aggregation(t: Trades, interval: str) -> pd.DataFrame:
    """The aggregation `aggregate_trades` replaced (a pandas named-aggregation groupby), kept as the reference."""
    order = np.lexsort((t.trade_id, t.time))
    t = t.take(order)
    df = pd.DataFrame({"open_time": bucket_of(t.time, interval) * 1000, "price": t.price, "volume": t.volume})
    out = df.groupby("open_time", sort=True).agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
        volume=("volume", "sum"), trade_count=("price", "size"),
    )
    return out.reset_index()[AGG_COLUMNS]


@pytest.mark.parametrize("interval", ["1m", "15m", "1h", "1d"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorized_aggregation_equals_the_named_aggregation_bit_for_bit(interval, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    times = np.round(1_700_000_000 + np.sort(rng.uniform(0, 3 * 86400, n)), rng.integers(0, 4))  # ties too
    ids = rng.permutation(n).astype(np.int64)              # id order disagrees with arrival order
    t = Trades(times[rng.permutation(n)], rng.uniform(1, 1e5, n), rng.gamma(0.3, 3.0, n) * 10.0 ** rng.integers(-8, 4, n),
               ids)
    got, expected = aggregate_trades(t, interval), named_aggregation(t, interval)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["volume"].to_numpy().tobytes() == expected["volume"].to_numpy().tobytes()



@pytest.mark.parametrize("damage", ["repeat", "swap"])
def test_ohlc_rows_repeated_or_out_of_order_are_a_damaged_page_naming_the_row(damage):
    rows = plain_ohlc_page()
    if damage == "repeat":
        rows.insert(2, list(rows[1]))
    else:
        rows[1], rows[2] = rows[2], rows[1]
    for fast in (True, False):
        assert outcome(ohlc, copy.deepcopy(rows), "_ohlc_columns_fast", kraken, fast=fast) == (
            f"DamagedAnswerError: OHLC row 2: time {rows[2][0]} is not after the previous row (unsorted or duplicate) "
            f"[provider=kraken series={KEY.label()} request=GET /0/public/X]")
