"""Forward evidence for the promotion gates: a candidate's matured forecasts against the champion's on the
rows both made (same coin, horizon and decision time), read from the ledger as of a given time."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from coinline.forecasting.modelset import BASELINE_ID
from coinline.forecasting.scoreboard import outcomes
from coinline.forecasting.scoring import head_to_head
from coinline.lake.store import Lake


def forward_evidence(lake: Lake, candidate: str, active_run: str | None, horizon: int, *,
                     now: datetime) -> dict:
    """Candidate vs champion (the active run, else the declared baseline) at `horizon`, counting only ledger
    rows created at or before `now` whose outcome had matured by `now`."""
    champion = active_run or BASELINE_ID
    out = outcomes(lake, now=now, model_sets=[candidate, champion])
    if not out.empty:
        out = out[out["created_at"] <= pd.Timestamp(now).tz_convert("UTC")]
    if out.empty:
        return {"champion": champion, "horizon": horizon, "n_rows": 0}
    return head_to_head(out, champion, candidate, horizon)
