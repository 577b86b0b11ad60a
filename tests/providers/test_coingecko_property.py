"""Property tests for the CoinGecko `/coins/markets` parser: arbitrary JSON is parsed or rejected with a
typed error (ProviderError or its BadDataError), never anything else, and whatever gets through obeys the
row rules. (It stays record by record: a column-wise fast path was measured no faster on 30- and 250-row
pages, since the answer is one `MarketRow` object per row anyway.)"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coinline.errors import BadDataError, ProviderError
from coinline.providers.coingecko import parse_markets

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = ["id", "symbol", "name", "market_cap_rank", "market_cap", "current_price", "total_volume", "last_updated"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                         st.sampled_from([2**63, 10**400, -(10**400), "2025-03-04T14:45:50.155Z", "btc"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=9)), max_leaves=20)


@SETTINGS
@given(st.one_of(json_values, st.lists(st.dictionaries(st.sampled_from(FIELDS), json_scalars, max_size=9), max_size=4)))
def test_arbitrary_json_is_parsed_or_rejected_with_typed_errors_only(body: Any):
    try:
        rows = parse_markets(body, request="GET /coins/markets?page=1")
    except ProviderError as exc:
        assert "provider=coingecko" in str(exc) and "request=GET /coins/markets?page=1" in str(exc)
        return
    for row in rows:
        assert row.id.strip() and row.symbol.strip() and row.name.strip()
        assert row.market_cap_rank is None or row.market_cap_rank >= 1
        for value in (row.market_cap, row.current_price, row.total_volume):
            assert value is None or (math.isfinite(value) and value >= 0)


@pytest.mark.parametrize("field", ["market_cap", "current_price", "total_volume"])
def test_a_number_past_the_float_range_is_bad_data_naming_the_field(field):
    row = {"id": "bitcoin", "symbol": "btc", "name": "Bitcoin", field: 10**400}
    with pytest.raises(BadDataError, match=f"row 0 \\(id 'bitcoin'\\): field '{field}' must be finite and >= 0, "
                                           "got an integer of 401 digits"):
        parse_markets([row])
