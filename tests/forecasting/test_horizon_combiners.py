"""Every served horizon gets a chosen combiner: on a random walk the pooled choice at h=24 is the base rate
(not the mean of trees that fit noise), the run's metrics judge what is served, the stored set serves the
last fold's choice at every horizon (the bit-for-bit replay is `test_skew`), and a set stored before the
choice existed still forecasts with the mean of the horizon's models."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from coinline.forecasting.modelset import load_run_set
from coinline.forecasting.predict import Inputs, predict_model_rows
from coinline.forecasting.service import load_candles
from coinline.lake import open_lake


def _metrics(lake, run_id):
    return lake.read_json(f"runs/{run_id}/metrics.json")


def _inputs(lake, ms, end):
    last = int((end.timestamp() - 3600) * 1000)      # the last stored candle's open time
    return Inputs(ms, load_candles(lake, ms, last_decision_ms=last))


def test_on_a_random_walk_h24_serves_the_base_rate_and_the_metrics_judge_it(trained):
    lake = open_lake(f"file://{trained.root}")
    m = _metrics(lake, trained.run_id)
    served = m["horizons"]["served"]
    folds = served["24"]["fold_combiners"]
    assert folds and all(set(c) == {"base_rate"} for c in folds.values()), folds
    primary = str(m["primary_horizon"])
    for h in ("1", "4", "24"):
        assert served[h]["served"] == "ensemble" and f"{h}/ensemble" in m["skill"]["by_model"]
        assert f"{h}/mean" not in m["skill"]["by_model"]
        counts: dict = {}
        for sym in m["symbols"]:
            per_fold = m["stacking_weights"][sym] if h == primary else m["horizon_combiners"][sym][h]
            for k, w in per_fold.items():
                counts.setdefault(str(k), {}).setdefault(w["choice"], 0)
                counts[str(k)][w["choice"]] += 1
        assert counts == served[h]["fold_combiners"]
    row = m["skill"]["by_model"]["24/ensemble"]
    assert row["oos"]["log_loss"] <= row["base_rate"]["log_loss"] + 0.001


def test_the_stored_set_serves_each_horizons_last_fold_combiner(trained):
    lake = open_lake(f"file://{trained.root}")
    m = _metrics(lake, trained.run_id)
    ms = load_run_set(lake, trained.run_id)
    inputs = _inputs(lake, ms, trained.end)
    for sym in ms.symbols:
        assert sorted(ms.horizon_metas[sym]) == [h for h in ms.horizons if h != ms.primary_horizon]
        rows = np.arange(len(inputs.frames[sym].times) - 12, len(inputs.frames[sym].times))
        out, members = predict_model_rows(ms, inputs, sym, rows)
        for h, meta in ms.horizon_metas[sym].items():
            per_fold = m["horizon_combiners"][sym][str(h)]
            last = per_fold[max(per_fold, key=int)]
            assert meta.choice == last["choice"] and meta.base_rate == last["base_rate"]
            got = out[out["horizon"] == h]
            assert set(got["combiner"]) == {meta.choice}
            if meta.choice == "base_rate":
                assert (got["p_up"].to_numpy() == meta.base_rate).all()
                assert not np.allclose(got["p_up"], np.mean([members[h][f] for f in members[h]], axis=0))


def test_a_set_stored_without_horizon_combiners_serves_the_mean(trained_lake, trained):
    lake = trained_lake
    manifest = lake.read_json(f"runs/{trained.run_id}/manifest.json")
    doc = json.loads(lake.read_bytes(f"runs/{trained.run_id}/modelset.json"))
    for coin in doc["coins"].values():
        for spec in coin["horizons"].values():
            spec.pop("meta", None)
    old = json.dumps(doc).encode()
    lake.write_bytes(f"runs/{trained.run_id}/modelset.json", old)
    manifest["artifacts"]["modelset.json"] = hashlib.sha256(old).hexdigest()
    lake.write_json(f"runs/{trained.run_id}/manifest.json", manifest)
    ms = load_run_set(lake, trained.run_id)
    inputs = _inputs(lake, ms, trained.end)
    for sym in ms.symbols:
        assert ms.horizon_metas[sym] == {} and ms.metas[sym] is not None
        rows = np.arange(len(inputs.frames[sym].times) - 12, len(inputs.frames[sym].times))
        out, members = predict_model_rows(ms, inputs, sym, rows)
        for h in ms.horizons:
            if h == ms.primary_horizon:
                continue
            got = out[out["horizon"] == h]
            mean = np.column_stack([members[h][f] for f in sorted(members[h])]).mean(axis=1)
            assert set(got["combiner"]) == {"mean"}
            assert got["p_up"].to_numpy().tobytes() == mean.tobytes()
