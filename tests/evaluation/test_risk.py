"""Risk head scoring: realized variance targets, EWMA / HAR-RV baselines, QLIKE and the joint test."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from coinline.evaluation.risk import (
    HAR_WINDOWS,
    LogHARModel,
    RiskModelError,
    baseline_forecasts,
    ewma_forecast,
    ewma_variance,
    har_components,
    har_fit,
    har_forecast,
    loghar_fit,
    loghar_forecast,
    model_variance_from_abs_move,
    mse_log,
    qlike,
    realized_variance,
    score_variance,
)
from coinline.features.targets import make_targets


def garch(n, seed, omega=1e-6, a=0.05, b=0.94):
    """GARCH(1,1) 1-bar log returns (r1[0] = NaN like a diff of log closes); the default is persistent
    (a + b = 0.99, unconditional sd 1%), as hourly crypto volatility is."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    r = np.empty(n)
    s2 = omega / (1 - a - b)
    for t in range(n):
        r[t] = math.sqrt(s2) * z[t]
        s2 = omega + a * r[t] ** 2 + b * s2
    r[0] = np.nan
    return r


def iid(n, seed, sigma=0.01):
    r = np.random.default_rng(seed).normal(0.0, sigma, n)
    r[0] = np.nan
    return r


def pooled(make, h, n_coins=3, n=4000, n_train=2000):
    """Targets, baseline forecasts and time stamps of several coins on the same clock, test rows only."""
    target, times, fc = [], [], {"constant": [], "ewma": [], "har": []}
    for c in range(n_coins):
        r1 = make(n, seed=100 + c)
        test = np.arange(n_train, n)
        target.append(realized_variance(r1, h)[test])
        times.append(test)
        for k, v in baseline_forecasts(r1, h, np.arange(n_train), test).items():
            fc[k].append(v)
    return np.concatenate(target), {k: np.concatenate(v) for k, v in fc.items()}, np.concatenate(times)


# ------------------------------------------------------------------------------------------- targets


def test_realized_variance_is_the_sum_of_the_next_h_squared_returns_and_nan_at_the_end():
    r1 = iid(50, seed=1)
    rv = realized_variance(r1, 5)
    for t in (0, 7, 44):
        assert rv[t] == pytest.approx(np.sum(r1[t + 1: t + 6] ** 2))
    assert np.all(np.isnan(rv[-5:])) and np.isfinite(rv[-6])
    r1[20] = np.nan                                          # a gap poisons every window containing it
    rv = realized_variance(r1, 5)
    assert np.all(np.isnan(rv[15:20])) and np.isfinite(rv[14]) and np.isfinite(rv[20])
    assert np.all(np.isnan(realized_variance(r1[:3], 5)))


def test_ret_h_alternative_matches_the_targets_module():
    r1 = iid(300, seed=2)
    close = 100 * np.exp(np.nancumsum(r1))
    candles = pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC"),
                            "close": close})
    ret = make_targets(candles, (4,), vol_window=24, interval="1h")["ret_h4"].to_numpy()
    sq = realized_variance(None, 4, ret_h=ret)
    np.testing.assert_allclose(sq, ret ** 2)
    # same horizon, same rows: the h-bar return is the sum of the next h 1-bar returns
    ok = np.isfinite(ret)
    sums = pd.Series(r1).rolling(4).sum().shift(-4).to_numpy()
    np.testing.assert_allclose(ret[ok][1:], sums[ok][1:], atol=1e-12)
    assert np.isnan(sq[-4:]).all()


# ------------------------------------------------------------------------------------------ causality


def test_forecasts_are_causal_by_truncation():
    r1 = garch(1500, seed=3)
    model = har_fit(r1, np.arange(1000), 6)
    full = {"ewma": ewma_variance(r1), "ewma6": ewma_forecast(r1, 6), "har": har_forecast(model, r1, h=6),
            "comp": har_components(r1)}
    for cut in (200, 1001, 1400):
        short = r1[:cut]
        trunc = {"ewma": ewma_variance(short), "ewma6": ewma_forecast(short, 6),
                 "har": har_forecast(model, short), "comp": har_components(short)}
        for k in full:
            np.testing.assert_array_equal(trunc[k], full[k][:cut], err_msg=k)
    assert np.isnan(har_forecast(model, r1)[: max(HAR_WINDOWS) - 1]).all()
    assert np.isfinite(har_forecast(model, r1)[max(HAR_WINDOWS):]).all()
    assert np.isnan(ewma_variance(r1)[:23]).all() and np.isfinite(ewma_variance(r1)[24:]).all()


