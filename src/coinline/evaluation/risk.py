"""Scoring the risk head: variance forecasts per coin and horizon against EWMA and HAR-RV baselines.

Conventions (rows, not time, as in `features.windows` / `features.targets`):
    r1[t]   the 1-bar log return log(close[t] / close[t-1]), known once bar t has closed (r1[0] is NaN).
            Pass NaN for a return that spans a gap; every window that contains it is then NaN.
    A variance forecast at row t is for the next h bars (t+1 .. t+h) and uses only r1[<= t].

Targets (`realized_variance`):
    RV_h[t] = sum_{i=1..h} r1[t+i]^2   (default) the realized variance of the next h bars, NaN unless all h
            returns are known. The less noisy proxy: HAR is fitted on it and offline evaluation scores on it.
    ret_h[t]^2                          (``ret_h=`` given) the squared h-bar return, with ret_h as in
            `features.targets` (log(close[t+h]/close[t]), exact-time checked). The only proxy a live ledger
            row has (its realized_ret); unbiased but much noisier, so tests have less power.
    Both are conditionally unbiased for the h-bar variance (zero drift), and QLIKE ranks forecasts the same
    in expectation under any such proxy (Patton 2011); MSE on log variance does not.

Forecasts:
    ewma    RiskMetrics (J.P. Morgan 1996) sigma2[t] = lam * sigma2[t-1] + (1 - lam) * r1[t]^2, lam = 0.94, as
            a normalised exponentially weighted mean of r1[<= t]^2 (no seed value needed; NaN for the first
            `min_periods` rows). RiskMetrics is an IGARCH without drift, so the h-bar forecast is h * sigma2[t].
    har     HAR-RV of Corsi (2009, J. Financial Econometrics 7(2)): RV_h[t] = b0 + b_d RV^(1) + b_w RV^(24) +
            b_m RV^(168) + e, the daily / weekly / monthly components expressed in bars -- for hourly data the
            means of r1^2 over the last 1, 24 and 168 bars up to t. Fitted by OLS on training rows only: a row
            is used when it and the h rows its target reads are all training rows (a purge, so no test return
            enters a fit). Forecasts are floored at HAR_FLOOR * the training mean of RV_h (> 0, QLIKE needs it).
    loghar  the SERVED risk head (`loghar_fit` / `loghar_forecast`): HAR in logs, the form Corsi (2009, sec. 4)
            also reports and the realized-volatility literature favours for its skewed, heteroskedastic
            errors: log RV_h[t] = b0 + b_d log RV^(1) + b_w log RV^(24) + b_m log RV^(168) + e, fitted by OLS
            on the same purged training rows as HAR (rows with RV_h > 0). exp() of a mean of logs is biased
            low (E[exp e] > 1), so the forecast is c * exp(b0 + log x @ b) with c = mean(RV_h / exp(fit))
            over the fitted rows: the multiplicative constant that minimises the mean training QLIKE (the
            QLIKE-optimal scale of a forecast; it also removes the log bias). Each component is floored at
            LOGHAR_FLOOR * its training mean before the log, in fitting and forecasting alike: a run of zero
            returns (low-priced coins) would otherwise give log 0. JSON-safe (`to_dict` / `from_dict`), so
            a run's model set stores it and serving computes the same forecast.
    constant  the training mean of RV_h (the unconditional variance; the no-skill reference).
    model   the risk head's expected absolute h-bar move m (in log-return units, i.e. risk_h * vol * sqrt(h)),
            read as a zero-mean normal: E|X| = sigma * sqrt(2 / pi), so the variance is m^2 * pi / 2.

Losses (per row; s2 = target proxy, f = variance forecast > 0):
    QLIKE   L(s2, f) = s2/f - log(s2/f) - 1 (Patton 2011, J. Econometrics 160(1)): >= 0, = 0 at f = s2, its
            expectation minimised at f = E[s2] and robust to noise in the proxy. The primary score.
    MSE_log (log s2 - log f)^2: standard but not robust to a noisy proxy (it favours forecasts biased down by
            the E[log chi2] offset), so it is reported, not tested.
`score_variance` scores rows where the target is finite and > 0 and every forecast is finite (the same rows
for all), and tests each forecast against a reference (HAR by default) with the joint block-bootstrap test
on the per-row QLIKE difference (coins summed per time stamp, `evaluation.joint.joint_chance_test`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from coinline.errors import CoinlineError
from coinline.evaluation.joint import joint_chance_test

RISKMETRICS_LAMBDA = 0.94
HAR_WINDOWS = (1, 24, 168)       # daily / weekly / monthly in hourly bars
HAR_FLOOR = 0.01                 # forecasts >= this fraction of the training mean of RV_h
LOGHAR_FLOOR = 0.01              # log-HAR components >= this fraction of their training mean (no log 0)
LOGHAR_KIND = "loghar"           # the `kind` a stored log-HAR model declares


class RiskModelError(CoinlineError, ValueError):
    """A risk model cannot be fitted (too few usable rows) or a stored one is malformed (names the field)."""


def _r1(r1: Any) -> np.ndarray:
    arr = np.asarray(r1, dtype=float)
    if arr.ndim != 1:
        raise ValueError("r1 must be 1-D")
    return arr


def _check_h(h: int) -> int:
    if int(h) != h or h < 1:
        raise ValueError(f"h={h}: the horizon must be an integer >= 1 bar")
    return int(h)


def realized_variance(r1: Any, h: int, *, ret_h: Any = None) -> np.ndarray:
    """Target of a variance forecast at each row t: sum of r1[t+1..t+h]^2 (NaN unless all are known), or
    ret_h[t]^2 when ``ret_h`` is given (then r1 is ignored and may be None)."""
    h = _check_h(h)
    if ret_h is not None:
        return np.asarray(ret_h, dtype=float) ** 2
    sq = _r1(r1) ** 2
    n = sq.shape[0]
    out = np.full(n, np.nan)
    if h < n:
        # sum over the window of h rows ending at t+h, NaN if any is NaN (rolling sums never fill)
        win = pd.Series(sq).rolling(h, min_periods=h).sum().to_numpy()
        out[:-h] = win[h:]
    return out


def ewma_variance(r1: Any, lam: float = RISKMETRICS_LAMBDA, *, min_periods: int = 24) -> np.ndarray:
    """RiskMetrics 1-bar variance forecast known at each row t (from r1[<= t]; NaN returns are skipped)."""
    if not 0 < lam < 1:
        raise ValueError("lam must be in (0, 1)")
    sq = pd.Series(_r1(r1) ** 2)
    return sq.ewm(alpha=1.0 - lam, adjust=True, min_periods=max(int(min_periods), 1)).mean().to_numpy()


def ewma_forecast(r1: Any, h: int, lam: float = RISKMETRICS_LAMBDA, *, min_periods: int = 24) -> np.ndarray:
    """h-bar variance forecast at each row: h * the RiskMetrics 1-bar variance (flat term structure)."""
    return _check_h(h) * ewma_variance(r1, lam, min_periods=min_periods)


def har_components(r1: Any, windows: tuple[int, ...] = HAR_WINDOWS) -> np.ndarray:
    """(n, len(windows)) means of r1^2 over the last w rows up to and including t (NaN in warmup)."""
    sq = pd.Series(_r1(r1) ** 2)
    return np.column_stack([sq.rolling(w, min_periods=w).mean().to_numpy() for w in windows])


@dataclass(frozen=True)
class HARModel:
    h: int
    windows: tuple[int, ...]
    coef: tuple[float, ...]     # intercept, then one per window
    floor: float
    n_train: int
    train_mean: float           # mean RV_h of the rows fitted on (the constant forecast)


def _row_mask(idx: Any, n: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"a boolean row mask must have length {n}")
        return arr.copy()
    mask = np.zeros(n, dtype=bool)
    mask[arr.astype(np.int64)] = True
    return mask


def _purged_training_rows(r1: Any, train_idx: Any, h: int, windows: tuple[int, ...]
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train mask, ok, y, x) for fitting an h-bar variance model: `ok[t]` when rows t .. t+h are all
    training rows (counted with a cumulative sum); y = RV_h reading only training returns (others masked, so
    no test return leaks into a target); x = the HAR components of r1."""
    r = _r1(r1)
    n = r.shape[0]
    train = _row_mask(train_idx, n)
    c = np.concatenate([[0], np.cumsum(train)])
    ok = np.zeros(n, dtype=bool)
    if h < n:
        ok[: n - h] = (c[h + 1:] - c[: n - h]) == h + 1
    return train, ok, realized_variance(np.where(train, r, np.nan), h), har_components(r, windows)


