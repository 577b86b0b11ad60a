"""Deterministic long/flat trading simulation."""

import json

import numpy as np
import pandas as pd
import pytest

from coinline.evaluation import simulate, target_weights

H = 3_600_000
COSTS = {"fee_bps": 10.0, "slippage_bps": 5.0, "max_position": 0.2, "max_exposure": 1.0}


def _frames(p, o, c, times=None):
    times = times if times is not None else [i * H for i in range(len(p))]
    cols = ["A", "B"]
    return (pd.DataFrame(p, index=times, columns=cols), pd.DataFrame(o, index=times, columns=cols),
            pd.DataFrame(c, index=times, columns=cols))


def test_hand_checked_three_bars():
    sig, opn, cls = _frames(
        p=[[0.6, 0.4], [0.6, 0.7], [0.9, 0.9]],
        o=[[100.0, 50.0], [110.0, 50.0], [99.0, 55.0]],   # next bar's open = fill price
        c=[[101.0, 49.0], [108.0, 51.0], [1e9, 1e9]],     # only the final mark could use closes
    )
    r = simulate(sig, opn, cls, **COSTS)
    # period 0: buy A 0.2 at 100 (cost 0.0015*0.2), A -> 110 (+10%)
    e1 = (1 - 0.0003) * (1 + 0.2 * 0.10)
    # period 1: add B 0.2 at 50 (cost 0.0003); A 110 -> 99 (-10%), B 50 -> 55 (+10%); row 2 fill = exit price
    e2 = e1 * (1 - 0.0003) * (1 + 0.2 * -0.10 + 0.2 * 0.10)
    assert r.equity_times_ms == [0, H, 2 * H]
    assert r.equity_values == pytest.approx([1.0, e1, e2])
    assert r.total_return == pytest.approx(e2 - 1)
    assert r.n_periods == 2  # the signal on the final row has no later price: not executed
    assert r.turnover == pytest.approx(0.4 / 2)
    assert r.n_trades == 2
    assert r.hit_rate == pytest.approx(0.5)
    assert r.max_drawdown == pytest.approx(1 - e2 / e1)
    assert r.max_gross_exposure == pytest.approx(0.4) and r.max_position_observed == pytest.approx(0.2)
    assert r.per_symbol["A"]["gross"] == pytest.approx(0.2 * 0.10 + 0.2 * -0.10)
    assert r.per_symbol["B"]["cost"] == pytest.approx(0.0003)
    assert r.per_symbol["A"]["periods_held"] == 2 and r.per_symbol["B"]["n_trades"] == 1
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["within_limits"] is True and d["limits"] == {"max_position": 0.2, "max_exposure": 1.0}
    # Sharpe: 1h bars, 1-bar periods -> 8760 periods a year
    rets = np.array([e1 - 1, e2 / e1 - 1])
    assert r.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * np.sqrt(8760))


def test_final_period_marked_at_close_and_missing_next_open():
    # horizon 2 on 4 rows: decisions at rows 0 and 2; the last period ends at row 3's close
    sig, opn, cls = _frames(
        p=[[0.6, 0.0], [0.0, 0.0], [0.6, 0.0], [0.0, 0.0]],
        o=[[100.0, 1.0], [999.0, 1.0], [120.0, 1.0], [np.nan, np.nan]],
        c=[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [90.0, 1.0]],
    )
    r = simulate(sig, opn, cls, **COSTS, horizon_bars=2)
    e1 = (1 - 0.0003) * (1 + 0.2 * 0.2)          # 100 -> 120 (row 1's open is inside the period: unused)
    e2 = e1 * (1 + 0.2 * (90 / 120 - 1))         # held, no trade; marked at the final close
    assert r.equity_times_ms == [0, 2 * H, 3 * H]
    assert r.equity_values == pytest.approx([1.0, e1, e2])
    assert r.params["periods_per_year"] == pytest.approx(8760 / 2)
    # horizon 1 on live data: the final row's next open is missing, the previous period exits at its close
    sig1, opn1, cls1 = _frames(p=[[0.6, 0.0], [0.6, 0.0]], o=[[100.0, 1.0], [np.nan, np.nan]],
                               c=[[1.0, 1.0], [105.0, 1.0]])
    r1 = simulate(sig1, opn1, cls1, **COSTS)
    assert r1.equity_values == pytest.approx([1.0, (1 - 0.0003) * (1 + 0.2 * 0.05)])


