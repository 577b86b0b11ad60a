"""Provider bodies are decoded by orjson where it accepts them and by the standard library otherwise:
the values are the stdlib's, and so is every failure (the adapters' typed errors depend on them)."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coinline import jsonbody
from coinline.providers.base import SeriesKey
from coinline.providers.kraken import parse_ohlc_rows

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=30)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_decodes_to_the_standard_librarys_values(doc):
    for text in (json.dumps(doc), json.dumps(doc, ensure_ascii=False)):
        assert _same(jsonbody.loads(text.encode()), json.loads(text.encode()))


@pytest.mark.parametrize("body", [
    b"[NaN, Infinity, -Infinity]",              # literals the stdlib accepts and orjson does not
    b"1e400",                                   # beyond a double: the stdlib gives inf
    b'"\\ud800"',                                # a lone surrogate
    b"\xef\xbb\xbf[1]",                          # a UTF-8 byte order mark
    "[1, 2]".encode("utf-16"),                   # UTF-16, detected by the stdlib
])
def test_what_orjson_refuses_decodes_as_the_standard_library_decodes_it(body):
    expected = json.loads(body)
    got = jsonbody.loads(body)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("body", [b"[1,]", b'{"a": }', b"[1", b'["\x01"]', b"",
                                  b"[" * 1500 + b"]" * 1500])  # deeper than either parser goes
def test_what_neither_accepts_fails_as_the_standard_library_fails(body):
    with pytest.raises(Exception) as stdlib:
        json.loads(body)
    with pytest.raises(Exception) as ours:
        jsonbody.loads(body)
    assert type(ours.value) is type(stdlib.value)
    assert str(ours.value) == str(stdlib.value)  # message, line, column and position: the stdlib's


def test_an_integer_beyond_64_bits_is_a_float_and_an_adapter_still_rejects_it_as_bad_data():
    big = "123456789012345678901234567890"
    assert jsonbody.loads(big.encode()) == float(big)  # the one documented difference
    key = SeriesKey("kraken", "KRAKEN", "BTC", "USD", "1m")
    for field, row in (("time", f'[{big},"1","1","1","1","1","1",3]'),
                       ("count", f'[1700000040,"1","1","1","1","1","1",{big}]')):
        for loads in (json.loads, jsonbody.loads):
            with pytest.raises(Exception) as caught:
                parse_ohlc_rows([loads(row)], key, provider="kraken", request="test")
            assert type(caught.value).__name__ == "BadDataError"
            assert f"row 0: {field}" in str(caught.value)
