"""Per-coin causal features at three context resolutions.

Every value at row t is computed only from bars at or before t (bar t has closed, so its close, high, low and
volume may be used). Windows are counted in ROWS, not in time: the lake may have gaps (missing candles) and
they are never filled, so across a gap a 24-row window spans more than 24 hours and `ret_1` spans the gap.
Warmup rows (not enough history for a window) are NaN and are never filled; the frame builder drops them.

Columns (float64, this order):
    ret_1, range_1,
    then for res in (short, medium, long) = (cfg.short, cfg.medium, cfg.long) rows:
    ret_{res}    log(close_t / close_{t-w})
    vol_{res}    std (ddof=1) of the last w 1-row log returns
    z_{res}      (close - rolling mean of close) / rolling std of close  (0 when the window is flat)
    range_{res}  mean over the window of (high - low) / close
    vz_{res}     z-score of log1p(volume) vs its rolling mean/std  (0 when the window is flat)
    rsi_{res}    sum of up moves / sum of |moves| over the window, in [0, 1]  (0.5 when nothing moved)
    dd_{res}     log(close / rolling max of close)  (<= 0, distance from the window's high close)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coinline.training.config import FeatureConfig

RESOLUTIONS = ("short", "medium", "long")
WINDOW_FEATURES = ("ret", "vol", "z", "range", "vz", "rsi", "dd")
BAR_FEATURES = ("ret_1", "range_1")
REQUIRED = ("open_time", "open", "high", "low", "close", "volume")


def coin_feature_names(cfg: FeatureConfig | None = None) -> tuple[str, ...]:
    """The column order `coin_features` returns (independent of the data)."""
    return BAR_FEATURES + tuple(f"{f}_{res}" for res in RESOLUTIONS for f in WINDOW_FEATURES)


def windows_of(cfg: FeatureConfig) -> dict[str, int]:
    w = {"short": int(cfg.short), "medium": int(cfg.medium), "long": int(cfg.long)}
    for res, n in w.items():
        if n < 2:
            raise ValueError(f"FeatureConfig.{res}={n}: windows need at least 2 rows")
    return w


def _safe_ratio(num: np.ndarray, den: np.ndarray, flat: float) -> np.ndarray:
    """num / den, with `flat` where den == 0 (a flat window), NaN where either is NaN (warmup)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / np.where(den > 0, den, np.nan)
    return np.where((den == 0) & ~np.isnan(num), flat, out)


def coin_features(candles: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """Causal features of ONE series (rows sorted ascending by a unique `open_time`), indexed by open_time."""
    missing = [c for c in REQUIRED if c not in candles.columns]
    if missing:
        raise ValueError(f"coin_features: candles lack column(s) {missing}")
    idx = pd.DatetimeIndex(candles["open_time"], name="open_time")
    if not idx.is_monotonic_increasing or not idx.is_unique:
        raise ValueError("coin_features: open_time must be sorted ascending and unique (one series at a time)")
    close, high, low, volume = (candles[c].to_numpy(dtype="float64") for c in ("close", "high", "low", "volume"))
    n = len(close)

    def roll(a: np.ndarray, w: int):
        return pd.Series(a).rolling(w, min_periods=w)

    lc = np.log(close)
    r1 = np.r_[np.nan, np.diff(lc)] if n else np.empty(0)
    bar_range = (high - low) / close
    lv = np.log1p(np.clip(volume, 0.0, None))
    up = np.clip(r1, 0.0, None)
    moves = np.abs(r1)

    cols: dict[str, np.ndarray] = {"ret_1": r1, "range_1": bar_range}
    for res, w in windows_of(cfg).items():
        # every window below needs w 1-row returns, i.e. w + 1 rows: one warmup for all of them
        warm = np.arange(n) >= w
        c_mean, c_std = roll(close, w).mean().to_numpy(), roll(close, w).std().to_numpy()
        v_mean, v_std = roll(lv, w).mean().to_numpy(), roll(lv, w).std().to_numpy()
        shifted = np.r_[np.full(min(w, n), np.nan), lc[:-w]] if n > w else np.full(n, np.nan)
        feats = {
            "ret": lc - shifted,
            "vol": roll(r1, w).std().to_numpy(),
            "z": _safe_ratio(close - c_mean, c_std, 0.0),
            "range": roll(bar_range, w).mean().to_numpy(),
            "vz": _safe_ratio(lv - v_mean, v_std, 0.0),
            "rsi": _safe_ratio(roll(up, w).sum().to_numpy(), roll(moves, w).sum().to_numpy(), 0.5),
            "dd": lc - np.log(roll(close, w).max().to_numpy()),
        }
        for name in WINDOW_FEATURES:
            cols[f"{name}_{res}"] = np.where(warm, feats[name], np.nan)
    return pd.DataFrame({k: cols[k] for k in coin_feature_names(cfg)}, index=idx, dtype="float64")
