"""Decision inputs from candles: a model set's forecasts for (coin, decision time) rows. Pure: candles in,
rows out; the lake and the ledger are `service.py`'s business.

One feature path: the candles go through `features.frame.build_coin_frames` and
`training.regime_task.regime_inputs`, the very functions a training run calls, and each model predicts with
the `predict_proba` training scored. So a finished run re-predicts its own last test fold bit for bit (a
test holds it to that). Only candles at or before a decision time can reach its features (they are causal),
and the caller passes no later candle anyway.

Per (coin, horizon, decision row t):
    p_up               the combiner the coin's last fold served at the horizon: at the primary horizon its
                       meta-learner (the stack gated by the regime posteriors, or the base rate, the mean or
                       one member); elsewhere the horizon's stored combiner (base rate, mean or one member),
                       or, in sets stored before those existed, the mean of the horizon's specialists
                       (`combiner` names which: "stacked", "base_rate", "mean", "member:<family>")
    volatility         trailing 1-bar log-return volatility (`vol_long`, the risk target's normaliser) * sqrt(h):
                       the naive reference the scoreboard judges expected_abs_move against
    expected_abs_move  the served risk head: sqrt(f * 2 / pi), the mean |X| of a zero-mean normal with
                       variance f, where f is the h-bar variance forecast of the log-HAR head stored with the
                       horizon (`evaluation.risk.loghar_forecast`, fitted on the models' fitting window; its
                       components read r1 = `ret_1` at or before t only). Sets stored before the head existed
                       (no "risk_head", or None when it could not be fitted) serve volatility * risk scale (the
                       mean of |ret| / (vol sqrt h) on the models' fitting window), as they always did.
    expected_move      (2 p_up - 1) * expected_abs_move
    confidence         |2 p_up - 1|
The baseline set (`baseline:climatology`) gives, at each t, the up frequency over the trailing labelled
window as P(up), the same risk construction, and the regimes' trailing frequencies as posteriors.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd

from coinline.evaluation.risk import LogHARModel, loghar_forecast
from coinline.features.frame import CoinFrame, build_coin_frames
from coinline.features.targets import to_ms
from coinline.forecasting.modelset import BASELINE_WINDOW_BARS, ModelSet
from coinline.forecasting.schema import REGIME_COLUMNS
from coinline.models.regime import N_REGIMES, regime_labels
from coinline.timeframes import interval_ms
from coinline.training.regime_task import close_matrix, regime_inputs

VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


def input_hashes(candles: pd.DataFrame, *, header: str) -> pd.Series:
    """SHA-256 chain over the candles in time order: the hash at open time t covers every candle with
    open_time <= t (all symbols), so one pass gives each decision time the hash of exactly what it could read.
    Indexed by open time (int ms)."""
    t = to_ms(candles["open_time"])
    codes, _ = pd.factorize(candles["symbol"].astype(str), sort=True)
    order = np.lexsort((codes, t))
    rec = np.empty(len(order), dtype=[("t", "<i8"), ("s", "<i4")] + [(c, "<f8") for c in VALUE_COLUMNS])
    rec["t"], rec["s"] = t[order], codes[order]
    for c in VALUE_COLUMNS:
        rec[c] = candles[c].to_numpy(dtype="float64")[order] + 0.0
    starts = np.flatnonzero(np.r_[True, rec["t"][1:] != rec["t"][:-1]])
    ends = np.r_[starts[1:], len(rec)]
    digest = hashlib.sha256(header.encode()).digest()
    out = []
    for a, b in zip(starts, ends, strict=True):
        digest = hashlib.sha256(digest + rec[a:b].tobytes()).digest()
        out.append(digest.hex())
    return pd.Series(out, index=rec["t"][starts], dtype=object)


class Inputs:
    """Everything derived from the candles once, for any number of decision times."""

    def __init__(self, ms: ModelSet, candles: pd.DataFrame):
        self.ms = ms
        self.frames: dict[str, CoinFrame] = build_coin_frames(candles, ms.cfg, quote=ms.quote, interval=ms.interval)
        closes = close_matrix(candles)
        self.regime_X, self.regime_times, self.market = regime_inputs(closes, ms.cfg)
        header = json.dumps([ms.source, ms.quote, ms.interval, sorted(self.frames)])
        self.hashes = input_hashes(candles, header=header)
        self.step = interval_ms(ms.interval)

    def rows(self, symbol: str, decision_ms: np.ndarray) -> np.ndarray:
        """Frame rows of `symbol` at the decision times (-1 where the coin has no usable row)."""
        frame = self.frames.get(symbol)
        if frame is None:
            return np.full(len(decision_ms), -1)
        pos = np.searchsorted(frame.times, decision_ms)
        pos = np.minimum(pos, len(frame.times) - 1)
        return np.where(frame.times[pos] == decision_ms, pos, -1) if len(frame.times) else np.full(len(decision_ms), -1)

    def regime_posteriors(self, decision_ms: np.ndarray) -> np.ndarray:
        """The set's regime model at each time (NaN rows where the market features are unknown)."""
        post = np.full((len(decision_ms), N_REGIMES), np.nan)
        if self.ms.regime is None or not len(self.regime_times):
            return post
        pos = np.minimum(np.searchsorted(self.regime_times, decision_ms), len(self.regime_times) - 1)
        ok = self.regime_times[pos] == decision_ms
        if ok.any():
            post[ok] = self.ms.regime.predict_proba(self.regime_X[pos[ok]])
        return post


