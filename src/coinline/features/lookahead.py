"""Look-ahead check, in the spirit of freqtrade's lookahead-analysis.

For each cut time, rebuild the frames on the candles TRUNCATED at the cut (bars with open_time <= cut) and
compare, for every row <= cut present in both builds, every feature value with the full-data build. A causal
feature is identical (up to `rtol` float noise); a feature that peeks at later bars differs near the cut
(or is NaN there while the full build has a value). Targets are labels and look ahead by design; with
`check_targets` the check instead verifies that every target the truncated build could compute (finite) is
the same as in the full build -- a label never silently uses a different horizon.

The builder is called as `builder(candles, cfg, quote=..., interval=..., dropna=False)` so that every
candle keeps its row (a peeking feature that is NaN at the cut would otherwise just drop the row). Row-set
or column-set differences are reported as violations of the pseudo features "<rows>" / "<columns>".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from coinline.features.frame import CoinFrame, build_coin_frames
from coinline.features.targets import to_ms
from coinline.timeframes import from_ms
from coinline.training.config import TrainConfig

Builder = Callable[..., Mapping[str, CoinFrame]]


class Violation(NamedTuple):
    feature: str
    symbol: str
    cut: int                 # ms
    first_bad_time: int      # ms, the earliest row whose value differs
    max_abs_diff: float      # inf where one build has NaN and the other a value

    def to_dict(self) -> dict:
        return {"feature": self.feature, "symbol": self.symbol, "cut": _iso(self.cut),
                "first_bad_time": _iso(self.first_bad_time),
                "max_abs_diff": float(self.max_abs_diff) if np.isfinite(self.max_abs_diff) else None}


@dataclass(frozen=True)
class LookaheadReport:
    passed: bool
    violations: list[Violation]
    cuts: list[int] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    features_checked: int = 0
    rows_compared: int = 0

    def bad_features(self) -> list[str]:
        return sorted({v.feature for v in self.violations})

    def to_dict(self) -> dict:
        return {"passed": self.passed, "cuts": [_iso(c) for c in self.cuts], "symbols": list(self.symbols),
                "features_checked": self.features_checked, "rows_compared": self.rows_compared,
                "bad_features": self.bad_features(), "violations": [v.to_dict() for v in self.violations]}


def _iso(value_ms: int) -> str:
    return from_ms(int(value_ms)).isoformat().replace("+00:00", "Z")


def default_cut_times(times_ms: Sequence[int] | np.ndarray, n: int = 3) -> list[int]:
    """`n` deterministic cut times spread over the second half of the (union of) open times."""
    t = np.unique(np.asarray(times_ms, dtype="int64"))
    if not len(t) or n < 1:
        return []
    pos = np.linspace(0.5, 0.95, n) if n > 1 else np.array([0.75])
    return sorted({int(t[min(len(t) - 1, int(p * (len(t) - 1)))]) for p in pos})


def _only(data: pd.DataFrame, column: str, default: str) -> str:
    if column not in data.columns:
        return default
    values = pd.unique(data[column].dropna())
    if len(values) > 1:
        raise ValueError(f"lookahead_check: candles mix several {column}s {sorted(map(str, values))}; pass {column}=")
    return str(values[0]) if len(values) else default


def _diff(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """|a - b| where the values disagree (inf for NaN vs value), 0 where they agree."""
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
        tol = atol + rtol * np.maximum(np.abs(a), np.abs(b))
        agree = (a == b) | both_nan | (d <= tol)
    d = np.where(np.isnan(d), np.inf, d)
    return np.where(agree, 0.0, d)


def _compare(full: CoinFrame, part: CoinFrame, cut: int, rtol: float, atol: float,
             check_targets: bool) -> tuple[list[Violation], int]:
    sym = full.symbol
    out: list[Violation] = []
    f_sel = np.flatnonzero(full.times <= cut)
    common, i_f, i_p = np.intersect1d(full.times[f_sel], part.times, assume_unique=True, return_indices=True)
    i_f = f_sel[i_f]
    only = np.setxor1d(full.times[f_sel], part.times, assume_unique=True)
    if len(only):
        out.append(Violation("<rows>", sym, cut, int(only.min()), float("inf")))
    p_names = {n: j for j, n in enumerate(part.feature_names)}
    if set(p_names) != set(full.feature_names):
        out.append(Violation("<columns>", sym, cut, int(common[0]) if len(common) else cut, float("inf")))
    checks: list[tuple[str, np.ndarray, np.ndarray]] = []
    for j, name in enumerate(full.feature_names):
        if name in p_names:
            checks.append((name, full.F[i_f, j], part.F[i_p, p_names[name]]))
    if check_targets:
        for h in sorted(set(full.targets) & set(part.targets)):
            for kind in sorted(set(full.targets[h]) & set(part.targets[h])):
                a, b = full.targets[h][kind][i_f], part.targets[h][kind][i_p]
                known = np.isfinite(b)   # only what the truncated data could know must agree
                checks.append((f"target:{kind}_h{h}", np.where(known, a, np.nan), b))
    for name, a, b in checks:
        d = _diff(a, b, rtol, atol)
        bad = np.flatnonzero(d > 0)
        if len(bad):
            out.append(Violation(name, sym, int(cut), int(common[bad[0]]), float(d[bad].max())))
    return out, len(common)


def lookahead_check(candles_by_symbol: Mapping[str, pd.DataFrame], cfg: TrainConfig, cut_times: Sequence[int], *,
                    builder: Builder = build_coin_frames, quote: str | None = None, interval: str | None = None,
                    rtol: float = 1e-9, atol: float = 1e-12, check_targets: bool = True) -> LookaheadReport:
    """Rebuild on data truncated at each cut and compare with the full build (see the module docstring).

    `candles_by_symbol` maps symbol -> candles (columns as canonical candles; `symbol` is set from the key).
    `quote` / `interval` default to the candles' single `quote` / `interval` value (else USD / 1h).
    Cost: one full build plus one truncated build per cut.
    """
    parts = []
    for sym in sorted(candles_by_symbol):
        df = candles_by_symbol[sym]
        df = df.to_pandas() if hasattr(df, "to_pandas") and not isinstance(df, pd.DataFrame) else df
        parts.append(df.assign(symbol=sym))
    if not parts:
        raise ValueError("lookahead_check: no candles given")
    data = pd.concat(parts, ignore_index=True)
    t_ms = to_ms(data["open_time"])
    quote = quote or _only(data, "quote", "USD")
    interval = interval or _only(data, "interval", "1h")
    kw = {"quote": quote, "interval": interval, "dropna": False}
    full = builder(data, cfg, **kw)
    violations: list[Violation] = []
    rows = 0
    cuts = sorted(int(c) for c in cut_times)
    for cut in cuts:
        sel = t_ms <= cut
        if not sel.any():
            continue
        part = builder(data.loc[sel].reset_index(drop=True), cfg, **kw)
        for sym in sorted(set(full) | set(part)):
            if sym not in full:
                violations.append(Violation("<rows>", sym, cut, int(part[sym].times.min()), float("inf")))
                continue
            if sym not in part:
                if (full[sym].times <= cut).any():
                    violations.append(Violation("<rows>", sym, cut, int(full[sym].times.min()), float("inf")))
                continue
            found, n = _compare(full[sym], part[sym], cut, rtol, atol, check_targets)
            violations += found
            rows += n
    n_features = max((len(f.feature_names) for f in full.values()), default=0)
    return LookaheadReport(passed=not violations, violations=violations, cuts=cuts, symbols=sorted(full),
                           features_checked=n_features, rows_compared=rows)
