"""Scoring of matured forecasts: realized outcomes, scoreboard metrics and the joint (cross-coin) chance test."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from coinline.evaluation.baselines import chance_test
from coinline.evaluation.metrics import pointwise_losses
from coinline.forecasting.scoring import head_to_head, joint_chance_test, realized_outcomes, score
from coinline.models.base import derive_seed

HOUR_MS = 3_600_000
T0 = pd.Timestamp("2024-01-01", tz="UTC")
BLOCK, N_BOOT = 12, 200


def _t(i):
    return T0 + pd.Timedelta(hours=i)


def _forecast(symbol, horizon, i, source="binance"):
    return {"model_set": "m", "symbol": symbol, "quote": "USDT", "interval": "1h", "source": source,
            "horizon": horizon, "decision_time": _t(i), "target_time": _t(i + horizon + 1), "p_up": 0.5}


def _outcomes(y, p, base, *, model_set="m", horizon=1, momentum=None, abs_ret=None):
    """Matured rows, time-major, from (T, C) arrays of labels and probabilities."""
    T, C = y.shape
    times = np.repeat(np.arange(T), C)
    ret = (2 * y - 1) * (0.01 if abs_ret is None else abs_ret)
    return pd.DataFrame({
        "model_set": model_set, "symbol": [f"C{c:02d}" for c in np.tile(np.arange(C), T)], "quote": "USDT",
        "interval": "1h", "source": "binance", "horizon": horizon,
        "decision_time": T0 + pd.to_timedelta(times, unit="h"), "matured": True,
        "realized_ret": ret.ravel().astype(float), "y": y.ravel().astype(float),
        "p_up": p.ravel(), "p_base_rate": np.broadcast_to(base, y.shape).ravel(),
        "p_momentum": np.full(T * C, 0.5) if momentum is None else momentum.ravel(),
        "expected_abs_move": 0.01, "volatility": 0.01, "status": "matured",
    })


def _market(seed, n_coins=10, n_times=360, rho=0.7):
    """Up/down labels of coins driven by one market factor (return correlation rho)."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal(n_times)
    r = math.sqrt(rho) * m[:, None] + math.sqrt(1 - rho) * rng.standard_normal((n_times, n_coins))
    return (r > 0).astype(int), rng


def test_realized_outcomes_hand_built():
    def candles(symbol, values, source="binance"):
        return pd.DataFrame({"symbol": symbol, "quote": "USDT", "interval": "1h", "source": source,
                             "open_time": [_t(i) for i in values], "close": list(values.values())})

    closes = pd.concat([
        candles("BTC", {0: 100.0, 1: 110.0, 2: 99.0, 3: 121.0, 4: 130.0}),
        candles("ETH", {0: 10.0, 2: 12.0}),                                 # ETH has no candle at t1
        candles("BTC", {0: 1.0, 1: 2.0}, source="kraken"),               # another source: never mixed in
    ], ignore_index=True)
    forecasts = pd.DataFrame([
        _forecast("BTC", 1, 0),            # matured: log(110/100)
        _forecast("BTC", 1, 1),            # matured: log(99/110), down
        _forecast("BTC", 2, 1),            # matured: log(121/110); target_time == now counts as matured
        _forecast("ETH", 2, 0),            # matured: log(12/10)
        _forecast("BTC", 1, 3),            # candle t4 exists, but target_time t5 > now: pending
        _forecast("ETH", 1, 0),            # due, ETH t1 missing
        _forecast("BTC", 1, 1, "coinbase"),  # due, no coinbase candles at all
    ], index=range(10, 17))
    now_ms = int(_t(4).timestamp() * 1000)
    out = realized_outcomes(forecasts, closes, interval_ms=HOUR_MS, now_ms=now_ms)
    assert list(out.index) == list(range(10, 17))
    assert out["status"].tolist() == ["matured"] * 4 + ["pending", "missing_candle", "missing_candle"]
    assert out["matured"].tolist() == [True] * 4 + [False] * 3
    expected = [math.log(110 / 100), math.log(99 / 110), math.log(121 / 110), math.log(12 / 10)]
    np.testing.assert_allclose(out["realized_ret"].iloc[:4], expected, rtol=0, atol=1e-15)
    assert out["y"].iloc[:4].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert out[["realized_ret", "y"]].iloc[4:].isna().all().all()
    assert list(out.columns[: len(forecasts.columns)]) == list(forecasts.columns)


def test_realized_outcomes_flat_return_is_not_up():
    closes = pd.DataFrame({"symbol": "BTC", "quote": "USDT", "interval": "1h", "source": "binance",
                           "open_time": [_t(0), _t(1)], "close": [5.0, 5.0]})
    out = realized_outcomes(pd.DataFrame([_forecast("BTC", 1, 0)]), closes, interval_ms=HOUR_MS,
                            now_ms=int(_t(9).timestamp() * 1000))
    assert out["realized_ret"].iloc[0] == 0.0 and out["y"].iloc[0] == 0.0


def _oracle_and_climatology(seed=3):
    y, rng = _market(seed, n_coins=5, n_times=300)
    oracle = _outcomes(y, np.where(y == 1, 0.9, 0.1), 0.5, model_set="oracle")
    clim = _outcomes(y, np.full(y.shape, 0.52), 0.52, model_set="climatology")
    return pd.concat([oracle, clim], ignore_index=True)


