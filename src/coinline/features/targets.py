"""Forward-looking targets (labels) of one series. These USE future bars by definition: they are labels,
never features, and the rows whose future is not (exactly) known are NaN, to be dropped by consumers.

For each horizon h (in bars):
    ret_h{h}   log(close[t+h] / close[t]) where row t+h is h rows later AND exactly h intervals later in time;
               NaN when a gap makes the row h later a different horizon, and at the last h rows
    dir_h{h}   1.0 if ret > 0 else 0.0 (NaN where ret is NaN)
    risk_h{h}  |ret| / (trailing vol * sqrt(h)); trailing vol = std (ddof=1) of the last `vol_window` 1-row
               log returns up to and including t (rows, as the features); NaN in warmup or for a flat window
    mag_h{h}   magnitude class of risk: 0 (< 0.5), 1 (0.5 .. 1.5), 2 (> 1.5); NaN where risk is NaN
Nothing is ever filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coinline.timeframes import interval_ms

TARGET_KINDS = ("ret", "dir", "risk", "mag")
MAG_EDGES = (0.5, 1.5)


def to_ms(open_time) -> np.ndarray:
    """open_time (datetime64 of any unit/zone, or int ms) as int64 unix milliseconds."""
    s = pd.Series(open_time)
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype="int64")
    ts = pd.to_datetime(s, utc=True).dt.as_unit("ms")
    return ts.array.asi8.astype("int64", copy=False)


def infer_step_ms(times_ms: np.ndarray) -> int:
    """The interval of gridded times: the smallest positive step (gaps only make steps longer)."""
    d = np.diff(np.asarray(times_ms, dtype="int64"))
    d = d[d > 0]
    if not len(d):
        raise ValueError("cannot infer the interval from fewer than two distinct open times; pass interval=")
    return int(d.min())


def target_names(horizons) -> tuple[str, ...]:
    return tuple(f"{k}_h{h}" for h in horizons for k in TARGET_KINDS)


def make_targets(candles: pd.DataFrame, horizons: tuple[int, ...], vol_window: int, *,
                 interval: str | None = None) -> pd.DataFrame:
    """Targets of ONE series (sorted, unique open_time), indexed by open_time.

    The interval comes from `interval`, else the candles' `interval` column, else the smallest time step.
    """
    if vol_window < 2:
        raise ValueError(f"vol_window={vol_window}: needs at least 2 returns")
    if any(int(h) < 1 for h in horizons):
        raise ValueError(f"horizons {horizons}: every horizon must be >= 1 bar")
    t = to_ms(candles["open_time"])
    if len(t) > 1 and not (np.diff(t) > 0).all():
        raise ValueError("make_targets: open_time must be sorted ascending and unique (one series at a time)")
    if interval is None and "interval" in candles.columns and len(candles):
        ivs = pd.unique(candles["interval"])
        if len(ivs) != 1:
            raise ValueError(f"make_targets: several intervals in one series: {sorted(map(str, ivs))}")
        interval = str(ivs[0])
    n = len(t)
    step = interval_ms(interval) if interval is not None else (infer_step_ms(t) if n > 1 else 1)
    lc = np.log(candles["close"].to_numpy(dtype="float64"))
    r1 = np.r_[np.nan, np.diff(lc)] if n else np.empty(0)
    vol = pd.Series(r1).rolling(vol_window, min_periods=vol_window).std().to_numpy()
    vol = np.where(vol > 0, vol, np.nan)
    cols: dict[str, np.ndarray] = {}
    for h in horizons:
        h = int(h)
        ret = np.full(n, np.nan)
        if h < n:
            exact = (t[h:] - t[:-h]) == h * step
            ret[:-h] = np.where(exact, lc[h:] - lc[:-h], np.nan)
        known = np.isfinite(ret)
        risk = np.abs(ret) / (vol * np.sqrt(h))
        mag = np.where(risk < MAG_EDGES[0], 0.0, np.where(risk <= MAG_EDGES[1], 1.0, 2.0))
        cols[f"ret_h{h}"] = ret
        cols[f"dir_h{h}"] = np.where(known, (ret > 0).astype("float64"), np.nan)
        cols[f"risk_h{h}"] = risk
        cols[f"mag_h{h}"] = np.where(np.isfinite(risk), mag, np.nan)
    idx = pd.DatetimeIndex(pd.to_datetime(t, unit="ms", utc=True), name="open_time").as_unit("ms")
    return pd.DataFrame(cols, index=idx, columns=list(target_names(horizons)), dtype="float64")
