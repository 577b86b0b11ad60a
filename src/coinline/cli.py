"""The `coinline` command: parse arguments, build collaborators from Settings, call one function per verb."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coinline.errors import CoinlineError, LeaseHeldError
from coinline.logs import setup_logging
from coinline.settings import load_settings
from coinline.timeframes import parse_iso_utc

log = logging.getLogger("coinline")


def _print(obj: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(obj, indent=1, sort_keys=True, default=str))
    elif text is not None:
        print(text)


def _app(args, *, providers: bool = True):
    """The command's collaborators; `providers=False` for commands that only read the lake (no replay
    venue is started, no provider key is needed)."""
    from coinline.app import build_app

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=getattr(args, "verbose", False))
    now = parse_iso_utc(args.now) if getattr(args, "now", None) else datetime.now(UTC)
    return build_app(settings, now=now, providers=providers)


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _pinned_clock(args, app) -> dict:
    """`clock=` for the autopilot: --now pins it (tests, replays); otherwise the autopilot's real clock."""
    pinned = app.now if args.now else None
    return {"clock": lambda: pinned} if pinned else {}


def cmd_run(args) -> int:
    from coinline.jobs import run_main_job

    if args.follow:
        from coinline.autopilot import follow, load_promotion_policy, load_retrain_policy, summary_line

        policy = load_retrain_policy(args.policy)
        gates = load_promotion_policy(args.promotion_policy)
        with _app(args) as app:
            follow(app, max_cycles=args.cycles, policy=policy, promotion_policy=gates, **_pinned_clock(args, app),
                   on_cycle=lambda r: _print(r, True) if args.json else print(summary_line(r), flush=True))
        return 0
    with _app(args) as app:
        report = run_main_job(app, progress=not args.json, train_models=not args.no_train)
    if args.json:
        _print(report, True)
        return 0
    print(f"backfill: {dict(report['backfill']['outcomes'])}   venue sync: {dict(report['venue_sync']['outcomes'])}")
    unlisted: dict[str, list[str]] = {}
    for o in report["backfill"]["series"] + report["venue_sync"]["series"]:
        if o["status"] == "not-listed":
            unlisted.setdefault(f"{o['series'].split(':')[0]} {o['quote']} {o['interval']}", []).append(o["symbol"])
        elif o["status"] != "ok":
            print(f"  {o['status']:<12} {o['series']}: {o['message'][:160]}")
    for where, symbols in unlisted.items():
        print(f"  not listed by the venue ({where}): {' '.join(symbols)}")
    print("\ncoverage:")
    print(_table(report["coverage"], ["series", "first", "last", "rows", "missing_candles", "known_gap_candles", "corrections"]))
    flagged = [p for p in report["parity"] if p["flagged"]]
    print(f"\nparity vs kraken: {len(report['parity'])} series compared, {len(flagged)} flagged")
    print("\ndatasets:")
    print(_table(report["datasets"], ["dataset_id", "content_hash", "rows", "series"]))
    print(f"\nrequests made: {report['requests']}")
    if "training" in report:
        _print_training(report["training"])
    if "promotion" in report:
        _print_promotion(report["promotion"])
    if "training" in report:
        print(f"\n{report['training']['verdict']}")  # the run's answer, last: see coinline.training.verdict
    return 0


def cmd_retrain(args) -> int:
    """One retraining cycle for a cluster scheduler: ingest, materialize, then retrain + promote when the
    trigger holds (`schedule`: always; `drift`: when drift fires). Exits 0 whatever the decision."""
    from coinline.autopilot import load_promotion_policy, load_retrain_policy, retrain_once, summary_line

    policy = load_retrain_policy(args.policy)
    gates = load_promotion_policy(args.promotion_policy)
    with _app(args) as app:
        report = retrain_once(app, args.trigger, now=app.now, policy=policy, promotion_policy=gates,
                              **_pinned_clock(args, app))
    _print(report, args.json, summary_line(report))
    return 0


def _print_training(t: dict) -> None:
    skill = t["skill"]
    print(f"\ntraining run {t['run_id']} ({t['manifest']}):")
    rows = [{"horizon": v["horizon"], "model": v["model"], "n": v["oos"]["n"],
             "oos_logloss": f"{v['oos']['log_loss']:.4f}", "base_logloss": f"{v['base_rate']['log_loss']:.4f}",
             "oos_acc": f"{v['oos']['accuracy']:.4f}", "p_holm": f"{v['p_value_holm']:.3f}",
             "skill": "yes" if v["significant"] else "no"} for v in skill["by_model"].values()]
    print(_table(rows, list(rows[0])) if rows else "(no models)")
    sim = t["simulation"]
    print(f"simulation (ensemble, OOS): return {sim.get('total_return')}, sharpe {sim.get('sharpe')}, "
          f"max drawdown {sim.get('max_drawdown')}, turnover {sim.get('turnover')}")
    print(f"evaluate with: coinline evaluate {t['run_id']}")


def _print_promotion(p: dict) -> None:
    codes = ", ".join(p["reason_codes"]) or "none"
    print(f"\npromotion decision {p['decision_id']}: {p['outcome']} (reason codes: {codes}); "
          f"active set {'changed' if p['activated'] else 'unchanged'}")
    print(f"report: {p['report']}")


def _series_outcomes(outcomes, as_json: bool) -> int:
    rows = [o.to_dict() for o in outcomes]
    _print(rows, as_json, _table(rows, ["series", "status", "pages", "inserted", "revised", "duplicates", "message"]))
    if any(o.status == "lease-held" for o in outcomes):
        return 3
    return 1 if any(o.status in ("error", "incomplete") for o in outcomes) else 0   # incomplete: gap recorded