def _momentum(table: dict[str, float], ret_short: np.ndarray) -> np.ndarray:
    sign = np.sign(np.nan_to_num(ret_short, nan=0.0)).astype(int)
    return np.array([table[str(s)] for s in sign], dtype=float)


def _rows_frame(ms: ModelSet, inputs: Inputs, frame: CoinFrame, rows: np.ndarray, h: int, p: np.ndarray,
                abs_move: np.ndarray, vol: np.ndarray, post: np.ndarray, base: np.ndarray, mom: np.ndarray,
                combiner: str) -> pd.DataFrame:
    t = frame.times[rows]
    post = np.where(np.isfinite(post), post, 1.0 / N_REGIMES)
    out = pd.DataFrame({
        "model_set": ms.set_id, "set_hash": ms.set_hash, "symbol": frame.symbol, "quote": ms.quote,
        "interval": ms.interval, "source": ms.source, "horizon": np.int32(h),
        "decision_time": pd.to_datetime(t, unit="ms", utc=True),
        "forecast_time": pd.to_datetime(t + inputs.step, unit="ms", utc=True),
        "target_time": pd.to_datetime(t + (h + 1) * inputs.step, unit="ms", utc=True),
        "p_up": p, "expected_move": (2.0 * p - 1.0) * abs_move, "expected_abs_move": abs_move,
        "volatility": vol, "confidence": np.abs(2.0 * p - 1.0),
        **{c: post[:, i] for i, c in enumerate(REGIME_COLUMNS)},
        "p_base_rate": base, "p_momentum": mom, "combiner": combiner, "dataset_hash": ms.dataset_hash,
        "input_hash": inputs.hashes.reindex(t).to_numpy(),
    })
    return out


