"""coinline.quality: the candles.raw and candles.canonical Great Expectations suites."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from coinline.providers.base import CANDLE_SCHEMA, SeriesKey
from coinline.quality import QualityResult, validate_candles
from coinline.timeframes import interval_ms

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
BTC_1D = SeriesKey("kraken", "KRAKEN", "BTC", "USD", "1d")
BTC_1H = SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "1h")
ETH_1H = SeriesKey("coinapi", "KRAKEN", "ETH", "USD", "1h")
ETH_EUR = SeriesKey("coinapi", "BITSTAMP", "ETH", "EUR", "1h")
SERIES = (BTC_1D, BTC_1H, ETH_EUR, ETH_1H)  # already in canonical (symbol, quote, interval) order
N = 48

GAP_SCHEMA = pa.schema([
    *(pa.field(c, pa.string()) for c in ("source", "venue", "symbol", "quote", "interval")),
    pa.field("gap_start", pa.timestamp("ms", tz="UTC")),
    pa.field("gap_end", pa.timestamp("ms", tz="UTC")),
    pa.field("answer", pa.string()),
])


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def candles(key: SeriesKey, n: int = N, start_ms: int = BASE_MS) -> list[dict]:
    step = interval_ms(key.interval)
    return [
        {
            "source": key.source, "venue": key.venue, "symbol": key.symbol, "quote": key.quote,
            "interval": key.interval, "open_time": ts(start_ms + i * step),
            "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i, "close": 100.5 + i,
            "volume": 10.0 + i, "trade_count": i if i % 5 else None,
        }
        for i in range(n)
    ]


def all_rows() -> list[dict]:
    return [r for key in SERIES for r in candles(key)]


def table(rows: list[dict], schema: pa.Schema = CANDLE_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def failed(result: QualityResult) -> set[str]:
    return {c.name for c in result.failures()}


def find(rows: list[dict], key: SeriesKey, i: int) -> int:
    """Index in `rows` of the i-th candle of `key`."""
    return [j for j, r in enumerate(rows) if r["symbol"] == key.symbol and r["quote"] == key.quote
            and r["interval"] == key.interval and r["source"] == key.source][i]


def gaps(*spans: tuple[SeriesKey, int, int]) -> pa.Table:
    return pa.Table.from_pylist([
        {"source": k.source, "venue": k.venue, "symbol": k.symbol, "quote": k.quote,
         "interval": k.interval, "gap_start": ts(a), "gap_end": ts(b), "answer": "venue outage"}
        for k, a, b in spans
    ], schema=GAP_SCHEMA)


# ------------------------------------------------------------------------------------------ clean data


@pytest.mark.parametrize("stage", ["raw", "canonical"])
def test_clean_multi_series_table_passes(stage):
    result = validate_candles(table(all_rows()), stage=stage)
    assert result.success, result.summary()
    assert result.suite == f"candles.{stage}"
    assert result.row_count == N * len(SERIES)
    assert result.series_count == len(SERIES)
    assert result.skipped == ()
    names = {c.name for c in result.checks}
    assert {"schema.columns", "schema.open_time_utc", "unique.natural_key", "order.series_time",
            "ohlc.high_ge_close", "ohlc.open_ge_low", "price.positive.open", "volume.non_negative",
            "grid.aligned", "not_null.close"} <= names
    assert ("gaps.within_tolerance" in names) == ("order.canonical" in names) == (stage == "canonical")


def test_extra_columns_are_ignored():
    t = table(all_rows())
    n = t.num_rows
    t = (t.append_column("version", pa.array([3] * n, pa.int64()))
          .append_column("batch_id", pa.array(["b1"] * n))
          .append_column("ingested_at", pa.array([ts(BASE_MS)] * n, pa.timestamp("ms", tz="UTC"))))
    assert validate_candles(t, stage="raw").success
    assert validate_candles(t, stage="canonical").success


def test_empty_table_passes():
    result = validate_candles(CANDLE_SCHEMA.empty_table(), stage="canonical")
    assert result.success, result.summary()
    assert (result.row_count, result.series_count) == (0, 0)


def test_series_checks_use_expectations_from_great_expectations():
    result = validate_candles(table(all_rows()), stage="canonical")
    by_name = {c.name: c.expectation for c in result.checks}
    assert by_name["unique.natural_key"] == "expect_compound_columns_to_be_unique"
    assert by_name["ohlc.high_ge_close"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert by_name["schema.columns"] == "expect_table_columns_to_match_set"
    assert by_name["order.series_time"] == "expect_column_values_to_be_between"
    assert by_name["gaps.within_tolerance"] == "expect_column_values_to_be_between"


# ------------------------------------------------------------------------------------------ violations


def assert_only(result: QualityResult, check: str, series: SeriesKey | None = None) -> None:
    assert failed(result) == {check}, result.summary()
    assert not result.success
    c = result.check(check)
    if series is not None:
        assert c.series == (series.label(),), c


@pytest.mark.parametrize("stage", ["raw", "canonical"])
def test_duplicate_key_fails_uniqueness_only(stage):
    rows = all_rows()
    j = find(rows, ETH_1H, 10)
    rows.insert(j + 1, dict(rows[j], volume=99.0))
    result = validate_candles(table(rows), stage=stage)
    assert_only(result, "unique.natural_key", ETH_1H)
    c = result.check("unique.natural_key")
    assert c.unexpected_count == 2
    assert c.examples[0]["symbol"] == "ETH"
    assert c.examples[0]["open_time"] == ts(BASE_MS + 10 * 3_600_000).isoformat()


@pytest.mark.parametrize("stage", ["raw", "canonical"])
def test_decreasing_time_fails_order_only(stage):
    rows = all_rows()
    j = find(rows, BTC_1H, 20)
    rows[j], rows[j + 1] = rows[j + 1], rows[j]
    result = validate_candles(table(rows), stage=stage)
    assert_only(result, "order.series_time", BTC_1H)
    c = result.check("order.series_time")
    assert c.unexpected_count == 1
    assert c.examples == (-3_600_000.0,)


def test_canonical_stage_checks_the_order_of_series_without_sorting():
    rows = [r for key in (ETH_1H, BTC_1H, BTC_1D, ETH_EUR) for r in candles(key)]
    assert validate_candles(table(rows), stage="raw").success
    result = validate_candles(table(rows), stage="canonical")
    assert failed(result) == {"order.canonical"}, result.summary()
    assert set(result.check("order.canonical").series) == {BTC_1H.label(), BTC_1D.label()}


def test_canonical_order_across_sources_of_one_pair_is_by_time():
    other = SeriesKey("kraken", "KRAKEN", "BTC", "USD", "1h")
    a, b = candles(BTC_1H, 4), candles(other, 4)
    interleaved = [r for pair in zip(a, b, strict=True) for r in pair]
    assert validate_candles(table(interleaved), stage="canonical").success
    blocks = a + b  # b's first candle sorts before a's last one
    result = validate_candles(table(blocks), stage="canonical")
    assert failed(result) == {"order.canonical"}, result.summary()
    assert result.check("order.canonical").series == (other.label(),)


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"high": 100.2}, "ohlc.high_ge_close"),         # open 100 <= high 100.2 < close 100.5
        ({"low": 100.2}, "ohlc.open_ge_low"),            # open 100 < low 100.2 <= close 100.5
        ({"volume": -1.0}, "volume.non_negative"),
        ({"low": 0.0}, "price.positive.low"),
        ({"high": float("inf")}, "price.positive.high"),
        ({"close": float("nan")}, "not_null.close"),
        ({"open": None}, "not_null.open"),
    ],
)
@pytest.mark.parametrize("stage", ["raw", "canonical"])
def test_each_violation_fails_exactly_its_check(change, check, stage):
    rows = all_rows()
    j = find(rows, BTC_1H, 7)
    base = rows[j]
    # keep the touched row a valid candle apart from the change under test
    rows[j] = dict(base, open=100.0, high=101.0, low=99.0, close=100.5) | change
    schema = pa.schema([f.with_nullable(True) for f in CANDLE_SCHEMA])
    result = validate_candles(table(rows, schema), stage=stage)
    assert_only(result, check, BTC_1H)
    assert result.check(check).unexpected_count == 1


@pytest.mark.parametrize("stage", ["raw", "canonical"])
def test_unknown_interval_fails_interval_check_only(stage):
    rows = [dict(r, interval="7m") if r["interval"] == "1h" and r["symbol"] == "BTC" else r
            for r in all_rows()]
    result = validate_candles(table(rows), stage=stage)
    assert_only(result, "interval.known", SeriesKey("coinapi", "KRAKEN", "BTC", "USD", "7m"))
    assert result.check("interval.known").unexpected_count == N
    assert result.check("interval.known").examples == ("7m",) * 5


def test_violations_in_several_series_name_each_series():
    rows = all_rows()
    for key in (BTC_1D, ETH_EUR):
        j = find(rows, key, 3)
        rows[j] = dict(rows[j], volume=-5.0)
    result = validate_candles(table(rows), stage="raw")
    c = result.check("volume.non_negative")
    assert not c.success and c.unexpected_count == 2
    assert c.series == (BTC_1D.label(), ETH_EUR.label())  # in table order
    assert c.examples == (-5.0, -5.0)


@pytest.mark.parametrize("zone", [None, "Europe/Berlin"])
def test_naive_or_non_utc_open_time_from_pandas_fails_the_utc_check(zone):
    df = table(all_rows()).to_pandas()
    # a pandas round trip turns the nullable int64 trade_count into float64 (schema.dtype.trade_count
    # would rightly fail); keep it an integer so only the time zone is under test
    df["trade_count"] = df["trade_count"].astype("Int64")
    df["open_time"] = (df["open_time"].dt.tz_localize(None) if zone is None
                       else df["open_time"].dt.tz_convert(zone))
    t = pa.Table.from_pandas(df, preserve_index=False)
    assert t.schema.field("open_time").type.tz == zone
    result = validate_candles(t, stage="canonical")
    assert_only(result, "schema.open_time_utc")
    observed = result.check("schema.open_time_utc").observed
    assert observed.startswith("datetime64[") and "UTC" not in observed


def test_missing_column_is_a_failed_schema_check_not_an_error():
    t = table(all_rows()).drop_columns(["volume"])
    result = validate_candles(t, stage="canonical")
    assert_only(result, "schema.columns")
    c = result.check("schema.columns")
    assert c.observed == {"missing": ["volume"]}
    assert {"schema.dtype.volume", "not_null.volume", "volume.non_negative"} <= set(result.skipped)
    assert "skipped" in result.summary()


def test_missing_open_time_skips_time_checks():
    result = validate_candles(table(all_rows()).drop_columns(["open_time"]), stage="canonical")
    assert failed(result) == {"schema.columns"}
    assert {"order.series_time", "order.canonical", "grid.aligned", "gaps.within_tolerance",
            "unique.natural_key"} <= set(result.skipped)


def test_wrong_price_dtype_fails_the_dtype_check():
    t = table(all_rows())
    i = t.schema.get_field_index("close")
    t = t.set_column(i, "close", t["close"].cast(pa.float32()))
    result = validate_candles(t, stage="raw")
    assert_only(result, "schema.dtype.close")
    assert result.check("schema.dtype.close").observed == "float32"


@pytest.mark.parametrize("stage", ["raw", "canonical"])
def test_off_grid_time_fails_grid_check_only(stage):
    rows = all_rows()
    j = find(rows, ETH_1H, 5)
    rows[j] = dict(rows[j], open_time=ts(BASE_MS + 5 * 3_600_000 + 1_000))
    result = validate_candles(table(rows), stage=stage)
    assert_only(result, "grid.aligned", ETH_1H)
    assert result.check("grid.aligned").examples == (1000.0,)


# ------------------------------------------------------------------------------------------ gaps


def rows_with_hole(key: SeriesKey = BTC_1H, first: int = 10, count: int = 3) -> list[dict]:
    rows = all_rows()
    j = find(rows, key, first)
    del rows[j:j + count]
    return rows


def hole_span(key: SeriesKey = BTC_1H, first: int = 10, count: int = 3) -> tuple[int, int]:
    step = interval_ms(key.interval)
    return BASE_MS + first * step, BASE_MS + (first + count) * step


def test_unexplained_gap_over_tolerance_fails_gap_check_only():
    t = table(rows_with_hole())
    result = validate_candles(t, stage="canonical", gap_tolerance=2)
    assert_only(result, "gaps.within_tolerance", BTC_1H)
    c = result.check("gaps.within_tolerance")
    assert c.examples == (3.0,)
    assert c.unexpected_count == 1 and c.element_count == len(SERIES)
    assert validate_candles(t, stage="raw").success  # raw batches have no gap check


def test_gap_within_tolerance_passes():
    result = validate_candles(table(rows_with_hole()), stage="canonical", gap_tolerance=3)
    assert result.success, result.summary()
    assert result.parameters["gap_tolerance"] == 3


def test_gap_covered_by_known_gaps_passes():
    a, b = hole_span()
    result = validate_candles(table(rows_with_hole()), stage="canonical", known_gaps=gaps((BTC_1H, a, b)))
    assert result.success, result.summary()


def test_known_gap_wider_than_the_hole_and_overlapping_gaps_pass():
    a, b = hole_span()
    wide = gaps((BTC_1H, a - 5 * 3_600_000, a + 3_600_000), (BTC_1H, a + 30 * 60_000, b + 7 * 3_600_000))
    result = validate_candles(table(rows_with_hole()), stage="canonical", known_gaps=wide)
    assert result.success, result.summary()


def test_partly_covered_gap_counts_the_rest():
    a, b = hole_span()
    partial = gaps((BTC_1H, a, b - 3_600_000))  # explains 2 of the 3 missing candles
    t = table(rows_with_hole())
    result = validate_candles(t, stage="canonical", known_gaps=partial)
    assert_only(result, "gaps.within_tolerance", BTC_1H)
    assert result.check("gaps.within_tolerance").examples == (1.0,)
    assert validate_candles(t, stage="canonical", known_gaps=partial, gap_tolerance=1).success


def test_known_gap_of_another_series_explains_nothing():
    a, b = hole_span()
    result = validate_candles(table(rows_with_hole()), stage="canonical", known_gaps=gaps((ETH_1H, a, b)))
    assert_only(result, "gaps.within_tolerance", BTC_1H)


def test_gaps_in_several_series_are_counted_per_series():
    rows = all_rows()
    for key, first, count in ((BTC_1D, 4, 2), (ETH_EUR, 30, 1)):
        j = find(rows, key, first)
        del rows[j:j + count]
    result = validate_candles(table(rows), stage="canonical", gap_tolerance=1)
    assert_only(result, "gaps.within_tolerance", BTC_1D)
    result = validate_candles(table(rows), stage="canonical")
    assert result.check("gaps.within_tolerance").series == (BTC_1D.label(), ETH_EUR.label())
    assert result.check("gaps.within_tolerance").examples == (2.0, 1.0)


# ------------------------------------------------------------------------------------------ results


def broken_table() -> pa.Table:
    rows = rows_with_hole()
    j = find(rows, ETH_1H, 2)
    rows[j] = dict(rows[j], high=rows[j]["close"] - 0.3, volume=-1.0)
    rows.insert(j, dict(rows[j]))
    return table(rows)


def test_results_are_deterministic_and_json_serializable():
    t = broken_table()
    first = validate_candles(t, stage="canonical").to_dict()
    second = validate_candles(t, stage="canonical").to_dict()
    assert first == second
    text = json.dumps(first, allow_nan=False, sort_keys=True)
    assert json.loads(text) == first
    assert first["suite"] == "candles.canonical" and first["success"] is False
    assert set(first) == {"suite", "success", "row_count", "series_count", "parameters", "checks", "skipped"}
    assert "validation_time" not in text and "run_id" not in text


def test_summary_and_failures():
    result = validate_candles(broken_table(), stage="canonical")
    assert {c.name for c in result.failures()} == {
        "unique.natural_key", "ohlc.high_ge_close", "volume.non_negative", "gaps.within_tolerance"}
    summary = result.summary()
    assert "\n" not in summary
    assert summary.startswith("candles.canonical: FAILED")
    assert "ohlc.high_ge_close" in summary and ETH_1H.label() in summary
    for c in result.failures():
        assert len(c.examples) <= 5 and len(c.series) <= 5


def test_examples_are_capped_at_five():
    rows = all_rows()
    for i in range(12):
        j = find(rows, ETH_1H, i)
        rows[j] = dict(rows[j], volume=-float(i + 1))
    c = validate_candles(table(rows), stage="raw").check("volume.non_negative")
    assert c.unexpected_count == 12
    assert c.examples == (-1.0, -2.0, -3.0, -4.0, -5.0)
    assert c.series == (ETH_1H.label(),)


def test_validation_never_prints(capfd):
    validate_candles(broken_table(), stage="canonical")
    validate_candles(broken_table(), stage="raw")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_programmer_errors_raise():
    t = table(all_rows())
    with pytest.raises(ValueError, match="stage"):
        validate_candles(t, stage="silver")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gap_tolerance"):
        validate_candles(t, stage="canonical", gap_tolerance=-1)
    with pytest.raises(ValueError, match="gap_end"):
        validate_candles(t, stage="canonical", known_gaps=gaps().drop_columns(["gap_end"]))
    with pytest.raises(TypeError):
        validate_candles(t.to_pandas(), stage="raw")  # type: ignore[arg-type]


def test_wrong_types_fail_dtype_checks_and_skip_what_cannot_run():
    t = table(all_rows())
    t = t.set_column(t.schema.get_field_index("open_time"), "open_time", t["open_time"].cast(pa.int64()))
    t = t.set_column(t.schema.get_field_index("high"), "high", t["high"].cast(pa.string()))
    result = validate_candles(t, stage="canonical")
    assert failed(result) == {"schema.open_time_utc", "schema.dtype.high"}, result.summary()
    assert result.check("schema.open_time_utc").observed == "Int64"  # pandas dtype of arrow int64
    assert {"order.series_time", "grid.aligned", "gaps.within_tolerance", "ohlc.high_ge_close",
            "price.positive.high"} <= set(result.skipped)
    assert "unique.natural_key" not in result.skipped and "not_null.high" not in result.skipped
