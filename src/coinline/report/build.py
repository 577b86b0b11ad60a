"""Gather everything the oversight report shows about one run from the lake, and turn it into sections.

    build_report(lake, run_id) -> str               the self-contained HTML page
    report_content(lake, run_id) -> ReportContent   header facts + sections (tables and PNG plots), for
                                                    other renderers (e.g. Kubeflow Pipelines visualizations)
    metrics_sections(metrics) -> list[Section]      the sections drawn from a metrics.json alone

Sources (all read-only):
    runs/<run_id>/metrics.json, manifest.json       the run's metric package and lineage
    datasets/<dataset_id>/data.parquet, manifest    coverage heatmap (coin x time) of the run's dataset
    raw_candles, known_gaps, corrections            lake-wide coverage, gaps and corrections
    quality/datasets|canonical|raw/*.json           stored quality-suite results
    decisions/*.json                                promotion decisions (PROMOTE | REJECT, reason codes, gates)
    triggers/*.json                                 drift reports
    registry/active.json                            the active model set
    forecasts (the ledger) + canonical candles      the Live section (`coinline.report.live`): forward scores of
                                                    matured forecasts per model set, champion vs shadows, the
                                                    latest forecasts
The "active set" drawn beside this run is the set this run's latest promotion decision was judged against
(`active_before`), else the set active now when that is another run. Decision, gate and trigger records are
rendered field by field, so fields added later still show up. The Live section covers the whole ledger (every
model set, not only this run) and scores maturity as of `generated_at` (the clock when not given).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from coinline.datasets.status import coverage
from coinline.errors import CoinlineError
from coinline.lake.store import Lake
from coinline.report import figures as figs
from coinline.report.evidence import evidence_tables
from coinline.report.html import Badge, Plot, Section, Table, fmt, render_page
from coinline.report.live import live_section
from coinline.report.parts import capped as _capped
from coinline.report.parts import get as _get
from coinline.report.parts import plot as _plot
from coinline.report.parts import sig as _sig
from coinline.training.verdict import run_verdict

MAX_HEATMAP_BUCKETS = 120
MAX_RAW_RESULTS = 1000  # raw-suite results read per report (one small object each)
MAX_DRIFT_BARS = 40
ACTIVE_POINTER = "registry/active.json"
_TIME_KEYS = ("decided_at", "created_at", "generated_at", "detected_at", "at", "time", "timestamp", "as_of")


class ReportError(CoinlineError):
    """The run cannot be reported (no metric package in the lake)."""


@dataclass
class ReportContent:
    run_id: str
    title: str
    header: list[tuple[str, Any]]
    sections: list[Section]
    footer: list[str] = field(default_factory=list)

    def plots(self) -> list[Plot]:
        return [p for s in self.sections for p in s.plots]


def build_report(lake: Lake, run_id: str, *, generated_at: datetime | None = None) -> str:
    """The run's oversight report as one self-contained HTML document."""
    content = report_content(lake, run_id, generated_at=generated_at)
    return render_page(title=content.title, run_id=content.run_id, header=content.header,
                       sections=content.sections, footer=content.footer)


def report_content(lake: Lake, run_id: str, *, generated_at: datetime | None = None) -> ReportContent:
    metrics = lake.read_json(f"runs/{run_id}/metrics.json")
    if metrics is None:
        raise ReportError(f"run {run_id} has no metrics.json in the lake ({lake.root})")
    manifest = lake.read_json(f"runs/{run_id}/manifest.json") or {}
    decisions = _decisions(lake)
    active_id = _active_run(lake, decisions, run_id)
    active = lake.read_json(f"runs/{active_id}/metrics.json") if active_id else None
    dataset_id = metrics.get("dataset_id") or manifest.get("dataset_id")
    ds_manifest = lake.read_json(f"datasets/{dataset_id}/manifest.json") if dataset_id else None
    mine = [d for d in decisions if d["run_id"] == run_id]
    cov = coverage(lake)  # one gap scan per stored series, shared by two sections

    sections = [
        _summary(run_id, metrics, manifest, mine, active_id),
        _coverage(lake, dataset_id, ds_manifest, cov),
        _gaps_corrections(lake, cov),
        _validation(lake, metrics, dataset_id, ds_manifest),
        _oos(metrics, active, active_id),
        _calibration(metrics),
        _simulation(metrics, active, active_id),
        live_section(lake, generated_at or datetime.now(UTC)),
        _drift(lake),
        _decisions_section(decisions, run_id),
        _lineage(manifest),
    ]
    header = [("run", run_id), ("dataset", dataset_id or "?"), ("coins", len(metrics.get("symbols") or [])),
              ("primary horizon", f"{metrics.get('primary_horizon')} bars")]
    if generated_at is not None:
        header.append(("generated", generated_at.isoformat()))
    footer = [f"coinline oversight report for {run_id}.",
              "All model metrics are out-of-sample (walk-forward test blocks with an embargo) unless labelled.",
              "This page is self-contained: no scripts, no external resources."]
    return ReportContent(run_id, f"coinline run report: {run_id}", header, sections, footer)