def test_har_fit_uses_training_rows_only():
    r1 = garch(3000, seed=4)
    train = np.arange(2000)
    base = har_fit(r1, train, 24)
    perturbed = r1.copy()
    perturbed[2000:] *= np.random.default_rng(0).uniform(0.2, 5.0, 1000)   # every test-row return
    assert har_fit(perturbed, train, 24) == base
    mask = np.zeros(3000, dtype=bool)
    mask[:2000] = True
    assert har_fit(r1, mask, 24) == base                                      # a mask means the same rows
    # usable rows: the 168-bar component is known from row 168 (r1[0] is NaN), and rows whose target would
    # read test returns (t + 24 > 1999) are purged
    assert base.n_train == (2000 - 1 - 24) - max(HAR_WINDOWS) + 1
    changed = r1.copy()
    changed[1500] *= 3.0                                                      # a training return does count
    assert har_fit(changed, train, 24).coef != base.coef
    with pytest.raises(ValueError, match="fitted for h=24"):
        har_forecast(base, r1, h=1)


# ---------------------------------------------------------------------------------------------- losses


def test_qlike_is_minimised_at_the_true_variance():
    sigma2 = 4e-4
    s2 = sigma2 * np.random.default_rng(5).standard_normal(100_000) ** 2
    grid = sigma2 * np.linspace(0.5, 2.0, 76)
    losses = np.array([qlike(s2, f).mean() for f in grid])
    best = grid[np.argmin(losses)]
    assert best == pytest.approx(sigma2, rel=0.02)
    # exactly: mean QLIKE = mean(s2)/f + log f + const, minimised at f = mean(s2)
    f_star = s2.mean()
    assert qlike(s2, f_star).mean() < min(qlike(s2, f_star * 1.001).mean(), qlike(s2, f_star * 0.999).mean())
    assert qlike(np.array([2.0]), np.array([2.0]))[0] == 0.0 and np.all(qlike(s2, sigma2) >= 0)
    assert mse_log(np.array([1.0, math.e]), np.array([1.0, 1.0])).tolist() == pytest.approx([0.0, 1.0])


def test_model_variance_from_abs_move():
    x = np.random.default_rng(6).normal(0.0, 0.02, 400_000)
    var = model_variance_from_abs_move(np.abs(x).mean())
    assert float(var) == pytest.approx(0.02 ** 2, rel=0.01)
    out = model_variance_from_abs_move([0.0, -1.0, np.nan, 0.1])
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2])
    assert out[3] == pytest.approx(0.01 * math.pi / 2)


# --------------------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("h", [1, 24])
def test_garch_ewma_and_har_beat_constant_variance(h):
    target, fc, times = pooled(garch, h)
    res = score_variance(target, fc, times, reference="constant", seed=1)
    json.dumps(res, allow_nan=False)
    assert res["n"] > 5000 and res["n_target_zero"] == 0
    for name in ("ewma", "har"):
        vs = res["forecasts"][name]["vs_reference"]
        assert vs["qlike_diff"] < 0 and vs["qlike_skill"] > 0
        assert vs["chance"]["significant"], (name, vs["chance"])
        assert vs["chance"]["n_times"] == 2000 - h and vs["chance"]["n_rows"] == res["n"]


def test_fast_mean_reversion_har_beats_the_flat_ewma_term_structure():
    # a + b = 0.95: a shock has mostly decayed within 24 bars; RiskMetrics' h * sigma2 ignores that, HAR
    # learns it from the training rows
    target, fc, times = pooled(lambda n, seed: garch(n, seed, omega=5e-6, a=0.1, b=0.85), 24)
    res = score_variance(target, fc, times, reference="har", seed=2)
    vs = res["forecasts"]["ewma"]["vs_reference"]
    assert vs["qlike_diff"] > 0 and not vs["chance"]["significant"]
    swapped = score_variance(target, fc, times, reference="ewma", seed=2)
    assert swapped["forecasts"]["har"]["vs_reference"]["chance"]["significant"]


