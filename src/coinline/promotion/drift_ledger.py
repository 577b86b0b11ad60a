"""Prediction drift and degradation of the active set from the forecasts ledger (`ledger_evidence`, passed
to `coinline.promotion.drift.drift_report` as `ledger=`), and the judgement of that degradation
(`ledger_degradation`). The drift statistics themselves and `drift_report` live in `coinline.promotion.drift`.

The ledger holds what the active set really forecast (role champion, model_set == the active run id), so once
it holds enough rows it replaces re-predicting one model family on recent features; otherwise the caller's
re-predicted figures are used. `DriftReport.sources` says which source each part used:
"ledger" or "re-predicted" (None: not evaluated).

    prediction drift  the champion's recorded p_up at one horizon (the run's primary horizon when it has
                      rows there) in the CURRENT window, the last min(window, T // 2) decision times, against
                      the REFERENCE window, the set's FIRST min(window, T // 2) decision times as champion
                      (T: distinct decision times), pooled over the coins present in both windows. Why the
                      earliest ledger window and not the run's OOS predictions (predictions/oof.parquet):
                      the OOS p_up come from the walk-forward fold models, each fit on a shorter window and
                      stacked by a fold-specific meta-learner, whereas the ledger holds the deployed last-fold
                      models and their last-fold combiner at each horizon (runs stored before those existed:
                      a "mean" off the primary horizon, where their oof.parquet has no ensemble at all). Their
                      spreads differ by construction, so OOS-vs-live would confound "a different model" with
                      "different inputs" and could fire on the first day.
                      Two ledger windows of the same set, same combiner, same horizon and same coins differ
                      only through the inputs: that is what prediction drift is meant to detect. The
                      reference is pinned to the first window (it never follows the drift). Drift against
                      the training data itself is the feature-drift part's job. p_up is autocorrelated in time
                      (rolling-window features), so coins x hours overstate the sample size: each window must
                      span at least `min_rows` decision times (not just rows) before the ledger is used, and
                      the KS p-value (iid assumption, anti-conservative here) only counts together with the
                      effect-size thresholds, as for the features.
    degradation       the champion's matured forecasts (realized candles joined by
                      `forecasting.scoreboard.outcomes`) in the last `window` matured decision times, scored
                      against the base-rate baseline recorded with each forecast (fixed at forecast time from
                      the set's own training window), on the SAME rows. The paired comparison cancels the
                      period's own difficulty, which a comparison with the run's OOS figures from another
                      period cannot. It triggers when the champion is materially worse than the base rate
                      (log loss above it by more than 2 * `brier_rise`, the log-loss equivalent of a Brier
                      rise near p = 0.5; Brier above it by more than `brier_rise`; hit rate below it by more
                      than `hit_rate_drop`) AND significantly so: the one-sided joint block-bootstrap test of
                      `forecasting.scoring.joint_chance_test` (loss differences summed over coins per decision
                      time, blocks of `block` time stamps) at `LEDGER_ALPHA`. The ledger is used once the
                      window holds >= `min_scored` matured rows and enough time stamps for that test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from coinline.jsonsafe import clean
from coinline.promotion.drift import DriftThresholds, degradation, rolling_scores

if TYPE_CHECKING:
    from coinline.lake.store import Lake

LEDGER_ALPHA = 0.05     # one-sided level of "champion worse than the base rate" (ledger degradation)
LEDGER_BLOCK = 24       # time stamps per bootstrap block of that test (as the scoreboard's default)


def ledger_degradation(reference: Mapping[str, Any], current: Mapping[str, Any], chance: Mapping[str, Any] | None,
                       thresholds: DriftThresholds) -> dict[str, Any]:
    """Degradation of the champion's matured ledger forecasts (`current`: count, hit_rate, brier, log_loss)
    against the base-rate baseline on the same rows (`reference`), see the module docstring: a breach of
    `hit_rate_drop`, `brier_rise` or 2 * `brier_rise` in log loss triggers only when `chance` (the one-sided
    joint test of "champion worse than the base rate") is significant."""
    out = degradation(reference, current, thresholds, reference_label="base rate")
    out["basis"] = "ledger: champion vs the base-rate baseline on the same matured rows"
    out["chance"] = dict(chance) if chance is not None else None
    limit = 2.0 * thresholds.brier_rise
    out["log_loss_rise_threshold"] = limit
    if "note" in out:
        return out
    ref_ll, cur_ll = reference.get("log_loss"), current.get("log_loss")
    if ref_ll is not None and cur_ll is not None:
        out["log_loss_rise"] = float(cur_ll) - float(ref_ll)
        if out["log_loss_rise"] > limit:
            out["reasons"].append(f"rolling log loss {cur_ll:.4f} vs base rate {ref_ll:.4f} (rise > {limit:g})")
    significant = bool(chance and chance.get("significant"))
    if chance and not significant and str(chance.get("reason") or "").startswith("loss differences are constant"):
        # worse by the same amount at every time stamp: no noise to test against, and none needed
        significant = chance.get("mean_diff") is not None and float(chance["mean_diff"]) < 0
    if out["reasons"] and not significant:
        p = (chance or {}).get("p_value")
        out["breaches"] = out["reasons"]
        out["reasons"] = []
        out["note"] = ("breaches not significant: the champion is not significantly worse than the base rate "
                       f"(one-sided p={p if p is None else f'{p:.3g}'}, alpha {LEDGER_ALPHA})")
    out["triggered"] = bool(out["reasons"])
    return out


@dataclass(frozen=True)
class LedgerEvidence:
    """What the forecasts ledger holds on the active set (`ledger_evidence`); arrays are None when the ledger
    has too few rows for that part (`notes` say why), and `drift_report` then falls back."""

    run_id: str
    horizon: int | None
    n_rows: int                                  # the set's champion rows at `horizon`
    predictions_ref: np.ndarray | None = None    # p_up of the reference (earliest) window
    predictions_cur: np.ndarray | None = None    # p_up of the current (latest) window
    scores_ref: dict[str, Any] | None = None     # base-rate baseline on the matured rows of the window
    scores_cur: dict[str, Any] | None = None     # the champion on the same rows
    chance: dict[str, Any] | None = None         # one-sided joint test: champion worse than the base rate
    notes: dict[str, str] = field(default_factory=dict)   # "prediction" / "degradation": why not ready
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions_ready(self) -> bool:
        return self.predictions_ref is not None and self.predictions_cur is not None

    @property
    def degradation_ready(self) -> bool:
        return self.scores_ref is not None and self.scores_cur is not None

    def degradation(self, thresholds: DriftThresholds) -> dict[str, Any]:
        """`ledger_degradation` of these scores (what `drift_report` uses when `degradation_ready`)."""
        return ledger_degradation(self.scores_ref, self.scores_cur, self.chance, thresholds)

    def to_dict(self) -> dict[str, Any]:
        return clean({"run_id": self.run_id, "horizon": self.horizon, "n_rows": self.n_rows,
                      "predictions_ready": self.predictions_ready, "degradation_ready": self.degradation_ready,
                      "notes": dict(self.notes), **self.detail})


def _prob_scores(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from coinline.evaluation.metrics import pointwise_losses

    yi = y.astype(np.int64)
    losses = pointwise_losses(yi, p)
    return {**rolling_scores(p, y), "log_loss": float(np.mean(losses["log_loss"]))}


def _ledger_horizon(lake: Lake, run_id: str, horizons: Any) -> int | None:
    """The run's primary horizon when the set has champion rows there, else its most forecast horizon."""
    counts = horizons.value_counts()
    if counts.empty:
        return None
    metrics = lake.read_json(f"runs/{run_id}/metrics.json") or {}
    primary = metrics.get("primary_horizon")
    if primary is not None and int(primary) in {int(h) for h in counts.index}:
        return int(primary)
    top = counts.max()
    return int(min(int(h) for h, c in counts.items() if c == top))