def cmd_backfill(args) -> int:
    from coinline.ingest.backfill import backfill

    with _app(args) as app:
        source = app.source(args.source)
        outcomes = backfill(source, app.lake, app.pairs(args.symbols, args.quotes, args.intervals), now=app.now,
                            progress=not args.json, lease_wait_s=args.lease_wait)
    return _series_outcomes(outcomes, args.json)


def cmd_sync(args) -> int:
    from coinline.ingest.sync import follow, sync

    with _app(args) as app:
        source = app.source(args.source)
        pairs = app.pairs(args.symbols, args.quotes, args.intervals)
        if args.follow:
            if not app.settings.enable_continuous_ingestion:
                raise CoinlineError("ENABLE_CONTINUOUS_INGESTION=false: refusing to follow")
            follow(source, app.lake, pairs, max_cycles=args.cycles, lookback=app.settings.reconcile_lookback,
                   on_cycle=lambda outs: log.info("sync cycle: %d new candles", sum(o.inserted for o in outs)))
            return 0
        outcomes = sync(source, app.lake, pairs, now=app.now, progress=not args.json,
                        lookback=app.settings.reconcile_lookback, lease_wait_s=args.lease_wait)
    return _series_outcomes(outcomes, args.json)


def cmd_gaps(args) -> int:
    from coinline.ingest import gaps

    with _app(args) as app:
        providers = {}  # source name -> adapter, built on first use
        found = []
        for key in gaps.series_to_check(app.lake):  # stored, or holding a recorded unexplained gap
            if args.symbols and key.symbol not in [s.upper() for s in args.symbols]:
                continue
            if not args.retry:
                found += gaps.detect(app.lake, key)
                continue
            flag = {"coinapi": "hist", "kraken": "kraken", "kraken-trades": "kraken-trades"}.get(key.source)
            if flag is None:
                found += gaps.record_as_known(app.lake, key, now=app.now, answer=(
                    f"source {key.source} has no provider to re-request; recorded as missing in the source"))
                continue
            if flag not in providers:
                providers[flag] = app.source(flag)
            found += gaps.retry(providers[flag], app.lake, key, now=app.now)
    rows = [g.to_dict() for g in found]
    _print(rows, args.json, _table(rows, ["series", "gap_start", "gap_end", "missing_candles", "status", "answer"]))
    return 0


def cmd_corrections(args) -> int:
    from coinline.datasets.canonical import committed_corrections

    with _app(args) as app:
        corr = committed_corrections(app.lake)
    rows = [r for r in corr.to_pylist() if not args.symbol or r["symbol"] == args.symbol.upper()]
    _print(rows, args.json, _table(rows, ["symbol", "quote", "interval", "source", "open_time", "old_version",
                                          "new_version", "old_close", "new_close", "batch_id", "detected_at", "reason"]))
    return 0


def cmd_parity(args) -> int:
    from coinline.ingest.parity import parity

    with _app(args) as app:
        rows = [p.to_dict() for p in parity(app.lake, reference_source=args.reference, venue_source=args.venue,
                                             tolerance_bps=app.settings.parity_tolerance_bps)]
    _print(rows, args.json, _table(rows, ["symbol", "quote", "interval", "overlap", "max_close_bps", "breaches", "flagged"]))
    return 1 if any(r["flagged"] for r in rows) else 0


def cmd_materialize(args) -> int:
    from coinline.datasets.materialize import DatasetSpec, materialize

    with _app(args) as app:
        s = app.settings
        out = []
        for interval in args.intervals or s.intervals:
            spec = DatasetSpec(s.training_universe_version, interval, args.source, tuple(args.quotes or s.quotes),
                               parse_iso_utc(args.start) if args.start else None,
                               parse_iso_utc(args.end) if args.end else None)
            out.append(materialize(app.lake, app.universe, spec, gap_tolerance=s.gap_tolerance, now=app.now,
                                   full=args.full, progress=not args.json).summary())
    _print(out, args.json, _table(out, ["dataset_id", "content_hash", "rows", "series"]))
    return 0


def cmd_export(args) -> int:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from coinline.datasets.canonical import canonical_candles
    from coinline.lake import tables

    with _app(args, providers=False) as app:
        same = [k for k, *_ in tables.series_in(app.lake) if k.symbol == args.symbol.upper()
                and k.quote == args.quote.upper() and k.interval == args.interval]
        keys = [k for k in same if k.source == args.source]
        if not keys:
            others = sorted({k.source for k in same})
            hint = (f"; stored from: {', '.join(others)} (use --source {others[0]})" if others
                    else "; `coinline status` lists the stored series")
            raise CoinlineError(f"no stored series for {args.symbol}-{args.quote} {args.interval} from "
                                f"--source {args.source}{hint}")
        data = canonical_candles(app.lake, keys)
    out = Path(args.out)
    if out.suffix == ".parquet":
        pq.write_table(data, out)
    elif out.suffix == ".csv":
        pcsv.write_csv(data, out)
    else:
        raise CoinlineError(f"--out {out}: use a .csv or .parquet file name")
    print(f"wrote {data.num_rows} candles to {out}")
    return 0


def cmd_status(args) -> int:
    from coinline.datasets.status import coverage

    with _app(args, providers=False) as app:
        rows = [c.to_dict() for c in coverage(app.lake)]
    _print(rows, args.json, _table(rows, ["series", "first", "last", "rows", "missing_candles", "known_gap_candles", "corrections"]))
    return 0


