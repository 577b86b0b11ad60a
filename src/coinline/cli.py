"""The `coinline` command: parse arguments, build collaborators from Settings, call one function per verb."""

from __future__ import annotations

import argparse
import json
import logging
import sys
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


def _app(args):
    from coinline.app import build_app

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=getattr(args, "verbose", False))
    now = parse_iso_utc(args.now) if getattr(args, "now", None) else datetime.now(UTC)
    return build_app(settings, now=now)


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def cmd_run(args) -> int:
    from coinline.jobs import run_main_job

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


def _series_outcomes(outcomes, as_json: bool) -> int:
    rows = [o.to_dict() for o in outcomes]
    _print(rows, as_json, _table(rows, ["series", "status", "pages", "inserted", "revised", "duplicates", "message"]))
    if any(o.status == "lease-held" for o in outcomes):
        return 3
    return 1 if any(o.status == "error" for o in outcomes) else 0


def cmd_backfill(args) -> int:
    from coinline.ingest.backfill import backfill

    with _app(args) as app:
        source = app.source(args.source)
        outcomes = backfill(source, app.lake, app.pairs(args.symbols, args.quotes, args.intervals), now=app.now,
                            progress=not args.json)
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
                        lookback=app.settings.reconcile_lookback)
    return _series_outcomes(outcomes, args.json)


def cmd_gaps(args) -> int:
    from coinline.ingest import gaps
    from coinline.lake import tables

    with _app(args) as app:
        providers = {}  # source name -> adapter, built on first use
        found = []
        for key, *_ in tables.series_in(app.lake):
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
            out.append(materialize(app.lake, app.universe, spec, gap_tolerance=s.gap_tolerance, now=app.now).summary())
    _print(out, args.json, _table(out, ["dataset_id", "content_hash", "rows", "series"]))
    return 0


def cmd_export(args) -> int:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from coinline.datasets.canonical import canonical_candles
    from coinline.lake import tables

    with _app(args) as app:
        keys = [k for k, *_ in tables.series_in(app.lake) if k.symbol == args.symbol.upper()
                and k.quote == args.quote.upper() and k.interval == args.interval and k.source == args.source]
        if not keys:
            raise CoinlineError(f"no stored series for {args.symbol}-{args.quote} {args.interval} from {args.source}")
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

    with _app(args) as app:
        rows = [c.to_dict() for c in coverage(app.lake)]
    _print(rows, args.json, _table(rows, ["series", "first", "last", "rows", "missing_candles", "known_gap_candles", "corrections"]))
    return 0


def cmd_validate(args) -> int:
    from coinline.quality.lake_checks import validate_lake

    with _app(args) as app:
        results = validate_lake(app.lake, gap_tolerance=app.settings.gap_tolerance)
    rows = [{"suite": r.suite, "success": r.success, "rows": r.row_count, "summary": r.summary()} for r in results]
    _print(rows, args.json, _table(rows, ["suite", "success", "rows", "summary"]))
    return 0 if all(r.success for r in results) else 1


def cmd_import(args) -> int:
    from coinline.ingest.importing import import_files

    with _app(args) as app:
        reports = import_files(app.lake, [Path(p) for p in args.paths], fmt=args.format, symbol=args.symbol.upper(),
                               quote=args.quote.upper(), interval=args.interval, venue=args.venue, now=app.now)
    _print(reports, args.json, _table(reports, ["path", "series", "rows_read", "inserted", "duplicates", "revised", "rejected"]))
    return 0


def cmd_train(args) -> int:
    from coinline.datasets.materialize import DatasetSpec, materialize
    from coinline.training.config import load_train_config
    from coinline.training.run import train

    with _app(args) as app:
        s = app.settings
        spec = DatasetSpec(s.training_universe_version, args.interval, args.source, tuple(s.quotes))
        dataset = materialize(app.lake, app.universe, spec, gap_tolerance=s.gap_tolerance, now=app.now)
        cfg = load_train_config(s.train_config)
        until = parse_iso_utc(args.until) if args.until else None
        run = train(app.lake, dataset.dataset_id, cfg, symbols=args.symbols or list(s.symbols) or None, until=until,
                    quote=args.quote, interval=args.interval, workers=s.train_workers or None)
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
        proposal = refresh.propose_universe(rows, load_universe(settings.training_universe_version, udir), as_of=now)
        path = refresh.write_proposal(proposal, udir)
    if args.json:
        print(proposal.to_json())
    else:
        d = proposal.to_dict()
        print(f"wrote proposal {path} (not active; approve with `coinline universe approve {d.get('version')}`)")
        print(json.dumps(d.get("diff", {}), indent=1, sort_keys=True, default=str)[:2000])
    return 0


def cmd_replay(args) -> int:
    import time

    from coinline.replay import ReplayServer, SimulatedMarket
    from coinline.universe import load_universe

    settings = load_settings()
    setup_logging(settings.secrets(), verbose=args.verbose)
    market = SimulatedMarket(load_universe(settings.training_universe_version, Path(settings.universe_dir)),
                             seed=settings.replay_seed, now=datetime.now(UTC), history_days=settings.replay_history_days)
    server = ReplayServer(market, port=args.port, coinapi_exchange=settings.hist_exchange)
    print(f"replay venue at {server.start()} (CoinAPI /v1, Kraken /0/public, CoinGecko /api/v3); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coinline", description="Governed crypto market-data lake.")
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

    sp = verb("run", cmd_run, "backfill, sync, retry gaps, validate, materialize, train, report (the main job)")
    sp.add_argument("--no-train", action="store_true", help="stop after the data job")
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
    sp = verb("export", cmd_export, "write canonical candles of one series to CSV or Parquet")
    for a in ("--symbol", "--quote", "--interval", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--source", default="coinapi")
    verb("status", cmd_status, "per-series coverage")
    sp = verb("import", cmd_import, "import candle files (kraken-ohlcvt, freqtrade, csv)")
    sp.add_argument("--format", required=True, choices=["kraken-ohlcvt", "freqtrade", "csv"])
    for a in ("--symbol", "--quote", "--interval"):
        sp.add_argument(a, required=True)
    sp.add_argument("--venue")
    sp.add_argument("paths", nargs="+")
    sp = verb("train", cmd_train, "train and evaluate the model topology on the current dataset; prints the run id")
    sp.add_argument("--symbols", nargs="*")
    sp.add_argument("--interval", default="1h")
    sp.add_argument("--quote", default="USD")
    sp.add_argument("--source", default="coinapi")
    sp.add_argument("--until", help="ISO time: train and evaluate on candles up to this time only")
    sp = verb("evaluate", cmd_evaluate, "print a run's metric package")
    sp.add_argument("run_id")
    sp = verb("universe", cmd_universe, "show, refresh (propose) or approve universe versions")
    sp.add_argument("universe_cmd", choices=["show", "refresh", "approve"])
    sp.add_argument("version", nargs="?")
    sp.add_argument("--approver", default="")
    sp.add_argument("--reason", default="")
    sp = sub.add_parser("replay", help="serve the offline replay venue")
    sp.add_argument("replay_cmd", choices=["serve"])
    sp.add_argument("--port", type=int, default=8787)
    sp.set_defaults(func=cmd_replay)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LeaseHeldError as exc:
        print(f"coinline: {exc}", file=sys.stderr)
        return 3
    except CoinlineError as exc:
        print(f"coinline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
