"""Benchmark: the public real-data study -- Binance USDT hourly candles (freqtrade caches in
../shared/data/ohlcv/binance_freqtrade_Mounik), walk-forward training on candles up to 2023-12-31, then the
frozen set forecasting every hour from 2024-01-01 on, every model and the ensemble against the base rate and
momentum, the risk head against EWMA, HAR-RV and the constant variance.

Run through the CLI in this process, as a user runs it (a scratch folder as the working directory, so no .env
applies; the coinline environment variables are cleared for the duration and restored after):
`import --format freqtrade` per coin -> `gaps --retry` (Binance's own missing hours, recorded as known, never
filled) -> `train --source import:freqtrade --quote USDT --until 2023-12-31T23:00:00Z` (COINLINE_TRAIN_WORKERS=1,
in-process) -> `evaluate --json` (the metric package) -> `forecast --run RUN --from 2024-01-01T01:00:00Z --to T`
(T: the last day whose 24-hour outcomes every chosen coin's file still covers) -> `scoreboard --json` ->
`report RUN --out bench/results/real_study.html`.

Coins: every 1h file here that starts before 2023 and reaches April 2024 (23 coins; SUI starts in May 2023,
POL and TON are empty), in universe order (BTC first: its mkt_btc_* features exist in every run).
Configuration at COINLINE_BENCH_SCALE=1: the default TrainConfig (6,000 bars per coin, three folds of 720 test
bars, four sequence epochs on up to 2,000 samples, four tuning trials per tree family on BTC). A smaller scale
shrinks the coin count (at least 4) and the history (6,000 x scale bars, at least 3,000; fold sizes alike,
as many folds as fit, at most three); the rest stays the default. Time: at 0.3 (7 coins, 3,000 bars) about
3 minutes on 2 busy cores (load average ~6); at 1 the training step dominates, about 40-45 s per coin plus
~40 s of tuning there (measured on 3 coins: 168 s), i.e. roughly 15-20 minutes for 23 coins on such a box.

Figures are ratios against the base rate measured on the same rows: model log loss / base-rate log loss
(walk-forward OOS pooled over coins, and the frozen set's served forecasts from the scoreboard), momentum's the
same way, and the risk head's QLIKE / HAR-RV QLIKE. p-values: the joint test across coins (coins summed per
time stamp, blocks of time), Holm-corrected for direction. Nothing is asserted or tuned: real markets owe us
no skill, and a ratio above 1 is printed as it is. The load average is printed: every timing here is wall time
on a shared box.

    python -m bench.real_study [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import fmt_ratio, ratio, scale

NAME = "real_study"
ROOT = Path(__file__).resolve().parent.parent
OHLCV = ROOT.parent / "shared" / "data" / "ohlcv" / "binance_freqtrade_Mounik"
REPORT = Path(__file__).resolve().parent / "results" / "real_study.html"
UNTIL = "2023-12-31T23:00:00Z"            # the last training candle opens here
FROM = "2024-01-01T01:00:00Z"             # the first frozen-set decision time (close of the first 2024 candle)
STARTS_BEFORE = datetime(2023, 1, 1, tzinfo=UTC)
REACHES = datetime(2024, 4, 1, tzinfo=UTC)
NOW = "2026-01-01T00:00:00Z"
MIN_COINS = 4
MIN_BARS = 3000
RISK = ("served", "ewma", "har", "constant")


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _say(quiet: bool):
    return (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))


def coverage() -> dict[str, tuple[datetime, datetime]]:
    """{coin: (first, last candle open time)} of every non-empty USDT 1h file here."""
    import pyarrow.feather as feather

    out = {}
    for path in sorted(OHLCV.glob("*_USDT-1h.feather")):
        dates = feather.read_table(path, columns=["date"]).column("date")
        if len(dates):
            first, last = dates[0].as_py(), dates[-1].as_py()
            out[path.name.split("_")[0]] = (first.astimezone(UTC), last.astimezone(UTC))
    return out


def choose_coins() -> tuple[list[str], datetime]:
    """The coins of the study (universe order, scaled) and the last frozen-set decision time they all cover
    (24-hour outcomes included): the day before the earliest last candle, at 00:00."""
    from coinline.universe import load_universe

    cover = coverage()
    order = load_universe("UNIVERSE_V1_TOP30_NON_STABLE").symbols()
    eligible = [s for s in order if s in cover and cover[s][0] < STARTS_BEFORE and cover[s][1] >= REACHES]
    coins = eligible[:max(MIN_COINS, min(len(eligible), int(round(len(eligible) * scale()))))]
    last = min(cover[s][1] for s in coins)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) - timedelta(days=1)
    return coins, end


def study_config() -> dict[str, Any]:
    """JSON overrides of the default TrainConfig (none at scale 1)."""
    from coinline.training.config import TrainConfig

    s = scale()
    if s >= 1.0:
        return {}
    cfg = TrainConfig()
    f = cfg.folds
    bars = max(MIN_BARS, int(round(cfg.max_history_bars * s)))
    test = max(500, int(round(f.test_bars * s)))
    min_train = max(1500, int(round(f.min_train_bars * s)))
    embargo = max(cfg.horizons)
    n_folds = max(1, min(f.n_folds, (bars - min_train - 2 * embargo) // test))
    return {"max_history_bars": bars, "folds": {"n_folds": n_folds, "test_bars": test, "min_train_bars": min_train}}


@contextlib.contextmanager
def _cli_env(cwd: Path, config: Path):
    """The CLI's environment for the study: cwd a scratch folder, every coinline variable cleared, the training
    config and in-process training set; all restored afterwards."""
    from coinline.settings import ENV_VARIABLES

    saved = {k: os.environ[k] for k in ENV_VARIABLES if k in os.environ}
    old_cwd = Path.cwd()
    try:
        for k in saved:
            del os.environ[k]
        os.environ["COINLINE_TRAIN_CONFIG"] = str(config)
        os.environ["COINLINE_TRAIN_WORKERS"] = "1"
        os.chdir(cwd)
        yield
    finally:
        os.chdir(old_cwd)
        for k in ENV_VARIABLES:
            os.environ.pop(k, None)
        os.environ.update(saved)


def _cli(*args: str) -> str:
    from coinline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--now", NOW, *args])
    if code != 0:
        raise RuntimeError(f"coinline {' '.join(args[:3])}: exit {code}: {err.getvalue()[-1500:]}")
    return out.getvalue()


def _json(out: str) -> dict:
    """The CLI's --json document from its stdout; libraries may print before it (Ray Tune does while tuning):
    the document starts at the first line that is exactly "{" (json.dumps(indent=1) puts nested ones deeper)."""
    lines = out.splitlines()
    start = lines.index("{") if "{" in lines else 0
    return json.loads("\n".join(lines[start:]))


def pooled_momentum(metrics: dict, h: int) -> float:
    """Momentum's walk-forward log loss pooled over coins (per-coin means weighted by their OOS rows, the rows
    the pooled skill uses)."""
    blocks = [metrics["per_coin"][s][str(h)] for s in metrics["symbols"]]
    n = sum(b["n_oos"] for b in blocks)
    return sum(b["baselines"]["momentum"]["log_loss"] * b["n_oos"] for b in blocks) / n


def figures(metrics: dict, board: dict, run_id: str) -> dict[str, Any]:
    """The study's numbers from the metric package and the scoreboard, with the ratios."""
    horizons = sorted(int(h) for h in metrics["horizons"]["served"])
    walk: dict[str, Any] = {}
    for key, row in sorted(metrics["skill"]["by_model"].items(), key=lambda kv: (kv[1]["horizon"], kv[1]["model"])):
        h = row["horizon"]
        base = row["base_rate"]["log_loss"]
        mom = pooled_momentum(metrics, h)
        walk[key] = {"horizon": h, "model": row["model"], "n": row["oos"]["n"], "log_loss": row["oos"]["log_loss"],
                     "base_rate_log_loss": base, "momentum_log_loss": mom,
                     "model/base_rate": ratio(row["oos"]["log_loss"], base), "momentum/base_rate": ratio(mom, base),
                     "p_value_holm": row["p_value_holm"], "significant": row["significant"]}
    frozen: dict[str, Any] = {}
    for p in board["pooled"]:
        if p["model_set"] != run_id:
            continue
        base, mom = p["baselines"]["base_rate"]["log_loss"], p["baselines"]["momentum"]["log_loss"]
        frozen[str(p["horizon"])] = {"n": p["n_rows"], "log_loss": p["model"]["log_loss"], "base_rate_log_loss": base,
                                     "momentum_log_loss": mom, "served/base_rate": ratio(p["model"]["log_loss"], base),
                                     "momentum/base_rate": ratio(mom, base),
                                     "p_value_holm": p["chance"].get("p_value_holm"),
                                     "significant": p["chance"].get("significant")}
    risk: dict[str, Any] = {}
    for h in horizons:
        pooled = metrics["risk"][str(h)]["pooled"]
        har = pooled["forecasts"]["har"]["qlike"]
        risk[str(h)] = {"n": pooled["n"], **{
            name: {"qlike": f["qlike"], "mse_log_var": f["mse_log_var"], "qlike/har": ratio(f["qlike"], har),
                   "p_value": ((f.get("vs_reference") or {}).get("chance") or {}).get("p_value")}
            for name, f in pooled["forecasts"].items()}}
    e = metrics["ensemble_check"]
    return {"horizons": horizons, "primary_horizon": metrics["primary_horizon"], "walk_forward": walk,
            "served": metrics["horizons"]["served"], "frozen_set": frozen, "risk": risk,
            "ensemble_check": {"horizon": e["horizon"], "pooled": e["pooled"],
                               "worse_beyond_tolerance": e["worse_beyond_tolerance"]}}


