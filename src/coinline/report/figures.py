"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no global backend state, no display).

Every function takes plain data (lists, arrays, dicts) and returns a `matplotlib.figure.Figure`, so the
same figures can be embedded in the HTML report (`data_uri`) or written as PNG files for Kubeflow
Pipelines visualizations (`png_bytes`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

DPI = 90
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
_BASELINE_STYLE = {"base_rate": ("#000000", "|"), "momentum": ("#7f7f7f", "x"), "random_walk": ("#bbbbbb", "+")}
_COVERAGE_CMAP = LinearSegmentedColormap.from_list("coverage", ["#b2182b", "#fddbc7", "#f7f7f7", "#4393c3"])


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp in the metadata, so the same data gives the same bytes)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def label(text: object) -> str:
    """Text safe for a matplotlib label: `$` would start mathtext."""
    return str(text).replace("$", r"\$")


def _new(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _dt(ms: Sequence[int]) -> list[datetime]:
    return [datetime.fromtimestamp(int(t) / 1000, tz=UTC).replace(tzinfo=None) for t in ms]


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def coverage_heatmap(rows: Sequence[str], bucket_starts_ms: Sequence[int], bucket_ms: int,
                     fraction: np.ndarray, title: str) -> Figure:
    """Series (rows) x time buckets: the fraction of the expected candles present (NaN = no grid point)."""
    n_rows = max(1, len(rows))
    fig = _new(10, min(2.0 + 0.22 * n_rows, 24))
    ax = fig.add_subplot()
    if len(bucket_starts_ms):
        t0 = _dt([bucket_starts_ms[0]])[0]
        t1 = _dt([int(bucket_starts_ms[-1]) + int(bucket_ms)])[0]
        import matplotlib.dates as mdates

        extent = (mdates.date2num(t0), mdates.date2num(t1), n_rows - 0.5, -0.5)
        img = ax.imshow(np.ma.masked_invalid(fraction), aspect="auto", interpolation="nearest",
                        cmap=_COVERAGE_CMAP, vmin=0.0, vmax=1.0, extent=extent)
        ax.xaxis_date()
        fig.colorbar(img, ax=ax, label="fraction of expected candles present", shrink=0.8)
    ax.set_yticks(range(len(rows)), [label(r) for r in rows], fontsize=7 if n_rows > 30 else 8)
    ax.set_title(label(title), fontsize=10)
    ax.set_xlabel("time (UTC)")
    return fig


def gaps_corrections(series: Sequence[str], unexplained: Sequence[int], known: Sequence[int],
                     corrections: Sequence[int]) -> Figure:
    """Per series: missing candles (unexplained and known gaps) and correction-log entries."""
    n = max(1, len(series))
    fig = _new(10, min(1.8 + 0.25 * n, 24))
    ax_gap, ax_corr = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(series))
    ax_gap.barh(y, unexplained, color="#d62728", label="unexplained")
    ax_gap.barh(y, known, left=unexplained, color="#ff9896", label="known (provider answer recorded)")
    ax_gap.set_title("missing candles", fontsize=10)
    ax_gap.legend(fontsize=7, loc="lower right")
    ax_corr.barh(y, corrections, color="#1f77b4")
    ax_corr.set_title("corrections (revised candles)", fontsize=10)
    ax_gap.set_yticks(y, [label(s) for s in series], fontsize=7)
    ax_gap.invert_yaxis()
    return fig


