"""The public real-data study, through the CLI as a user runs it: Binance USDT hourly candles of ten coins
(freqtrade caches in ../shared/data/ohlcv), walk-forward training on candles up to 2023-12-31 (`train --until`),
then the frozen set forecasting every hour from 2024-01-01 on (`forecast --run --from --to`), scored by the
scoreboard, and the run's HTML report. Every model and the ensemble are compared with the base rate and
momentum (direction) and the risk head with EWMA, HAR-RV and the constant variance.

The configuration is reduced (3,000 bars per coin, two folds, one sequence epoch, no tuning) so the test stays
short; `bench/real_study.py` runs the same study at a larger budget. What the set achieves is printed, not
asserted: real markets owe us no skill."""

from __future__ import annotations

import json
import time

import pytest

from coinline.cli import main
from tests.real_candles import OHLCV, import_and_train

# the first ten coins of UNIVERSE_V1_TOP30_NON_STABLE with a Binance USDT 1h cache here (XMR has none); every
# file covers 2020-05-11 .. 2024-05-08 06:00 (one missing hour in 2023, 2023-03-24 13:00)
COINS = ("BTC", "ETH", "BNB", "XRP", "SOL", "TRX", "ADA", "BCH", "LINK", "XLM")
UNTIL = "2023-12-31T23:00:00Z"          # the last training candle opens here
FROM, TO = "2024-01-01T01:00:00Z", "2024-05-07T00:00:00Z"   # frozen-set decision times; 24 h outcomes all known
HORIZONS = (1, 4, 24)
CONFIG = {"max_history_bars": 3000, "folds": {"n_folds": 2, "test_bars": 500, "min_train_bars": 1500},
          "sequence": {"epochs": 1, "max_train_samples": 500}, "tune": {"trials": 0}}
REPORT_TABLES = ("Every served horizon vs the base rate", "Risk head vs EWMA and HAR-RV",
                 "Ensemble vs its best single member", "Live forecasts",
                 "Forward scores per model set")   # the Live section's table of the frozen set's scores


def _pooled_momentum(metrics: dict, h: int) -> float:
    """Momentum's walk-forward log loss pooled over coins (per-coin means weighted by their OOS rows: the
    same rows the pooled skill rows use)."""
    blocks = [metrics["per_coin"][s][str(h)] for s in metrics["symbols"]]
    n = sum(b["n_oos"] for b in blocks)
    return sum(b["baselines"]["momentum"]["log_loss"] * b["n_oos"] for b in blocks) / n


def _p(x) -> str:
    return "    -" if x is None else f"{x:5.3f}"


def study_table(metrics: dict, board_rows: dict[int, dict]) -> list[str]:
    """The study's result as lines: direction (walk-forward OOS and frozen set) and risk, per horizon."""
    by_model = metrics["skill"]["by_model"]
    lines = ["direction, log loss (lower is better); walk-forward OOS pooled over coins, p = joint test vs the "
             "base rate, Holm-corrected",
             f"  {'h':>3} {'model':<14} {'n':>6} {'logloss':>8} {'base':>8} {'momentum':>8} {'p_holm':>6}"]
    for h in HORIZONS:
        momentum = _pooled_momentum(metrics, h)
        for row in sorted((r for r in by_model.values() if r["horizon"] == h), key=lambda r: r["model"]):
            lines.append(f"  {h:>3} {row['model']:<14} {row['oos']['n']:>6} {row['oos']['log_loss']:8.4f} "
                         f"{row['base_rate']['log_loss']:8.4f} {momentum:8.4f} {_p(row['p_value_holm']):>6}")
    lines.append("frozen set (trained to 2023-12-31), served forecasts scored from 2024-01-01 (scoreboard, pooled)")
    for h in HORIZONS:
        p = board_rows[h]
        lines.append(f"  {h:>3} {'served':<14} {p['n_rows']:>6} {p['model']['log_loss']:8.4f} "
                     f"{p['baselines']['base_rate']['log_loss']:8.4f} {p['baselines']['momentum']['log_loss']:8.4f} "
                     f"{_p(p['chance'].get('p_value_holm')):>6}")
    e = metrics["ensemble_check"]["pooled"]
    lines.append(f"ensemble vs best member (h={metrics['ensemble_check']['horizon']}, walk-forward OOS): "
                 f"{e['ensemble']:.4f} vs {e['best_member']} {e['best_member_log_loss']:.4f} (gap {e['gap']:+.4f})")
    lines.append("risk, QLIKE (lower is better); walk-forward OOS pooled over coins, p = joint test vs HAR-RV")
    lines.append(f"  {'h':>3} {'n':>6} " + " ".join(f"{n:>8} {'p':>5}" for n in ("served", "ewma", "har", "constant")))
    for h in HORIZONS:
        pooled = metrics["risk"][str(h)]["pooled"]
        cells = []
        for name in ("served", "ewma", "har", "constant"):
            f = pooled["forecasts"][name]
            chance = (f.get("vs_reference") or {}).get("chance") or {}
            cells.append(f"{f['qlike']:8.4f} {_p(chance.get('p_value'))}")
        lines.append(f"  {h:>3} {pooled['n']:>6} " + " ".join(cells))
    return lines


