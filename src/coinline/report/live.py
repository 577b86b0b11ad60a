"""The report's Live section, drawn from the forecasts ledger and the canonical candles: forward scores of the
matured forecasts per model set (log loss against the base-rate baseline fixed at forecast time, over time and
pooled over coins), champion vs shadows on the same matured rows, and the champion's latest forecast per coin.

    live_section(lake, now) -> Section   the section; `now` decides which forecasts have matured

It covers the whole ledger (every model set, not only the report's run) and scores maturity as of the report's
`generated_at` (the clock when not given). Shared table and figure helpers come from `coinline.report.build`.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from coinline.lake.store import Lake
from coinline.report import figures as figs
from coinline.report.html import Badge, Section, Table
from coinline.report.parts import capped as _capped
from coinline.report.parts import get as _get
from coinline.report.parts import plot as _plot
from coinline.report.parts import sig as _sig

MAX_LIVE_PANELS = 4     # horizons drawn in the Live figure (the smallest ones)
DAILY_UP_TO_DAYS = 90   # Live figure buckets: days while the matured span is at most this long, else weeks

_REGIME_NAMES = {"regime_trend": "trend", "regime_range": "range", "regime_high_vol": "high vol",
                 "regime_stress": "stress"}


def live_section(lake: Lake, now: datetime) -> Section:
    from coinline.forecasting import ledger, scoreboard

    sec = Section("live", "Live forecasts",
                  intro="What the model sets forecast after training, from the forecasts ledger (every set, not only "
                        "this run), scored once the realized candles are in: forward log loss against the "
                        "base-rate baseline fixed at forecast time, champion vs shadows on the same matured rows, "
                        "and the champion's latest forecast per coin.")
    rows = ledger.read(lake)
    if rows.empty:
        sec.empty = "No forecasts recorded yet (the forecasts ledger is empty)."
        return sec
    error = None
    try:
        out = scoreboard.outcomes(lake, now=now)
        board = scoreboard.scoreboard(lake, now=now)
    except Exception as exc:  # noqa: BLE001 - the report shows what it can; the ledger rows still render
        out, board, error = None, {}, f"scores unavailable: {type(exc).__name__}: {exc}"
    counts = board.get("rows") or {}
    roles = board.get("roles") or {s: sorted(set(g["role"])) for s, g in rows.groupby("model_set")}
    sec.facts = [("forecasts in the ledger", len(rows)), ("matured", counts.get("matured")),
                 ("pending", counts.get("pending")), ("missing candle", counts.get("missing_candle")),
                 ("model sets (roles)", ", ".join(f"{s} ({'/'.join(r)})" for s, r in sorted(roles.items()))),
                 ("latest decision time", _iso(rows["decision_time"].max())), ("scored as of", now.isoformat())]
    if error:
        sec.facts.append(("scores", Badge(error, "bad")))
    matured = out[out["matured"].astype(bool)] if out is not None and not out.empty else None
    if matured is not None and not matured.empty:
        panels, bucket = _live_curves(matured)
        sec.plots.append(_plot("live_scores", "Forward log loss vs the base rate (matured forecasts)",
                               figs.live_scores(panels, bucket=bucket),
                               f"{len(matured)} matured forecasts, pooled over coins; negative = better than the "
                               "base rate"))
    pooled = []
    for p in board.get("pooled") or []:
        model, base = p.get("model") or {}, _get(p, "baselines", "base_rate") or {}
        risk, chance = p.get("risk") or {}, p.get("chance") or {}
        pooled.append([p.get("model_set"), "/".join(roles.get(p.get("model_set"), [])), p.get("horizon"),
                       p.get("n_rows"), p.get("n_times"), model.get("log_loss"), base.get("log_loss"),
                       _get(p, "skill", "base_rate", "log_loss_skill"), _get(p, "skill", "momentum", "log_loss_skill"),
                       model.get("brier"), model.get("accuracy"), model.get("ece"), risk.get("mae"),
                       risk.get("naive_mae"), chance.get("p_value_holm"), _sig(chance.get("significant"))])
    sec.tables.append(_capped("Forward scores per model set (matured forecasts, pooled over coins)",
                              ["model set", "roles", "h", "rows", "time stamps", "log loss", "base-rate log loss",
                               "LL skill vs base", "LL skill vs momentum", "Brier", "accuracy", "ECE", "risk MAE",
                               "naive risk MAE", "p (Holm)", "skill"], pooled))
    h2h = [[r.get("champion"), r.get("challenger"), r.get("horizon"), r.get("n_rows"), r.get("n_times"),
            _get(r, "log_loss", "champion"), _get(r, "log_loss", "challenger"), r.get("diff"), r.get("p_value"),
            Badge("challenger better", "ok") if r.get("significant") else Badge("no"), r.get("reason") or ""]
           for r in board.get("head_to_head") or []]
    table = _capped("Champion vs shadows (the same matured rows)",
                    ["champion", "shadow", "h", "shared rows", "time stamps", "champion log loss", "shadow log loss",
                     "diff (shadow - champion)", "p (uncorrected)", "significant", "note"], h2h)
    table.note = table.note or ("diff < 0: the shadow had the lower log loss; p: joint block-bootstrap test of "
                                "\"shadow better\" (coins summed per time stamp)"
                                if h2h else "no champion and shadow sets with matured forecasts yet")
    sec.tables.append(table)
    sec.tables.append(_last_forecasts(rows, out))
    return sec


def _live_curves(matured) -> tuple[dict, str]:
    """Per horizon and model set: bucket starts (ms), the per-bucket and the cumulative mean of log loss minus
    base-rate log loss over the matured rows."""
    import pandas as pd

    from coinline.evaluation.metrics import pointwise_losses

    m = matured.sort_values(["decision_time", "model_set", "symbol"], kind="stable")
    y = m["y"].to_numpy(dtype=float).astype(np.int64)
    d = (pointwise_losses(y, m["p_up"].to_numpy(dtype=float))["log_loss"]
         - pointwise_losses(y, m["p_base_rate"].to_numpy(dtype=float))["log_loss"])
    t = pd.to_datetime(m["decision_time"], utc=True)
    span_days = (t.max() - t.min()).total_seconds() / 86_400
    bucket = "day" if span_days <= DAILY_UP_TO_DAYS else "week"
    start = t.dt.floor("D") if bucket == "day" else (t - pd.to_timedelta(t.dt.day_of_week, unit="D")).dt.floor("D")
    frame = pd.DataFrame({"horizon": m["horizon"].to_numpy(), "model_set": m["model_set"].to_numpy(),
                          "bucket": start.dt.tz_convert(None).to_numpy(), "d": d})
    panels: dict[str, dict] = {}
    for h in sorted(frame["horizon"].unique())[:MAX_LIVE_PANELS]:
        by_set = {}
        for name, g in frame[frame["horizon"] == h].groupby("model_set", sort=True):
            agg = g.groupby("bucket", sort=True)["d"].agg(["sum", "count"])
            ms = (agg.index.to_numpy().astype("datetime64[ms]").astype(np.int64)).tolist()
            by_set[str(name)] = (ms, (agg["sum"] / agg["count"]).tolist(),
                                 (agg["sum"].cumsum() / agg["count"].cumsum()).tolist())
        panels[f"horizon {int(h)}"] = by_set
    return panels, bucket


def _last_forecasts(rows, out) -> Table:
    """The champion's latest forecast per coin and horizon (role as recorded at forecast time)."""
    from coinline.forecasting.schema import REGIME_COLUMNS

    series = ["symbol", "quote", "interval", "source", "horizon"]
    champ = rows[rows["role"] == "champion"]
    title = "Latest champion forecast per coin and horizon"
    columns = ["coin", "interval", "h", "model set", "decision time", "target time", "P(up)", "expected move",
               "risk (expected |move|)", "confidence", "top regime", "status"]
    if champ.empty:
        return Table(title, columns, [], note="no champion forecasts in the ledger yet")
    latest = champ.loc[champ.groupby(series, sort=True)["decision_time"].idxmax()]
    status = {}
    if out is not None and not out.empty:
        key = ["model_set", *series, "decision_time"]
        status = {tuple(k): v for k, v in zip(out[key].itertuples(index=False), out["status"], strict=True)}
    table_rows = []
    for r in latest.sort_values(["symbol", "quote", "interval", "horizon"], kind="stable").itertuples(index=False):
        posts = {c: float(getattr(r, c)) for c in REGIME_COLUMNS}
        top = max(REGIME_COLUMNS, key=lambda c: posts[c])
        st = status.get((r.model_set, r.symbol, r.quote, r.interval, r.source, r.horizon, r.decision_time), "")
        table_rows.append([f"{r.symbol}-{r.quote}", r.interval, int(r.horizon), r.model_set, _iso(r.decision_time),
                           _iso(r.target_time), float(r.p_up), float(r.expected_move), float(r.expected_abs_move),
                           float(r.confidence), f"{_REGIME_NAMES.get(top, top)} ({posts[top]:.2f})",
                           Badge(st, {"matured": "ok", "pending": "muted", "missing_candle": "warn"}.get(st, "muted"))
                           if st else ""])
    table = _capped(title, columns, table_rows)
    table.note = table.note or ("expected move: expected log return (2 P(up) - 1) * risk; risk: expected |log "
                                "return| over the horizon; confidence: |2 P(up) - 1|")
    return table


def _iso(t) -> str:
    return t.isoformat() if hasattr(t, "isoformat") else str(t)


__all__ = ["DAILY_UP_TO_DAYS", "MAX_LIVE_PANELS", "live_section"]
