"""A forward hold-out study on real candles, through the CLI as a user runs it: import Binance USDT hourly
candles (freqtrade caches in ../shared/data/ohlcv), train with `--until T0`, score the frozen set on the
month after T0 with `forecast --run --from --to`, and read the scoreboard against the baselines.
What the set achieves is reported, not asserted: real markets owe us no skill."""

from __future__ import annotations

import json

import pytest

from coinline.cli import main
from tests.real_candles import OHLCV, import_and_train

COINS = ("BTC", "ETH", "SOL")
CONFIG = {"max_history_bars": 3000, "folds": {"n_folds": 2, "test_bars": 500, "min_train_bars": 1500},
          "sequence": {"epochs": 1, "max_train_samples": 500}, "tune": {"trials": 0}}


@pytest.mark.study
@pytest.mark.skipif(not OHLCV.is_dir(), reason="../shared/data/ohlcv not available")
def test_train_until_then_score_the_frozen_set_forward(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for var in ("HIST_MARKET_DATA_API_KEY", "OBJECT_STORE_URL", "COINLINE_VENUE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "train.json").write_text(json.dumps(CONFIG))
    monkeypatch.setenv("COINLINE_TRAIN_CONFIG", str(tmp_path / "train.json"))
    monkeypatch.setenv("COINLINE_TRAIN_WORKERS", "1")

    def run(*args):
        capsys.readouterr()
        code = main(["--now", "2026-01-01T00:00:00Z", *args])
        out = capsys.readouterr()
        assert code == 0, f"{args}: exit {code}: {out.err[-1500:]}"
        return out.out

    run_id = import_and_train(run, COINS, "2024-02-01T00:00:00Z")
    out = json.loads(run("forecast", "--run", run_id, "--from", "2024-02-01T01:00:00Z",
                         "--to", "2024-03-01T00:00:00Z", "--json"))
    assert out["model_set"]["quote"] == "USDT" and out["model_set"]["source"] == "import:freqtrade"
    study = out["sets"][0]
    assert study["role"] == "study" and study["inserted"] == study["rows"] > 0 and not study["skipped"]
    board = json.loads(run("scoreboard", "--json"))
    pooled = {p["horizon"]: p for p in board["pooled"] if p["model_set"] == run_id}
    assert set(pooled) == {1, 4, 24}
    for p in pooled.values():
        assert p["n_rows"] > 1500 and set(p["baselines"]) == {"base_rate", "momentum", "random_walk"}
        assert p["chance"]["p_value_holm"] is not None and p["model"]["ece"] is not None
    with capsys.disabled():   # the study's result, as seen (printed with -s and in CI logs)
        print(f"\nforward study, run {run_id} frozen at 2024-02-01, scored on February 2024 (BTC ETH SOL, USDT):")
        for h, p in sorted(pooled.items()):
            print(f"  h={h:<3} n={p['n_rows']:<5} logloss {p['model']['log_loss']:.4f}  base rate "
                  f"{p['baselines']['base_rate']['log_loss']:.4f}  momentum {p['baselines']['momentum']['log_loss']:.4f}"
                  f"  acc {p['model']['accuracy']:.3f}  p_holm {p['chance']['p_value_holm']:.3f}")
