"""The full topology trains end to end on real hourly candles (Binance USDT, freqtrade caches in
../shared/data/ohlcv) for five coins, and the run report compares every model with the baselines.
What the models achieve is reported, not asserted: real markets owe us no skill."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from coinline.datasets.materialize import DatasetSpec, materialize
from coinline.ingest import gaps
from coinline.ingest.importing import import_files
from coinline.lake import tables
from coinline.training.config import FoldConfig, SequenceConfig, TrainConfig, TuneConfig
from coinline.training.run import train
from coinline.training.summary import summary_rows
from coinline.universe import load_universe

OHLCV = Path(__file__).resolve().parents[3] / "shared" / "data" / "ohlcv" / "binance_freqtrade_Mounik"
COINS = ("BTC", "ETH", "SOL", "XRP", "ADA")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.study
@pytest.mark.skipif(not OHLCV.is_dir(), reason="../shared/data/ohlcv not available")
def test_full_topology_trains_on_five_real_coins(lake, capsys):
    for coin in COINS:
        import_files(lake, [OHLCV / f"{coin}_USDT-1h.feather"], fmt="freqtrade", symbol=coin, quote="USDT",
                     interval="1h", venue=None, now=NOW)
    for key, *_ in tables.series_in(lake):  # Binance's own missing hours: recorded, never filled
        gaps.record_as_known(lake, key, answer="missing in the freqtrade cache", now=NOW)
    spec = DatasetSpec("UNIVERSE_V1_TOP30_NON_STABLE", "1h", "import:freqtrade", ("USDT",))
    dataset = materialize(lake, load_universe(spec.universe_version), spec, gap_tolerance=0, now=NOW)
    cfg = TrainConfig(folds=FoldConfig(n_folds=3, test_bars=500, min_train_bars=1500),
                      sequence=SequenceConfig(epochs=2, max_train_samples=800), tune=TuneConfig(trials=0),
                      max_history_bars=4000)
    run = train(lake, dataset.dataset_id, cfg, quote="USDT", workers=1)
    m = run.metrics
    assert m["symbols"] == sorted(COINS) and m["lookahead"]["passed"]
    for coin in COINS:
        for h in ("1", "4", "24"):
            block = m["per_coin"][coin][h]
            assert set(block["baselines"]) == {"base_rate", "momentum", "random_walk"}
            for model in block["models"].values():
                assert set(model["skill"]) >= {"base_rate", "momentum", "random_walk"}
                assert model["oos"]["n"] == block["n_oos"] > 0
    with capsys.disabled():  # the report, as seen (printed with -s or in CI logs)
        print(f"\nreal candles, run {run.run_id}: pooled skill (Holm-corrected) vs base rate")
        for key, v in m["skill"]["by_model"].items():
            print(f"  {key:<16} oos logloss {v['oos']['log_loss']:.4f}  base {v['base_rate']['log_loss']:.4f}"
                  f"  acc {v['oos']['accuracy']:.4f}  p_holm {v['p_value_holm']:.3f}")
        print(f"  simulation: {m['simulation'].get('total_return')=} {m['simulation'].get('sharpe')=}")
    assert len(summary_rows(m)) == 5 * (3 * 3 + 2 + 3)   # 3 trees x 3 horizons, 2 sequence nets, a served ensemble per horizon