def cmd_preflight(args) -> int:
    """What a run needs from its deployment (`coinline.preflight`: the Secret and ConfigMap where mounted,
    credentials, the lake, the providers, the Ray cluster), in one line; exit 1 naming what is missing."""
    from coinline import preflight

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=args.verbose)
    named = bool(args.secret_name or args.config_map_name)
    report = preflight.run(settings, secret_name=args.secret_name, config_map_name=args.config_map_name,
                           providers=not args.no_providers, ray_address=args.ray_address,
                           secret_dir=args.secret_dir, config_dir=args.config_map_dir,
                           kubernetes=preflight.in_kubernetes() and named)
    if report.problems:
        raise preflight.PreflightError(report.line())
    _print(report.__dict__ | {"ok": True}, args.json, report.line())
    return 0


def cmd_doctor(args) -> int:
    """Check the lake (logs, checkpoints, data files, leases) without opening it through the app (a damaged
    table must not stop the doctor); --repair performs the safe repairs. Exit 1 while an error remains."""
    from coinline.doctor import doctor, report_text

    lake, now = _lake_now(args)
    report = doctor(lake, now=now, repair=args.repair)
    _print(report, args.json, report_text(report))
    return 0 if report["healthy"] else 1


def cmd_maintain(args) -> int:
    """Compact, VACUUM (keeping every table version a dataset pins) and checkpoint the lake's tables; every
    run is recorded under maintenance/ (see coinline.lake.maintain). --dry-run prints the plan only."""
    from coinline.lake.maintain import DEFAULT_RETENTION_HOURS, maintain, summary_rows

    lake, now = _lake_now(args)
    hours = DEFAULT_RETENTION_HOURS if args.retention_hours is None else args.retention_hours
    record = maintain(lake, now=now, dry_run=args.dry_run, retention_hours=hours)
    rows = summary_rows(record)
    head = "plan (dry run: nothing changed)" if record["dry_run"] else f"recorded in {record['record']}"
    _print(record, args.json, f"maintain: {head}\n" + _table(rows, list(rows[0]) if rows else []))
    return 0


def cmd_validate(args) -> int:
    from coinline.quality.lake_checks import validate_lake

    with _app(args, providers=False) as app:
        results = validate_lake(app.lake, gap_tolerance=app.settings.gap_tolerance, progress=not args.json)
    rows = [{"suite": r.suite, "success": r.success, "rows": r.row_count, "summary": r.summary()} for r in results]
    _print(rows, args.json, _table(rows, ["suite", "success", "rows", "summary"]))
    return 0 if all(r.success for r in results) else 1


def cmd_import(args) -> int:
    """Import files (see coinline.ingest.importing). Exit 0 when no row was rejected; 2 when a file or an
    argument was refused (nothing committed) or when any row was rejected (the good rows are committed and
    every rejected row is listed with its line and reason: on stderr, or in `rejected_rows` with --json)."""
    from coinline.ingest.importing import import_files, rejected_lines
    from coinline.providers.files import check_import_arguments

    check_import_arguments(args.format, args.symbol, args.quote, args.interval)   # before starting anything
    with _app(args) as app:
        reports = import_files(app.lake, [Path(p) for p in args.paths], fmt=args.format, symbol=args.symbol.upper(),
                               quote=args.quote.upper(), interval=args.interval, venue=args.venue, now=app.now,
                               universe=None if args.allow_unknown_symbol else app.universe)
    _print(reports, args.json, _table(reports, ["path", "series", "rows_read", "inserted", "duplicates", "revised",
                                                "rejected", "not_yet_closed", "skipped_other_symbols"]))
    rejected = sum(r["rejected"] for r in reports)
    if not rejected:
        return 0
    for line in [] if args.json else rejected_lines(reports):
        print(f"coinline: rejected {line}", file=sys.stderr)
    print(f"coinline: {rejected} row(s) rejected and not imported (kept under imports/rejected/ in the lake)",
          file=sys.stderr)
    return 2


def cmd_train(args) -> int:
    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.training.config import load_train_config
    from coinline.training.run import train

    with _app(args) as app:
        s = app.settings
        quotes = tuple(dict.fromkeys([*s.quotes, args.quote.upper()]))  # --quote USDT: imported series too
        spec = DatasetSpec(s.training_universe_version, args.interval, args.source, quotes)
        dataset = materialize(app.lake, app.universe, spec, gap_tolerance=s.gap_tolerance, now=app.now)
        cfg = load_train_config(s.train_config)
        until = parse_iso_utc(args.until) if args.until else None
        run = train(app.lake, dataset.dataset_id, cfg, symbols=args.symbols or list(s.symbols) or None, until=until,
                    quote=args.quote.upper(), interval=args.interval, workers=s.train_workers or None)
    _print({"run_id": run.run_id, "manifest": run.manifest}, args.json, run.run_id)
    return 0


def cmd_evaluate(args) -> int:
    with _app(args) as app:
        metrics = app.lake.read_json(f"runs/{args.run_id}/metrics.json")
    if metrics is None:
        raise CoinlineError(f"run {args.run_id} has no metrics.json in the lake")
    if args.json:
        _print(metrics, True)
        return 0
    from coinline.training.summary import summary_rows

    rows = summary_rows(metrics)
    print(_table(rows, list(rows[0]) if rows else []))
    return 0