def har_fit(r1: Any, train_idx: Any, h: int, *, windows: tuple[int, ...] = HAR_WINDOWS,
            min_rows: int = 50) -> HARModel:
    """OLS of RV_h on [1, HAR components] over training rows whose next h rows are training rows too.

    train_idx: integer row indices or a boolean mask over the rows of r1.
    """
    h = _check_h(h)
    train, ok, y, x = _purged_training_rows(r1, train_idx, h, windows)
    use = ok & np.isfinite(y) & np.isfinite(x).all(axis=1)
    if use.sum() < max(min_rows, len(windows) + 2):
        raise ValueError(f"har_fit: only {int(use.sum())} usable training rows (need >= {min_rows})")
    design = np.column_stack([np.ones(int(use.sum())), x[use]])
    coef, *_ = np.linalg.lstsq(design, y[use], rcond=None)
    mean = float(np.mean(y[use]))
    return HARModel(h=h, windows=tuple(int(w) for w in windows), coef=tuple(float(b) for b in coef),
                    floor=HAR_FLOOR * mean, n_train=int(use.sum()), train_mean=mean)


def har_forecast(model: HARModel, r1: Any, idx: Any = None, h: int | None = None) -> np.ndarray:
    """HAR h-bar variance forecasts at rows ``idx`` (all rows if None), from r1[<= t]; NaN in warmup."""
    if h is not None and _check_h(h) != model.h:
        raise ValueError(f"model was fitted for h={model.h}, asked for h={h}")
    x = har_components(r1, model.windows)
    if idx is not None:
        x = x[np.asarray(idx)]
    pred = model.coef[0] + x @ np.asarray(model.coef[1:])
    return np.where(np.isfinite(pred), np.maximum(pred, model.floor), np.nan)


