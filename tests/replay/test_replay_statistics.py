"""The simulated market's statistics: a martingale at every interval (no lag-1 autocorrelation beyond
sampling error), fat tails, volatility clustering, a market factor, volume that follows volatility,
levels anchored at the profiles - and the explicitly named positive control, whose planted signal is
measurable. Also exact aggregation whatever interval is asked first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from coinline.replay import SimulatedMarket
from coinline.replay.paths import ANCHOR_BLOCK, BLOCK_DAYS, ORIGIN_DAY, POSITIVE_CONTROL
from coinline.timeframes import interval_seconds
from coinline.universe.model import load_universe

NOW = datetime(2026, 1, 12, 10, 17, 23, tzinfo=UTC)
INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
DAYS = {"1m": 6, "5m": 30, "15m": 60, "30m": 120, "1h": 400, "4h": 800, "1d": 800}


@pytest.fixture(scope="module")
def universe():
    return load_universe("UNIVERSE_V1_TOP30_NON_STABLE")


@pytest.fixture(scope="module")
def market(universe):
    return SimulatedMarket(universe, seed=7, now=NOW, history_days=800)


@pytest.fixture(scope="module")
def control(universe):
    return SimulatedMarket(universe, seed=7, now=NOW, history_days=800, market_profile="positive-control")


def log_returns(m: SimulatedMarket, interval: str, days: int, quote: str = "USD") -> np.ndarray:
    """Close-to-close log returns, (coins, time), over the last `days` days."""
    out = []
    for sym, q in m.pairs():
        if q == quote:
            a = m.arrays(sym, q, interval, NOW - timedelta(days=days), NOW)
            out.append(np.diff(np.log(a.close)))
    n = min(len(r) for r in out)
    return np.array([r[-n:] for r in out])


def lag1(r: np.ndarray) -> tuple[float, float]:
    """Pooled lag-1 autocorrelation and its standard error, robust to heteroskedasticity and to the
    coins moving together (products summed across coins at each time, then treated as independent)."""
    x = r - r.mean(axis=1, keepdims=True)
    per_time = (x[:, 1:] * x[:, :-1]).sum(axis=0)
    den = (x * x).sum()
    return float(per_time.sum() / den), float(np.sqrt((per_time**2).sum()) / den)


@pytest.mark.parametrize("interval", INTERVALS)
def test_martingale_has_no_lag1_autocorrelation(market, interval):
    rho, se = lag1(log_returns(market, interval, DAYS[interval]))
    assert se < 0.03, se                       # enough data to see the old artifact (-0.10 .. -0.14 at 1h)
    assert abs(rho) < 3 * se, (interval, rho, se)


def test_martingale_non_usd_quotes_too(market):
    for quote in ("CAD", "USDC"):
        rho, se = lag1(log_returns(market, "1h", 90, quote))
        assert abs(rho) < 3 * se, (quote, rho, se)


def test_positive_control_plants_a_measurable_lag1(market, control):
    assert market.dynamics.name == "martingale" and control.dynamics is POSITIVE_CONTROL
    rho, se = lag1(log_returns(control, "1h", DAYS["1h"]))
    assert rho > 5 * se
    assert abs(rho - POSITIVE_CONTROL.lag1) < 3 * se, (rho, se)
    # the same draws otherwise: same volatility, same levels at the anchor
    a, b = market.arrays("BTC", "USD", "1h"), control.arrays("BTC", "USD", "1h")
    assert not np.array_equal(a.close, b.close)
    assert np.corrcoef(np.diff(np.log(a.close)), np.diff(np.log(b.close)))[0, 1] > 0.95


def test_unknown_profile_is_refused(universe):
    with pytest.raises(ValueError, match="positive-control"):
        SimulatedMarket(universe, seed=7, now=NOW, market_profile="trending")


def test_market_factor_correlates_coins(market):
    r = log_returns(market, "1h", 120)
    c = np.corrcoef(r)
    off = c[~np.eye(len(c), dtype=bool)]
    assert 0.3 < off.mean() < 0.85 and off.min() > 0.1
    rm = log_returns(market, "1m", 3)
    assert np.corrcoef(rm)[0, 1] > 0.3                       # the factor reaches the minutes too


def test_volatility_clusters_and_tails_are_fat(market):
    for interval, days in (("1h", 400), ("1d", 800)):
        r = log_returns(market, interval, days)
        sq = r * r - (r * r).mean(axis=1, keepdims=True)
        acf_sq = (sq[:, 1:] * sq[:, :-1]).sum() / (sq * sq).sum()
        assert acf_sq > 0.02, (interval, acf_sq)
        a = np.abs(r) - np.abs(r).mean(axis=1, keepdims=True)
        assert (a[:, 1:] * a[:, :-1]).sum() / (a * a).sum() > 0.05
    r = log_returns(market, "1h", 400)
    kurt = ((r - r.mean(axis=1, keepdims=True)) ** 4).mean(axis=1) / r.var(axis=1) ** 2
    assert np.median(kurt) > 4.5


def test_volume_follows_volatility(market):
    for sym in ("BTC", "SOL", "SHIB"):
        a = market.arrays(sym, "USD", "1h", NOW - timedelta(days=120), NOW)
        moved = np.abs(np.log(a.close / a.open))
        rng_ = np.log(a.high / a.low)
        assert np.corrcoef(a.volume, moved)[0, 1] > 0.2
        assert np.corrcoef(a.volume, rng_)[0, 1] > 0.3
        m = market.arrays(sym, "USD", "1m", NOW - timedelta(days=2), NOW)
        assert np.corrcoef(m.volume, np.abs(np.log(m.close / m.open)))[0, 1] > 0.1
    btc = market.arrays("BTC", "USD", "1d")
    turnover = np.median(btc.volume * btc.close)
    assert 1e8 < turnover < 2e9                              # the profile's 400M a day, roughly


def test_levels_start_at_the_profile_level_at_the_anchor(universe):
    anchor = datetime.fromtimestamp((ORIGIN_DAY + ANCHOR_BLOCK * BLOCK_DAYS) * 86400, tz=UTC)
    m = SimulatedMarket(universe, seed=3, now=anchor + timedelta(days=2), history_days=5)
    for sym in ("BTC", "ETH", "SHIB", "XRP"):
        a = m.arrays(sym, "USD", "1h", anchor, anchor + timedelta(hours=1))
        assert a.open[0] == pytest.approx(m.profile(sym).level, rel=1e-5)


def _aggregate(fine, step_ms, vd):
    key = fine.open_time // step_ms * step_ms
    starts = np.flatnonzero(np.r_[True, np.diff(key) != 0])
    ends = np.r_[starts[1:], len(key)] - 1
    units = np.round(fine.volume * 10**vd).astype(np.int64)
    return (key[starts], fine.open[starts], np.maximum.reduceat(fine.high, starts),
            np.minimum.reduceat(fine.low, starts), fine.close[ends], np.add.reduceat(units, starts),
            np.add.reduceat(fine.trade_count, starts))


@pytest.mark.parametrize("sym,q", [("ETH", "USD"), ("XRP", "CAD"), ("SHIB", "USDC")])
def test_minutes_aggregate_to_every_interval_whatever_is_asked_first(universe, sym, q):
    start, end = NOW - timedelta(days=40), NOW                 # crosses a block boundary and the gaps
    coarse_first = SimulatedMarket(universe, seed=7, now=NOW, history_days=120, cad_usdc_history_days=90)
    fine_first = SimulatedMarket(universe, seed=7, now=NOW, history_days=120, cad_usdc_history_days=90)
    coarse = {iv: coarse_first.arrays(sym, q, iv, start, end) for iv in reversed(INTERVALS)}
    fine = {iv: fine_first.arrays(sym, q, iv, start, end) for iv in INTERVALS}
    vd = coarse_first.volume_decimals(sym)
    for iv in INTERVALS:
        for f in ("open_time", "open", "high", "low", "close", "volume", "trade_count"):
            assert np.array_equal(getattr(coarse[iv], f), getattr(fine[iv], f)), (iv, f)
    minutes = fine["1m"]
    for iv in INTERVALS[1:]:
        got = _aggregate(minutes, interval_seconds(iv) * 1000, vd)
        want = coarse[iv]
        sel = np.isin(got[0], want.open_time)            # drop the partial groups at both ends
        assert sel.sum() == len(want) > 0
        want_cols = (want.open_time, want.open, want.high, want.low, want.close,
                     np.round(want.volume * 10**vd).astype(np.int64), want.trade_count)
        for g, w in zip(got, want_cols, strict=True):
            assert np.array_equal(g[sel], w), iv


def test_a_later_market_serves_the_same_past(universe, market):
    later = SimulatedMarket(universe, seed=7, now=NOW + timedelta(days=45), history_days=900)
    end = NOW.replace(minute=0, second=0)                  # the candle open at NOW is closed later on
    a = market.arrays("SOL", "USD", "1h", NOW - timedelta(days=60), end)
    b = later.arrays("SOL", "USD", "1h", NOW - timedelta(days=60), end)
    for f in ("open_time", "open", "high", "low", "close", "volume", "trade_count"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_after_a_no_trade_gap_the_price_resumes_where_it_stopped(market):
    for sym in ("BTC", "ETH", "XRP", "SOL"):
        for iv in INTERVALS:
            a = market.arrays(sym, "CAD", iv)
            after = np.flatnonzero(np.diff(a.open_time) > interval_seconds(iv) * 1000) + 1
            assert len(after), (sym, iv)
            assert np.array_equal(a.open[after], a.close[after - 1]), (sym, iv)