def cmd_audit(args) -> int:
    from coinline.audit.replay import audit

    lake, _now = _lake_now(args)
    report = audit(lake, args.decision_id, retrain=not args.no_retrain)
    doc = report.to_dict()
    text = "\n".join(f"{s['step']:<9} {'match' if s['match'] else 'MISMATCH'}  {s['detail']}"
                     + ("" if s["match"] else f"\n          expected {s['expected']}\n          actual   {s['actual']}")
                     for s in doc["steps"])
    _print(doc, args.json, f"audit of {args.decision_id} (run {report.run_id}): "
                           f"{'MATCH' if report.match else 'MISMATCH'}\n{text}")
    return 0 if report.match else 1


def cmd_approve(args) -> int:
    from coinline.promotion.approvals import approve

    lake, now = _lake_now(args)
    name = approve(lake, args.kind, args.hash, approver=args.approver, reason=args.reason, at=now)
    _print({"approval": name}, args.json, f"approved {args.kind} change {args.hash}: {name}")
    return 0


def _lake_now(args):
    """Settings -> (lake, now) only: the promotion verbs need no providers or replay venue."""
    from coinline.app import settings_lake

    s = load_settings()
    setup_logging(s.secrets(), verbose=getattr(args, "verbose", False))
    now = parse_iso_utc(args.now) if getattr(args, "now", None) else datetime.now(UTC)
    return settings_lake(s), now


def cmd_promote(args) -> int:
    from coinline.autopilot import require_promotion_policy
    from coinline.promotion import crash_hook_from_env, load_policy, promote, read_active, repair_history
    from coinline.promotion.registry import RegistryConflict

    lake, now = _lake_now(args)
    policy = load_policy(args.policy)
    require_promotion_policy(lake, policy, now=now)   # an unapproved policy never takes effect
    active, _ = read_active(lake)
    if active is not None and active.get("run_id") == args.run_id:   # a rerun: finish the history, decide nothing
        out = {"run_id": args.run_id, "outcome": "ALREADY_ACTIVE", "activated": False, "activation": active,
               "history_repaired": repair_history(lake)}
        _print(out, args.json, f"{args.run_id} is already the active model set (activation "
                               f"{active.get('activation_id')}); nothing to do")
        return 0
    try:
        out = promote(lake, args.run_id, policy, now=now, on_step=crash_hook_from_env())
    except RegistryConflict as exc:
        print(f"coinline: {exc}", file=sys.stderr)
        return 3
    d = out["decision"]
    text = [f"{d['decision']} {d['run_id']} (decision {d['decision_id']}, policy {d['policy']['version']})"]
    text += [f"  {g['gate']:<12} {'pass' if g['passed'] else 'FAIL'} {' '.join(g['reason_codes'])}" for g in d["gates"]]
    if out["activated"]:
        text.append(f"  active set is now {out['activation']['run_id']} ({out['activation']['activation_id']})")
    _print(out, args.json, "\n".join(text))
    return 0 if d["decision"] == "PROMOTE" else 1


def cmd_models(args) -> int:
    from coinline.promotion import crash_hook_from_env, lineage, read_active, rollback

    lake, now = _lake_now(args)
    if args.models_cmd == "rollback":
        out = rollback(lake, now=now, reason=args.reason, to=args.to, on_step=crash_hook_from_env())
        a = out["activation"]
        _print(out, args.json, f"rolled back: active set is now {a['run_id']} ({a['activation_id']})")
        return 0
    active, _ = read_active(lake)
    out = {"active": active, "lineage": lineage(lake, active)}
    _print(out, args.json, "(no active model set)" if active is None else "\n".join(
        f"{r['activation_id']}  {r['kind']:<8} {r['run_id']}  {r['activated_at']}" for r in out["lineage"]))
    return 0


def _when(text: str | None, flag: str) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso_utc(text)
    except ValueError:
        raise CoinlineError(f"{flag} {text!r}: not an ISO-8601 UTC time (e.g. 2026-12-03T10:00:00Z)") from None


def cmd_forecast(args) -> int:
    from coinline.forecasting import service
    from coinline.forecasting.modelset import BASELINE_ID, load_run_set
    from coinline.training.config import load_train_config

    lake, now = _lake_now(args)
    s = load_settings()
    at, start, end = _when(args.at, "--at"), _when(args.start, "--from"), _when(args.end, "--to")
    if (start is None) != (end is None):
        raise CoinlineError("a window needs both --from and --to")
    if at is not None and start is not None:
        raise CoinlineError("give either --at or a --from/--to window, not both")
    universe = list(s.symbols) or _universe_symbols(s)
    if args.run is None and start is None and at is None and not args.symbols:
        out = service.forecast_cycle(lake, cfg=load_train_config(s.train_config), quote=args.quote,
                                     interval=args.interval, source=args.source, symbols=universe, now=now)
        champ = out["sets"][0]
        batches = out.pop("batches")
    else:
        if args.run:
            ms_ = load_run_set(lake, args.run, symbols=[x.upper() for x in args.symbols] if args.symbols else None)
        else:
            ms_ = service.champion(lake, cfg=load_train_config(s.train_config), quote=args.quote,
                                   interval=args.interval, source=args.source, symbols=universe)
        batches = service.forecast(lake, [ms_], at=at, start=start, end=end, symbols=args.symbols, now=now)
        out = {"at": (at or now).isoformat(), "sets": [service.summary(b) for b in batches]}
        champ = out["sets"][0]
    first = batches[0]
    baseline = first.model_set.set_id == BASELINE_ID
    out["model_set"] = first.model_set.summary()
    out["note"] = ("no active model set: the champion is the declared baseline (climatology)" if baseline
                   and first.role == "champion" else f"{first.role}: {first.model_set.set_id}")
    rows = first.rows
    window = start is not None
    out["forecasts"] = [] if window else service.decision_inputs(rows, first.model_set)
    if args.json:
        _print(out, True)
        return 0
    print(out["note"])
    print(f"model set {first.model_set.set_id} ({first.model_set.set_hash[:12]}), dataset "
          f"{first.model_set.dataset_hash[:12] or '-'}, {champ['rows']} forecasts, {champ['inserted']} new in the ledger")
    if not window:
        table = [{"symbol": f["symbol"], "h": f["horizon"], "forecast_time": f["forecast_time"],
                  "p_up": f"{f['p_up']:.4f}", "exp_move": f"{f['expected_move']:+.5f}",
                  "risk": f"{f['expected_abs_move']:.5f}", "conf": f"{f['confidence']:.3f}",
                  "regime": f"{f['regime_top']} {f['regime'][f['regime_top']]:.2f}", "combiner": f["combiner"],
                  "evidence": f["skill_evidence"]}
                 for f in out["forecasts"]]
        print(_table(table, ["symbol", "h", "forecast_time", "p_up", "exp_move", "risk", "conf", "regime", "combiner",
                             "evidence"]))
        if any(f["skill_evidence"] == "none" for f in out["forecasts"]):
            print("evidence none: what is served at that horizon did not beat the base rate out of sample "
                  "(Holm-corrected); read its p_up as a calibrated base rate, not as a signal")
    for other in out["sets"][1:]:
        print(f"shadow {other['model_set']}: {other['rows']} forecasts, {other['inserted']} new")
    for why in champ["skipped"].values():
        print(f"  skipped {why}")
    return 0