@dataclass(frozen=True)
class LogHARModel:
    """A fitted log-HAR risk head (see the module docstring): everything `loghar_forecast` needs."""

    h: int
    windows: tuple[int, ...]
    coef: tuple[float, ...]     # intercept, then one per window (on log components)
    scale: float                # c, the QLIKE-optimal multiplicative correction
    floor: tuple[float, ...]    # per window: LOGHAR_FLOOR * the component's training mean
    n_train: int                # rows fitted on

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (plain ints and floats; floats survive a JSON round trip exactly)."""
        return {"kind": LOGHAR_KIND, "h": int(self.h), "windows": [int(w) for w in self.windows],
                "coef": [float(b) for b in self.coef], "scale": float(self.scale),
                "floor": [float(f) for f in self.floor], "n_train": int(self.n_train)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LogHARModel:
        """The model `to_dict` wrote; a missing or inconsistent field is a RiskModelError naming it."""
        if not isinstance(doc, dict) or doc.get("kind") != LOGHAR_KIND:
            raise RiskModelError(f"risk head: kind={None if not isinstance(doc, dict) else doc.get('kind')!r}, "
                                 f"expected {LOGHAR_KIND!r}")
        missing = [k for k in ("h", "windows", "coef", "scale", "floor", "n_train") if k not in doc]
        if missing:
            raise RiskModelError(f"risk head: missing field(s) {missing}")
        windows = tuple(int(w) for w in doc["windows"])
        model = cls(h=_check_h(doc["h"]), windows=windows, coef=tuple(float(b) for b in doc["coef"]),
                    scale=float(doc["scale"]), floor=tuple(float(f) for f in doc["floor"]),
                    n_train=int(doc["n_train"]))
        if len(model.coef) != len(windows) + 1 or len(model.floor) != len(windows):
            raise RiskModelError(f"risk head: coef has {len(model.coef)} and floor {len(model.floor)} entries "
                                 f"for {len(windows)} windows (need windows + 1 and windows)")
        if not (math.isfinite(model.scale) and model.scale > 0) or not all(f > 0 for f in model.floor):
            raise RiskModelError("risk head: scale and floor must be finite and > 0")
        return model


def _loghar_design(x: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """log of the floored HAR components (NaN rows stay NaN)."""
    return np.log(np.maximum(x, floor))


def loghar_fit(r1: Any, train_idx: Any, h: int, *, windows: tuple[int, ...] = HAR_WINDOWS,
               min_rows: int = 50) -> LogHARModel:
    """OLS of log RV_h on [1, log floored HAR components] over training rows whose next h rows are training
    rows too (the `har_fit` purge) and whose RV_h > 0; then the QLIKE-optimal scale on the same rows.

    train_idx: integer row indices or a boolean mask over the rows of r1. Fewer than ``min_rows`` usable rows
    is a RiskModelError (callers decide whether to fall back).
    """
    h = _check_h(h)
    train, ok, y, x = _purged_training_rows(r1, train_idx, h, windows)
    known = train & np.isfinite(x).all(axis=1)
    # the floor comes from the training rows' components (only training returns and earlier ones)
    floor = LOGHAR_FLOOR * (x[known].mean(axis=0) if known.any() else np.full(len(windows), np.nan))
    with np.errstate(invalid="ignore"):
        use = ok & known & np.isfinite(y) & (y > 0)
    n_use = int(use.sum())
    if n_use < max(min_rows, len(windows) + 2) or not np.all(floor > 0):
        raise RiskModelError(f"loghar_fit h={h}: only {n_use} usable training rows with RV_h > 0 "
                             f"(need >= {max(min_rows, len(windows) + 2)})")
    design = np.column_stack([np.ones(n_use), _loghar_design(x[use], floor)])
    coef, *_ = np.linalg.lstsq(design, np.log(y[use]), rcond=None)
    scale = float(np.mean(y[use] / np.exp(design @ coef)))
    return LogHARModel(h=h, windows=tuple(int(w) for w in windows), coef=tuple(float(b) for b in coef),
                       scale=scale, floor=tuple(float(f) for f in floor), n_train=n_use)


def loghar_forecast(model: LogHARModel, r1: Any, idx: Any = None, h: int | None = None) -> np.ndarray:
    """Log-HAR h-bar variance forecasts c * exp(b0 + log x @ b) at rows ``idx`` (all rows if None), from
    r1[<= t] only (the components are trailing means); NaN in the components' warmup. Always > 0 elsewhere."""
    if h is not None and _check_h(h) != model.h:
        raise ValueError(f"model was fitted for h={model.h}, asked for h={h}")
    x = har_components(r1, model.windows)
    if idx is not None:
        x = x[np.asarray(idx)]
    logx = _loghar_design(x, np.asarray(model.floor))
    return model.scale * np.exp(model.coef[0] + logx @ np.asarray(model.coef[1:]))