def test_informed_model_is_significant_and_base_rate_is_not():
    outcomes = _oracle_and_climatology()
    pending = outcomes.iloc[:3].assign(matured=False, y=np.nan, realized_ret=np.nan, status="pending")
    res = score(pd.concat([outcomes, pending], ignore_index=True), seed=7, block=BLOCK, n_boot=N_BOOT)
    pooled = {p["model_set"]: p for p in res["pooled"]}
    assert set(pooled) == {"climatology", "oracle"} and res["correction"] == "holm"
    oracle, clim = pooled["oracle"], pooled["climatology"]
    assert oracle["n_rows"] == 1500 and oracle["n_times"] == 300 and oracle["symbol"] == "*"
    assert oracle["chance"]["significant"] and oracle["chance"]["p_value_holm"] <= 0.05
    assert oracle["chance"]["p_value_holm"] == pytest.approx(2 * oracle["chance"]["p_value"])  # Holm, 2 tests
    assert oracle["skill"]["base_rate"]["log_loss_skill"] > 0.5
    assert oracle["model"]["accuracy"] == 1.0
    assert not clim["chance"]["significant"] and clim["chance"]["p_value"] == 1.0
    assert clim["skill"]["base_rate"]["log_loss_skill"] == 0.0
    rw = oracle["baselines"]["random_walk"]
    assert rw["log_loss"] == pytest.approx(math.log(2)) and rw["reliability"]["count"][5] == 1500
    assert rw["reliability"]["mean_pred"][0] is None  # empty bin -> None, not NaN
    assert oracle["risk"] == {"n": 1500, "mae": 0.0, "naive_mae": pytest.approx(0.01 * (1 - math.sqrt(2 / math.pi))),
                              "skill": 1.0}
    # per-coin groups: sorted, matured rows only
    keys = [(g["model_set"], g["symbol"], g["horizon"]) for g in res["groups"]]
    assert keys == sorted(keys) and len(keys) == 10
    assert all(g["n"] == 300 and g["model"]["n"] == 300 for g in res["groups"])


def test_joint_test_agrees_with_chance_test_on_one_coin():
    y, rng = _market(11, n_coins=1, n_times=400)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, y.shape), 0.05, 0.95)
    res = score(_outcomes(y, p, 0.5), seed=5, block=BLOCK, n_boot=N_BOOT)
    ref = chance_test(y.ravel(), p.ravel(), np.full(y.size, 0.5), n_boot=N_BOOT, block=BLOCK,
                      seed=derive_seed(5, "m", 1, "scoreboard"))["log_loss"]
    chance = res["pooled"][0]["chance"]
    assert ref["p_value"] < 1.0
    assert chance["p_value"] == pytest.approx(ref["p_value"], abs=1e-12)
    assert chance["mean_diff"] == pytest.approx(ref["mean_diff"], abs=1e-12)


def test_false_positive_rate_under_correlated_coins():
    """An uninformative model vs an equally uninformative baseline (E[d] = 0 exactly), 10 coins sharing a
    market factor (return correlation 0.8) and a shared per-time tilt: the joint test rejects at about alpha
    (4/40 here); bootstrapping the pooled rows as if coins were independent (coins concatenated, as a per-coin
    test on pooled rows does) rejects more (9/40). Scoring rows as independent time stamps also fails (10/40)."""
    seeds, joint, naive = range(40), 0, 0
    for s in seeds:
        y, rng = _market(s, rho=0.8)
        tilt = rng.normal(0, 0.08, (y.shape[0], 1)) + rng.normal(0, 0.02, y.shape)
        p, base = np.clip(0.5 + tilt, 0.1, 0.9), np.clip(0.5 - tilt, 0.1, 0.9)
        res = score(_outcomes(y, p, base), seed=s, block=BLOCK, n_boot=N_BOOT, by=("model_set", "horizon"))
        joint += res["pooled"][0]["chance"]["p_value"] <= 0.05
        yc, pc, bc = (a.T.ravel() for a in (y, p, base))
        naive += chance_test(yc, pc, bc, n_boot=N_BOOT, block=BLOCK, seed=s)["log_loss"]["p_value"] <= 0.05
    assert joint / len(seeds) <= 0.15
    assert naive > joint


def test_score_is_deterministic_and_json_safe():
    outcomes = _oracle_and_climatology(seed=4)
    a = score(outcomes, seed=1, block=BLOCK, n_boot=N_BOOT)
    b = score(outcomes.sample(frac=1.0, random_state=0), seed=1, block=BLOCK, n_boot=N_BOOT)
    assert json.dumps(a, allow_nan=False, sort_keys=True) == json.dumps(b, allow_nan=False, sort_keys=True)


def test_joint_chance_test_too_few_times():
    res = joint_chance_test(np.arange(50), np.linspace(-1, 0, 50), seed=0, block=BLOCK)
    assert res["p_value"] == 1.0 and not res["significant"] and res["reason"].startswith("too few")


def test_head_to_head():
    outcomes = _oracle_and_climatology()
    h2h = head_to_head(outcomes, "climatology", "oracle", 1, seed=2, block=BLOCK, n_boot=N_BOOT)
    assert h2h["n_rows"] == 1500 and h2h["n_times"] == 300
    y = outcomes.loc[outcomes.model_set == "oracle", "y"].to_numpy().astype(int)
    assert h2h["log_loss"]["champion"] == pytest.approx(pointwise_losses(y, np.full(y.size, 0.52))["log_loss"].mean())
    assert h2h["diff"] < 0 and h2h["significant"]

    other = outcomes[outcomes.model_set == "oracle"].assign(model_set="late",
                                                          decision_time=lambda f: f.decision_time + pd.Timedelta(days=365))
    none = head_to_head(pd.concat([outcomes, other]), "oracle", "late", 1)
    assert none["n_rows"] == 0 and none["diff"] is None and none["p_value"] is None
    assert none["log_loss"] == {"champion": None, "challenger": None}
    assert head_to_head(outcomes, "climatology", "oracle", 4)["n_rows"] == 0