def _universe_symbols(settings) -> list[str]:
    from coinline.universe import load_universe

    return load_universe(settings.training_universe_version, Path(settings.universe_dir)).symbols()


def cmd_scoreboard(args) -> int:
    from coinline.forecasting.scoreboard import scoreboard

    lake, now = _lake_now(args)
    board = scoreboard(lake, now=now, since=_when(args.since, "--since"))
    if args.json:
        _print(board, True)
        return 0
    r = board["rows"]
    print(f"ledger: {r['ledger']} forecasts, {r['matured']} matured, {r['pending']} pending, "
          f"{r['missing_candle']} without a realized candle")
    rows = []
    for p in board["pooled"]:
        c = p["chance"]
        rows.append({"model_set": p["model_set"], "roles": ",".join(board["roles"].get(p["model_set"], [])),
                     "h": p["horizon"], "n": p["n_rows"], "logloss": _f(p["model"]["log_loss"]),
                     "base_rate": _f(p["baselines"]["base_rate"]["log_loss"]),
                     "momentum": _f(p["baselines"]["momentum"]["log_loss"]), "brier": _f(p["model"]["brier"]),
                     "acc": _f(p["model"]["accuracy"]), "ece": _f(p["model"]["ece"]),
                     "p_holm": _f(c.get("p_value_holm"), 3), "skill": "yes" if c.get("significant") else "no"})
    print(_table(rows, ["model_set", "roles", "h", "n", "logloss", "base_rate", "momentum", "brier", "acc", "ece",
                        "p_holm", "skill"]))
    for hh in board["head_to_head"]:
        print(f"champion {hh['champion']} vs shadow {hh['challenger']} h={hh['horizon']}: {hh['n_rows']} shared rows, "
              f"log loss diff {_f(hh['diff'])} (p {_f(hh['p_value'], 3)})")
    return 0


def _f(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cmd_report(args) -> int:
    from coinline.report import build_report

    with _app(args) as app:
        html = build_report(app.lake, args.run_id, generated_at=app.now)
    out = Path(args.out or f"report-{args.run_id}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    _print({"run_id": args.run_id, "out": str(out), "bytes": len(html.encode())}, args.json,
           f"wrote the report of {args.run_id} to {out}")
    return 0


def cmd_universe(args) -> int:
    from coinline.universe import refresh

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=args.verbose)
    udir = Path(settings.universe_dir)
    now = parse_iso_utc(args.now) if args.now else datetime.now(UTC)
    if args.universe_cmd == "show":
        from coinline.universe import load_universe

        u = load_universe(args.version or settings.training_universe_version, udir)
        rows = [{"rank": c.rank, "symbol": c.symbol, "coingecko_id": c.coingecko_id,
                 "kraken": ",".join(f"{q}:{p['pair_key']}" for q, p in c.kraken_pairs.items())} for c in u.coins]
        _print(rows, args.json, f"{u.version} ({u.status})\n" + _table(rows, ["rank", "symbol", "coingecko_id", "kraken"]))
        return 0
    if args.universe_cmd == "approve":
        path = refresh.approve_proposal(udir, args.version, approver=args.approver, reason=args.reason, at=now)
        print(f"approved {args.version}: {path} (activate with TRAINING_UNIVERSE_VERSION={args.version})")
        return 0
    with _app(args) as app:
        from coinline.providers.coingecko import fetch_markets
        from coinline.universe import load_universe

        rows = fetch_markets(app.coingecko_gateway())
        proposal = refresh.propose_universe(rows, load_universe(settings.training_universe_version, udir), as_of=now,
                                            proposed_version=args.version or None)
        path = refresh.write_proposal(proposal, udir)
    if args.json:
        print(proposal.to_json())
    else:
        d = proposal.to_dict()
        print(f"wrote proposal {path} (not active; approve with `coinline universe approve {d.get('version')} "
              "--approver NAME --reason TEXT`)")
        print(json.dumps(d.get("diff", {}), indent=1, sort_keys=True, default=str)[:2000])
    return 0