def test_iid_nothing_beats_constant_variance():
    target, fc, times = pooled(iid, 24)
    res = score_variance(target, fc, times, reference="constant", seed=1)
    for name in ("ewma", "har"):
        chance = res["forecasts"][name]["vs_reference"]["chance"]
        assert chance["reason"] is None and not chance["significant"], (name, chance)
    # and the true variance is a fine forecast: it is not beaten either
    fc = {**fc, "true": np.full(target.shape, 24 * 0.01 ** 2)}
    res = score_variance(target, fc, times, reference="true")
    assert not any(e["vs_reference"]["chance"]["significant"] for k, e in res["forecasts"].items() if k != "true")


def test_score_variance_rows_and_reference():
    target = np.array([1.0, 0.0, np.nan, 2.0, 4.0])
    fc = {"har": np.array([1.0, 1.0, 1.0, np.nan, 2.0]), "m": np.array([2.0, 2.0, 2.0, 2.0, 2.0])}
    res = score_variance(target, fc)
    assert (res["n"], res["n_target_zero"], res["n_target_unknown"], res["n_forecast_missing"]) == (2, 1, 1, 1)
    m = res["forecasts"]["m"]
    assert m["vs_reference"]["chance"] is None
    assert m["qlike"] == pytest.approx(np.mean(qlike(np.array([1.0, 4.0]), np.array([2.0, 2.0]))))
    assert res["forecasts"]["har"]["qlike"] == pytest.approx(qlike(np.array([4.0]), np.array([2.0]))[0] / 2)
    with pytest.raises(ValueError, match="reference"):
        score_variance(target, {"m": fc["m"]})
    with pytest.raises(ValueError, match="<= 0"):
        score_variance(target, {"har": fc["har"], "m": np.zeros(5)})


# ------------------------------------------------------------------------------------------- log-HAR


