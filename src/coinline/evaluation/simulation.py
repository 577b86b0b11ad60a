"""Deterministic long/flat spot trading simulation of ensemble P(up) signals (Phase 6B).

Inputs are three frames with the same rows (one row per bar, index = the bar's CLOSE time, as epoch ms ints
or a tz-aware DatetimeIndex) and symbol columns:
    signals     P(up) observed at the bar's close (NaN = no signal)
    opens_next  the OPEN of the following bar, aligned with the signal row (the fill price for that signal)
    closes      the bar's close (used only to value the position still open at the end of the data)

Rules (no randomness, no parameters beyond the arguments):
  * Decisions are taken every ``horizon_bars`` rows, starting at the first row (rows 0, h, 2h, ...), so
    holding periods do not overlap and match the label horizon. Each decision's position is held until the
    next decision's fill.
  * Target weight per coin (fraction of equity, long/flat spot, no shorting, no leverage beyond the limits):
    ``max_position`` if p >= ``threshold`` else 0. If the gross sum exceeds ``max_exposure`` every weight is
    scaled down by the same factor. So per coin w <= max_position and sum w <= max_exposure by construction
    (and both maxima are reported for a gate to verify). The rest of the equity is cash earning 0.
  * Fill at the next bar's open (``opens_next`` of the decision row). The period of decision row d ends at the
    next decision row's fill (``opens_next`` of that row): open-to-open returns. The last decision's period ends
    at the final row and is marked at ``closes`` of the final row (not liquidated; no exit cost). When the
    next decision row IS the final row and its next open is missing (live data: that bar has not opened), the
    period is marked at the final row's close instead. A decision on the final row itself has no later price
    and is not executed.
  * A coin is traded in a period only if it has a signal and finite, positive entry and exit prices; otherwise
    its target weight is 0 for that period (missing data never creates returns; a coin held before is
    treated as sold at the fill, with its cost).
  * Cost at each fill: c * sum_s |w_new,s - w_old,s|, c = (fee_bps + slippage_bps) / 1e4, w_old = the previous
    period's target weights (weights are treated as reset to target at each fill; price drift inside a period
    is not re-traded, a standard vectorized approximation). Cost is paid from equity at the fill, then the rest
    is invested: equity_{k+1} = equity_k * (1 - cost_k) * (1 + sum_s w_k,s r_k,s).

Reported metrics:
  total_return      final equity / 1 - 1 (equity starts at 1.0)
  sharpe            mean(net) / std(net, ddof=1) * sqrt(periods_per_year) over the period net returns, with
                    periods_per_year = bars_per_year / horizon_bars and bars_per_year = 365 * 86_400_000 /
                    interval_ms (crypto trades 24/7); interval_ms is the median spacing of the index unless
                    given. 0.0 when fewer than 2 periods or the std is 0.
  max_drawdown      max over time of 1 - equity / running peak (a positive fraction; 0 if never below peak)
  turnover          sum over fills and coins of |delta w| / n_periods
  hit_rate          fraction of invested periods (gross weight > 0) with net return > 0; None if never invested
  n_trades          number of (fill, coin) pairs with a non-zero weight change
  max_gross_exposure, max_position_observed   maxima of sum w and of w over all periods
  per_symbol        per coin: gross = sum_k w r (arithmetic, not compounded), cost = sum_k c |delta w|,
                    net = gross - cost, n_trades, periods_held
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

YEAR_MS = 365 * 86_400_000
_TOL = 1e-12


@dataclass
class SimulationResult:
    equity_times_ms: list[int]
    equity_values: list[float]
    total_return: float
    sharpe: float
    max_drawdown: float
    turnover: float
    hit_rate: float | None
    n_trades: int
    n_periods: int
    max_gross_exposure: float
    max_position_observed: float
    per_symbol: dict[str, dict]
    params: dict
    period_returns: list[float] = field(default_factory=list)
    weights: pd.DataFrame | None = field(default=None, repr=False, compare=False)  # decision time (ms) x symbol

    @property
    def within_limits(self) -> bool:
        return (self.max_position_observed <= self.params["max_position"] + 1e-9
                and self.max_gross_exposure <= self.params["max_exposure"] + 1e-9)

    def to_dict(self) -> dict:
        """JSON-safe summary (plain Python numbers, no NaN); the weights frame is left out."""
        return {
            "equity": {"times_ms": [int(t) for t in self.equity_times_ms],
                       "values": [float(v) for v in self.equity_values]},
            "total_return": float(self.total_return),
            "sharpe": float(self.sharpe),
            "max_drawdown": float(self.max_drawdown),
            "turnover": float(self.turnover),
            "hit_rate": None if self.hit_rate is None else float(self.hit_rate),
            "n_trades": int(self.n_trades),
            "n_periods": int(self.n_periods),
            "max_gross_exposure": float(self.max_gross_exposure),
            "max_position_observed": float(self.max_position_observed),
            "limits": {"max_position": float(self.params["max_position"]),
                       "max_exposure": float(self.params["max_exposure"])},
            "within_limits": bool(self.within_limits),
            "per_symbol": {s: dict(v) for s, v in self.per_symbol.items()},
            "period_returns": [float(r) for r in self.period_returns],
            "params": dict(self.params),
        }


def index_to_ms(index: pd.Index) -> np.ndarray:
    """Epoch-ms int64 array from an int index (already ms) or a tz-aware DatetimeIndex."""
    if isinstance(index, pd.DatetimeIndex):
        if index.tz is None:
            raise ValueError("naive DatetimeIndex given; coinline needs timezone-aware UTC times")
        return np.asarray(index.tz_convert("UTC").as_unit("ms").asi8, dtype=np.int64)
    arr = np.asarray(index)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"index must be epoch-ms integers or a tz-aware DatetimeIndex, got {arr.dtype}")
    return arr.astype(np.int64)


def _align(frame: pd.DataFrame, signals: pd.DataFrame, name: str) -> np.ndarray:
    missing_cols = [c for c in signals.columns if c not in frame.columns]
    if missing_cols:
        raise ValueError(f"{name} lacks symbol columns {missing_cols}")
    if not signals.index.isin(frame.index).all():
        raise ValueError(f"{name} lacks some signal rows (its index must contain the signals' index)")
    return frame.loc[signals.index, list(signals.columns)].to_numpy(dtype=float)


def target_weights(p: np.ndarray, *, threshold: float, max_position: float, max_exposure: float) -> np.ndarray:
    """Long/flat target weights for one decision: max_position where p >= threshold, scaled to max_exposure."""
    w = np.where(np.nan_to_num(p, nan=-np.inf) >= threshold, max_position, 0.0)
    gross = float(w.sum())
    if gross > max_exposure:
        w = w * (max_exposure / gross)
        w = np.minimum(w, max_position)
    return w


def simulate(
    signals: pd.DataFrame,
    opens_next: pd.DataFrame,
    closes: pd.DataFrame,
    *,
    fee_bps: float,
    slippage_bps: float,
    max_position: float,
    max_exposure: float,
    threshold: float = 0.55,
    horizon_bars: int = 1,
    interval_ms: int | None = None,
) -> SimulationResult:
    """Run the long/flat simulation described in the module docstring."""
    if fee_bps < 0 or slippage_bps < 0:
        raise ValueError("fee_bps and slippage_bps must be >= 0")
    if not 0 <= max_position <= 1 or not 0 <= max_exposure:
        raise ValueError("need 0 <= max_position <= 1 and max_exposure >= 0")
    if int(horizon_bars) != horizon_bars or horizon_bars < 1:
        raise ValueError("horizon_bars must be a positive integer")
    horizon_bars = int(horizon_bars)
    if signals.columns.has_duplicates or signals.index.has_duplicates:
        raise ValueError("signals must have unique symbols and unique times")
    times = index_to_ms(signals.index)
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise ValueError("signals index must be strictly increasing")
    symbols = [str(c) for c in signals.columns]
    P = signals.to_numpy(dtype=float)
    opn = _align(opens_next, signals, "opens_next")
    C = _align(closes, signals, "closes")
    n_rows, n_sym = P.shape
    if interval_ms is None:
        interval_ms = int(np.median(np.diff(times))) if n_rows > 1 else 0
    periods_per_year = (YEAR_MS / interval_ms / horizon_bars) if interval_ms and interval_ms > 0 else 0.0
    cost_rate = (fee_bps + slippage_bps) / 1e4

    decisions = list(range(0, n_rows, horizon_bars))
    periods = []  # (decision row, end row, entry prices, exit prices)
    for k, d in enumerate(decisions):
        if k + 1 < len(decisions):
            e = decisions[k + 1]
            exit_px = opn[e].copy()
            if e == n_rows - 1:  # the final row's next open may not exist yet: mark at its close
                exit_px = np.where(np.isfinite(exit_px), exit_px, C[e])
        else:
            e = n_rows - 1
            if e == d:
                break  # a decision on the final row has no later price
            exit_px = C[e]
        periods.append((d, e, opn[d], exit_px))

    equity = 1.0
    eq_times = [int(times[decisions[0]])] if periods else []
    eq_values = [1.0] if periods else []
    w_prev = np.zeros(n_sym)
    net_returns: list[float] = []
    weights_rows = []
    gross_contrib = np.zeros(n_sym)
    cost_contrib = np.zeros(n_sym)
    trades_sym = np.zeros(n_sym, dtype=np.int64)
    held_sym = np.zeros(n_sym, dtype=np.int64)
    turnover_sum = 0.0
    max_gross = 0.0
    max_pos = 0.0
    invested = 0
    hits = 0
    for d, e, entry, exit_px in periods:
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = np.isfinite(entry) & np.isfinite(exit_px) & (entry > 0) & (exit_px > 0)
            r = np.where(ok, exit_px / np.where(ok, entry, 1.0) - 1.0, 0.0)
        p_row = np.where(ok, P[d], np.nan)
        w = target_weights(p_row, threshold=threshold, max_position=max_position, max_exposure=max_exposure)
        dw = np.abs(w - w_prev)
        cost_sym = cost_rate * dw
        cost = float(cost_sym.sum())
        gross_sym = w * r
        gross_ret = float(gross_sym.sum())
        net = (1.0 - cost) * (1.0 + gross_ret) - 1.0
        equity *= 1.0 + net
        eq_times.append(int(times[e]))
        eq_values.append(float(equity))
        net_returns.append(float(net))
        weights_rows.append(w)
        gross_contrib += gross_sym
        cost_contrib += cost_sym
        trades_sym += dw > _TOL
        held_sym += w > 0
        turnover_sum += float(dw.sum())
        gw = float(w.sum())
        max_gross = max(max_gross, gw)
        max_pos = max(max_pos, float(w.max()) if n_sym else 0.0)
        if gw > 0:
            invested += 1
            hits += net > 0
        w_prev = w

    n_periods = len(net_returns)
    rets = np.asarray(net_returns)
    sharpe = 0.0
    if n_periods >= 2 and periods_per_year > 0:
        sd = float(np.std(rets, ddof=1))
        if sd > 0:
            sharpe = float(np.mean(rets) / sd * math.sqrt(periods_per_year))
    values = np.asarray(eq_values) if eq_values else np.array([1.0])
    peaks = np.maximum.accumulate(values)
    max_dd = float(np.max(1.0 - values / peaks))
    per_symbol = {
        s: {"gross": float(gross_contrib[i]), "cost": float(cost_contrib[i]),
            "net": float(gross_contrib[i] - cost_contrib[i]), "n_trades": int(trades_sym[i]),
            "periods_held": int(held_sym[i])}
        for i, s in enumerate(symbols)
    }
    weights = pd.DataFrame(np.array(weights_rows).reshape(n_periods, n_sym), columns=symbols,
                           index=pd.Index([int(times[p[0]]) for p in periods], name="decision_time_ms"))
    params = {
        "fee_bps": float(fee_bps), "slippage_bps": float(slippage_bps), "max_position": float(max_position),
        "max_exposure": float(max_exposure), "threshold": float(threshold), "horizon_bars": horizon_bars,
        "interval_ms": int(interval_ms), "periods_per_year": float(periods_per_year),
    }
    return SimulationResult(
        equity_times_ms=eq_times,
        equity_values=eq_values,
        total_return=float(values[-1] - 1.0),
        sharpe=sharpe,
        max_drawdown=max(0.0, max_dd),
        turnover=turnover_sum / n_periods if n_periods else 0.0,
        hit_rate=hits / invested if invested else None,
        n_trades=int(trades_sym.sum()),
        n_periods=n_periods,
        max_gross_exposure=max_gross,
        max_position_observed=max_pos,
        per_symbol=per_symbol,
        params=params,
        period_returns=net_returns,
        weights=weights,
    )
