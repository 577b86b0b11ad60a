"""The integrity properties of training (the tests that matter most for issue 3):
no skill on a pure random walk, look-ahead caught, byte-identical reruns, worker-count independence."""

import json

import numpy as np
import pandas as pd
import pytest

from coinline.features.frame import build_coin_frames
from coinline.training.run import LeakageError, train
from tests.training.conftest import fast_config, random_walk_dataset


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 202, 303])
def test_no_model_shows_skill_on_a_pure_random_walk(lake, seed):
    run = train(lake, random_walk_dataset(lake, seed=seed), fast_config(), workers=1)
    skill = run.metrics["skill"]
    assert skill["tests"] >= 12  # every (horizon, model), including the ensemble
    significant = [k for k, v in skill["by_model"].items() if v["significant"]]
    assert significant == [], f"chance skill on a random walk: {significant}"
    assert not skill["any_significant"]


def _peeking_builder(candles, cfg, **kw):
    """The real features plus one that reads the NEXT bar's close: the look-ahead check must catch it."""
    frames = build_coin_frames(candles, cfg, **kw)
    df = candles if isinstance(candles, pd.DataFrame) else candles.to_pandas()
    out = {}
    for sym, f in frames.items():
        rows = df[df["symbol"] == sym].sort_values("open_time")
        ms = pd.to_datetime(rows["open_time"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
        nxt = pd.Series(rows["close"].shift(-1).to_numpy(), index=ms)
        peek = nxt.reindex(f.times).to_numpy()
        F = np.column_stack([f.F, np.nan_to_num(peek)])
        out[sym] = type(f)(f.symbol, f.times, F, (*f.feature_names, "peek_next_close"), f.targets, f.close,
                           f.open_next, f.quote, f.interval)
    return out


def test_a_feature_that_peeks_one_bar_ahead_fails_the_run(lake, rw_dataset):
    with pytest.raises(LeakageError, match="look-ahead"):
        train(lake, rw_dataset, fast_config(), workers=1, feature_builder=_peeking_builder)
    (report,) = [n for n in lake.list("runs") if n.endswith("lookahead.json")]
    violations = json.loads(lake.read_bytes(report))["violations"]
    assert {v["feature"] if isinstance(v, dict) else v[0] for v in violations} == {"peek_next_close"}


def test_the_same_training_twice_gives_identical_metrics_and_artifacts(lake, rw_dataset):
    first = train(lake, rw_dataset, fast_config(families=("lightgbm", "lstm")), workers=1)
    metrics_bytes = lake.read_bytes(f"runs/{first.run_id}/metrics.json")
    second = train(lake, rw_dataset, fast_config(families=("lightgbm", "lstm")), workers=1)
    assert second.run_id == first.run_id
    assert lake.read_bytes(f"runs/{second.run_id}/metrics.json") == metrics_bytes
    assert second.manifest["artifacts"] == first.manifest["artifacts"]
    assert second.manifest["content_hash"] == first.manifest["content_hash"]


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_workers(lake, rw_dataset):
    cfg = fast_config(families=("xgboost", "random_forest", "transformer"))
    serial = train(lake, rw_dataset, cfg, workers=1)
    serial_bytes = lake.read_bytes(f"runs/{serial.run_id}/metrics.json")
    parallel = train(lake, rw_dataset, cfg, workers=2)  # Ray, one task per coin
    assert lake.read_bytes(f"runs/{parallel.run_id}/metrics.json") == serial_bytes
    assert parallel.manifest["content_hash"] == serial.manifest["content_hash"]