def cmd_replay(args) -> int:
    import time

    from coinline.replay import ReplayServer, SimulatedMarket
    from coinline.universe import load_universe

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=args.verbose)
    market = SimulatedMarket(load_universe(settings.training_universe_version, Path(settings.universe_dir)),
                             seed=settings.replay_seed, now=datetime.now(UTC), history_days=settings.replay_history_days,
                             market_profile=settings.replay_profile)
    server = ReplayServer(market, port=args.port, coinapi_exchange=settings.hist_exchange)
    print(f"replay venue at {server.start()} (CoinAPI /v1, Kraken /0/public, CoinGecko /api/v3); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def _pipelines_module():
    """The repository's `pipelines` package (a sibling of `src/`, not part of the installed wheel): importable
    from the repository root, or found next to this editable install."""
    try:
        import pipelines
    except ModuleNotFoundError as exc:
        if exc.name != "pipelines":
            raise
        root = Path(__file__).resolve().parents[2]
        if not (root / "pipelines" / "__init__.py").is_file():
            raise CoinlineError("the pipelines/ package is not importable: run from a coinline checkout") from None
        sys.path.insert(0, str(root))
        import pipelines
    return pipelines


def pipeline_params(pipeline: Any, settings: Any, *, now: str = "") -> dict[str, Any]:
    """The pipeline's parameters from Settings (as the schedules build them), limited to its inputs."""
    from pipelines.schedules import ingest_params, train_params

    params = {**ingest_params(settings), **train_params(settings), "now": now}
    inputs = set(pipeline.component_spec.inputs or {})
    return {k: v for k, v in params.items() if k in inputs}


def cmd_pipeline(args) -> int:
    from coinline.errors import ConfigError

    known = _pipelines_module().PIPELINES
    if args.name not in known:
        raise ConfigError(f"unknown pipeline {args.name!r}; choose one of: {', '.join(sorted(known))}")
    if not args.local:
        raise ConfigError("only --local runs are supported here; on a cluster, upload pipelines/compiled/"
                          f"{args.name}.yaml or use `coinline schedule`")
    pipeline = known[args.name]
    settings = load_settings()
    setup_logging(settings.secrets(), verbose=args.verbose)
    params = pipeline_params(pipeline, settings, now=args.now or "")
    from kfp import local

    root = Path(args.pipeline_root).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    try:
        pipeline(**params)
    except RuntimeError as exc:
        _print({"pipeline": args.name, "state": "FAILED", "pipeline_root": str(root), "error": str(exc)},
               args.json, f"pipeline {args.name} FAILED: {exc}")
        return 1
    _print({"pipeline": args.name, "state": "SUCCEEDED", "pipeline_root": str(root), "parameters": params},
           args.json, f"pipeline {args.name} SUCCEEDED; outputs under {root}")
    return 0


def cmd_schedule(args) -> int:
    _pipelines_module()
    from pipelines.schedules import EXPERIMENT, SYNC_CRON, create_schedules, plan_schedules

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=args.verbose)
    sync_cron = args.sync_cron or SYNC_CRON
    if args.dry_run:
        plans = [s.__dict__ for s in plan_schedules(settings, sync_cron=sync_cron, train_cron=args.train_cron)]
        _print(plans, args.json, "dry run, nothing created:\n" + _table(plans, ["name", "pipeline", "cron"]))
        return 0
    import kfp

    client = kfp.Client(host=args.host or os.environ.get("KFP_HOST") or None, namespace=args.namespace)
    done = create_schedules(client, settings, experiment=args.experiment or EXPERIMENT, sync_cron=sync_cron,
                            train_cron=args.train_cron, upload=args.upload)
    _print(done, args.json, _table(done, ["name", "action", "cron", "version"]))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one error surface: a bad flag or value is one line on stderr, exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"coinline: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="coinline", description="Governed crypto market-data lake.")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--now", help=argparse.SUPPRESS)  # ISO time; pins the clock (tests, replays)
    sub = p.add_subparsers(dest="cmd", required=True)

    def verb(name, func, help_):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=func)
        sp.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return sp

    def series_opts(sp):
        sp.add_argument("--symbols", nargs="*", help="universe symbols (default: all)")
        sp.add_argument("--quotes", nargs="*", help="quotes (default: COINLINE_QUOTES)")
        sp.add_argument("--intervals", nargs="*", help="intervals (default: COINLINE_INTERVALS)")
        sp.add_argument("--source", choices=["hist", "kraken", "kraken-trades"], default="hist",
                        help="hist: the historical provider; kraken: recent OHLC; kraken-trades: trades -> candles")
        sp.add_argument("--lease-wait", type=float, default=300.0, metavar="SECONDS",
                        help="wait up to this long for series another ingester holds, then do them (default 300; "
                             "0: skip them, exit 3)")

    sp = verb("run", cmd_run, "backfill, sync, retry gaps, validate, materialize, train, report (the main job)")
    sp.add_argument("--no-train", action="store_true", help="stop after the data job")
    sp.add_argument("--follow", action="store_true",
                    help="run continuously: ingest each new candle, retrain and promote on schedule/drift triggers")
    sp.add_argument("--policy", help="JSON file of retraining policy overrides (cron, drift thresholds); --follow only")
    sp.add_argument("--promotion-policy", help="promotion gates policy JSON for --follow (default: packaged default-v2)")
    sp.add_argument("--cycles", type=int, default=None, help=argparse.SUPPRESS)
    sp = verb("retrain", cmd_retrain, "one scheduled cycle: ingest, materialize, retrain + promote on the trigger")
    sp.add_argument("--trigger", required=True, choices=["schedule", "drift"],
                    help="schedule: retrain now (a cluster cron decided it is due); drift: only when drift fires")
    sp.add_argument("--policy", help="JSON file of retraining policy overrides (drift thresholds, cooldown)")
    sp.add_argument("--promotion-policy", help="promotion gates policy JSON (default: packaged default-v2)")
    series_opts(verb("backfill", cmd_backfill, "walk every series from the provider's earliest candle to now"))
    sp = verb("sync", cmd_sync, "append newly closed candles")
    series_opts(sp)
    sp.add_argument("--follow", action="store_true", help="keep polling on the interval cadence")
    sp.add_argument("--cycles", type=int, default=None, help=argparse.SUPPRESS)
    sp = verb("gaps", cmd_gaps, "detect missing candles; --retry re-requests and records what remains")
    sp.add_argument("--retry", action="store_true")
    sp.add_argument("--symbols", nargs="*")
    sp = verb("corrections", cmd_corrections, "the correction log")
    sp.add_argument("--symbol")
    sp = verb("parity", cmd_parity, "historical provider vs Kraken divergence per series")
    sp.add_argument("--reference", default="coinapi", help="source of the reference series")
    sp.add_argument("--venue", default="kraken", help="source compared against it (kraken or kraken-trades)")
    verb("validate", cmd_validate, "run the quality suites over the lake")
    sp = verb("materialize", cmd_materialize, "build hashed training datasets")
    sp.add_argument("--intervals", nargs="*")
    sp.add_argument("--quotes", nargs="*")
    sp.add_argument("--source", default="coinapi")
    sp.add_argument("--start")
    sp.add_argument("--end")
    sp.add_argument("--full", action="store_true",
                    help="rebuild every series from raw (default: update the last dataset of the same spec)")
    sp = verb("export", cmd_export, "write canonical candles of one series to CSV or Parquet")
    for a in ("--symbol", "--quote", "--interval", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--source", default="coinapi")
    verb("status", cmd_status, "per-series coverage")
    sp = verb("doctor", cmd_doctor, "check the lake's tables, logs, checkpoints and leases; --repair fixes the safe ones")
    sp.add_argument("--repair", action="store_true",
                    help="quarantine damaged log entries and checkpoints, re-commit their rows, clean stale leases")
    sp = verb("preflight", cmd_preflight, "check what a run needs from its deployment: Secret and ConfigMap (when "
                                          "mounted), credentials, the lake, the providers, the Ray cluster")
    sp.add_argument("--secret-name", default="", help="the Secret the workloads read (checked where it is mounted)")
    sp.add_argument("--config-map-name", default="", help="the ConfigMap the workloads read (checked where mounted)")
    sp.add_argument("--secret-dir", default="/etc/coinline/preflight/secret",
                    help="where the Secret is mounted (an optional volume: a missing Secret mounts empty)")
    sp.add_argument("--config-map-dir", default="/etc/coinline/preflight/config", help="where the ConfigMap is mounted")
    sp.add_argument("--no-providers", action="store_true", help="do not call the providers")
    sp.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", ""),
                    help="a Ray cluster to reach (default: RAY_ADDRESS)")
    sp = verb("maintain", cmd_maintain, "compact the lake's tables, vacuum what no pinned dataset version needs, "
                                        "checkpoint; recorded under maintenance/")
    sp.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    sp.add_argument("--retention-hours", type=int, default=None,
                    help="delete only files removed at least this long ago (default 6; 0 when no reader is running)")
    sp = verb("import", cmd_import, "import candle files (kraken-ohlcvt, freqtrade, csv)")
    sp.add_argument("--format", required=True, choices=["kraken-ohlcvt", "freqtrade", "csv"])
    for a in ("--symbol", "--quote", "--interval"):
        sp.add_argument(a, required=True)
    sp.add_argument("--venue")
    sp.add_argument("--allow-unknown-symbol", action="store_true",
                    help="import a --symbol that is not in the configured universe")
    sp.add_argument("paths", nargs="+")
    sp = verb("audit", cmd_audit, "re-derive a decision from lineage: dataset hash, retraining, gates")
    sp.add_argument("decision_id")
    sp.add_argument("--no-retrain", action="store_true", help="skip the retraining step (hash and gates only)")
    sp = verb("approve", cmd_approve, "approve a policy change (universe, thresholds, provider) by its hash")
    sp.add_argument("kind", choices=["universe", "thresholds", "provider"])
    sp.add_argument("hash")
    sp.add_argument("--approver", required=True)
    sp.add_argument("--reason", required=True)
    sp = verb("train", cmd_train, "train and evaluate the model topology on the current dataset; prints the run id")
    sp.add_argument("--symbols", nargs="*")
    sp.add_argument("--interval", default="1h")
    sp.add_argument("--quote", default="USD")
    sp.add_argument("--source", default="coinapi")
    sp.add_argument("--until", help="ISO time: train and evaluate on candles up to this time only")
    sp = verb("evaluate", cmd_evaluate, "print a run's metric package")
    sp.add_argument("run_id")
    sp = verb("promote", cmd_promote, "decide on a run through the promotion gates; PROMOTE activates it")
    sp.add_argument("run_id")
    sp.add_argument("--policy", help="promotion policy JSON (default: the packaged default-v2)")
    sp = verb("models", cmd_models, "the active model set and its lineage, or roll it back")
    sp.add_argument("models_cmd", choices=["active", "rollback"])
    sp.add_argument("--to", help="rollback: the activation id to restore (default: the one before)")
    sp.add_argument("--reason", default="", help="rollback: why (recorded in the decision)")
    sp = verb("forecast", cmd_forecast, "decision inputs of the champion (or --run) for the newest closed candle, "
                                          "recorded in the forecasts ledger")
    sp.add_argument("--run", help="a trained run id (default: the active set; with none, the declared baseline)")
    sp.add_argument("--at", help="ISO time: forecast from the newest candle closed at this time (default: now)")
    sp.add_argument("--from", dest="start", help="ISO time: with --to, forecast every candle close in the window")
    sp.add_argument("--to", dest="end", help="ISO time: end of the --from window (inclusive)")
    sp.add_argument("--symbols", nargs="*", help="coins (default: every coin of the set)")
    sp.add_argument("--quote", default="USD", help="the baseline's quote when no set is active (default USD)")
    sp.add_argument("--interval", default="1h", help="the baseline's interval when no set is active")
    sp.add_argument("--source", default="coinapi", help="the baseline's lake source when no set is active")
    sp = verb("scoreboard", cmd_scoreboard, "score matured forecasts against realized candles and the baselines")
    sp.add_argument("--since", help="ISO time: only forecasts decided at or after it")
    sp = verb("report", cmd_report, "write a run's self-contained HTML oversight report")
    sp.add_argument("run_id")
    sp.add_argument("--out", help="HTML file to write (default: report-RUN_ID.html)")
    sp = verb("universe", cmd_universe, "show, refresh (propose) or approve universe versions")
    sp.add_argument("universe_cmd", choices=["show", "refresh", "approve"])
    sp.add_argument("version", nargs="?")
    sp.add_argument("--approver", default="")
    sp.add_argument("--reason", default="")
    sp = verb("pipeline", cmd_pipeline, "run a Kubeflow pipeline locally (kfp.local), parameters from the settings")
    sp.add_argument("pipeline_cmd", choices=["run"])
    sp.add_argument("name", help="backfill, sync, train_and_promote or full")
    sp.add_argument("--local", action="store_true", help="run every step as a subprocess of this interpreter")
    sp.add_argument("--pipeline-root", default="local_outputs", help="where step outputs go (default: local_outputs)")
    sp = verb("schedule", cmd_schedule, "create (or move to the current pipeline version) the recurring KFP runs "
                                        "(sync, retraining) the settings ask for")
    sp.add_argument("--dry-run", action="store_true", help="print the schedules, create nothing")
    sp.add_argument("--upload", action="store_true",
                    help="upload pipelines/compiled/ as new pipeline versions and schedule those (default: the "
                         "newest uploaded version, e.g. the Helm chart's; the local spec only when none exists)")
    sp.add_argument("--host", help="KFP API endpoint (default: KFP_HOST, else kfp.Client's own discovery)")
    sp.add_argument("--namespace", default="kubeflow")
    sp.add_argument("--experiment", help="KFP experiment (default: coinline)")
    sp.add_argument("--sync-cron", help="KFP 6-field cron of the sync runs (default: hourly at :05)")
    sp.add_argument("--train-cron", help="cron of the retraining runs (default: the retraining policy's, Mondays 04:00 UTC)")
    sp = sub.add_parser("replay", help="serve the offline replay venue")
    sp.add_argument("replay_cmd", choices=["serve"])
    sp.add_argument("--port", type=int, default=8787)
    sp.set_defaults(func=cmd_replay)
    return p


