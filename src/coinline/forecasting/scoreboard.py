"""The scoreboard: ledger rows joined with the realized canonical candles of their own series, scored per
set, coin and horizon against the baselines fixed at forecast time (`scoring.py`), plus champion vs each
shadow on the rows both forecast."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from coinline.datasets.canonical import canonical_candles
from coinline.forecasting import ledger
from coinline.forecasting.scoring import head_to_head, realized_outcomes, score
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.timeframes import from_ms, interval_ms, ms


def outcomes(lake: Lake, *, now: datetime, since: datetime | None = None,
             model_sets: list[str] | None = None) -> pd.DataFrame:
    """Every ledger row (decision_time >= since) with `matured`, `realized_ret`, `y`, `status`."""
    rows = ledger.read(lake, since=since, model_sets=model_sets)
    if rows.empty:
        return rows.assign(matured=pd.Series(dtype=bool), realized_ret=pd.Series(dtype=float),
                           y=pd.Series(dtype=float), status=pd.Series(dtype=str))
    stored = [k for k, *_ in tables.series_in(lake)]
    parts = []
    for (source, quote, interval), group in rows.groupby(["source", "quote", "interval"], sort=True):
        keys = [k for k in stored if (k.source, k.quote, k.interval) == (source, quote, interval)
                and k.symbol in set(group["symbol"])]
        step = interval_ms(interval)
        start = group["decision_time"].min().to_pydatetime()
        end = from_ms(ms(group["decision_time"].max().to_pydatetime()) + (int(group["horizon"].max()) + 1) * step)
        closes = canonical_candles(lake, keys, start=start, end=end).select(
            ["symbol", "quote", "interval", "source", "open_time", "close"]).to_pandas()
        parts.append(realized_outcomes(group, closes, interval_ms=step, now_ms=ms(now)))
    return pd.concat(parts, ignore_index=True)


def scoreboard(lake: Lake, *, now: datetime, since: datetime | None = None, seed: int = 42,
               block: int = 24) -> dict:
    """Scores of every set in the ledger, and champion vs shadows (roles as recorded in the ledger)."""
    out = outcomes(lake, now=now, since=since)
    matured = out[out["matured"]] if not out.empty else out
    board = score(matured, seed=seed, block=block) if not matured.empty else {"groups": [], "pooled": []}
    board["rows"] = {"ledger": int(len(out)), "matured": int(len(matured)),
                     "pending": int((out["status"] == "pending").sum()) if not out.empty else 0,
                     "missing_candle": int((out["status"] == "missing_candle").sum()) if not out.empty else 0}
    board["roles"] = {} if out.empty else {
        s: sorted(set(g["role"])) for s, g in out.groupby("model_set")}
    board["head_to_head"] = []
    champions = sorted({s for s, r in board["roles"].items() if "champion" in r})
    shadows = sorted({s for s, r in board["roles"].items() if "shadow" in r})
    for champ in champions:
        for shadow in shadows:
            if shadow == champ:
                continue
            for h in sorted(set(matured["horizon"])):
                board["head_to_head"].append(head_to_head(matured, champ, shadow, int(h), seed=seed, block=block))
    return board
