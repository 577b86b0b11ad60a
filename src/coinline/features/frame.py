"""Assembly: canonical candles of many coins -> one `CoinFrame` per coin (features, targets, prices).

Per coin, the feature matrix is the per-coin features (`windows.py`) followed by the market features
(`cross_asset.py`, computed on the union of all coins' open times and joined on open_time). Rows where any
feature is NaN (warmup) are dropped; rows are KEPT where targets are NaN (the end of the series, across
gaps): training code selects the valid rows per horizon with `valid_rows`. Column order is fixed by the
config (never by the data, except `mkt_btc_*` which exists only when BTC is in the candles).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from coinline.features.cross_asset import cross_asset_features
from coinline.features.targets import TARGET_KINDS, make_targets, to_ms
from coinline.features.windows import coin_features
from coinline.training.config import TrainConfig

NEEDED = ("symbol", "open_time", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, eq=False)
class CoinFrame:
    """One coin's rows in time order. `targets[h][kind]` (kind in dir/ret/risk/mag) are float arrays aligned
    with the rows, NaN where the label is unknown; `open_next` is the next candle's open (NaN at the end)."""

    symbol: str
    times: np.ndarray                    # int64 unix ms (open_time of each row's candle)
    F: np.ndarray                        # float64 (rows, features), all finite when built with dropna
    feature_names: tuple[str, ...]
    targets: dict[int, dict[str, np.ndarray]]
    close: np.ndarray
    open_next: np.ndarray
    quote: str = "USD"
    interval: str = "1h"

    def __len__(self) -> int:
        return len(self.times)

    def column(self, name: str) -> np.ndarray:
        return self.F[:, self.feature_names.index(name)]

    def tail(self, n: int | None) -> CoinFrame:
        """The last `n` rows (features were computed on the full history, so windows stay complete)."""
        if n is None or n >= len(self.times):
            return self
        sl = slice(len(self.times) - n, None)
        return CoinFrame(self.symbol, self.times[sl], self.F[sl], self.feature_names,
                         {h: {k: v[sl] for k, v in t.items()} for h, t in self.targets.items()},
                         self.close[sl], self.open_next[sl], self.quote, self.interval)

    def fingerprint(self) -> str:
        """SHA-256 over names, times, features, targets and prices: equal for equal frames."""
        h = hashlib.sha256()
        h.update("|".join((self.symbol, self.quote, self.interval) + self.feature_names).encode())
        arrays = [self.times, self.F, self.close, self.open_next]
        arrays += [self.targets[k][kind] for k in sorted(self.targets) for kind in sorted(self.targets[k])]
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def target_vol_window(cfg: TrainConfig) -> int:
    """Trailing-volatility window (rows) used by the risk / magnitude targets: the long context."""
    return int(cfg.features.long)


def valid_rows(frame: CoinFrame, horizon: int) -> np.ndarray:
    """Row indices whose targets at `horizon` are all finite (the only rows a model may fit or score on)."""
    if horizon not in frame.targets:
        raise KeyError(f"{frame.symbol}: no targets for horizon {horizon}; have {sorted(frame.targets)}")
    t = frame.targets[horizon]
    ok = np.ones(len(frame.times), dtype=bool)
    for kind in TARGET_KINDS:
        ok &= np.isfinite(t[kind])
    return np.flatnonzero(ok)


def candles_frame(candles: pd.DataFrame | pa.Table, *, quote: str | None = "USD",
                  interval: str | None = "1h") -> pd.DataFrame:
    """Canonical candles -> pandas rows of one quote/interval, open_time as datetime64[ms, UTC],
    sorted by (symbol, open_time); refuses duplicate (symbol, open_time) rows (e.g. two sources mixed)."""
    if isinstance(candles, pa.Table):
        keep = [c for c in candles.column_names if c in NEEDED + ("quote", "interval")]
        candles = candles.select(keep).to_pandas()
    df = candles
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {missing}")
    mask = np.ones(len(df), dtype=bool)
    if quote is not None and "quote" in df.columns:
        mask &= (df["quote"] == quote).to_numpy()
    if interval is not None and "interval" in df.columns:
        mask &= (df["interval"] == interval).to_numpy()
    df = df.loc[mask, list(NEEDED)].copy()
    if not len(df):
        raise ValueError(f"no candles for quote={quote} interval={interval}")
    df["symbol"] = df["symbol"].astype(str)
    df["open_time"] = pd.to_datetime(to_ms(df["open_time"]), unit="ms", utc=True).as_unit("ms")
    for c in NEEDED[2:]:
        df[c] = df[c].astype("float64")
    df = df.sort_values(["symbol", "open_time"], kind="mergesort").reset_index(drop=True)
    dup = df.duplicated(["symbol", "open_time"])
    if dup.any():
        first = df.loc[dup.idxmax()]
        raise ValueError(f"duplicate candles for {first['symbol']} at {first['open_time'].isoformat()} "
                         f"({int(dup.sum())} in all): one source/venue per series, please")
    return df


def build_coin_frames(candles: pd.DataFrame | pa.Table, cfg: TrainConfig, *, quote: str = "USD",
                      interval: str = "1h", dropna: bool = True) -> dict[str, CoinFrame]:
    """One `CoinFrame` per symbol (sorted by symbol). `dropna=False` keeps warmup rows (NaN features) so that
    every candle has a row -- the look-ahead check uses it; training always uses the default."""
    df = candles_frame(candles, quote=quote, interval=interval)
    closes = df.pivot(index="open_time", columns="symbol", values="close").sort_index()
    market = cross_asset_features(closes, cfg.features)
    vol_window = target_vol_window(cfg)
    frames: dict[str, CoinFrame] = {}
    codes, uniques = pd.factorize(df["symbol"], sort=True)
    bounds = np.searchsorted(codes, np.arange(len(uniques) + 1))
    for k, sym in enumerate(uniques):
        g = df.iloc[bounds[k]:bounds[k + 1]].reset_index(drop=True)
        sym = str(sym)
        own = coin_features(g, cfg.features)
        X = pd.concat([own, market.reindex(own.index)], axis=1)
        F = X.to_numpy(dtype="float64")
        keep = np.isfinite(F).all(axis=1) if dropna else np.ones(len(F), dtype=bool)
        tg = make_targets(g, tuple(cfg.horizons), vol_window, interval=interval)
        opens = g["open"].to_numpy(dtype="float64")
        open_next = np.r_[opens[1:], np.nan]
        frames[sym] = CoinFrame(
            symbol=sym,
            times=to_ms(g["open_time"])[keep],
            F=np.ascontiguousarray(F[keep]),
            feature_names=tuple(X.columns),
            targets={int(h): {kind: tg[f"{kind}_h{int(h)}"].to_numpy()[keep] for kind in ("dir", "ret", "risk", "mag")}
                     for h in cfg.horizons},
            close=g["close"].to_numpy(dtype="float64")[keep],
            open_next=open_next[keep],
            quote=quote,
            interval=interval,
        )
    return frames