def stochastic_vol(n, seed, phi=0.99, eta=0.15, sd=0.01):
    """Log-AR(1) stochastic volatility (Taylor 1986): log sigma2 follows a persistent AR(1), the process the
    log form of HAR approximates; r1[0] = NaN."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal(n) * eta
    lv = np.zeros(n)
    for t in range(1, n):
        lv[t] = phi * lv[t - 1] + shocks[t]
    r = sd * np.exp(lv / 2) * rng.standard_normal(n)
    r[0] = np.nan
    return r


def test_loghar_scale_is_qlike_optimal_on_its_rows_and_recovers_the_log_bias():
    # iid N(0, s^2), h = 1: OLS of log r^2 estimates log s^2 + E[log chi2_1], so exp(fit) is s^2 * e^-1.27;
    # the scale must undo that: c -> E[chi2_1] / exp(E[log chi2_1]) = 2 e^gamma = 3.562
    sigma = 0.01
    r1 = iid(4000, seed=7, sigma=sigma)
    train, test = np.arange(2000), np.arange(2000, 3999)
    model = loghar_fit(r1, train, 1)
    assert model.scale == pytest.approx(2 * math.exp(np.euler_gamma), rel=0.06)
    f = loghar_forecast(model, r1, test, h=1)
    assert np.mean(f) == pytest.approx(sigma ** 2, rel=0.05)               # out of sample: the right level
    assert np.mean(f / model.scale) < 0.35 * sigma ** 2                     # without the scale: far too low
    # on the fitted rows the scale makes mean(RV / f) exactly 1, so any other multiple has a higher QLIKE
    rows = np.arange(max(HAR_WINDOWS), 2000 - 1)
    y, fit = realized_variance(r1, 1)[rows], loghar_forecast(model, r1, rows)
    assert np.mean(y / fit) == pytest.approx(1.0, rel=1e-9)
    base = qlike(y, fit).mean()
    assert base < min(qlike(y, fit * 1.01).mean(), qlike(y, fit * 0.99).mean())


@pytest.mark.parametrize("h", [1, 24])
def test_loghar_beats_constant_and_har_on_stochastic_volatility(h):
    target, times = [], []
    fc: dict[str, list] = {"constant": [], "ewma": [], "har": [], "loghar": []}
    for c in range(3):
        r1 = stochastic_vol(4000, seed=100 + c)
        train, test = np.arange(2000), np.arange(2000, 4000)
        for k, v in baseline_forecasts(r1, h, train, test).items():
            fc[k].append(v)
        fc["loghar"].append(loghar_forecast(loghar_fit(r1, train, h), r1, test))
        target.append(realized_variance(r1, h)[test])
        times.append(test)
    target, times = np.concatenate(target), np.concatenate(times)
    fc = {k: np.concatenate(v) for k, v in fc.items()}
    res = score_variance(target, fc, times, reference="constant", seed=1)
    vs = res["forecasts"]["loghar"]["vs_reference"]
    assert vs["qlike_diff"] < 0 and vs["chance"]["significant"], vs
    assert res["forecasts"]["loghar"]["qlike"] < res["forecasts"]["har"]["qlike"]


def test_loghar_is_causal_and_fits_on_training_rows_only():
    r1 = garch(3000, seed=8)
    train = np.arange(2000)
    model = loghar_fit(r1, train, 4)
    full = loghar_forecast(model, r1, h=4)
    for cut in (300, 2001, 2600):
        np.testing.assert_array_equal(loghar_forecast(model, r1[:cut]), full[:cut])
    changed = r1.copy()
    changed[2500] *= 10.0                                                    # one future return
    np.testing.assert_array_equal(loghar_forecast(model, changed)[:2500], full[:2500])
    assert not np.array_equal(loghar_forecast(model, changed)[2500:2668], full[2500:2668])
    perturbed = r1.copy()
    perturbed[2000:] *= np.random.default_rng(0).uniform(0.2, 5.0, 1000)     # every test-row return
    assert loghar_fit(perturbed, train, 4) == model
    mask = np.zeros(3000, dtype=bool)
    mask[:2000] = True
    assert loghar_fit(r1, mask, 4) == model
    assert model.n_train == (2000 - 1 - 4) - max(HAR_WINDOWS) + 1            # the har_fit purge
    assert np.isnan(full[: max(HAR_WINDOWS) - 1]).all() and np.all(full[max(HAR_WINDOWS):] > 0)
    with pytest.raises(ValueError, match="fitted for h=4"):
        loghar_forecast(model, r1, h=1)


def test_loghar_zero_returns_give_finite_positive_forecasts():
    # a low-priced coin: closes on a 1e-4 tick around 0.05 repeat often, and a 300-bar halt repeats exactly
    r = iid(3000, seed=9, sigma=0.004)
    close = np.round(0.05 * np.exp(np.nancumsum(r)), 4)
    close[1200:1500] = close[1199]
    r1 = np.r_[np.nan, np.diff(np.log(close))]
    assert np.mean(r1[1:] == 0) > 0.2 and np.all(r1[1200:1500] == 0)
    model = loghar_fit(r1, np.arange(2000), 1)
    f = loghar_forecast(model, r1)
    assert np.all(np.isfinite(f[max(HAR_WINDOWS):])) and np.all(f[max(HAR_WINDOWS):] > 0)
    assert np.all(np.isfinite(model.coef)) and model.scale > 0 and min(model.floor) > 0
    with pytest.raises(RiskModelError, match="usable training rows"):
        loghar_fit(np.r_[np.nan, np.zeros(999)], np.arange(1000), 1)       # nothing ever moved


def test_loghar_needs_enough_rows():
    r1 = garch(1000, seed=10)
    # rows 168 .. 229 - 24 have a known 168-bar component and a target inside the training rows: 38 of them
    with pytest.raises(RiskModelError, match=r"loghar_fit h=24: only 38 usable training rows .*need >= 50"):
        loghar_fit(r1, np.arange(230), 24)
    assert loghar_fit(r1, np.arange(242), 24).n_train == 50
    assert isinstance(RiskModelError("x"), ValueError)


def test_loghar_to_dict_round_trip_is_exact():
    model = loghar_fit(garch(2000, seed=11), np.arange(1500), 24)
    doc = json.loads(json.dumps(model.to_dict(), allow_nan=False))
    back = LogHARModel.from_dict(doc)
    assert back == model and back.to_dict() == model.to_dict()
    r1 = garch(2000, seed=12)
    assert loghar_forecast(back, r1).tobytes() == loghar_forecast(model, r1).tobytes()
    with pytest.raises(RiskModelError, match="missing field"):
        LogHARModel.from_dict({k: v for k, v in doc.items() if k != "scale"})
    with pytest.raises(RiskModelError, match="kind"):
        LogHARModel.from_dict({**doc, "kind": "har"})
    with pytest.raises(RiskModelError, match="coef has 2"):
        LogHARModel.from_dict({**doc, "coef": doc["coef"][:2]})