def test_exposure_scaling():
    assert target_weights(np.full(10, 0.9), threshold=0.55, max_position=0.2, max_exposure=1.0) == \
        pytest.approx(np.full(10, 0.1))
    w = target_weights(np.array([0.9, 0.9, 0.9, 0.1, np.nan]), threshold=0.55, max_position=0.3,
                       max_exposure=0.5)
    assert w == pytest.approx([0.5 / 3] * 3 + [0.0, 0.0])
    n = 6
    syms = [f"S{i}" for i in range(n)]
    times = [i * H for i in range(5)]
    sig = pd.DataFrame(0.8, index=times, columns=syms)
    px = pd.DataFrame(100.0, index=times, columns=syms)
    r = simulate(sig, px, px, fee_bps=0, slippage_bps=0, max_position=0.3, max_exposure=0.9)
    assert r.max_gross_exposure == pytest.approx(0.9)
    assert r.max_position_observed == pytest.approx(0.15)
    assert r.weights.to_numpy() == pytest.approx(np.full((4, n), 0.15))


def test_zero_signals_give_flat_equity():
    rng = np.random.default_rng(0)
    n = 30
    px = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, 2)), axis=0))
    p = np.where(rng.random((n, 2)) < 0.5, 0.3, np.nan)  # below threshold or missing
    sig, opn, cls = _frames(p, px, px)
    r = simulate(sig, opn, cls, **COSTS)
    assert r.equity_values == [1.0] * n
    assert r.turnover == 0.0 and r.n_trades == 0 and r.total_return == 0.0
    assert r.sharpe == 0.0 and r.max_drawdown == 0.0 and r.hit_rate is None


def _random_case(seed, n=60, k=4):
    rng = np.random.default_rng(seed)
    times = [i * H for i in range(n)]
    syms = [f"C{i}" for i in range(k)]
    opn = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, k)), axis=0)), index=times, columns=syms)
    cls = opn * np.exp(rng.normal(0, 0.005, (n, k)))
    sig = pd.DataFrame(rng.random((n, k)), index=times, columns=syms)
    return sig, opn, cls


@pytest.mark.parametrize("horizon", [1, 3])
def test_no_look_ahead(horizon):
    sig, opn, cls = _random_case(1)
    base = simulate(sig, opn, cls, **COSTS, horizon_bars=horizon)
    cut = 30  # change everything strictly after row `cut`
    sig2, opn2, cls2 = sig.copy(), opn.copy(), cls.copy()
    sig2.iloc[cut + 1:] = 1.0 - sig2.iloc[cut + 1:]
    opn2.iloc[cut + 1:] *= 1.5
    cls2.iloc[cut + 1:] *= 0.5
    changed = simulate(sig2, opn2, cls2, **COSTS, horizon_bars=horizon)
    t_cut = cut * H
    past = [v for t, v in zip(base.equity_times_ms, base.equity_values, strict=True) if t <= t_cut]
    past2 = [v for t, v in zip(changed.equity_times_ms, changed.equity_values, strict=True) if t <= t_cut]
    assert len(past) > 5 and past == past2
    assert base.equity_values[-1] != changed.equity_values[-1]
    # closes before the final row never matter
    cls3 = cls.copy()
    cls3.iloc[:-1] *= 3.0
    assert simulate(sig, opn, cls3, **COSTS, horizon_bars=horizon).equity_values == base.equity_values


@pytest.mark.parametrize("seed", range(5))
def test_limits_never_exceeded(seed):
    rng = np.random.default_rng(seed)
    sig, opn, cls = _random_case(seed, k=8)
    max_position = float(rng.uniform(0.05, 0.5))
    max_exposure = float(rng.uniform(0.1, 1.0))
    r = simulate(sig, opn, cls, fee_bps=10, slippage_bps=5, max_position=max_position,
                 max_exposure=max_exposure, threshold=0.3)
    w = r.weights.to_numpy()
    assert w.max() <= max_position + 1e-12 and w.sum(axis=1).max() <= max_exposure + 1e-12
    assert r.max_position_observed <= max_position + 1e-12
    assert r.max_gross_exposure <= max_exposure + 1e-12
    assert r.within_limits and r.to_dict()["within_limits"]
    assert np.all(w >= 0)


def test_datetime_index_matches_ms_index_and_naive_is_rejected():
    sig, opn, cls = _random_case(2, n=20)
    r_ms = simulate(sig, opn, cls, **COSTS)
    dt = pd.to_datetime(sig.index, unit="ms", utc=True)
    r_dt = simulate(sig.set_axis(dt), opn.set_axis(dt), cls.set_axis(dt), **COSTS)
    assert r_dt.to_dict() == r_ms.to_dict()
    naive = pd.to_datetime(sig.index, unit="ms")
    with pytest.raises(ValueError, match="naive"):
        simulate(sig.set_axis(naive), opn.set_axis(naive), cls.set_axis(naive), **COSTS)


def test_misaligned_frames_raise():
    sig, opn, cls = _random_case(3, n=10)
    with pytest.raises(ValueError, match="opens_next"):
        simulate(sig, opn.iloc[:-1], cls, **COSTS)
    with pytest.raises(ValueError, match="closes"):
        simulate(sig, opn, cls.drop(columns=["C0"]), **COSTS)