def metrics_sections(metrics: dict, *, active: dict | None = None, active_id: str | None = None) -> list[Section]:
    """The sections that need only a metric package (no lake): per-coin OOS metrics, calibration, simulation.
    For renderers that hold metrics.json alone, e.g. a pipeline step's input artifact."""
    return [_oos(metrics, active, active_id), _calibration(metrics), _simulation(metrics, active, active_id)]


# -- summary ---------------------------------------------------------------------------------------------


def _summary(run_id, metrics, manifest, mine, active_id) -> Section:
    sim = metrics.get("simulation") or {}
    verdict = run_verdict(metrics)
    look = metrics.get("lookahead") or {}
    latest = mine[-1] if mine else None
    facts = [
        ("run id", run_id),
        ("dataset", metrics.get("dataset_id")),
        ("dataset hash", metrics.get("dataset_hash")),
        ("config hash", metrics.get("config_hash")),
        ("code version", manifest.get("code_version", "")),
        ("manifest content hash", manifest.get("content_hash", "(no manifest)")),
        ("seed", metrics.get("seed")),
        ("coins", ", ".join(metrics.get("symbols") or [])),
        ("primary horizon (bars)", metrics.get("primary_horizon")),
        ("look-ahead check", _pass(look.get("passed"))),
        ("skill (Holm-corrected, pooled)", Badge(verdict.badge, "ok" if verdict.found else "warn")),
        ("simulation total return", sim.get("total_return")),
        ("simulation within limits", _pass(sim.get("within_limits"))),
        ("promotion decision", _decision_badge(latest["decision"]) if latest else Badge("none yet")),
        ("active set", active_id or "none yet"),
    ]
    return Section("summary", "Summary", facts=facts)


# -- coverage --------------------------------------------------------------------------------------------


def _coverage(lake: Lake, dataset_id, ds_manifest, coverage_rows: list) -> Section:
    sec = Section("coverage", "Data coverage",
                  intro="Heatmap: the run's dataset, one row per series, one column per time bucket; colour is "
                        "the fraction of the candles the interval grid expects that are present (red = holes). "
                        "Table: every series stored in the lake.")
    if ds_manifest is None:
        sec.tables.append(Table("dataset", ["dataset"], [], note=f"dataset {dataset_id} not found in the lake"))
    else:
        grid = _dataset_grid(lake, dataset_id, ds_manifest)
        if grid is not None:
            rows, starts, bucket_ms, frac = grid
            fig = figs.coverage_heatmap(rows, starts, bucket_ms, frac, f"dataset {dataset_id}")
            sec.plots.append(_plot("coverage_heatmap", "Coverage heatmap (coin x time)", fig,
                                   f"{len(rows)} series, buckets of {_duration(bucket_ms)}"))
    cov = [c.to_dict() for c in coverage_rows]
    sec.tables.append(Table("Coverage per series (lake)", ["series", "first", "last", "rows", "missing candles",
                                                           "known-gap candles", "corrections"],
                            [[c["series"], c["first"], c["last"], c["rows"],
                              _count(c["missing_candles"], "bad"), _count(c["known_gap_candles"], "warn"),
                              _count(c["corrections"], "warn")] for c in cov]))
    return sec