def baseline_forecasts(r1: Any, h: int, train_idx: Any, idx: Any, *, lam: float = RISKMETRICS_LAMBDA
                       ) -> dict[str, np.ndarray]:
    """{"constant", "ewma", "har"} h-bar variance forecasts at rows ``idx``, fitted on ``train_idx`` only."""
    model = har_fit(r1, train_idx, h)
    rows = np.asarray(idx)
    ewma = ewma_forecast(r1, h, lam)[rows]
    return {"constant": np.full(ewma.shape[0], model.train_mean), "ewma": ewma,
            "har": har_forecast(model, r1, rows)}


def model_variance_from_abs_move(expected_abs_move: Any) -> np.ndarray:
    """Variance of a zero-mean normal with the given E|X| = sigma * sqrt(2/pi): (E|X|)^2 * pi / 2.
    Negative or non-finite inputs give NaN (their rows are then not scored)."""
    m = np.asarray(expected_abs_move, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(m) & (m >= 0), m * m * (math.pi / 2.0), np.nan)


def qlike(target: Any, forecast: Any) -> np.ndarray:
    """Per-row QLIKE s2/f - log(s2/f) - 1 (needs s2 > 0 and f > 0)."""
    ratio = np.asarray(target, dtype=float) / np.asarray(forecast, dtype=float)
    return ratio - np.log(ratio) - 1.0


