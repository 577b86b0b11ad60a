"""The main data job (`coinline run`, `make run`): backfill the universe from the historical provider,
sync Kraken for venue parity, retry gaps, validate, materialize one dataset per interval, report."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from coinline.app import App
from coinline.datasets.materialize import DatasetSpec, materialize
from coinline.datasets.status import coverage
from coinline.ingest import gaps as gaps_mod
from coinline.ingest.backfill import backfill
from coinline.ingest.parity import parity
from coinline.ingest.sync import sync
from coinline.lake import tables

log = logging.getLogger("coinline")


def run_data_job(app: App, *, progress: bool = True) -> dict[str, Any]:
    s = app.settings
    hist = app.hist_source()
    pairs = app.pairs()
    outcomes = backfill(hist, app.lake, pairs, now=app.now, progress=progress, lookback=s.reconcile_lookback)
    kraken = app.kraken_source()
    usd_pairs = [p for p in pairs if p[1] == "USD"]
    venue = sync(kraken, app.lake, usd_pairs, now=app.now, progress=progress, lookback=s.reconcile_lookback)
    gap_results = []
    for key, *_ in tables.series_in(app.lake):
        if key.source == hist.name:
            gap_results.extend(gaps_mod.retry(hist, app.lake, key, now=app.now))
    datasets = []
    for interval in s.intervals:
        spec = DatasetSpec(s.training_universe_version, interval, hist.name, tuple(s.quotes))
        datasets.append(materialize(app.lake, app.universe, spec, gap_tolerance=s.gap_tolerance, now=app.now))
    par = parity(app.lake, reference_source=hist.name, tolerance_bps=s.parity_tolerance_bps)
    report = {
        "now": app.now.isoformat(),
        "offline": s.offline,
        "backfill": {"outcomes": Counter(o.status for o in outcomes),
                     "series": [o.to_dict() for o in outcomes]},
        "venue_sync": {"outcomes": Counter(o.status for o in venue), "series": [o.to_dict() for o in venue]},
        "gaps": [g.to_dict() for g in gap_results],
        "datasets": [d.summary() for d in datasets],
        "parity": [p.to_dict() for p in par],
        "coverage": [c.to_dict() for c in coverage(app.lake)],
        "requests": app.requests_made(),
    }
    app.lake.write_json(f"reports/run-{app.now:%Y%m%dT%H%M%SZ}.json", report)
    return report


def run_main_job(app: App, *, progress: bool = True, train_models: bool = True) -> dict[str, Any]:
    """`make run`: the data job, then training and evaluation of the full topology on its dataset."""
    from coinline.training.config import load_train_config
    from coinline.training.run import train
    from coinline.training.verdict import run_verdict

    report = run_data_job(app, progress=progress)
    if train_models:
        s = app.settings
        primary = report["datasets"][0]  # the first configured interval
        cfg = load_train_config(s.train_config)
        run = train(app.lake, primary["dataset_id"], cfg, workers=s.train_workers or None)
        report["training"] = {"run_id": run.run_id, "manifest": f"runs/{run.run_id}/manifest.json",
                              "skill": run.metrics["skill"], "simulation": run.metrics["simulation"],
                              "regime": run.metrics["regime"], "verdict": run_verdict(run.metrics).line}
        report["promotion"] = _promote_and_report(app, run.run_id)
        app.lake.write_json(f"reports/run-{app.now:%Y%m%dT%H%M%SZ}.json", report)
    return report


def _promote_and_report(app: App, run_id: str) -> dict[str, Any]:
    """Gate the run (a rejection leaves the active set untouched), then write the oversight page."""
    from pathlib import Path

    from coinline.promotion.decide import promote
    from coinline.report.build import build_report

    result = promote(app.lake, run_id, now=app.now)
    decision = result["decision"]
    html = build_report(app.lake, run_id)
    app.lake.write_bytes(f"reports/{run_id}.html", html.encode())
    local = Path("reports") / f"{run_id}.html"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(html)
    return {"outcome": result["outcome"], "decision_id": decision["decision_id"],
            "reason_codes": decision["reason_codes"], "activated": result["activated"],
            "report": str(local.resolve())}
