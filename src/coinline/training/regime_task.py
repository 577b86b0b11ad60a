"""The global regime model inside walk-forward: labels from market-wide behaviour, a classifier that
predicts the regime `primary_horizon` bars ahead, fitted per fold on rows before the fold's test block
(embargoed), and out-of-sample posteriors for every test row. Those posteriors gate the per-coin
specialists in the stacked ensemble."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coinline.features.cross_asset import cross_asset_features
from coinline.models.base import derive_seed
from coinline.models.regime import REGIMES, RegimeClassifier, regime_labels, regime_score
from coinline.training.config import TrainConfig
from coinline.training.folds import folds_for


@dataclass
class RegimeResult:
    times: np.ndarray                       # market rows (ms)
    posteriors: np.ndarray                  # (rows, 4), NaN outside test blocks
    metrics: dict[str, Any] = field(default_factory=dict)
    final_model: bytes = b""


def market_frame(closes: pd.DataFrame) -> pd.DataFrame:
    """Equal-weight market log return per bar (mean over coins that traded both bars)."""
    rets = np.log(closes).diff()
    return pd.DataFrame({"mkt_ret_1": rets.mean(axis=1, skipna=True)}, index=closes.index)


def close_matrix(candles: pd.DataFrame) -> pd.DataFrame:
    """open_time x symbol closes of candle rows (columns sorted): the regime model's input, for training
    and serving alike."""
    closes = candles.pivot_table(index="open_time", columns="symbol", values="close", aggfunc="first").sort_index()
    return closes.reindex(sorted(closes.columns), axis=1)


def regime_inputs(closes: pd.DataFrame, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(X, times, market) of the regime model from a close matrix (open_time x symbol): the cross-asset
    features on the rows where they and the market return are all known. Training and serving both call it."""
    X = cross_asset_features(closes, cfg.features)
    market = market_frame(closes)
    ok = X.notna().all(axis=1) & market["mkt_ret_1"].notna()
    times = pd.DatetimeIndex(X.index[ok]).tz_convert("UTC").tz_localize(None).to_numpy()
    return X[ok].to_numpy(np.float64), times.astype("datetime64[ms]").astype(np.int64), market[ok]


def train_regime(X: np.ndarray, times: np.ndarray, market: pd.DataFrame, cfg: TrainConfig) -> RegimeResult:
    """X: cross-asset features aligned with `times` (rows with NaN already dropped); `market` indexed
    by the same times with `mkt_ret_1`."""
    h = cfg.primary_horizon
    f = cfg.features
    labels = regime_labels(market, vol_window=f.medium, trend_window=f.long, lookback_for_quantiles=f.long * 4)
    nxt = np.full(len(labels), -1)
    nxt[:-h] = labels[h:]
    folds = folds_for(times, cfg)  # the same fold settings (and embargo) as the per-coin specialists
    post = np.full((len(times), len(REGIMES)), np.nan)
    model = None
    for fold in folds:
        fit_rows = np.concatenate([fold.train_idx, fold.calib_idx])
        fit_rows = fit_rows[nxt[fit_rows] >= 0]
        model = RegimeClassifier().fit(X[fit_rows], nxt[fit_rows], seed=derive_seed(cfg.seed, "regime", fold.index))
        post[fold.test_idx] = model.predict_proba(X[fold.test_idx])
    tested = ~np.isnan(post[:, 0]) & (nxt >= 0)
    metrics = regime_score(nxt[tested], post[tested]) if tested.any() else {}
    metrics["label_counts"] = {REGIMES[i]: int((labels == i).sum()) for i in range(len(REGIMES))}
    return RegimeResult(times, post, metrics, model.to_bytes() if model is not None else b"")


def posteriors_for(times: np.ndarray, regime: RegimeResult) -> np.ndarray:
    """Regime posteriors aligned to a coin's rows by time (NaN where the market has no test posterior)."""
    pos = pd.Series(np.arange(len(regime.times)), index=regime.times)
    idx = pos.reindex(times).to_numpy()
    out = np.full((len(times), regime.posteriors.shape[1]), np.nan)
    ok = ~np.isnan(idx)
    out[ok] = regime.posteriors[idx[ok].astype(np.int64)]
    return out
