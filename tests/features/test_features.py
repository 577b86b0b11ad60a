"""Per-coin and cross-asset features, targets, and frame assembly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from coinline.features import (
    build_coin_frames,
    coin_feature_names,
    coin_features,
    cross_asset_features,
    make_targets,
    valid_rows,
)
from coinline.training.config import FeatureConfig, TrainConfig
from tests.features import HOUR_MS, market_frames, market_table, random_walk

FC = FeatureConfig()
CFG = TrainConfig()


# ---- per-coin features -----------------------------------------------------------------------------
def test_coin_feature_columns_order_and_warmup():
    df = random_walk(600)
    f = coin_features(df, FC)
    assert tuple(f.columns) == coin_feature_names(FC)
    assert f.columns[:4].tolist() == ["ret_1", "range_1", "ret_short", "vol_short"]
    assert len(coin_feature_names(FC)) == 2 + 3 * 7
    assert (f.dtypes == "float64").all()
    assert f.index.name == "open_time" and len(f) == len(df)
    # warmup: NaN until each window has w returns (w + 1 rows); never filled
    assert f["ret_long"].iloc[:FC.long].isna().all() and f["ret_long"].iloc[FC.long:].notna().all()
    assert f["vol_short"].iloc[:FC.short].isna().all()
    assert np.isfinite(f.iloc[FC.long:].to_numpy()).all()


def test_coin_feature_values():
    df = random_walk(400, seed=3)
    f = coin_features(df, FC)
    c = df["close"]
    lc = np.log(c)
    r1 = lc.diff()
    w = FC.medium
    t = 300
    np.testing.assert_allclose(f["ret_1"].iloc[t], r1.iloc[t])
    np.testing.assert_allclose(f["ret_medium"].iloc[t], lc.iloc[t] - lc.iloc[t - w])
    np.testing.assert_allclose(f["vol_medium"].iloc[t], r1.iloc[t - w + 1:t + 1].std(), rtol=1e-9)
    win = c.iloc[t - w + 1:t + 1]
    np.testing.assert_allclose(f["z_medium"].iloc[t], (c.iloc[t] - win.mean()) / win.std(), rtol=1e-9)
    np.testing.assert_allclose(f["dd_medium"].iloc[t], np.log(c.iloc[t] / win.max()), rtol=1e-9)
    rr = r1.iloc[t - w + 1:t + 1]
    np.testing.assert_allclose(f["rsi_medium"].iloc[t], rr.clip(lower=0).sum() / rr.abs().sum(), rtol=1e-9)
    rng = (df["high"] - df["low"]) / c
    np.testing.assert_allclose(f["range_medium"].iloc[t], rng.iloc[t - w + 1:t + 1].mean(), rtol=1e-9)
    lv = np.log1p(df["volume"]).iloc[t - w + 1:t + 1]
    np.testing.assert_allclose(f["vz_medium"].iloc[t], (lv.iloc[-1] - lv.mean()) / lv.std(), rtol=1e-9)
    body = f.iloc[FC.long:]
    assert (body.filter(like="rsi_") >= 0).all().all() and (body.filter(like="rsi_") <= 1).all().all()
    assert (body.filter(like="dd_") <= 0).all().all()


def test_flat_windows_are_defined_not_nan():
    df = random_walk(300)
    df.loc[100:, ["open", "high", "low", "close"]] = 50.0
    df.loc[100:, "volume"] = 7.0
    f = coin_features(df, FC)
    tail = f.iloc[-5:]
    assert np.isfinite(tail.to_numpy()).all()
    assert (tail["z_short"] == 0).all() and (tail["vz_short"] == 0).all() and (tail["rsi_short"] == 0.5).all()


@pytest.mark.parametrize("cut", [5, 170, 171, 250, 399])
def test_coin_features_on_a_prefix_equal_the_full_build(cut):
    df = random_walk(400, seed=5)
    full = coin_features(df, FC)
    part = coin_features(df.iloc[:cut], FC)
    pd.testing.assert_frame_equal(part, full.iloc[:cut])


def test_gaps_windows_count_rows_and_nothing_is_filled():
    df = random_walk(300, drop=(200, 201, 202))
    f = coin_features(df, FC)
    assert len(f) == len(df) and f.index.equals(pd.DatetimeIndex(df["open_time"], name="open_time"))
    lc = np.log(df["close"].to_numpy())
    i = 200   # first row after the gap: its 1-row return spans the gap (4 hours)
    assert df["open_time"].iloc[i] - df["open_time"].iloc[i - 1] == pd.Timedelta(hours=4)
    np.testing.assert_allclose(f["ret_1"].iloc[i], lc[i] - lc[i - 1])
    np.testing.assert_allclose(f["ret_short"].iloc[i + 2], lc[i + 2] - lc[i + 2 - FC.short])


def test_coin_features_refuse_unsorted_input():
    df = random_walk(50)
    with pytest.raises(ValueError, match="sorted"):
        coin_features(df.iloc[::-1], FC)
    with pytest.raises(ValueError, match="lack"):
        coin_features(df.drop(columns=["volume"]), FC)


# ---- cross-asset -----------------------------------------------------------------------------------
def _closes(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.DataFrame({s: g.set_index("open_time")["close"] for s, g in frames.items()}).sort_index()


def test_cross_asset_values_and_names():
    frames = market_frames()
    closes = _closes(frames)
    m = cross_asset_features(closes, FC)
    assert all(c.startswith("mkt_") for c in m.columns)
    assert "mkt_btc_ret_long" in m.columns and len(m) == len(closes)
    r1 = np.log(closes).diff()
    np.testing.assert_allclose(m["mkt_ret_1"].iloc[1:], r1.mean(axis=1).iloc[1:], rtol=1e-12)
    t, w = 500, FC.medium
    rw = np.log(closes.iloc[t] / closes.iloc[t - w])
    np.testing.assert_allclose(m["mkt_breadth_medium"].iloc[t], (rw > 0).mean())
    np.testing.assert_allclose(m["mkt_disp_medium"].iloc[t], rw.std(ddof=0), rtol=1e-9)
    # two float paths to one log return agree to ~1e-16 absolute: not 1e-12 relative when the return is ~0
    np.testing.assert_allclose(m["mkt_btc_ret_medium"].iloc[t], rw["BTC"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m["mkt_ret_medium"].iloc[t], r1.mean(axis=1).iloc[t - w + 1:t + 1].sum(), rtol=1e-9)
    gappy = closes.copy()
    gappy.iloc[400:402, 0] = np.nan                       # BTC misses two candles: carried as of its last one
    g = cross_asset_features(gappy, FC)["mkt_btc_ret_medium"]
    assert g.iloc[400] == g.iloc[401] == g.iloc[399] and g.iloc[402] != g.iloc[399]
    no_btc = cross_asset_features(closes.drop(columns=["BTC"]), FC)
    assert not any("btc" in c for c in no_btc.columns)


def test_cross_asset_missing_coin_is_excluded_and_prefix_causal():
    closes = _closes(market_frames())
    closes.iloc[300, 1] = np.nan          # ETH has no candle at row 300
    m = cross_asset_features(closes, FC)
    r1_others = np.log(closes.drop(columns=["ETH"])).diff().iloc[300]
    np.testing.assert_allclose(m["mkt_ret_1"].iloc[300], r1_others.mean(), rtol=1e-12)
    for cut in (200, 301, 700):
        pd.testing.assert_frame_equal(cross_asset_features(closes.iloc[:cut], FC), m.iloc[:cut])


# ---- targets ---------------------------------------------------------------------------------------
def test_targets_values_and_nan_at_the_end():
    df = random_walk(400, seed=2)
    tg = make_targets(df, (1, 4, 24), 168)
    assert list(tg.columns[:4]) == ["ret_h1", "dir_h1", "risk_h1", "mag_h1"]
    lc = np.log(df["close"].to_numpy())
    for h in (1, 4, 24):
        ret = tg[f"ret_h{h}"].to_numpy()
        assert np.isnan(ret[-h:]).all() and np.isfinite(ret[:-h]).all()
        np.testing.assert_allclose(ret[:-h], lc[h:] - lc[:-h])
        d = tg[f"dir_h{h}"].to_numpy()
        assert np.isnan(d[-h:]).all() and set(np.unique(d[:-h])) <= {0.0, 1.0}
        np.testing.assert_array_equal(d[:-h], (ret[:-h] > 0).astype(float))
    t = 250
    vol = np.std(np.diff(lc)[t - 168:t], ddof=1)      # the 168 returns ending at row t
    risk = tg["risk_h4"].iloc[t]
    np.testing.assert_allclose(risk, abs(tg["ret_h4"].iloc[t]) / (vol * 2), rtol=1e-9)
    mag = tg["mag_h4"].to_numpy()
    r = tg["risk_h4"].to_numpy()
    ok = np.isfinite(r)
    np.testing.assert_array_equal(mag[ok], np.where(r[ok] < 0.5, 0, np.where(r[ok] <= 1.5, 1, 2)))
    assert np.isnan(mag[~ok]).all() and np.isnan(r[:168]).all()
    assert set(np.unique(mag[ok])) == {0.0, 1.0, 2.0}


def test_targets_across_a_gap_are_nan_never_another_horizon():
    df = random_walk(300, drop=(150,))             # rows 150.. shift by one: a 2-hour step between 149 and 150
    tg = make_targets(df, (1, 4), 24)
    t = df["open_time"].dt.as_unit("ms").array.asi8
    for h in (1, 4):
        ret = tg[f"ret_h{h}"].to_numpy()
        spans = np.full(len(t), -1, dtype="int64")
        spans[:-h] = t[h:] - t[:-h]
        crossing = spans != h * HOUR_MS
        assert np.isnan(ret[crossing]).all()
        assert np.isfinite(ret[~crossing]).all()
        assert crossing.sum() == h + h          # h rows before the gap + the last h rows
        assert np.isnan(tg[f"dir_h{h}"].to_numpy()[crossing]).all()
    # the interval can also be given or read from the column; a wrong explicit one makes everything NaN
    assert tg.equals(make_targets(df.drop(columns=["interval"]), (1, 4), 24))
    assert make_targets(df, (1,), 24, interval="4h")["ret_h1"].isna().all()


# ---- frames ----------------------------------------------------------------------------------------
def test_build_frames_shapes_rows_and_targets():
    table = market_table()
    frames = build_coin_frames(table, CFG)
    assert list(frames) == ["BTC", "ETH", "SOL", "XRP"]
    f = frames["ETH"]
    n_in = table.filter(pa.compute.equal(table["symbol"], "ETH")).num_rows
    assert len(f) == n_in - CFG.features.long             # only warmup rows dropped
    assert f.F.dtype == np.float64 and f.F.shape == (len(f), len(f.feature_names)) and np.isfinite(f.F).all()
    assert f.times.dtype == np.int64 and (np.diff(f.times) == HOUR_MS).all()
    assert f.feature_names[:len(coin_feature_names(FC))] == coin_feature_names(FC)
    assert f.feature_names[len(coin_feature_names(FC)):][0] == "mkt_ret_1"
    assert set(f.targets) == {1, 4, 24} and set(f.targets[4]) == {"dir", "ret", "risk", "mag"}
    for h in (1, 4, 24):
        assert np.isnan(f.targets[h]["ret"][-h:]).all()          # kept, NaN, never filled
        v = valid_rows(f, h)
        assert len(v) == len(f) - h and v[-1] == len(f) - h - 1
    np.testing.assert_array_equal(f.open_next[:-1], _opens(table, "ETH")[CFG.features.long + 1:])
    assert np.isnan(f.open_next[-1])
    np.testing.assert_allclose(f.column("ret_1")[1:], np.diff(np.log(f.close)))


def _opens(table: pa.Table, sym: str) -> np.ndarray:
    return table.filter(pa.compute.equal(table["symbol"], sym))["open"].to_numpy()


def test_frames_deterministic_and_independent_of_input_order():
    table = market_table()
    a = build_coin_frames(table, CFG)
    b = build_coin_frames(table, CFG)
    shuffled = table.to_pandas().sample(frac=1.0, random_state=1)
    c = build_coin_frames(shuffled, CFG)
    for s in a:
        assert a[s].fingerprint() == b[s].fingerprint() == c[s].fingerprint()
        assert a[s].feature_names == c[s].feature_names
        np.testing.assert_array_equal(a[s].F, c[s].F)
        for h in CFG.horizons:
            for k in ("dir", "ret", "risk", "mag"):
                np.testing.assert_array_equal(a[s].targets[h][k], c[s].targets[h][k])


def test_frames_with_gaps_keep_rows_and_nan_targets():
    table = market_table("CAD", ("BTC", "ETH", "SOL"))
    frames = build_coin_frames(table, CFG, quote="CAD")
    f = frames["ETH"]
    steps = np.diff(f.times)
    assert (steps > HOUR_MS).any()                        # the replay market's no-trade gaps
    n_eth = table.filter(pa.compute.equal(table["symbol"], "ETH")).num_rows
    assert len(f) == n_eth - CFG.features.long            # BTC's gaps do not drop ETH's rows
    for h in CFG.horizons:
        ret = f.targets[h]["ret"]
        span = np.full(len(f), -1)
        span[:-h] = f.times[h:] - f.times[:-h]
        assert np.isnan(ret[span != h * HOUR_MS]).all()
        v = valid_rows(f, h)
        assert (f.times[v + h] - f.times[v] == h * HOUR_MS).all()
    assert np.isfinite(f.F).all()


def test_build_refuses_duplicates_and_empty_selection():
    df = random_walk(300)
    with pytest.raises(ValueError, match="duplicate candles for AAA"):
        build_coin_frames(pd.concat([df, df.iloc[:3]]), CFG)
    with pytest.raises(ValueError, match="no candles for quote=CAD"):
        build_coin_frames(df, CFG, quote="CAD")
