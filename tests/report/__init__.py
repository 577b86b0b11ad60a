"""A lake holding one real (small) training run plus everything the report draws from: lake series with
gaps (unexplained and known) and corrections, an active model set, promotion decisions, retraining triggers
with a drift report, and a coin whose name needs HTML escaping. Built once per test session."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from coinline.ingest.gaps import record_as_known
from coinline.ingest.writer import commit_candles
from coinline.lake import open_lake, tables
from coinline.lake.store import Lake
from coinline.providers.base import SeriesKey, candle_table
from coinline.training.run import train
from tests.training.conftest import START, fast_config, random_walk_dataset

ODD_COIN = '<b>X&Y"</b>'
HOSTILE = "<script>alert(1)</script>"
ACTIVE_RUN = "run-previous0000001"
SECTIONS = ("summary", "coverage", "gaps", "validation", "oos", "calibration", "simulation", "live", "drift",
            "decisions", "lineage")
PLOTS_BARE = ("coverage_heatmap", "validation", "hindcast", "oos_metrics", "calibration", "equity")
PLOTS_FULL = (*PLOTS_BARE, "gaps_corrections", "drift")


def _candles(key: SeriesKey, times: np.ndarray, seed: int, bump: float = 1.0):
    rng = np.random.default_rng(seed)
    n = len(times)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n))) * bump
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    return candle_table(key, times, open_, high, low, close, rng.lognormal(3, 0.5, n), rng.integers(1, 50, n))


def _lake_extras(lake: Lake, now: datetime) -> None:
    """CAD series outside the run's dataset: a hole left unexplained, a hole recorded as known, revisions."""
    t0 = int(START.timestamp() * 1000)
    times = t0 + np.arange(200, dtype=np.int64) * 3_600_000
    holed = np.delete(times, np.arange(50, 56))
    btc = SeriesKey("sim", "RANDOMWALK", "BTC", "CAD", "1h")
    eth = SeriesKey("sim", "RANDOMWALK", "ETH", "CAD", "1h")
    commit_candles(lake, _candles(btc, holed, 1), key=btc, request={"test": "holed"}, now=now)
    commit_candles(lake, _candles(eth, holed, 2), key=eth, request={"test": "holed"}, now=now)
    record_as_known(lake, eth, answer="venue halted trading", now=now)
    revised = holed[:5]
    commit_candles(lake, _candles(btc, revised, 1, bump=1.01), key=btc, request={"test": "revision"},
                   now=now + timedelta(hours=1))


def _with_odd_coin(metrics: dict) -> dict:
    m = copy.deepcopy(metrics)
    m["per_coin"][ODD_COIN] = copy.deepcopy(m["per_coin"]["BTC"])
    m["checks"][ODD_COIN] = copy.deepcopy(m["checks"]["BTC"])
    m["simulation"]["per_symbol"][ODD_COIN] = copy.deepcopy(m["simulation"]["per_symbol"]["BTC"])
    m["symbols"] = sorted([*m["symbols"], ODD_COIN])
    return m


def _active_set(lake: Lake, metrics: dict) -> None:
    prev = copy.deepcopy(metrics)
    prev["run_id"] = ACTIVE_RUN
    for per_h in prev["per_coin"].values():
        for block in per_h.values():
            for m in block["models"].values():
                if m["oos"].get("log_loss") is not None:
                    m["oos"]["log_loss"] += 0.002
    eq = prev["simulation"]["equity"]
    eq["values"] = [1.0 + (v - 1.0) * 0.5 for v in eq["values"]]
    lake.write_json(f"runs/{ACTIVE_RUN}/metrics.json", prev)
    lake.write_json("registry/active.json", {"activation_id": "act-000001-aaaaaaaaaaaa", "sequence": 1,
                                             "kind": "promote", "run_id": ACTIVE_RUN, "decision_id": "dec-prev",
                                             "activated_at": "2025-04-10T00:00:00+00:00"})


def _decisions(lake: Lake, run_id: str) -> None:
    gates_ok = [{"gate": g, "passed": True, "reason_codes": [], "figures": {"n": 100}, "thresholds": {}}
                for g in ("oos_quality", "simulation", "risk", "audit")]
    lake.write_json("decisions/dec-prev.json", {
        "decision_id": "dec-prev", "kind": "promotion", "decision": "PROMOTE", "reason_codes": [],
        "run_id": ACTIVE_RUN, "active_before": None, "gates": gates_ok, "decided_at": "2025-04-10T00:00:00+00:00"})
    gates = [{"gate": "oos_quality", "passed": False, "reason_codes": ["OOS_SKILL_BELOW_BASELINE", "WORSE_THAN_ACTIVE"],
              "figures": {"log_loss": 0.6931, "log_loss_skill": -0.0012, "p_value_holm": 1.0},
              "thresholds": {"min_log_loss_skill": 0.0, "alpha": 0.05}},
             {"gate": "simulation", "passed": True, "reason_codes": [], "figures": {"sharpe": 0.4},
              "thresholds": {"min_sharpe": 0.0}},
             {"gate": "risk", "passed": True, "reason_codes": [], "figures": {}, "thresholds": {}},
             {"gate": "audit", "passed": True, "reason_codes": [], "figures": {"verified": 19}, "thresholds": {}}]
    lake.write_json("decisions/dec-this.json", {
        "decision_id": "dec-this", "kind": "promotion", "decision": "REJECT",
        "reason_codes": ["OOS_SKILL_BELOW_BASELINE", "WORSE_THAN_ACTIVE"], "run_id": run_id,
        "active_before": {"activation_id": "act-000001-aaaaaaaaaaaa", "sequence": 1, "kind": "promote",
                          "run_id": ACTIVE_RUN, "decision_id": "dec-prev"},
        "gates": gates, "decided_at": "2025-04-11T02:00:00+00:00"})