def _redacted(text: str) -> str:
    """`text` with every secret value in the environment masked (foreign text, e.g. a botocore message,
    may echo a URL or a header)."""
    from coinline.secrets import Secret, redact

    return redact(text, [Secret(v) for k, v in os.environ.items()
                         if k.endswith(("_API_KEY", "_API_SECRET", "_SECRET_ACCESS_KEY", "_ACCESS_KEY_ID")) and v])


def _one_line(exc: BaseException) -> str:
    """The exception as one line: its first line, at most 400 characters, secrets masked."""
    return _redacted((str(exc).strip().splitlines() or [""])[0][:400])


def _where(exc: BaseException) -> str:
    """A hint naming the setting behind an I/O failure the code did not anticipate (the lake's endpoint)."""
    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(isinstance(x, OSError) or "Endpoint" in type(x).__name__ or "Connect" in type(x).__name__
               for x in chain):
        return ""
    url = os.environ.get("OBJECT_STORE_URL", "")
    if url.startswith("s3://"):
        endpoint = os.environ.get("OBJECT_STORE_ENDPOINT_URL") or "the default AWS endpoint"
        return f" [lake {url} at {endpoint}: check OBJECT_STORE_ENDPOINT_URL and that the store is up]"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run one verb. Every failure is one line on stderr and an exit code: 2 configuration or input,
    1 provider or runtime, 3 a held lease (see `coinline.errors`); the traceback only with -v."""
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    try:
        if args.now:
            _when(args.now, "--now")
        return args.func(args)
    except LeaseHeldError as exc:
        print(f"coinline: {exc}", file=sys.stderr)
        return exc.exit_code
    except CoinlineError as exc:
        if verbose:
            log.exception("traceback (-v)")
        print(f"coinline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("coinline: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one error surface: no traceback without -v
        if verbose:
            print(_redacted("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        hint = "" if verbose else " (run with -v for the traceback)"
        print(f"coinline: error: {type(exc).__name__}: {_one_line(exc)}{_where(exc)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
