"""Kraken Trades -> candles: page aggregation, cursor resumption, the open candle, real captures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from coinline.errors import BadDataError, IncompletePageError, RateLimitedError
from coinline.providers.base import CANDLE_SCHEMA, SeriesKey, SeriesRef
from coinline.providers.http import Gateway, RetryPolicy
from coinline.providers.kraken import kraken_client
from coinline.providers.kraken_trades import (
    KrakenTradesSource,
    Trades,
    aggregate_trades,
    parse_trade_rows,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
KRAKEN = SHARED / "data" / "api" / "kraken"
T0 = 1_700_000_000 - 1_700_000_000 % 86400  # a UTC midnight
NS = 1_000_000_000
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def capture(rel: str) -> dict:
    path = KRAKEN / rel
    if not path.exists():
        pytest.skip(f"shared capture {path} not present")
    return json.loads(path.read_text())


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def make_trades(seed: int = 7, n: int = 600, hours: int = 10) -> list[tuple[int, float, float, int]]:
    """(time ns, price, volume, trade_id), sorted; a gap hour, same-time trades, boundary trades."""
    rng = np.random.default_rng(seed)
    ms_offsets = np.sort(rng.integers(0, hours * 3600 * 1000, n))
    ms_offsets = ms_offsets[(ms_offsets < 3 * 3600_000) | (ms_offsets >= 4 * 3600_000)]  # hour 3 has no trades
    times = [T0 * NS + int(m) * 1_000_000 + 500_000 for m in ms_offsets]
    # three trades on a boundary: 1 ns apart (Kraken's `last` cursor tells them apart) but the same
    # float `time` on the wire, so (time, trade_id) order decides open/close
    times += [T0 * NS + 2 * 3600 * NS + k for k in range(3)]
    times.sort()
    prices = 100 + np.cumsum(rng.normal(0, 0.5, len(times)))
    vols = rng.uniform(0.001, 3, len(times)).round(8)
    return [(t, round(float(p), 5), float(v), 1000 + i) for i, (t, p, v) in enumerate(zip(times, prices, vols, strict=True))]


def trades_of(rows: list[tuple[int, float, float, int]]) -> Trades:
    return Trades(np.array([r[0] / NS for r in rows]), np.array([r[1] for r in rows]),
                  np.array([r[2] for r in rows]), np.array([r[3] for r in rows], np.int64))


class TradeServer:
    """Kraken `Trades` over a list of trades: up to `page_size` trades with time > since (ns)."""

    def __init__(self, trades, page_size: int = 1000, pair: str = "XXBTZUSD", fail_first: int = 0):
        self.trades, self.page_size, self.pair = trades, page_size, pair
        self.served: list[tuple[int, list[int]]] = []  # (since, time ns of each served trade)
        self.fail_first = fail_first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/0/public/Trades" and request.url.params["pair"] == self.pair
        if self.fail_first:
            self.fail_first -= 1
            return httpx.Response(200, json={"error": ["EGeneral:Too many requests"]})
        since = int(request.url.params["since"])
        page = [t for t in self.trades if t[0] > since][: self.page_size]
        self.served.append((since, [t[0] for t in page]))
        rows = [[f"{p:.5f}", f"{v:.8f}", ns / NS, "b", "l", "", tid] for ns, p, v, tid in page]
        last = str(page[-1][0]) if page else str(since)
        return httpx.Response(200, json={"error": [], "result": {self.pair: rows, "last": last}})


def source(handler, clock: datetime = LATER, **kw) -> tuple[KrakenTradesSource, Gateway]:
    client = kraken_client("https://api.kraken.test", transport=httpx.MockTransport(handler))
    gw = Gateway("kraken", client, policy=RetryPolicy(max_attempts=4), sleep=lambda s: None)
    return KrakenTradesSource(gw, clock=lambda: clock, **kw), gw


def ref(interval: str, pair: str = "XXBTZUSD") -> SeriesRef:
    return SeriesRef(SeriesKey("kraken-trades", "KRAKEN", "BTC", "USD", interval), pair)


def drain(src: KrakenTradesSource, r: SeriesRef, cursor: datetime, end: datetime, limit: int = 500):
    pages = []
    for _ in range(limit):
        page = src.fetch(r, cursor, end)
        pages.append(page)
        if page.done:
            return pages
        assert page.next_cursor is not None and page.next_cursor >= cursor
        cursor = page.next_cursor
    raise AssertionError("fetch loop did not finish")


def rows_of(pages) -> list[dict]:
    out = []
    for p in pages:
        assert p.candles.schema == CANDLE_SCHEMA
        out += p.candles.to_pylist()
    return out


def one_shot(trades, interval: str) -> list[dict]:
    df = aggregate_trades(trades_of(trades), interval)
    return [{"open_time": at(int(r.open_time) / 1000), "open": r.open, "high": r.high, "low": r.low,
             "close": r.close, "volume": r.volume, "trade_count": int(r.trade_count)} for r in df.itertuples()]


def strip(rows: list[dict]) -> list[dict]:
    keep = ("open_time", "open", "high", "low", "close", "volume", "trade_count")
    return [{k: r[k] for k in keep} for r in rows]


# ---------------------------------------------------------------------------------------------- aggregation


@pytest.mark.parametrize(("interval", "page_size", "max_pages"), [
    ("1h", 1000, 50), ("1h", 25, 50), ("15m", 13, 3), ("1m", 7, 2), ("4h", 40, 50),
])
def test_paged_aggregation_equals_one_shot(interval, page_size, max_pages):
    trades = make_trades()
    src, _ = source(TradeServer(trades, page_size), max_pages_per_fetch=max_pages)
    got = strip(rows_of(drain(src, ref(interval), at(T0), at(T0 + 86400))))
    assert got == one_shot(trades, interval)  # exact: each candle is aggregated from all its own trades
    hour3 = [r for r in got if at(T0 + 3 * 3600) <= r["open_time"] < at(T0 + 4 * 3600)]
    assert interval == "4h" or hour3 == []  # no trades -> no candle, nothing filled


def test_aggregation_order_is_time_then_trade_id():
    t = Trades(np.array([10.0, 10.0, 5.0, 70.0]), np.array([2.0, 3.0, 1.0, 9.0]), np.array([1.0, 1.0, 1.0, 1.0]),
               np.array([8, 7, 9, 10], np.int64))
    df = aggregate_trades(t, "1m")
    assert df["open_time"].tolist() == [0, 60_000]
    first = df.iloc[0]
    assert (first.open, first.close, first.high, first.low, first.trade_count) == (1.0, 2.0, 3.0, 1.0, 3)
    assert aggregate_trades(Trades.concat([]), "1h").empty


@pytest.mark.parametrize("next_days", [1, 2])
def test_huge_candle_is_folded_and_still_completes(next_days):
    # 120 trades in one day candle, 5 trades a page, 2 pages held at once: folded into a partial.
    trades = [(T0 * NS + i * 600 * NS + 1, 100.0 + (i % 17), 0.1 + i / 1000, i) for i in range(120)]
    trades += [((T0 + d * 86400 + 5) * NS, 50.0 + d, 1.0, 999 + d) for d in range(1, next_days + 1)]
    server = TradeServer(trades, page_size=5)
    src, _ = source(server, clock=at(T0 + next_days * 86400 + 6), max_pages_per_fetch=2)
    page = src.fetch(ref("1d"), at(T0), at(T0 + 10 * 86400))
    got = page.candles.to_pylist()
    expected = one_shot(trades, "1d")[:next_days]  # the newest day is still open
    assert len(got) == next_days
    for candle, exp in zip(got, expected, strict=True):
        assert {k: candle[k] for k in ("open_time", "open", "high", "low", "close", "trade_count")} == \
            {k: exp[k] for k in ("open_time", "open", "high", "low", "close", "trade_count")}
        assert candle["volume"] == pytest.approx(exp["volume"], rel=1e-12)
    assert page.next_cursor == at(T0 + next_days * 86400) and not page.done
    assert page.request["pages"] == len(server.served) == 25


# ---------------------------------------------------------------------------------------------- cursors


def test_resumption_rereads_no_complete_candle():
    trades = make_trades()
    server = TradeServer(trades, page_size=20)
    src, _ = source(server, max_pages_per_fetch=2)
    cursor, emitted = at(T0), set()
    step = 3600
    while True:
        before = len(server.served)
        page = src.fetch(ref("1h"), cursor, at(T0 + 86400))
        for _, served in server.served[before:]:
            buckets = {(ns // NS) // step * step for ns in served}
            assert not buckets & emitted, "a complete candle's trades were read again"
        new = {int(t.timestamp()) for t in page.candles.column("open_time").to_pylist()}
        assert not new & emitted
        emitted |= new
        assert page.next_cursor is not None and page.next_cursor >= cursor
        if page.done:
            break
        cursor = page.next_cursor
    assert emitted == {int(r["open_time"].timestamp()) for r in one_shot(trades, "1h")}


def test_since_is_cursor_in_nanoseconds_and_follows_last():
    trades = make_trades()
    server = TradeServer(trades, page_size=100)
    src, _ = source(server, max_pages_per_fetch=3)
    page = src.fetch(ref("1h"), at(T0 + 7200), at(T0 + 86400))
    sinces = [s for s, _ in server.served]
    assert sinces[0] == (T0 + 7200) * NS - 1
    assert sinces[1] == server.served[0][1][-1]  # the next page starts at the previous `last`
    assert page.request["since"] == sinces[0] and page.request["pages"] == len(sinces)
    # the three trades exactly on T0+2h belong to the 02:00 candle
    assert page.candles.column("open_time").to_pylist()[0] == at(T0 + 7200)


def test_cursor_off_grid_rounds_up():
    trades = make_trades()
    src, _ = source(TradeServer(trades))
    page = src.fetch(ref("1h"), at(T0 + 1), at(T0 + 6 * 3600))
    assert page.candles.column("open_time").to_pylist()[0] == at(T0 + 3600)


def test_open_candle_is_never_emitted():
    trades = make_trades()
    last_ns = trades[-1][0]
    last_bucket = (last_ns // NS) // 3600 * 3600
    # The feed is live: the clock is just after the last trade, so its candle is still open.
    server = TradeServer(trades, page_size=1000)
    src, _ = source(server, clock=at(last_ns / NS + 1))
    pages = drain_until_stuck(src, ref("1h"), at(T0), at(T0 + 86400))
    times = {r["open_time"] for r in rows_of(pages)}
    assert at(last_bucket) not in times and at(last_bucket - 3600) in times
    assert pages[-1].next_cursor == at(last_bucket) and not pages[-1].done
    # Within the settle margin after the candle's close it is still withheld ...
    src, _ = source(server, clock=at(last_bucket + 3600 + 5))
    assert src.fetch(ref("1h"), at(last_bucket), at(T0 + 86400)).candles.num_rows == 0
    # ... and once Kraken has had time to publish every trade of it, it is complete.
    src, _ = source(server, clock=at(last_bucket + 3600 + 11))
    page = src.fetch(ref("1h"), at(last_bucket), at(T0 + 86400))
    assert page.candles.column("open_time").to_pylist() == [at(last_bucket)]
    assert page.next_cursor == at(last_bucket + 3600)


def drain_until_stuck(src, r, cursor, end):
    pages = []
    for _ in range(100):
        page = src.fetch(r, cursor, end)
        pages.append(page)
        if page.done or page.next_cursor == cursor:
            return pages
        cursor = page.next_cursor
    raise AssertionError("no fixpoint")


def test_end_stops_reading_and_cuts_candles():
    trades = make_trades()
    server = TradeServer(trades, page_size=20)
    src, _ = source(server, max_pages_per_fetch=1000)
    end = at(T0 + 2 * 3600 + 1800)  # off grid: the 02:00 candle opens before end and is wanted
    page = src.fetch(ref("1h"), at(T0), end)
    assert page.done and page.next_cursor == at(T0 + 3 * 3600)
    assert page.candles.column("open_time").to_pylist() == [at(T0), at(T0 + 3600), at(T0 + 7200)]
    served_ns = [ns for _, s in server.served for ns in s]
    assert max(served_ns) < (T0 + 5 * 3600) * NS  # stopped soon after passing 03:00, not the whole day
    # nothing to read when cursor >= end
    before = len(server.served)
    empty = src.fetch(ref("1h"), at(T0 + 7200), at(T0 + 7200))
    assert empty.done and empty.candles.num_rows == 0 and len(server.served) == before


def test_earliest_is_first_trade_candle():
    server = TradeServer(make_trades(), page_size=50)
    src, _ = source(server)
    assert src.earliest(ref("1d")) == at(T0)
    assert server.served[0][0] == 0
    assert source(TradeServer([]))[0].earliest(ref("1h")) is None


def test_rate_limited_trades_page_is_retried():
    server = TradeServer(make_trades(), page_size=1000, fail_first=2)
    src, gw = source(server)
    page = src.fetch(ref("1h"), at(T0), at(T0 + 86400))
    assert page.done and gw.retries_made == 2
    server = TradeServer(make_trades(), fail_first=10)
    with pytest.raises(RateLimitedError, match="provider=kraken series=kraken-trades:KRAKEN:BTC-USD:1h"):
        source(server)[0].fetch(ref("1h"), at(T0), at(T0 + 86400))


# ---------------------------------------------------------------------------------------------- captures


class Sequence:
    def __init__(self, *bodies):
        self.bodies, self.requests = list(bodies), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.bodies.pop(0))


class RepeatingServer(TradeServer):
    """A TradeServer whose next `bad` pages are damaged by `damage(rows, last)` -> (rows, last)."""

    def __init__(self, trades, damage, bad: int, **kw):
        super().__init__(trades, **kw)
        self.damage, self.bad, self.previous = damage, bad, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = super().__call__(request)
        body = response.json()
        rows, last = body["result"][self.pair], body["result"]["last"]
        if self.bad:
            self.bad -= 1
            rows, last = self.damage(rows, last, self.previous)
        else:
            self.previous = rows
        return httpx.Response(200, json={"error": [], "result": {self.pair: rows, "last": last}})


DAMAGES = {
    "repeats-the-page-before": lambda rows, last, previous: (previous[-3:] + rows, last),
    "repeats-its-own-row": lambda rows, last, previous: (rows[:1] + rows, last),
    "empty-but-last-advanced": lambda rows, last, previous: ([], last),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_trades_pages_are_retried_and_no_trade_is_counted_twice(damage):
    trades = make_trades()
    server = RepeatingServer(trades, DAMAGES[damage], bad=0, page_size=50)
    src, gw = source(server)
    src.fetch(ref("1h"), at(T0), at(T0 + 3600))          # one clean page first: `previous` is set
    server.bad = 2
    got = strip(rows_of(drain(src, ref("1h"), at(T0 + 3600), at(T0 + 86400))))
    assert got == [r for r in one_shot(trades, "1h") if r["open_time"] >= at(T0 + 3600)]
    assert gw.retries_made == 2


def test_trades_page_still_empty_with_an_advanced_last_gives_up_naming_the_range():
    trades = make_trades()
    server = RepeatingServer(trades, DAMAGES["empty-but-last-advanced"], bad=10, page_size=50)
    src, gw = source(server)
    with pytest.raises(IncompletePageError, match="gave up after 4 attempts: empty page but Kraken's last=") as info:
        src.fetch(ref("1h"), at(T0), at(T0 + 86400))
    assert info.value.missing_from == at(T0) and info.value.missing_until > at(T0)
    assert gw.retries_made == 3


def test_docs_example_trades_aggregate():
    body = capture("docs_examples/Trades_XXBTZUSD_docs_example.json")
    rows = body["result"]["XXBTZUSD"]
    t = parse_trade_rows(rows, provider="kraken", series="s", request="r")
    assert t.trade_id.tolist() == [61044952, 61044953, 61044956] and t.price[0] == 30243.4
    empty = {"error": [], "result": {"XXBTZUSD": [], "last": body["result"]["last"]}}
    seq = Sequence(body, empty)
    src, _ = source(seq)
    page = src.fetch(ref("1m"), at(1688669580), at(1688670000))
    [c] = page.candles.to_pylist()
    assert c["open_time"] == at(1688669580) and c["trade_count"] == 3
    assert (c["open"], c["high"], c["low"], c["close"]) == (30243.4, 30243.4, 30243.3, 30243.3)
    assert c["volume"] == pytest.approx(0.34507674 + 0.00376960 + 0.01235716)
    assert seq.requests[0].url.params["since"] == str(1688669580 * NS - 1)
    assert seq.requests[1].url.params["since"] == body["result"]["last"]
    assert page.done and page.next_cursor == at(1688670000)


def test_ccxt_trades_with_extra_element():
    body = capture("ccxt_fixture/Trades_XBTUSDT_ccxt.json")
    [row] = body["result"]["XBTUSDT"]
    assert len(row) == 8
    t = parse_trade_rows(body["result"]["XBTUSDT"], provider="kraken", series="s", request="r")
    assert t.trade_id.tolist() == [6324366] and t.volume[0] == 0.010309
    seq = Sequence(body, {"error": [], "result": {"XBTUSDT": [], "last": body["result"]["last"]}})
    src, _ = source(seq)
    page = src.fetch(ref("1m", "XBTUSDT"), at(1710327900), LATER)
    assert page.candles.num_rows == 1 and page.candles.column("close").to_pylist() == [73324.4]


def test_rows_without_trade_id_use_arrival_order():
    rows = [["2.0", "1", 10.0, "b", "m", ""], ["1.0", "1", 10.0, "b", "m", ""]]
    t = parse_trade_rows(rows, provider="kraken", series="s", request="r", seq_start=5)
    assert t.trade_id.tolist() == [5, 6]
    df = aggregate_trades(t, "1m")
    assert (df.iloc[0].open, df.iloc[0].close) == (2.0, 1.0)


# ---------------------------------------------------------------------------------------------- bad data


@pytest.mark.parametrize(("row", "match"), [
    (["NaN", "1", 10.0, "b", "m", "", 1], "price"),
    (["-5", "1", 10.0, "b", "m", "", 1], "price"),
    (["5", "-1", 10.0, "b", "m", "", 1], "volume"),
    (["5", "inf", 10.0, "b", "m", "", 1], "volume"),
    (["5", "1", "10.0", "b", "m", "", 1], "time"),
    (["5", "1", -3.0, "b", "m", "", 1], "time"),
    (["5", "1", 10.0, "b", "m", "", "x"], "trade_id"),
    (["5", "1", 10.0], "expected"),
    ([None, "1", 10.0, "b", "m", "", 1], "not a number"),
])
def test_malformed_trade_rows_are_bad_data(row, match):
    good = ["5", "1", 9.0, "b", "m", "", 0]
    body = {"error": [], "result": {"XXBTZUSD": [good, row], "last": "20000000000"}}
    src, _ = source(Sequence(body))
    with pytest.raises(BadDataError, match=match) as info:
        src.fetch(ref("1m"), at(0), at(600))
    text = str(info.value)
    assert "Trades row 1" in text and "provider=kraken" in text and "request=GET /0/public/Trades?pair=XXBTZUSD&since=0" in text


@pytest.mark.parametrize("result", [
    {"XXBTZUSD": [["5", "1", 9.0, "b", "m", "", 0]], "last": "0"},        # cursor did not advance
    {"XXBTZUSD": [["5", "1", 9.0, "b", "m", "", 0]]},                     # no last
    {"XXBTZUSD": [], "XETHZUSD": [], "last": "1"},
    {"XXBTZUSD": [], "last": 1.5},
])
def test_malformed_trade_results_are_bad_data(result):
    src, _ = source(Sequence({"error": [], "result": result}))
    with pytest.raises(BadDataError):
        src.fetch(ref("1m"), at(0), at(600))


def test_capabilities_and_settings():
    caps = KrakenTradesSource.capabilities
    assert (KrakenTradesSource.name, caps.pagination, caps.history, caps.auth_required, caps.page_limit) == \
        ("kraken-trades", "cursor", "full", False, 1000)
    with pytest.raises(ValueError):
        source(TradeServer([]), max_pages_per_fetch=0)
    assert source(TradeServer([]))[0].settle == timedelta(seconds=10)