def predict_model_rows(ms: ModelSet, inputs: Inputs, symbol: str, rows: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """A trained set's forecasts for frame rows `rows` of `symbol`, every horizon; plus each specialist's P(up)
    per horizon ({h: {family: array}}) for inspection."""
    frame = inputs.frames[symbol]
    coin = ms.coin(symbol)
    post = inputs.regime_posteriors(frame.times[rows])
    vol1 = frame.column("vol_long")[rows]
    ret_short = frame.column("ret_short")[rows]
    parts, members_out = [], {}
    for h_key, spec in sorted(coin["horizons"].items(), key=lambda kv: int(kv[0])):
        h = int(h_key)
        members = {fam: model.predict_proba(frame.F, rows) for fam, model in sorted(ms.models[symbol][h].items())}
        meta = ms.metas.get(symbol) if h == ms.primary_horizon else ms.horizon_metas.get(symbol, {}).get(h)
        if meta is not None:
            P = np.column_stack([members[f] for f in meta.families])
            p, _ = meta.predict(P, np.nan_to_num(post, nan=1.0 / N_REGIMES))
            combiner = "stacked" if meta.choice == "stack" else meta.choice
        else:
            p, combiner = np.column_stack([members[f] for f in sorted(members)]).mean(axis=1), "mean"
        vol = vol1 * np.sqrt(h)
        parts.append(_rows_frame(ms, inputs, frame, rows, h, p, _served_abs_move(frame, rows, h, spec, vol), vol, post,
                                 np.full(len(rows), spec["base_rate"]), _momentum(spec["momentum"], ret_short),
                                 combiner))
        members_out[h] = members
    return pd.concat(parts, ignore_index=True), members_out


def _served_abs_move(frame: CoinFrame, rows: np.ndarray, h: int, spec: dict, vol: np.ndarray) -> np.ndarray:
    """expected_abs_move at `rows`: sqrt(2 f / pi) from the horizon's stored log-HAR head, or, for a set
    stored without one, the trailing volatility * sqrt(h) (`vol`) times the stored risk scale."""
    head = spec.get("risk_head")
    if not head:
        return vol * spec["risk_scale"]
    f = loghar_forecast(LogHARModel.from_dict(head), frame.column("ret_1"), rows, h=h)
    return np.sqrt(f * (2.0 / math.pi))


def _trailing(values: np.ndarray, upto: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of the finite values[j] over rows j in (upto - window, upto], per entry of `upto`
    (upto = -1: nothing known yet)."""
    ok = np.isfinite(values)
    csum = np.r_[0.0, np.cumsum(np.where(ok, values, 0.0))]
    ccnt = np.r_[0, np.cumsum(ok)]
    hi = upto + 1
    lo = np.maximum(hi - window, 0)
    return csum[hi] - csum[lo], (ccnt[hi] - ccnt[lo]).astype(float)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def predict_baseline_rows(ms: ModelSet, inputs: Inputs, symbol: str, rows: np.ndarray) -> pd.DataFrame:
    """Climatology: at decision row t only labels already realized then count (row j with
    time_j + h * interval <= time_t), over the trailing BASELINE_WINDOW_BARS rows."""
    frame = inputs.frames[symbol]
    t = frame.times[rows]
    vol1 = frame.column("vol_long")[rows]
    sign = np.sign(np.nan_to_num(frame.column("ret_short"), nan=0.0))
    post = _regime_climatology(inputs, t)
    parts = []
    for h in ms.horizons:
        tg = frame.targets[h]
        upto = np.searchsorted(frame.times, t - h * inputs.step, side="right") - 1
        y = tg["dir"]
        base = _ratio(*_trailing(y, upto, BASELINE_WINDOW_BARS))
        mom = base.copy()
        for s in (-1.0, 1.0):   # Beta-smoothed as in evaluation.baselines: (ups + 10 base) / (rows + 10)
            ups, n = _trailing(np.where(sign == s, y, np.nan), upto, BASELINE_WINDOW_BARS)
            mom = np.where(sign[rows] == s, (ups + 10.0 * base) / (n + 10.0), mom)
        scale = _ratio(*_trailing(tg["risk"], upto, BASELINE_WINDOW_BARS))
        vol = vol1 * np.sqrt(h)
        parts.append(_rows_frame(ms, inputs, frame, rows, h, base, vol * scale, vol, post, base, mom,
                                 "climatology"))
    return pd.concat(parts, ignore_index=True)


def _regime_climatology(inputs: Inputs, t: np.ndarray) -> np.ndarray:
    """Trailing frequency of each regime label (the rule-based labels training forecasts) up to each time."""
    f = inputs.ms.cfg.features
    labels = regime_labels(inputs.market, vol_window=f.medium, trend_window=f.long, lookback_for_quantiles=f.long * 4)
    upto = np.searchsorted(inputs.regime_times, t, side="right") - 1
    out = np.full((len(t), N_REGIMES), np.nan)
    lab = np.where(labels >= 0, labels, -1)
    for k in range(N_REGIMES):
        out[:, k] = _ratio(*_trailing(np.where(lab >= 0, (lab == k).astype(float), np.nan), upto,
                                      BASELINE_WINDOW_BARS))
    return out


def predict(ms: ModelSet, inputs: Inputs, symbol: str, rows: np.ndarray) -> pd.DataFrame:
    if ms.is_baseline:
        return predict_baseline_rows(ms, inputs, symbol, rows)
    return predict_model_rows(ms, inputs, symbol, rows)[0]