def _triggers(lake: Lake, run_id: str) -> None:
    thresholds = {"psi": 0.2, "ks_statistic": 0.2, "ks_pvalue": 0.01, "wasserstein": None, "feature_share": 0.3,
                  "prediction_psi": 0.2, "prediction_ks": 0.2, "label_rate_delta": 0.1, "label_psi": 0.2,
                  "hit_rate_drop": 0.05, "brier_rise": 0.02, "min_rows": 48, "min_scored": 48, "psi_bins": 10}
    feature = {"n_ref": 900, "n_cur": 200, "ks_pvalue": 0.001, "wasserstein": 0.1, "wasserstein_norm": 0.3}
    report = {"triggered": True, "reasons": [f"feature drift: 1/2 features drifted {HOSTILE}"], "notes": [],
              "n_ref": 900, "n_cur": 200, "feature_share": 0.5, "drifted_features": ["ret_1"],
              "features": {"ret_1": {**feature, "name": "ret_1", "psi": 0.35, "ks_statistic": 0.25, "drifted": True,
                                     "reasons": ["psi 0.350 > 0.2"]},
                           "vol_24": {**feature, "name": "vol_24", "psi": 0.04, "ks_statistic": 0.05,
                                      "drifted": False, "reasons": []}},
              "prediction": {**feature, "name": "prediction", "psi": 0.08, "ks_statistic": 0.07, "drifted": False},
              "label": {"kind": "binary", "rate_delta": 0.02, "psi": 0.01, "triggered": False, "reasons": []},
              "degradation": {"hit_rate_drop": 0.07, "brier_rise": 0.004, "triggered": True,
                              "reasons": ["rolling hit rate dropped"]},
              "thresholds": thresholds, "context": {"run_id": run_id}}
    lake.write_json("triggers/20250411T010000Z-drift-1a2b3c4d.json", {
        "trigger_id": "20250411T010000Z-drift-1a2b3c4d", "kind": "drift", "created_at": "2025-04-11T01:00:00+00:00",
        "status": "done", "evidence": {"run_id": run_id, "report": report}, "outcome": {"run_id": "run-next"},
        "updated_at": "2025-04-11T03:00:00+00:00"})
    lake.write_json("triggers/20250411T000000Z-manual-5e6f7a8b.json", {
        "trigger_id": "20250411T000000Z-manual-5e6f7a8b", "kind": "manual", "created_at": "2025-04-11T00:00:00+00:00",
        "status": "pending", "evidence": {"requested_by": "ops", "reason": "weekly refresh"},
        "updated_at": "2025-04-11T00:00:00+00:00"})


def report_lake(base: Path) -> tuple[Lake, str]:
    """(lake, run_id), built under `base` on first use and reused afterwards."""
    root = base / "report-lake"
    marker = base / "report-lake.json"
    if marker.exists():
        return open_lake(f"file://{root}"), json.loads(marker.read_text())["run_id"]
    lake = open_lake(f"file://{root}")
    tables.ensure_tables(lake)
    dataset_id = random_walk_dataset(lake, seed=11)
    run = train(lake, dataset_id, fast_config(families=("lightgbm", "lstm")), workers=1)
    marker.write_text(json.dumps({"run_id": run.run_id}))
    return lake, run.run_id


def full_report_lake(base: Path) -> tuple[Lake, str]:
    """The same run, copied, with gaps, corrections, an active set, decisions, triggers and an odd coin name."""
    import shutil

    lake, run_id = report_lake(base)
    root = base / "report-lake-full"
    marker = base / "report-lake-full.json"
    if marker.exists():
        return open_lake(f"file://{root}"), run_id
    shutil.copytree(base / "report-lake", root)
    full = open_lake(f"file://{root}")
    _lake_extras(full, datetime(2025, 4, 12, tzinfo=UTC))
    metrics = _with_odd_coin(full.read_json(f"runs/{run_id}/metrics.json"))
    full.write_json(f"runs/{run_id}/metrics.json", metrics)
    _active_set(full, metrics)
    _decisions(full, run_id)
    _triggers(full, run_id)
    marker.write_text(json.dumps({"run_id": run_id}))
    return full, run_id