def _dataset_grid(lake: Lake, dataset_id: str, manifest: dict):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from coinline.timeframes import interval_ms

    try:
        table = pq.read_table(lake.path(f"datasets/{dataset_id}/data.parquet"), filesystem=lake.fs,
                              columns=["source", "symbol", "quote", "interval", "open_time"])
    except (FileNotFoundError, OSError):
        return None
    if table.num_rows == 0:
        return None
    intervals = pc.unique(table["interval"]).to_pylist()
    iv = interval_ms(intervals[0])
    ms = pc.cast(pc.cast(table["open_time"], pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy()
    multi_source = len(pc.unique(table["source"])) > 1
    labels = np.array([f"{sym}-{q}" + (f" ({src})" if multi_source else "") for src, sym, q in
                       zip(table["source"].to_pylist(), table["symbol"].to_pylist(), table["quote"].to_pylist(),
                           strict=True)])
    t0, t1 = int(ms.min()), int(ms.max())
    n_grid = (t1 - t0) // iv + 1
    per_bucket = max(1, math.ceil(n_grid / MAX_HEATMAP_BUCKETS))
    n_buckets = math.ceil(n_grid / per_bucket)
    expected = np.full(n_buckets, per_bucket, dtype=float)
    expected[-1] = n_grid - (n_buckets - 1) * per_bucket
    bucket = ((ms - t0) // iv) // per_bucket
    rows = sorted(set(labels.tolist()))
    frac = np.zeros((len(rows), n_buckets))
    for i, name in enumerate(rows):
        counts = np.bincount(bucket[labels == name], minlength=n_buckets)[:n_buckets]
        frac[i] = np.minimum(counts / expected, 1.0)
    starts = [t0 + k * per_bucket * iv for k in range(n_buckets)]
    return rows, starts, per_bucket * iv, frac


# -- gaps and corrections --------------------------------------------------------------------------------


def _gaps_corrections(lake: Lake, cov: list) -> Section:
    from coinline.datasets.canonical import committed_corrections
    from coinline.ingest.gaps import detect, known_gaps, series_to_check

    sec = Section("gaps", "Gaps and corrections",
                  intro="Missing candles against the interval grid (never forward-filled): unexplained, or known "
                        "with the provider's answer recorded. Corrections: candles a provider revised; the "
                        "canonical view keeps the highest version.")
    keys = {k.label(): k for k in series_to_check(lake)}   # a recorded gap may leave a series without candles
    unexplained = []
    for c in cov:
        if c.missing_candles and c.series in keys:
            unexplained += [g for g in detect(lake, keys[c.series]) if g.status == "unexplained"]
    known = known_gaps(lake).to_pylist()
    corr = committed_corrections(lake).to_pylist()
    flagged = [c for c in cov if c.missing_candles or c.known_gap_candles or c.corrections]
    if flagged:
        fig = figs.gaps_corrections([c.series for c in flagged], [c.missing_candles for c in flagged],
                                    [c.known_gap_candles for c in flagged], [c.corrections for c in flagged])
        sec.plots.append(_plot("gaps_corrections", "Gaps and corrections per series", fig))
    else:
        sec.empty = "No gaps and no corrections in the lake."
    sec.tables.append(_capped("Unexplained gaps", ["series", "gap start", "gap end", "missing candles", "reason"],
                              [[g.series, g.gap_start, g.gap_end, g.missing_candles, g.answer] for g in unexplained]))
    known.sort(key=lambda r: str(r["detected_at"]), reverse=True)
    sec.tables.append(_capped("Known gaps (newest first)",
                              ["series", "gap start", "gap end", "missing candles", "provider answer", "recorded"],
                              [[_label(r), r["gap_start"], r["gap_end"], r["missing_candles"], r["answer"],
                                r["detected_at"]] for r in known]))
    corr.sort(key=lambda r: (str(r["detected_at"]), str(r["open_time"])), reverse=True)
    sec.tables.append(_capped("Corrections (newest first)",
                              ["series", "open time", "version", "old close", "new close", "reason", "batch",
                               "detected"],
                              [[_label(r), r["open_time"], f"{r['old_version']} -> {r['new_version']}",
                                r.get("old_close"), r.get("new_close"), r["reason"], r["batch_id"], r["detected_at"]]
                               for r in corr]))
    return sec


# -- validation ------------------------------------------------------------------------------------------


def _validation(lake: Lake, metrics, dataset_id, ds_manifest) -> Section:
    sec = Section("validation", "Validation results",
                  intro="Great Expectations suites over the raw batches and the canonical dataset the run used, "
                        "and the run's own checks: look-ahead (features rebuilt on truncated data), hindcast and "
                        "forward checks, simulation limits.")
    suites, passed, failed = [], [], []
    results: list[tuple[str, dict]] = []
    if ds_manifest is not None:
        path = (ds_manifest.get("quality") or {}).get("results") or f"quality/datasets/{dataset_id}.json"
        res = lake.read_json(path)
        if res is not None:
            results.append((f"dataset {res.get('suite', '')}", res))
    for name in lake.list("quality/canonical"):
        res = lake.read_json(name)
        if res is not None:
            results.append((f"canonical {name.rsplit('/', 1)[-1].removesuffix('.json')}", res))
    for label, res in results:
        checks = res.get("checks") or []
        ok = sum(1 for c in checks if c.get("success"))
        suites.append(label)
        passed.append(ok)
        failed.append(len(checks) - ok)
    batches = sorted(((ds_manifest or {}).get("inputs") or {}).get("batches") or [])
    raw_rows, raw_ok, raw_bad, raw_missing = [], 0, 0, 0
    for batch_id in batches[:MAX_RAW_RESULTS]:
        res = lake.read_json(f"quality/raw/{batch_id}.json")
        if res is None:
            raw_missing += 1
            continue
        checks = res.get("checks") or []
        ok = sum(1 for c in checks if c.get("success"))
        raw_ok += ok
        raw_bad += len(checks) - ok
        if not res.get("success", False):
            raw_rows.append([batch_id, res.get("series"), Badge("failed", "bad"),
                             "; ".join(c.get("name", "") for c in checks if not c.get("success"))])
    if batches:
        suites.append(f"raw suite ({min(len(batches), MAX_RAW_RESULTS)} batches)")
        passed.append(raw_ok)
        failed.append(raw_bad)
    look = metrics.get("lookahead") or {}
    sim = metrics.get("simulation") or {}
    run_checks = [("run: look-ahead", look.get("passed")), ("run: simulation limits", sim.get("within_limits"))]
    for label, ok in run_checks:
        if ok is not None:
            suites.append(label)
            passed.append(1 if ok else 0)
            failed.append(0 if ok else 1)
    if suites:
        sec.plots.append(_plot("validation", "Checks passed and failed per suite",
                               figs.validation_bars(suites, passed, failed)))
    rows = []
    for label, res in results:
        checks = res.get("checks") or []
        rows.append([label, _pass(res.get("success")), res.get("row_count"), res.get("series_count"),
                     f"{sum(1 for c in checks if c.get('success'))}/{len(checks)}",
                     "; ".join(_brief(c) for c in checks if not c.get("success")) or "",
                     ", ".join(res.get("skipped") or [])])
    sec.tables.append(Table("Quality suites", ["suite", "result", "rows", "series", "checks passed", "failed checks",
                                               "skipped"], rows,
                            note="" if results else "no stored quality results for this dataset"))
    note = f"{len(batches)} raw batches in the dataset; {raw_missing} without a stored result"
    if len(batches) > MAX_RAW_RESULTS:
        note += f"; the first {MAX_RAW_RESULTS} were read"
    sec.tables.append(Table("Raw batches that failed the raw suite", ["batch", "series", "result", "failed checks"],
                            raw_rows, note=note))
    sec.tables.append(Table("Look-ahead check", ["passed", "features checked", "rows compared", "cuts",
                                                 "violations"],
                            [[_pass(look.get("passed")), look.get("features_checked"), look.get("rows_compared"),
                              ", ".join(str(c) for c in look.get("cuts") or []),
                              _short(look.get("violations") or [])]] if look else []))
    checks = metrics.get("checks") or {}
    hrows = []
    series = {}
    for coin, c in sorted(checks.items()):
        s = c.get("hindcast_summary") or {}
        fw = (c.get("forward") or [{}])[-1] if c.get("forward") else {}
        hrows.append([coin, s.get("count"), s.get("hit_rate"), s.get("mean_brier"), s.get("base_rate"),
                      s.get("mean_p"), fw.get("p"), _ms_iso(fw.get("target_time_ms"))])
        hc = [h for h in c.get("hindcast") or [] if h.get("scored")]
        series[coin] = ([h.get("cutoff_ms") for h in hc], [h.get("brier") for h in hc])
    if any(len(t) for t, _ in series.values()):
        sec.plots.append(_plot("hindcast", "Hindcast Brier score per window", figs.hindcast_brier(series)))
    sec.tables.append(Table("Hindcast and forward checks (ensemble, primary horizon)",
                            ["coin", "hindcast windows", "hit rate", "mean Brier", "base rate", "mean P(up)",
                             "latest forward P(up)", "forward target time"], hrows))
    regime = metrics.get("regime") or {}
    if regime:
        flat = []
        for k, v in sorted(regime.items()):
            if isinstance(v, dict):
                flat += [[f"{k}.{kk}", vv if not isinstance(vv, dict | list) else _short(vv)]
                         for kk, vv in sorted(v.items())]
            else:
                flat.append([k, v if not isinstance(v, list) else _short(v)])
        sec.tables.append(Table("Regime classifier (global, OOS)", ["metric", "value"], flat))
    return sec


# -- per-coin OOS metrics --------------------------------------------------------------------------------


def _oos(metrics, active, active_id) -> Section:
    h = str(metrics.get("primary_horizon"))
    per_coin = metrics.get("per_coin") or {}
    coins = sorted(per_coin)
    sec = Section("oos", "Per-coin out-of-sample metrics",
                  intro="Every model's out-of-sample log loss against the baselines (base rate, momentum, random "
                        "walk) and the active set, per coin; then the pooled, Holm-corrected skill tests.")
    if not coins:
        sec.empty = "The run has no per-coin metrics."
        return sec
    model_names = sorted({m for c in coins for m in (per_coin[c].get(h) or {}).get("models", {})},
                         key=lambda m: (m != "ensemble", m))
    models: dict[str, list] = {m: [] for m in model_names}
    baselines: dict[str, list] = {b: [] for b in ("momentum", "random_walk")}
    active_vals: list = []
    for c in coins:
        block = per_coin[c].get(h) or {}
        base = _get(block, "baselines", "base_rate", "log_loss")
        for m in model_names:
            models[m].append(_diff(_get(block, "models", m, "oos", "log_loss"), base))
        for b in baselines:
            baselines[b].append(_diff(_get(block, "baselines", b, "log_loss"), base))
        ablock = _get(active, "per_coin", c, h) or {}
        active_vals.append(_diff(_get(ablock, "models", "ensemble", "oos", "log_loss"),
                                 _get(ablock, "baselines", "base_rate", "log_loss")))
    has_active = active is not None and any(v is not None for v in active_vals)
    fig = figs.oos_vs_baselines(coins, models, baselines, active_vals if has_active else None, horizon=h)
    sec.plots.append(_plot("oos_metrics", f"Per-coin OOS log loss vs baselines and active set (h={h})", fig,
                           f"active set: {active_id}" if has_active else "active set: none yet"))
    skill = metrics.get("skill") or {}
    rows = []
    for v in sorted((skill.get("by_model") or {}).values(), key=lambda v: (int(v.get("horizon", 0)), v.get("model", ""))):
        oos, base = v.get("oos") or {}, v.get("base_rate") or {}
        rows.append([v.get("horizon"), v.get("model"), oos.get("n"), oos.get("log_loss"), base.get("log_loss"),
                     oos.get("brier"), oos.get("accuracy"), oos.get("ece"), _get(v, "chance", "p_value"),
                     v.get("p_value_holm"), _sig(v.get("significant"))])
    sec.tables.append(Table(f"Pooled skill vs base rate ({skill.get('correction', 'holm')}, alpha "
                            f"{skill.get('alpha')}, {skill.get('tests')} tests)",
                            ["horizon", "model", "n", "OOS log loss", "base-rate log loss", "Brier", "accuracy", "ECE",
                             "p", "p (Holm)", "skill"], rows))
    rows = []
    for c in coins:
        for hz, block in sorted(per_coin[c].items(), key=lambda kv: _int(kv[0])):
            base = _get(block, "baselines", "base_rate", "log_loss")
            for m, mm in sorted((block.get("models") or {}).items(), key=lambda kv: (kv[0] != "ensemble", kv[0])):
                oos = mm.get("oos") or {}
                act = _get(active, "per_coin", c, hz, "models", m, "oos", "log_loss")
                rows.append([c, _int(hz), m, oos.get("n"), oos.get("log_loss"), base,
                             _get(mm, "skill", "base_rate", "log_loss_skill"),
                             _get(mm, "skill", "momentum", "log_loss_skill"), oos.get("brier"), oos.get("accuracy"),
                             oos.get("balanced_accuracy"), oos.get("ece"),
                             _get(mm, "chance_vs_base_rate", "p_value"),
                             _sig(_get(mm, "chance_vs_base_rate", "significant")), act,
                             _diff(oos.get("log_loss"), act)])
    sec.tables.append(Table("Per coin, horizon and model (OOS)",
                            ["coin", "h", "model", "n", "log loss", "base-rate log loss", "LL skill vs base",
                             "LL skill vs momentum", "Brier", "accuracy", "bal. accuracy", "ECE", "p (uncorrected)",
                             "significant", "active-set log loss", "vs active"], rows,
                            note="LL skill = 1 - model log loss / baseline log loss (positive = better). "
                                 "vs active = this run's log loss minus the active set's (negative = better); the "
                                 "active set was evaluated on its own test blocks."))
    sec.tables.extend(evidence_tables(metrics))
    return sec


# -- calibration -----------------------------------------------------------------------------------------


def _calibration(metrics) -> Section:
    sec = Section("calibration", "Calibration curves",
                  intro="Reliability of P(up), pooled over coins, out-of-sample: points on the diagonal are "
                        "calibrated; marker size is the share of predictions in the bin.")
    by_model = (metrics.get("skill") or {}).get("by_model") or {}
    curves: dict[str, dict] = {}
    for v in sorted(by_model.values(), key=lambda v: (_int(v.get("horizon")), v.get("model") != "ensemble",
                                                      v.get("model", ""))):
        curve = _get(v, "oos", "calibration_curve")
        if curve:
            curves.setdefault(str(v.get("horizon")), {})[str(v.get("model"))] = curve
    if not curves:
        sec.empty = "No calibration curves in the metric package."
        return sec
    sec.plots.append(_plot("calibration", "Calibration curves per horizon", figs.calibration_curves(curves)))
    rows = [[v.get("horizon"), v.get("model"), _get(v, "oos", "ece"), _get(v, "oos", "brier"),
             _get(v, "base_rate", "ece")] for v in sorted(by_model.values(), key=lambda v: (_int(v.get("horizon")),
                                                                                             v.get("model", "")))]
    sec.tables.append(Table("Expected calibration error", ["horizon", "model", "ECE", "Brier", "base-rate ECE"], rows))
    return sec


# -- simulation ------------------------------------------------------------------------------------------


def _simulation(metrics, active, active_id) -> Section:
    sim = metrics.get("simulation") or {}
    sec = Section("simulation", "Simulation",
                  intro="Deterministic long/flat spot simulation of the ensemble's out-of-sample P(up) at the "
                        "primary horizon: fills at the next open, fees and slippage charged, position and "
                        "exposure limits enforced.")
    eq = sim.get("equity") or {}
    if not eq.get("times_ms"):
        sec.empty = "The run has no simulation equity curve."
        return sec
    curves = {"this run": (eq["times_ms"], eq["values"])}
    aeq = _get(active, "simulation", "equity") or {}
    if aeq.get("times_ms"):
        curves[f"active set ({active_id})"] = (aeq["times_ms"], aeq["values"])
    sec.plots.append(_plot("equity", "Simulation equity curve and drawdown", figs.equity_curves(curves)))
    params = sim.get("params") or {}
    sec.facts = [("total return", sim.get("total_return")), ("Sharpe (annualised)", sim.get("sharpe")),
                 ("max drawdown", sim.get("max_drawdown")), ("turnover per period", sim.get("turnover")),
                 ("hit rate", sim.get("hit_rate")), ("trades", sim.get("n_trades")), ("periods", sim.get("n_periods")),
                 ("max gross exposure", sim.get("max_gross_exposure")),
                 ("max position", sim.get("max_position_observed")),
                 ("within limits", _pass(sim.get("within_limits"))),
                 ("parameters", ", ".join(f"{k}={v}" for k, v in sorted(params.items())))]
    per = sim.get("per_symbol") or {}
    sec.tables.append(Table("Per coin", ["coin", "gross", "cost", "net", "trades", "periods held"],
                            [[s, v.get("gross"), v.get("cost"), v.get("net"), v.get("n_trades"), v.get("periods_held")]
                             for s, v in sorted(per.items())]))
    return sec


# -- drift -----------------------------------------------------------------------------------------------


def _drift(lake: Lake) -> Section:
    sec = Section("drift", "Drift indicators",
                  intro="Retraining triggers stored under triggers/ in the lake (newest first). The figure shows "
                        "the newest drift report: each statistic divided by its threshold (1 = trigger line).")
    docs = []
    for name in lake.list("triggers"):
        if name.endswith(".json"):
            try:
                doc = lake.read_json(name)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(doc, dict):
                docs.append((str(doc.get("trigger_id") or _stem(name)), doc))
    if not docs:
        sec.empty = "No drift reports or retraining triggers yet (none yet)."
        return sec
    docs.sort(key=lambda d: (str(d[1].get("created_at", "")), d[0]), reverse=True)
    rows, latest = [], None
    for trigger_id, doc in docs:
        evidence = doc.get("evidence")
        report = _find_report(evidence)
        if report is not None and latest is None:
            latest = (trigger_id, report)
        reasons = (report or {}).get("reasons") or (evidence.get("reasons") if isinstance(evidence, dict) else None)
        triggered = (report or {}).get("triggered")
        status = str(doc.get("status", ""))
        rows.append([trigger_id, doc.get("kind", ""), Badge(status, _STATUS_KIND.get(status, "muted")) if status else "",
                     doc.get("created_at", ""),
                     "" if triggered is None else (Badge("drift", "bad") if triggered else Badge("no drift", "ok")),
                     "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else _short(reasons),
                     _short({k: v for k, v in doc.items() if k not in ("trigger_id", "kind", "status", "created_at",
                                                                       "evidence")}),
                     _short(evidence if report is None else {k: v for k, v in evidence.items()
                                                             if not isinstance(v, dict) or v is not report})])
    if latest is not None:
        indicators = _drift_indicators(latest[1])
        shown = sorted(indicators, key=lambda i: -(i[3] if i[3] is not None else -1.0))[:MAX_DRIFT_BARS]
        plotted = [i for i in shown if i[3] is not None]
        if plotted:
            fig = figs.drift_indicators([i[0] for i in plotted], [i[3] for i in plotted], [i[4] for i in plotted],
                                        xlabel="statistic / threshold (1 = trigger line)")
            sec.plots.append(_plot("drift", f"Drift indicators of trigger {latest[0]}", fig,
                                   f"{len(plotted)} of {len(indicators)} indicators, largest first"))
        sec.tables.append(Table(f"Drift indicators of trigger {latest[0]}",
                                ["indicator", "value", "threshold", "value / threshold", "status"],
                                [[n, v, t, r, Badge("breached", "bad") if b else Badge("ok", "ok")]
                                 for n, v, t, r, b in shown],
                                note="; ".join([*(str(n) for n in latest[1].get("notes") or []),
                                                *_sources(latest[1].get("sources"))])))
    sec.tables.append(_capped("Retraining triggers", ["trigger", "kind", "status", "created", "drift", "reasons",
                                                      "record", "evidence"], rows))
    return sec


def _sources(sources) -> list[str]:
    """Where a drift report's prediction drift and degradation came from (ledger | re-predicted)."""
    if not isinstance(sources, dict):
        return []
    return [f"{part} from: {src}" for part, src in sorted(sources.items()) if isinstance(src, str)]


_STATUS_KIND = {"done": "ok", "failed": "bad", "running": "warn", "pending": "warn", "coalesced": "muted"}


def _find_report(evidence, depth: int = 0) -> dict | None:
    """A drift report (coinline.promotion.drift.DriftReport.to_dict()) inside a trigger's evidence."""
    if not isinstance(evidence, dict) or depth > 2:
        return None
    if "triggered" in evidence and ("features" in evidence or "thresholds" in evidence):
        return evidence
    for v in evidence.values():
        found = _find_report(v, depth + 1)
        if found is not None:
            return found
    return None


def _drift_indicators(report: dict) -> list[tuple[str, float | None, float | None, float | None, bool]]:
    """(name, value, threshold, value/threshold, breached) for every statistic of a drift report."""
    th = report.get("thresholds") or {}
    out = []

    def add(name, value, threshold, breached=None):
        if not _num(value):
            return
        ratio = abs(value) / threshold if _num(threshold) and threshold > 0 else None
        hit = bool(breached) if breached is not None else bool(ratio is not None and ratio > 1.0)
        out.append((name, float(value), threshold, ratio, hit))

    add("share of drifted features", report.get("feature_share"), th.get("feature_share"),
        report.get("feature_share") is not None and _num(th.get("feature_share"))
        and report["feature_share"] >= th["feature_share"] and bool(report.get("drifted_features")))
    pred = report.get("prediction") or {}
    add("prediction PSI", pred.get("psi"), th.get("prediction_psi"))
    add("prediction KS D", pred.get("ks_statistic"), th.get("prediction_ks"))
    label = report.get("label") or {}
    add("label up-rate delta", label.get("rate_delta"), th.get("label_rate_delta"))
    add("label PSI", label.get("psi"), th.get("label_psi"))
    degr = report.get("degradation") or {}
    add("hit-rate drop", degr.get("hit_rate_drop"), th.get("hit_rate_drop"))
    add("Brier rise", degr.get("brier_rise"), th.get("brier_rise"))
    add("log-loss rise", degr.get("log_loss_rise"), degr.get("log_loss_rise_threshold"))
    for name, f in sorted((report.get("features") or {}).items()):
        if isinstance(f, dict):
            add(f"feature {name}: PSI", f.get("psi"), th.get("psi"), f.get("drifted"))
    return out


# -- promotion decisions ---------------------------------------------------------------------------------


def _decisions(lake: Lake) -> list[dict]:
    """Every decisions/*.json, oldest first, with `id`, `run_id`, `decision`, `when` and the raw document."""
    out = []
    for name in lake.list("decisions"):
        if not name.endswith(".json"):
            continue
        try:
            doc = lake.read_json(name)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        out.append({"id": _stem(name), "run_id": _decision_run(doc), "decision": str(doc.get("decision", "")).upper(),
                    "when": _when(doc), "doc": doc})
    out.sort(key=lambda d: (d["when"], d["id"]))
    return out


def _decision_run(doc: dict) -> str:
    for key in ("run_id", "candidate_run_id", "candidate", "run"):
        v = doc.get(key)
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and isinstance(v.get("run_id"), str):
            return v["run_id"]
    return ""


def _active_run(lake: Lake, decisions: list[dict], run_id: str) -> str | None:
    """The set this run is compared with: the active set its latest decision was judged against, else the
    set active now (registry/active.json) when that is not this run."""
    for d in reversed(decisions):
        if d["run_id"] == run_id and d["doc"].get("kind", "promotion") == "promotion":
            before = d["doc"].get("active_before")
            if isinstance(before, dict) and before.get("run_id") and before["run_id"] != run_id:
                return str(before["run_id"])
            break
    active = lake.read_json(ACTIVE_POINTER)
    if isinstance(active, dict) and active.get("run_id") and active["run_id"] != run_id:
        return str(active["run_id"])
    return None


def _decisions_section(decisions: list[dict], run_id: str) -> Section:
    sec = Section("decisions", "Promotion decisions",
                  intro="Gate decisions stored under decisions/ in the lake; this run's first, then the others "
                        "(newest first).")
    if not decisions:
        sec.empty = "No promotion decisions yet (none yet)."
        return sec
    ordered = ([d for d in reversed(decisions) if d["run_id"] == run_id]
               + [d for d in reversed(decisions) if d["run_id"] != run_id])
    rows = [[d["id"], d["run_id"], Badge("this run", "ok") if d["run_id"] == run_id else "",
             _decision_badge(d["decision"]), _codes(d["doc"].get("reason_codes")), d["when"],
             _gate_summary(d["doc"].get("gates"))] for d in ordered]
    sec.tables.append(_capped("Decisions", ["decision id", "run", "", "decision", "reason codes", "time", "gates"],
                              rows))
    mine = [d for d in ordered if d["run_id"] == run_id]
    if mine:
        gates = []
        for d in mine:
            for name, g in _gates(d["doc"].get("gates")):
                passed = _first(g, ("passed", "pass", "ok", "success"))
                shown = ("name", "gate", "passed", "pass", "ok", "success", "reason_codes", "figures", "thresholds")
                rest = {k: v for k, v in g.items() if k not in shown}
                gates.append([d["id"], name, _pass(passed) if isinstance(passed, bool) else "",
                              _codes(g.get("reason_codes")), _kv(g.get("figures")), _kv(g.get("thresholds")),
                              _short(rest)])
        sec.tables.append(_capped("Gates of this run's decisions", ["decision id", "gate", "result", "reason codes",
                                                                    "figures", "thresholds", "other"], gates))
    else:
        sec.empty = "No promotion decision for this run yet (none yet)."
    return sec


def _kv(obj) -> str:
    if not isinstance(obj, dict):
        return _short(obj)
    return _short(", ".join(f"{k}={_short(v, 80) if isinstance(v, dict | list) else fmt(v)}"
                            for k, v in obj.items()), 400)


def _gates(gates) -> list[tuple[str, dict]]:
    if isinstance(gates, dict):
        return [(str(k), v if isinstance(v, dict) else {"passed": v} if isinstance(v, bool) else {"value": v})
                for k, v in gates.items()]
    if isinstance(gates, list):
        return [(str(g.get("name") or g.get("gate") or i), g) if isinstance(g, dict) else (str(i), {"value": g})
                for i, g in enumerate(gates)]
    return []


def _gate_summary(gates) -> str:
    items = _gates(gates)
    if not items:
        return ""
    failed = [n for n, g in items if _first(g, ("passed", "pass", "ok", "success")) is False]
    return f"{len(items) - len(failed)}/{len(items)} passed" + (f"; failed: {', '.join(failed)}" if failed else "")


def _codes(codes) -> str:
    if codes is None:
        return ""
    if isinstance(codes, str):
        return codes
    if isinstance(codes, list):
        return ", ".join(c if isinstance(c, str) else str(_first(c, ("code", "reason_code", "name")) or _short(c))
                         if isinstance(c, dict) else str(c) for c in codes)
    return _short(codes)


# -- lineage ---------------------------------------------------------------------------------------------


def _lineage(manifest: dict) -> Section:
    sec = Section("lineage", "Lineage and artifacts",
                  intro="Content hashes of everything the run wrote (runs/<run_id>/manifest.json).")
    arts = manifest.get("artifacts") or {}
    if not arts:
        sec.empty = "The run has no manifest."
        return sec
    sec.tables.append(Table("Artifacts", ["artifact", "sha256"], [[k, v] for k, v in sorted(arts.items())]))
    return sec


# -- helpers ---------------------------------------------------------------------------------------------


def _num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _diff(a, b):
    return a - b if _num(a) and _num(b) else None


def _int(x) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 0


def _first(obj: dict, keys) -> Any:
    for k in keys:
        if isinstance(obj, dict) and obj.get(k) is not None:
            return obj[k]
    return None


def _when(doc: dict) -> str:
    v = _first(doc, _TIME_KEYS)
    return str(v) if v is not None else ""


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(".json")


def _label(r: dict) -> str:
    return f"{r['source']}:{r['venue']}:{r['symbol']}-{r['quote']}:{r['interval']}"


def _short(value, limit: int = 300) -> str:
    if value in (None, {}, []):
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _brief(check: dict) -> str:
    parts = [check.get("name", "?")]
    if check.get("unexpected_count"):
        parts.append(f"{check['unexpected_count']} unexpected")
    if check.get("series"):
        parts.append("series " + ", ".join(check["series"]))
    if check.get("error"):
        parts.append(f"error: {check['error']}")
    return " ".join(parts)


def _pass(ok) -> Badge:
    if ok is None:
        return Badge("n/a")
    return Badge("passed", "ok") if ok else Badge("failed", "bad")




def _decision_badge(decision: str) -> Badge:
    return Badge(decision or "?", {"PROMOTE": "ok", "REJECT": "bad"}.get(decision, "warn"))


def _count(n, kind: str):
    return Badge(str(n), kind) if n else n


def _ms_iso(ms) -> str:
    if not _num(ms):
        return ""
    from coinline.timeframes import from_ms

    return from_ms(int(ms)).isoformat()


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms} ms"