def _p(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(f: dict[str, Any]) -> list[str]:
    """The study as printed lines: ratios against the base rate (direction) and HAR-RV (risk)."""
    served = {int(h): v["served"] for h, v in f["served"].items()}
    lines = ["direction: log loss / base-rate log loss on the same rows (< 1: better than the base rate); "
             "p: joint test vs the base rate, Holm",
             f"  {'h':>3} {'model':<14} {'n':>7} {'logloss':>8} {'base':>7} {'model/base':>10} {'mom/base':>8} "
             f"{'p_holm':>6}"]
    for w in f["walk_forward"].values():
        mark = " (served)" if served.get(w["horizon"]) == w["model"] else ""
        lines.append(f"  {w['horizon']:>3} {w['model']:<14} {w['n']:>7} {w['log_loss']:8.4f} "
                     f"{w['base_rate_log_loss']:7.4f} {fmt_ratio(w['model/base_rate']):>10} "
                     f"{fmt_ratio(w['momentum/base_rate']):>8} {_p(w['p_value_holm']):>6}{mark}")
    lines.append("  frozen set: served forecasts from 2024-01-01 on, scored by the scoreboard")
    for h, v in sorted(f["frozen_set"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"  {h:>3} {'served':<14} {v['n']:>7} {v['log_loss']:8.4f} {v['base_rate_log_loss']:7.4f} "
                     f"{fmt_ratio(v['served/base_rate']):>10} {fmt_ratio(v['momentum/base_rate']):>8} "
                     f"{_p(v['p_value_holm']):>6}")
    e = f["ensemble_check"]
    if e["pooled"]:
        p = e["pooled"]
        lines.append(f"  ensemble vs its best member (h={e['horizon']}, walk-forward): {p['ensemble']:.4f} vs "
                     f"{p['best_member']} {p['best_member_log_loss']:.4f} = "
                     f"{fmt_ratio(ratio(p['ensemble'], p['best_member_log_loss']))}; coins beyond tolerance: "
                     f"{', '.join(e['worse_beyond_tolerance']) or 'none'}")
    lines.append("risk: QLIKE / HAR-RV QLIKE on the same rows (< 1: better than HAR); p: joint test vs HAR")
    lines.append(f"  {'h':>3} {'n':>7} " + " ".join(f"{n + ' (p)':>16}" for n in RISK) + f" {'HAR QLIKE':>9}")
    for h, v in sorted(f["risk"].items(), key=lambda kv: int(kv[0])):
        cells = [f"{fmt_ratio(v[n]['qlike/har'])} ({_p(v[n]['p_value'])})" for n in RISK]
        lines.append(f"  {h:>3} {v['n']:>7} " + " ".join(f"{c:>16}" for c in cells) + f" {v['har']['qlike']:9.4f}")
    return lines


def run(quiet: bool = False) -> dict[str, Any]:
    say = _say(quiet)
    if not OHLCV.is_dir():
        say(f"  skipped: {OHLCV} not available")
        return {"benchmark": NAME, "skipped": f"{OHLCV} not available", "ratios": {}}
    coins, end = choose_coins()
    overrides = study_config()
    to = end.isoformat().replace("+00:00", "Z")
    result: dict[str, Any] = {"benchmark": NAME, "scale": scale(), "cpus": os.cpu_count(), "coins": coins,
                              "until": UNTIL, "frozen_from": FROM, "frozen_to": to, "config_overrides": overrides,
                              "load_average_start": _load(), "single_run": True}
    say(f"== real-data study: {len(coins)} coins ({' '.join(coins)}), Binance USDT 1h, trained to {UNTIL}, "
        f"frozen set {FROM} .. {to}; config {json.dumps(overrides) if overrides else 'the default TrainConfig'}; "
        f"in-process (1 worker), {os.cpu_count()} CPUs, load average {result['load_average_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="coinline-bench-study-"))
    steps: dict[str, float] = {}

    def timed(step: str, *args: str) -> str:
        s0 = time.perf_counter()
        out = _cli(*args)
        steps[step] = steps.get(step, 0.0) + time.perf_counter() - s0
        return out

    try:
        (tmp / "train.json").write_text(json.dumps(overrides))
        with _cli_env(tmp, tmp / "train.json"):
            for coin in coins:
                timed("import", "import", "--format", "freqtrade", "--symbol", coin, "--quote", "USDT",
                      "--interval", "1h", str(OHLCV / f"{coin}_USDT-1h.feather"))
            timed("gaps", "gaps", "--retry")
            run_id = _json(timed("train", "train", "--source", "import:freqtrade", "--quote", "USDT",
                                      "--until", UNTIL, "--symbols", *coins, "--json"))["run_id"]
            say(f"  trained {run_id} in {steps['train']:.0f} s (load average {_load()})")
            metrics = _json(timed("evaluate", "evaluate", run_id, "--json"))
            forecast = _json(timed("forecast", "forecast", "--run", run_id, "--from", FROM, "--to", to,
                                        "--json"))
            board = _json(timed("scoreboard", "scoreboard", "--json"))
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            timed("report", "report", run_id, "--out", str(REPORT))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f = figures(metrics, board, run_id)
    result.update(run_id=run_id, steps_seconds=steps, study_seconds=sum(steps.values()),
                  forecasts=forecast["sets"][0]["rows"], report=str(REPORT), **f)
    result["load_average_end"] = _load()
    ratios: dict[str, float | None] = {}
    for h in f["horizons"]:
        served = f["served"][str(h)]["served"]
        ratios[f"walk-forward h={h} {served}/base_rate"] = f["walk_forward"][f"{h}/{served}"]["model/base_rate"]
        ratios[f"walk-forward h={h} momentum/base_rate"] = f["walk_forward"][f"{h}/{served}"]["momentum/base_rate"]
        if str(h) in f["frozen_set"]:
            ratios[f"frozen h={h} served/base_rate"] = f["frozen_set"][str(h)]["served/base_rate"]
        for name in ("served", "ewma", "constant"):
            ratios[f"risk h={h} {name}/har"] = f["risk"][str(h)][name]["qlike/har"]
    if f["ensemble_check"]["pooled"]:
        p = f["ensemble_check"]["pooled"]
        ratios["ensemble/best member"] = ratio(p["ensemble"], p["best_member_log_loss"])
    result["ratios"] = ratios
    for line in table(f):
        say(line)
    say(f"  {result['forecasts']:,} frozen-set forecasts; seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()) + f"; total {result['study_seconds']:.0f}")
    say(f"  report: {REPORT}; load average at the end {result['load_average_end']}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run()
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
