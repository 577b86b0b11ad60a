"""`coinline train` prints a run id; `coinline evaluate RUN_ID --json` prints its metric package."""

import json


def test_train_then_evaluate_on_the_offline_venue(cli, monkeypatch, tmp_path):
    config = tmp_path / "train.json"
    config.write_text(json.dumps({
        "folds": {"n_folds": 2, "test_bars": 300, "min_train_bars": 900},
        "sequence": {"window": 16, "epochs": 2, "max_train_samples": 600},
        "tune": {"trials": 2, "tune_symbols": ["BTC"]},
        "max_history_bars": None,
    }))
    monkeypatch.setenv("COINLINE_TRAIN_CONFIG", str(config))
    monkeypatch.setenv("COINLINE_TRAIN_WORKERS", "1")
    monkeypatch.setenv("COINLINE_SYMBOLS", "BTC,ETH")
    monkeypatch.setenv("COINLINE_QUOTES", "USD")
    monkeypatch.setenv("COINLINE_REPLAY_HISTORY_DAYS", "90")
    cli("run", "--no-train")
    run_id = cli("train").out.strip().splitlines()[-1]
    assert run_id.startswith("run-")
    metrics = cli("evaluate", run_id, "--json", as_json=True)
    assert metrics["symbols"] == ["BTC", "ETH"] and metrics["run_id"] == run_id
    btc = metrics["per_coin"]["BTC"]
    assert set(btc) == {"1", "4", "24"}
    assert set(btc["4"]["models"]) == {"xgboost", "lightgbm", "random_forest", "lstm", "transformer", "ensemble"}
    assert set(btc["4"]["baselines"]) == {"base_rate", "momentum", "random_walk"}
    assert metrics["tuning"]["lightgbm"]["trials"] and len(metrics["tuning"]["lightgbm"]["trials"]) == 2
    assert metrics["lookahead"]["passed"] is True
    assert {"sharpe", "max_drawdown", "turnover", "hit_rate"} <= set(metrics["simulation"])
    assert metrics["checks"]["BTC"]["hindcast"] and metrics["checks"]["BTC"]["forward"]
    manifest = json.loads((tmp_path / "lake" / "runs" / run_id / "manifest.json").read_text())
    assert manifest["dataset_hash"] == metrics["dataset_hash"] and "models/BTC/4_h_lstm.bin" in manifest["artifacts"]
    table = cli("evaluate", run_id).out
    assert "ensemble" in table and "base_logloss" in table