def ledger_evidence(lake: Lake, run_id: str, *, thresholds: DriftThresholds | None = None,
                    horizon: int | None = None, window: int = 336, now: datetime | None = None,
                    block: int = LEDGER_BLOCK, seed: int = 0) -> LedgerEvidence:
    """Prediction-drift windows and degradation scores of the active set `run_id` from the forecasts ledger
    (its role-champion rows at `horizon`; see the module docstring for the windows and why). `window` is
    the current window in decision times (the autopilot's `window_bars`); `now` (default: the clock) bounds
    the rows read and decides maturity."""
    import pandas as pd

    from coinline.forecasting import ledger, scoreboard
    from coinline.forecasting.scoring import MIN_BLOCKS, joint_chance_test
    from coinline.models.base import derive_seed

    th = thresholds or DriftThresholds()
    if window < 1 or block < 1:
        raise ValueError("ledger_evidence needs window >= 1 and block >= 1")
    at = pd.Timestamp(now if now is not None else datetime.now(UTC)).tz_convert("UTC")
    rows = ledger.read(lake, model_sets=[run_id])
    rows = rows[(rows["role"] == "champion") & (rows["decision_time"] <= at)]
    h = int(horizon) if horizon is not None else _ledger_horizon(lake, run_id, rows["horizon"])
    rows = rows[rows["horizon"] == h] if h is not None else rows.iloc[0:0]
    notes: dict[str, str] = {}
    detail: dict[str, Any] = {"as_of": at.isoformat(), "window": int(window)}
    out: dict[str, Any] = {}
    if rows.empty:
        none = f"the ledger holds no champion forecasts of {run_id}" + (f" at horizon {h}" if h is not None else "")
        return LedgerEvidence(run_id, h, 0, notes={"prediction": none, "degradation": none}, detail=detail)
    series = ["symbol", "quote", "interval", "source"]

    # -- prediction drift: earliest vs latest window of decision times
    times = sorted(rows["decision_time"].unique())     # tz-aware Timestamps
    w = min(int(window), len(times) // 2)
    if w < th.min_rows:
        notes["prediction"] = (f"the ledger holds {len(times)} champion decision times at horizon {h}; it needs two "
                               f"disjoint windows of >= {th.min_rows} decision times")
    else:
        ref = rows[rows["decision_time"] <= times[w - 1]]
        cur = rows[rows["decision_time"] >= times[-w]]
        common = ref[series].drop_duplicates().merge(cur[series].drop_duplicates(), on=series)
        ref, cur = ref.merge(common, on=series), cur.merge(common, on=series)
        detail["prediction_windows"] = {
            "reference": [str(times[0]), str(times[w - 1])], "current": [str(times[-w]), str(times[-1])],
            "decision_times": int(w), "coins": sorted(common["symbol"].unique().tolist()),
            "rows_ref": len(ref), "rows_cur": len(cur)}
        if len(ref) < th.min_rows or len(cur) < th.min_rows:
            notes["prediction"] = (f"the ledger holds too few rows of coins forecast in both windows "
                                   f"({len(ref)}, {len(cur)} < {th.min_rows})")
        else:
            out["predictions_ref"] = ref["p_up"].to_numpy(dtype=float)
            out["predictions_cur"] = cur["p_up"].to_numpy(dtype=float)

    # -- degradation: the champion's matured forecasts of the last `window` decision times vs the base rate
    due = rows[rows["target_time"] <= at]
    due_times = sorted(due["decision_time"].unique())[-int(window):]
    matured = due.iloc[0:0]
    if len(due_times):
        o = scoreboard.outcomes(lake, now=at.to_pydatetime(), since=pd.Timestamp(due_times[0]).to_pydatetime(),
                                model_sets=[run_id])
        matured = o[o["matured"].astype(bool) & (o["role"] == "champion") & (o["horizon"] == h)
                    & (o["decision_time"] <= at)]
    n_times = int(matured["decision_time"].nunique())
    need = MIN_BLOCKS * int(block)
    detail["matured"] = {"rows": len(matured), "decision_times": n_times,
                         "from": str(matured["decision_time"].min()) if len(matured) else None,
                         "to": str(matured["decision_time"].max()) if len(matured) else None}
    if len(matured) < th.min_scored or n_times < need:
        notes["degradation"] = (f"the ledger holds {len(matured)} matured champion forecasts over {n_times} "
                                f"decision times; it needs >= {th.min_scored} rows and >= {need} decision times")
    else:
        m = matured.sort_values(["decision_time", *series], kind="stable")
        y = m["y"].to_numpy(dtype=float)
        p_model, p_base = m["p_up"].to_numpy(dtype=float), m["p_base_rate"].to_numpy(dtype=float)
        out["scores_cur"] = _prob_scores(p_model, y)
        out["scores_ref"] = {**_prob_scores(p_base, y), "baseline": "base_rate"}
        from coinline.evaluation.metrics import pointwise_losses

        yi = y.astype(np.int64)
        worse = pointwise_losses(yi, p_base)["log_loss"] - pointwise_losses(yi, p_model)["log_loss"]
        t_ms = pd.to_datetime(m["decision_time"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
        out["chance"] = joint_chance_test(t_ms, worse, block=int(block), alpha=LEDGER_ALPHA,
                                          seed=derive_seed(seed, run_id, int(h), "ledger-degradation"))
    return LedgerEvidence(run_id, h, len(rows), notes=notes, detail=detail, **out)


__all__ = ["LEDGER_ALPHA", "LEDGER_BLOCK", "LedgerEvidence", "ledger_degradation", "ledger_evidence"]