def validation_bars(suites: Sequence[str], passed: Sequence[int], failed: Sequence[int]) -> Figure:
    """Share of checks passed / failed per quality suite (or run check), annotated with the counts."""
    n = max(1, len(suites))
    fig = _new(8, min(1.6 + 0.35 * n, 16))
    ax = fig.add_subplot()
    y = np.arange(len(suites))
    total = np.maximum(np.asarray(passed, dtype=float) + np.asarray(failed, dtype=float), 1.0)
    ok = np.asarray(passed, dtype=float) / total
    ax.barh(y, ok, color="#2ca02c", label="passed")
    ax.barh(y, 1.0 - ok, left=ok, color="#d62728", label="failed")
    for i, (p, f) in enumerate(zip(passed, failed, strict=True)):
        ax.text(1.01, i, f"{p}/{p + f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.12)
    ax.set_yticks(y, [label(s) for s in suites], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of checks")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("validation results (checks passed / total)", fontsize=10)
    return fig


def oos_vs_baselines(coins: Sequence[str], models: Mapping[str, Sequence[float | None]],
                     baselines: Mapping[str, Sequence[float | None]], active: Sequence[float | None] | None,
                     *, horizon: int | str, metric: str = "log loss") -> Figure:
    """Per coin, OOS `metric` minus the base-rate `metric` (left of 0 = better than the base rate), for every
    model of the run, the baselines and, when given, the active set's ensemble."""
    n = max(1, len(coins))
    fig = _new(9, min(1.8 + 0.32 * n, 24))
    ax = fig.add_subplot()
    y = np.arange(len(coins))
    series: list[tuple[str, Sequence, dict]] = []
    for i, (name, vals) in enumerate(models.items()):
        series.append((name, vals, {"color": _COLORS[i % len(_COLORS)], "marker": "o", "s": 28}))
    for name, vals in baselines.items():
        color, marker = _BASELINE_STYLE.get(name, ("#444444", "d"))
        series.append((f"baseline: {name}", vals, {"color": color, "marker": marker, "s": 50}))
    if active is not None:
        series.append(("active set (ensemble)", active, {"facecolors": "none", "edgecolors": "#9467bd",
                                                          "marker": "s", "s": 60, "linewidths": 1.5}))
    k = len(series)
    for j, (name, vals, style) in enumerate(series):
        xs = [v for v in vals]
        keep = [i for i, v in enumerate(xs) if _finite(v)]
        offset = (j - (k - 1) / 2) * min(0.6 / max(k, 1), 0.12)
        ax.scatter([xs[i] for i in keep], [y[i] + offset for i in keep], label=label(name), zorder=3, **style)
    ax.axvline(0.0, color="#000000", lw=0.8)
    ax.set_yticks(y, [label(c) for c in coins], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"OOS {metric} - base-rate {metric} (negative = better than the base rate)")
    ax.set_title(f"per-coin out-of-sample {metric}, horizon {horizon}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def calibration_curves(curves: Mapping[str, Mapping[str, Mapping]]) -> Figure:
    """One panel per horizon: observed frequency of "up" against the mean predicted probability per bin."""
    panels = list(curves.items()) or [("", {})]
    fig = _new(min(4.0 * len(panels), 13), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (horizon, by_model) in zip(axes, panels, strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--", label="perfect calibration")
        for i, (model, curve) in enumerate(by_model.items()):
            pts = [(p, f, c) for p, f, c in zip(curve.get("mean_pred") or [], curve.get("frac_pos") or [],
                                                  curve.get("count") or [], strict=False)
                   if _finite(p) and _finite(f) and c]
            if not pts:
                continue
            xs, ys, cs = zip(*pts, strict=True)
            color = _COLORS[i % len(_COLORS)]
            ax.plot(xs, ys, color=color, lw=1.2, label=label(model))
            total = max(sum(cs), 1)
            ax.scatter(xs, ys, s=[12 + 200 * c / total for c in cs], color=color, zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("mean predicted P(up)")
        ax.set_ylabel("observed frequency of up")
        ax.set_title(label(f"horizon {horizon} (pooled over coins, OOS)" if horizon != "" else "no curves"),
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    return fig


def equity_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> Figure:
    """Equity (starting at 1.0) and drawdown over time for each named simulation."""
    fig = _new(10, 5)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for i, (name, (times, values)) in enumerate(curves.items()):
        if not len(times):
            continue
        color = _COLORS[i % len(_COLORS)]
        t = _dt(times)
        v = np.asarray(values, dtype=float)
        ax_eq.plot(t, v, color=color, lw=1.3, label=label(name))
        peak = np.maximum.accumulate(v)
        ax_dd.fill_between(t, -(1.0 - v / peak) * 100.0, 0.0, color=color, alpha=0.35, step="post")
    ax_eq.axhline(1.0, color="#999999", lw=0.8, ls="--")
    ax_eq.set_ylabel("equity")
    ax_eq.set_title("trading simulation on out-of-sample signals (after fees and slippage)", fontsize=10)
    ax_eq.grid(alpha=0.3)
    if curves:
        ax_eq.legend(fontsize=8, loc="upper left")
    ax_dd.set_ylabel("drawdown %")
    ax_dd.set_xlabel("time (UTC)")
    ax_dd.grid(alpha=0.3)
    return fig


def drift_indicators(labels: Sequence[str], values: Sequence[float], breached: Sequence[bool],
                     *, xlabel: str) -> Figure:
    """One bar per drift indicator; breached ones in red. Values are value/threshold where a threshold is
    known (so 1.0 is the trigger line)."""
    n = max(1, len(labels))
    fig = _new(9, min(1.6 + 0.28 * n, 24))
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    ax.barh(y, values, color=["#d62728" if b else "#1f77b4" for b in breached])
    ax.axvline(1.0, color="#000000", lw=0.8, ls="--")
    ax.set_yticks(y, [label(s) for s in labels], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(label(xlabel))
    ax.set_title("drift indicators (red = breached)", fontsize=10)
    return fig


def hindcast_brier(per_coin: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> Figure:
    """Brier score of each hindcast window per coin (0.25 = a constant 0.5 forecast)."""
    fig = _new(10, 3.8)
    ax = fig.add_subplot()
    for i, (coin, (times, briers)) in enumerate(per_coin.items()):
        pts = [(t, b) for t, b in zip(times, briers, strict=False) if _finite(b)]
        if not pts:
            continue
        ts, bs = zip(*pts, strict=True)
        ax.plot(_dt(ts), bs, marker="o", ms=3, lw=1.0, color=_COLORS[i % len(_COLORS)], label=label(coin))
    ax.axhline(0.25, color="#999999", lw=0.8, ls="--")
    ax.set_ylabel("Brier score")
    ax.set_xlabel("hindcast cut-off (UTC)")
    ax.set_title("hindcast: Brier score per window (dashed: constant 0.5)", fontsize=10)
    ax.grid(alpha=0.3)
    if per_coin and len(per_coin) <= 12:
        ax.legend(fontsize=7, ncols=4)
    return fig


def live_scores(panels: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]]],
                *, bucket: str) -> Figure:
    """Forward scores of matured forecasts, one panel per horizon: per model set, the log loss minus the
    base-rate log loss on the same rows (negative = better than the base rate), per time bucket (dots) and
    cumulative from the first matured forecast (line). Values: (bucket start ms, per-bucket, cumulative)."""
    items = list(panels.items()) or [("", {})]
    fig = _new(10, min(1.2 + 2.6 * len(items), 16))
    axes = fig.subplots(len(items), 1, squeeze=False, sharex=True)[:, 0]
    names = sorted({name for _, by_set in items for name in by_set})   # one colour per set in every panel
    for ax, (title, by_set) in zip(axes, items, strict=True):
        for name, (times, per_bucket, cumulative) in by_set.items():
            if not len(times):
                continue
            color = _COLORS[names.index(name) % len(_COLORS)]
            t = _dt(times)
            ax.plot(t, cumulative, color=color, lw=1.4, label=label(name), zorder=3)
            ax.scatter(t, per_bucket, color=color, s=10, alpha=0.45, zorder=2)
        ax.axhline(0.0, color="#000000", lw=0.8)
        ax.set_ylabel("log loss - base rate", fontsize=8)
        ax.set_title(label(title), fontsize=10)
        ax.grid(alpha=0.3)
        if by_set:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel(label(f"decision time (UTC), {bucket} buckets; line: cumulative, dots: per {bucket}"))
    return fig