def mse_log(target: Any, forecast: Any) -> np.ndarray:
    """Per-row squared error of log variance."""
    return (np.log(np.asarray(target, dtype=float)) - np.log(np.asarray(forecast, dtype=float))) ** 2


def score_variance(target: Any, forecasts: dict[str, Any], times: Any = None, *, seed: int = 0,
                   block: int = 24, n_boot: int = 500, alpha: float = 0.05, reference: str = "har") -> dict:
    """QLIKE and MSE on log variance of each forecast on the same rows, and each vs ``reference``.

    target / forecasts: per-row arrays (rows of all coins concatenated). times: one time stamp per row; when
    given, each forecast gets the joint chance test of mean QLIKE(forecast) - QLIKE(reference) < 0.
    """
    if reference not in forecasts:
        raise ValueError(f"reference {reference!r} is not among the forecasts {sorted(forecasts)}")
    s2 = np.asarray(target, dtype=float)
    f = {name: np.asarray(v, dtype=float) for name, v in forecasts.items()}
    for name, v in f.items():
        if v.shape != s2.shape:
            raise ValueError(f"forecast {name!r} has shape {v.shape}, target {s2.shape}")
    known = np.isfinite(s2)
    positive = known & (s2 > 0)
    use = positive & np.all([np.isfinite(v) for v in f.values()], axis=0)
    for name, v in f.items():
        if np.any(v[use] <= 0):
            raise ValueError(f"forecast {name!r} has variance <= 0 on scored rows; floor it first")
    t = None if times is None else np.asarray(times)[use]
    ql = {name: qlike(s2[use], v[use]) for name, v in f.items()}
    ml = {name: mse_log(s2[use], v[use]) for name, v in f.items()}
    n = int(use.sum())

    def _mean(a: np.ndarray) -> float | None:
        return float(np.mean(a)) if a.size else None

    out: dict = {"n": n, "n_rows": int(s2.shape[0]), "n_target_unknown": int((~known).sum()),
                 "n_target_zero": int((known & ~positive).sum()), "n_forecast_missing": int((positive & ~use).sum()),
                 "reference": reference, "forecasts": {}}
    for name in f:
        entry: dict = {"n": n, "qlike": _mean(ql[name]), "mse_log_var": _mean(ml[name])}
        if name != reference:
            d = ql[name] - ql[reference]
            ref_q = _mean(ql[reference])
            entry["vs_reference"] = {
                "qlike_diff": _mean(d),
                "qlike_skill": 1.0 - entry["qlike"] / ref_q if ref_q else None,
                "mse_log_var_diff": _mean(ml[name] - ml[reference]),
                "chance": None if t is None else joint_chance_test(t, d, seed=seed, block=block, n_boot=n_boot,
                                                                   alpha=alpha),
            }
        out["forecasts"][name] = entry
    return out