@pytest.mark.study
@pytest.mark.skipif(not OHLCV.is_dir(), reason="../shared/data/ohlcv not available")
def test_real_study_walk_forward_and_frozen_set(tmp_path, monkeypatch, capsys):
    t0 = time.perf_counter()
    monkeypatch.chdir(tmp_path)
    for var in ("HIST_MARKET_DATA_API_KEY", "OBJECT_STORE_URL", "COINLINE_VENUE", "COINLINE_SYMBOLS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "train.json").write_text(json.dumps(CONFIG))
    monkeypatch.setenv("COINLINE_TRAIN_CONFIG", str(tmp_path / "train.json"))
    monkeypatch.setenv("COINLINE_TRAIN_WORKERS", "1")
    timings: dict[str, float] = {}

    def run(*args):
        capsys.readouterr()
        s0 = time.perf_counter()
        code = main(["--now", "2026-01-01T00:00:00Z", *args])
        timings[args[0]] = timings.get(args[0], 0.0) + time.perf_counter() - s0
        out = capsys.readouterr()
        assert code == 0, f"{args}: exit {code}: {out.err[-1500:]}"
        return out.out

    run_id = import_and_train(run, COINS, UNTIL)
    m = json.loads(run("evaluate", run_id, "--json"))

    # walk-forward: every coin trained, every horizon judged (direction, served horizon, risk)
    assert m["symbols"] == sorted(COINS) and m["lookahead"]["passed"]
    for coin in COINS:
        for h in HORIZONS:
            block = m["per_coin"][coin][str(h)]
            assert block["n_oos"] > 0 and set(block["baselines"]) == {"base_rate", "momentum", "random_walk"}
    by_model = m["skill"]["by_model"]
    served = "ensemble"   # the combiner chosen at every horizon (`training.run.served_model`)
    for h in HORIZONS:
        assert f"{h}/{served}" in by_model
        assert by_model[f"{h}/{served}"]["p_value_holm"] is not None
        assert m["horizons"]["served"][str(h)]["served"] == served
        assert "log_loss" in m["horizons"]["served"][str(h)]
        risk = m["risk"][str(h)]["pooled"]
        assert set(risk["forecasts"]) == {"served", "ewma", "har", "constant"} and risk["n"] > 0
        for name in ("served", "ewma", "constant"):
            assert risk["forecasts"][name]["vs_reference"]["chance"]["p_value"] is not None
    assert m["ensemble_check"]["pooled"] is not None
    assert set(m["ensemble_check"]["per_coin"]) == set(COINS)

    # the frozen set, forward from 2024-01-01
    out = json.loads(run("forecast", "--run", run_id, "--from", FROM, "--to", TO, "--json"))
    study = out["sets"][0]
    assert out["model_set"]["quote"] == "USDT" and out["model_set"]["source"] == "import:freqtrade"
    assert study["role"] == "study" and study["inserted"] == study["rows"] > 0 and not study["skipped"]
    board = json.loads(run("scoreboard", "--json"))
    pooled = {p["horizon"]: p for p in board["pooled"] if p["model_set"] == run_id}
    assert set(pooled) == set(HORIZONS)
    for p in pooled.values():
        assert p["n_rows"] > 10 * 24 * 100 and set(p["baselines"]) == {"base_rate", "momentum", "random_walk"}
        assert p["chance"]["p_value_holm"] is not None

    # the report: the evidence tables and the Live section
    run("report", run_id, "--out", "study.html")
    html = (tmp_path / "study.html").read_text(encoding="utf-8")
    for title in REPORT_TABLES:
        assert title in html, title
    assert "No forecasts recorded yet" not in html

    with capsys.disabled():   # the study's result, as seen (printed with -s and in CI logs)
        print(f"\nreal-data study, run {run_id}: {' '.join(COINS)} (Binance USDT 1h), walk-forward up to "
              f"{UNTIL}, frozen set scored {FROM} .. {TO}; reduced config {json.dumps(CONFIG)}")
        print("\n".join(study_table(m, pooled)))
        print("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
              + f"; total {time.perf_counter() - t0:.0f}")
