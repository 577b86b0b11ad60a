"""Forecasting against the lake: pick the model set(s), read the canonical candles they need (closed
candles at or before the decision time only), predict (`predict.py`) and append to the ledger.

Forecast time and decision time: at `at`, the newest closed candle is the one that opened at
floor(at, interval) - interval; its close (floor(at, interval)) is the forecast time. A window
[start, end] forecasts every forecast time on the grid inside it, with the same frozen set.
Errors (unknown run, coin not in the set, no closed candle, not enough history) are raised before
anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from coinline.datasets.canonical import canonical_candles
from coinline.errors import CoinlineError
from coinline.features.targets import to_ms
from coinline.forecasting import ledger
from coinline.forecasting.modelset import BASELINE_ID, ModelSet, active_run_id, baseline_set, load_run_set
from coinline.forecasting.predict import Inputs, predict
from coinline.lake import tables
from coinline.lake.store import Lake
from coinline.timeframes import floor_to_interval, from_ms, interval_ms, ms, parse_iso_utc
from coinline.training.config import TrainConfig


class ForecastInputError(CoinlineError):
    """No closed candle, or too little history for the feature windows, at the asked time."""


@dataclass
class Batch:
    """One set's forecasts for one request: rows for the ledger, coins left out (with why), the role."""
    model_set: ModelSet
    role: str
    rows: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    recorded: dict = field(default_factory=dict)


def series_keys(lake: Lake, ms_: ModelSet) -> list:
    wanted = set(ms_.symbols)
    return [k for k, *_ in tables.series_in(lake) if k.source == ms_.source and k.quote == ms_.quote
            and k.interval == ms_.interval and k.symbol in wanted]


def load_candles(lake: Lake, ms_: ModelSet, *, last_decision_ms: int) -> pd.DataFrame:
    """Canonical candles of the set's series that opened at or before the last decision time (so closed by
    its forecast time), from the set's dataset start: the same history a training run computes from."""
    keys = series_keys(lake, ms_)
    if not keys:
        stored = sorted({f"--source {k.source} --quote {k.quote} --interval {k.interval}"
                         for k, *_ in tables.series_in(lake)})
        hint = f"; the lake holds {', '.join(stored[:4])}" if stored else "; backfill or import them"
        raise ForecastInputError(f"no stored series for source={ms_.source} quote={ms_.quote} "
                                 f"interval={ms_.interval} (the inputs of {ms_.set_id}){hint}")
    start = parse_iso_utc(ms_.dataset_start) if ms_.dataset_start else None
    table = canonical_candles(lake, keys, start=start, end=from_ms(last_decision_ms + 1))
    df = table.select(["symbol", "quote", "interval", "open_time", "open", "high", "low", "close", "volume"]).to_pandas()
    if df.empty:
        raise ForecastInputError(f"no closed {ms_.quote} {ms_.interval} candle at or before "
                                 f"{from_ms(last_decision_ms + interval_ms(ms_.interval)).isoformat()}")
    return df


def decision_time(at: datetime, interval: str) -> int:
    """Open time (ms) of the newest candle closed at `at`."""
    return ms(floor_to_interval(at, interval)) - interval_ms(interval)


def _why_missing(candles: pd.DataFrame, inputs: Inputs, symbol: str, t: int, interval: str) -> str:
    own = candles[candles["symbol"] == symbol]
    at = from_ms(t + interval_ms(interval)).isoformat()
    if own.empty:
        return f"{symbol}: no stored candle at or before {at}"
    have = to_ms(own["open_time"])
    if t not in set(have.tolist()):
        return (f"{symbol}: no closed candle at {at} (the candle opening {from_ms(t).isoformat()}); "
                f"its newest closed candle opened {from_ms(int(have.max())).isoformat()}")
    need = inputs.ms.cfg.features.long + 1
    return (f"{symbol}: missing history for the feature windows at {at}: {len(own)} candles up to then, "
            f"the features need {need} consecutive rows of warm-up")


def forecast_rows(lake: Lake, ms_: ModelSet, decisions: np.ndarray, *, symbols: list[str] | None,
                  strict: bool) -> tuple[pd.DataFrame, dict[str, str]]:
    """The set's forecasts at every decision time (ms) for `symbols` (default: all of the set's coins).
    strict: a coin without a usable row raises; otherwise it is skipped and named in the second result."""
    symbols = sorted({s.upper() for s in symbols}) if symbols else list(ms_.symbols)
    for s in symbols:
        if s not in ms_.symbols:
            raise ForecastInputError(f"model set {ms_.set_id} was not trained on {s}; it knows "
                                     f"{', '.join(ms_.symbols)}")
    candles = load_candles(lake, ms_, last_decision_ms=int(decisions.max()))
    inputs = Inputs(ms_, candles)
    parts, skipped = [], {}
    for sym in symbols:
        rows = inputs.rows(sym, decisions)
        if (rows < 0).all() or (strict and (rows < 0).any()):
            reason = _why_missing(candles, inputs, sym, int(decisions[np.argmax(rows < 0)]), ms_.interval)
            if strict:
                raise ForecastInputError(reason)
            skipped[sym] = reason
            continue
        out = predict(ms_, inputs, sym, rows[rows >= 0])
        bad = ~np.isfinite(out[["p_up", "expected_abs_move"]].to_numpy()).all(axis=1)
        if bad.any() and strict:
            raise ForecastInputError(f"{sym}: missing history for the feature windows or baselines at "
                                     f"{from_ms(int(decisions[0]) + interval_ms(ms_.interval)).isoformat()}")
        missing_times = int((rows < 0).sum())
        if missing_times or bad.any():   # a window with holes: forecast what can be, say what could not
            skipped[sym] = (f"{sym}: {missing_times} of {len(decisions)} forecast times without a closed candle or "
                            f"feature history, {int(bad.sum())} (time, horizon) rows without a usable baseline or "
                            f"risk scale; forecast the rest")
        parts.append(out[~bad])
    rows_df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return rows_df, skipped


