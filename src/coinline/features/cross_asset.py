"""Cross-asset (market) features, causal, on the union of all coins' open times.

`closes` is indexed by open_time (the union of every coin's candles) with one column per symbol, NaN where
a coin has no candle. Each coin's returns are taken over ITS OWN rows (as in `windows.py`: a gap is not
filled, the next return spans it), then aligned back on the union index (NaN where the coin has no candle).
Market windows are counted in rows of the union index.

Columns (float64, this order), for res in (short, medium, long):
    mkt_ret_1            equal-weight mean of the coins' 1-row log returns at t
    mkt_ret_{res}        sum of mkt_ret_1 over the window (the equal-weight market's log return)
    mkt_vol_{res}        std (ddof=1) of mkt_ret_1 over the window
    mkt_breadth_{res}    fraction of coins (with a window return at t) whose window return is > 0
    mkt_disp_{res}       cross-sectional std (ddof=0) of the coins' window returns
    mkt_btc_ret_{res}    BTC's window return as of t (only when BTC is among the columns): the value at BTC's
                         latest candle at or before t, carried over at most `cfg.long` rows of BTC gaps, so a
                         missing BTC candle does not drop every coin's row (causal: only the past is carried)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coinline.features.windows import RESOLUTIONS, windows_of
from coinline.training.config import FeatureConfig

MARKET_FEATURES = ("ret", "vol", "breadth", "disp")


def cross_asset_feature_names(symbols, cfg: FeatureConfig | None = None, *, btc: str = "BTC") -> tuple[str, ...]:
    names = ["mkt_ret_1"]
    for res in RESOLUTIONS:
        names += [f"mkt_{f}_{res}" for f in MARKET_FEATURES]
        if btc in symbols:
            names.append(f"mkt_btc_ret_{res}")
    return tuple(names)


def _own_row_returns(closes: pd.DataFrame, w: int) -> pd.DataFrame:
    """Per column: log(close_t / close of the coin's w-th previous candle), over its own rows, on closes' index."""
    out = {}
    for sym in closes.columns:
        lc = np.log(closes[sym].dropna())
        out[sym] = (lc - lc.shift(w)).reindex(closes.index)
    return pd.DataFrame(out, index=closes.index, columns=closes.columns, dtype="float64")


def _nanmean(a: np.ndarray) -> np.ndarray:
    n = np.isfinite(a).sum(axis=1)
    s = np.where(np.isfinite(a), a, 0.0).sum(axis=1)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def cross_asset_features(closes: pd.DataFrame, cfg: FeatureConfig, *, btc: str = "BTC") -> pd.DataFrame:
    """Causal market features indexed like `closes` (sorted ascending, unique open_time)."""
    if not closes.index.is_monotonic_increasing or not closes.index.is_unique:
        raise ValueError("cross_asset_features: closes must be indexed by sorted, unique open_time")
    closes = closes.reindex(columns=sorted(closes.columns)).astype("float64")
    idx = closes.index
    r1 = _own_row_returns(closes, 1)
    mkt1 = pd.Series(_nanmean(r1.to_numpy()), index=idx)
    cols: dict[str, pd.Series] = {"mkt_ret_1": mkt1}
    for res, w in windows_of(cfg).items():
        rw = _own_row_returns(closes, w).to_numpy()
        have = np.isfinite(rw)
        n = have.sum(axis=1)
        pos = (np.where(have, rw, 0.0) > 0).sum(axis=1)
        mean = _nanmean(rw)
        dev = np.where(have, rw - mean[:, None], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            breadth = np.where(n > 0, pos / np.maximum(n, 1), np.nan)
            disp = np.where(n > 0, np.sqrt((dev * dev).sum(axis=1) / np.maximum(n, 1)), np.nan)
        cols[f"mkt_ret_{res}"] = mkt1.rolling(w, min_periods=w).sum()
        cols[f"mkt_vol_{res}"] = mkt1.rolling(w, min_periods=w).std()
        cols[f"mkt_breadth_{res}"] = pd.Series(breadth, index=idx)
        cols[f"mkt_disp_{res}"] = pd.Series(disp, index=idx)
        if btc in closes.columns:
            btc_w = pd.Series(rw[:, closes.columns.get_loc(btc)], index=idx)   # NaN where BTC has no candle
            cols[f"mkt_btc_ret_{res}"] = btc_w.ffill(limit=int(cfg.long))
    out = pd.DataFrame(cols, index=idx).astype("float64")
    return out[list(cross_asset_feature_names(closes.columns, cfg, btc=btc))]
