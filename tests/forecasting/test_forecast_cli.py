"""`coinline forecast` and `coinline scoreboard` on a lake with a trained run: decision inputs for every coin
and horizon, recorded once in the ledger, causal (a later candle changes nothing), the baseline as champion
when nothing is active, and one-line errors (exit 2, nothing written) for bad input."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from coinline.cli import main
from coinline.forecasting import ledger
from coinline.ingest.writer import commit_candles
from coinline.providers.base import SeriesKey, candle_table
from coinline.timeframes import ms

SYMBOLS = ["BTC", "ETH", "SOL"]


@pytest.fixture
def cli(trained, trained_lake, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for var in ("HIST_MARKET_DATA_API_KEY", "COINLINE_VENUE", "COINLINE_TRAIN_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OBJECT_STORE_URL", trained_lake.root)
    monkeypatch.setenv("COINLINE_SYMBOLS", ",".join(SYMBOLS))

    def run(*args: str, expect: int = 0, now: str | None = None):
        capsys.readouterr()
        code = main(["--now", now or _iso(trained.end + timedelta(minutes=20)), *args])
        out = capsys.readouterr()
        assert code == expect, f"exit {code}: {out.out[-2000:]} {out.err[-2000:]}"
        return out

    run.lake = trained_lake
    return run


def _iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _json(out) -> dict:
    return json.loads(out.out)


def test_forecast_prints_decision_inputs_for_every_coin_and_horizon_and_records_them_once(cli, trained):
    out = _json(cli("forecast", "--run", trained.run_id, "--json"))
    rows = out["forecasts"]
    assert sorted({(r["symbol"], r["horizon"]) for r in rows}) == [(s, h) for s in SYMBOLS for h in (1, 4, 24)]
    last_close = _iso(trained.end)
    for r in rows:
        assert r["forecast_time"].replace("+00:00", "Z") == last_close
        assert 0 < r["p_up"] < 1 and r["expected_abs_move"] > 0 and 0 <= r["confidence"] <= 1
        assert abs(r["expected_move"] - (2 * r["p_up"] - 1) * r["expected_abs_move"]) < 1e-12
        assert abs(sum(r["regime"].values()) - 1) < 1e-9
        assert r["model_set"] == trained.run_id and len(r["input_hash"]) == 64 and r["dataset_hash"]
    fams = {"xgboost", "lightgbm", "random_forest", "lstm", "transformer"}
    assert {r["combiner"] for r in rows if r["horizon"] == 4} <= {"stacked", "mean", "base_rate",
                                                                  *(f"member:{f}" for f in fams)}
    assert {r["combiner"] for r in rows if r["horizon"] != 4} <= {"mean", "base_rate",
                                                                  *(f"member:{f}" for f in fams - {"lstm", "transformer"})}
    # a random walk: no horizon has evidence of skill, and the output says so per row
    assert {r["skill_evidence"] for r in rows} == {"none"}
    assert out["sets"][0]["inserted"] == len(rows) == 9
    again = _json(cli("forecast", "--run", trained.run_id, "--json"))
    assert again["sets"][0]["inserted"] == 0 and again["forecasts"] == rows
    assert len(ledger.read(cli.lake)) == 9


def test_a_later_candle_changes_nothing(cli, trained):
    at = _iso(trained.end - timedelta(hours=30))
    before = _json(cli("forecast", "--run", trained.run_id, "--at", at, "--json"))["forecasts"]
    # plant a wild candle after the forecast time (but before the lake's end): it must not reach the forecast
    key = SeriesKey("sim", "RANDOMWALK", "BTC", "USD", "1h")
    t = ms(trained.end - timedelta(hours=10))
    wild = candle_table(key, np.array([t]), np.array([1e6]), np.array([2e6]), np.array([1.0]), np.array([1e6]),
                        np.array([1e9]), np.array([1]))
    commit_candles(cli.lake, wild, key=key, request={"test": "late revision"}, now=trained.end + timedelta(hours=1))
    ledger_path = cli.lake.path("forecasts")
    import shutil

    shutil.rmtree(ledger_path)
    after = _json(cli("forecast", "--run", trained.run_id, "--at", at, "--json"))["forecasts"]
    assert after == before


def test_without_an_active_set_the_baseline_is_the_champion(cli, trained):
    out = cli("forecast", "--quote", "USD", "--source", "sim")
    assert "no active model set: the champion is the declared baseline (climatology)" in out.out
    doc = _json(cli("forecast", "--source", "sim", "--json"))
    assert doc["model_set"]["model_set"] == "baseline:climatology"
    assert {r["symbol"] for r in doc["forecasts"]} == set(SYMBOLS)
    for r in doc["forecasts"]:
        assert r["combiner"] == "climatology" and r["p_up"] == r["baselines"]["base_rate"]
        assert r["skill_evidence"] == "baseline"
        assert 0.3 < r["p_up"] < 0.7


@pytest.mark.parametrize("args, message", [
    (("--run", "run-doesnotexist"), "unknown run id run-doesnotexist"),
    (("--symbols", "DOGE"), "was not trained on DOGE"),
    (("--at", "2020-01-01T00:00:00Z"), "no closed"),
    (("--at", "2025-01-01T03:00:00Z", "--symbols", "BTC"), "missing history for the feature windows"),
    (("--at", "yesterday"), "--at 'yesterday': not an ISO-8601 UTC time"),
    (("--from", "2025-01-02T00:00:00Z"), "a window needs both --from and --to"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, trained, capsys, args, message):
    extra = () if "--run" in args else ("--run", trained.run_id)
    out = cli("forecast", *extra, *args, expect=2)
    assert message in out.err and out.err.count("\n") == 1 and "Traceback" not in out.err
    assert ledger.read(cli.lake).empty


def test_an_altered_artifact_fails_its_hash(cli, trained):
    path = cli.lake.path(f"runs/{trained.run_id}/models/BTC/4_h_xgboost.bin")
    with open(path, "ab") as fh:
        fh.write(b"tampered")
    out = cli("forecast", "--run", trained.run_id, expect=2)
    assert "models/BTC/4_h_xgboost.bin fails its hash" in out.err
    assert ledger.read(cli.lake).empty


def test_a_frozen_set_scores_a_past_window_and_the_scoreboard_reads_it(cli, trained):
    start, end = trained.end - timedelta(hours=200), trained.end - timedelta(hours=1)
    out = _json(cli("forecast", "--run", trained.run_id, "--from", _iso(start), "--to", _iso(end), "--json"))
    assert out["sets"][0]["rows"] == out["sets"][0]["inserted"] == 200 * 3 * 3
    board = _json(cli("scoreboard", "--json"))
    assert board["rows"]["ledger"] == 1800
    # matured: the target candle (decision + h bars) is in the lake, i.e. forecast time <= end - h hours
    pooled = {p["horizon"]: p for p in board["pooled"]}
    assert {h: p["n_rows"] for h, p in pooled.items()} == {1: 3 * 200, 4: 3 * 197, 24: 3 * 177}
    assert board["rows"]["pending"] == 3 * (3 + 23)
    for p in pooled.values():
        assert set(p["baselines"]) == {"base_rate", "momentum", "random_walk"}
        assert p["chance"]["p_value_holm"] is not None
    text = cli("scoreboard").out
    assert trained.run_id in text and "study" in text


def test_the_baseline_on_a_source_the_lake_lacks_names_the_sources_it_has(cli):
    out = cli("forecast", expect=2)    # default --source coinapi; this lake holds the "sim" series only
    assert "no stored series for source=coinapi" in out.err and "--source sim --quote USD --interval 1h" in out.err
    assert ledger.read(cli.lake).empty