def role_of(lake: Lake, set_id: str) -> str:
    from coinline.forecasting.shadows import shadow_ids

    active = active_run_id(lake)
    if set_id == active or (active is None and set_id == BASELINE_ID):
        return "champion"
    return "shadow" if set_id in shadow_ids(lake) else "study"


def champion(lake: Lake, *, cfg: TrainConfig, quote: str, interval: str, source: str,
             symbols: list[str]) -> ModelSet:
    """The active model set, or the declared baseline when nothing was ever promoted."""
    run_id = active_run_id(lake)
    if run_id is None:
        return baseline_set(cfg, quote=quote, interval=interval, source=source, symbols=symbols)
    return load_run_set(lake, run_id)


def forecast(lake: Lake, sets: list[ModelSet], *, at: datetime | None = None, start: datetime | None = None,
             end: datetime | None = None, symbols: list[str] | None = None, now: datetime,
             record: bool = True, roles: dict[str, str] | None = None) -> list[Batch]:
    """Forecast with each set at `at` (the newest closed candle) or over [start, end], then record every
    batch. All sets are predicted before anything is written, so an error writes nothing."""
    batches = []
    for ms_ in sets:
        step = interval_ms(ms_.interval)
        if start is not None:
            if end is None or end < start:
                raise ForecastInputError("a window needs --from and --to with --from <= --to")
            first = -(-ms(start) // step) * step - step     # decision of the first candle close >= start
            last = decision_time(end, ms_.interval)          # ... of the last close <= end
            if last < first:
                raise ForecastInputError(f"no forecast time on the {ms_.interval} grid inside the window")
            decisions = np.arange(first, last + 1, step, dtype=np.int64)
        else:
            decisions = np.array([decision_time(at or now, ms_.interval)], dtype=np.int64)
        strict = bool(symbols) and start is None
        rows, skipped = forecast_rows(lake, ms_, decisions, symbols=symbols, strict=strict)
        if rows.empty and not skipped:
            raise ForecastInputError(f"{ms_.set_id}: nothing to forecast")
        role = (roles or {}).get(ms_.set_id) or role_of(lake, ms_.set_id)
        batches.append(Batch(ms_, role, rows, skipped))
    if record:
        for b in batches:
            b.recorded = ledger.record(lake, b.rows, role=b.role, now=now,
                                       request={"at": None if at is None else at.isoformat(),
                                                "from": None if start is None else start.isoformat(),
                                                "to": None if end is None else end.isoformat()})
    return batches


def forecast_cycle(lake: Lake, *, cfg: TrainConfig, quote: str, interval: str, source: str, symbols: list[str],
                   now: datetime) -> dict:
    """One live forecasting cycle at `now`: the champion (the active set, else the declared baseline) and
    every shadow challenger forecast the newest closed candle; all of it goes to the ledger. Coins without a
    closed candle are skipped and named. Returns a JSON-safe summary. `run --follow`, the KFP forecast step
    and the chart's hourly CronWorkflow call this."""
    from coinline.forecasting.shadows import shadow_ids

    champ = champion(lake, cfg=cfg, quote=quote, interval=interval, source=source, symbols=symbols)
    sets, roles = [champ], {champ.set_id: "champion"}
    for run_id in shadow_ids(lake):
        if run_id != champ.set_id:
            sets.append(load_run_set(lake, run_id))
            roles[run_id] = "shadow"
    batches = forecast(lake, sets, at=now, now=now, roles=roles)
    return {"at": now.isoformat(), "sets": [summary(b) for b in batches], "batches": batches}


def summary(b: Batch) -> dict:
    rows = b.rows
    return {"model_set": b.model_set.set_id, "role": b.role, "rows": int(len(rows)),
            "inserted": int(b.recorded.get("inserted", 0)), "skipped": b.skipped,
            "forecast_time": None if rows.empty else pd.Timestamp(rows["forecast_time"].max()).isoformat()}


def decision_inputs(rows: pd.DataFrame, ms_: ModelSet | None = None) -> list[dict]:
    """Ledger rows as the JSON a consumer reads: one object per (coin, horizon), regimes nested, and what the
    set's out-of-sample evidence says of the horizon (`skill_evidence`: "skill" when what is served there
    beat the base rate significantly after Holm's correction, "none" otherwise, "baseline" for the
    baseline itself)."""
    evidence = (ms_.doc.get("evidence") or {}) if ms_ is not None else {}
    from coinline.forecasting.schema import REGIME_COLUMNS
    from coinline.jsonsafe import clean

    out = []
    for r in rows.sort_values(["symbol", "horizon"], kind="mergesort").to_dict("records"):
        regime = {c.removeprefix("regime_"): r.pop(c) for c in REGIME_COLUMNS}
        for c in ("decision_time", "forecast_time", "target_time"):
            r[c] = pd.Timestamp(r[c]).isoformat()
        r["regime"] = regime
        r["regime_top"] = max(regime, key=regime.get)
        r["baselines"] = {"base_rate": r.pop("p_base_rate"), "momentum": r.pop("p_momentum")}
        verdict = evidence.get(str(r["horizon"])) or {}
        r["skill_evidence"] = ("baseline" if ms_ is not None and ms_.is_baseline
                               else verdict.get("evidence", "none"))
        r["skill_p_value_holm"] = verdict.get("p_value_holm")
        out.append(clean(r))
    return out
