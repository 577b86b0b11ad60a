"""No training/serving skew: a finished run, loaded from the lake as a model set, re-predicts the rows of
its last test fold from the lake's canonical candles exactly as the run's stored out-of-sample predictions
(every member, and the served combiner at every horizon)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from coinline.forecasting.modelset import load_run_set
from coinline.forecasting.predict import Inputs, predict_model_rows
from coinline.forecasting.service import load_candles
from coinline.lake import open_lake


def test_loaded_set_repredicts_its_last_test_fold_bit_for_bit(trained):
    lake = open_lake(f"file://{trained.root}")
    ms = load_run_set(lake, trained.run_id)
    oof = pq.read_table(lake.path(f"runs/{trained.run_id}/predictions/oof.parquet"), filesystem=lake.fs).to_pandas()
    last_fold = oof.groupby("symbol")["fold"].transform("max")
    oof = oof[oof["fold"] == last_fold]
    candles = load_candles(lake, ms, last_decision_ms=int(oof["open_time_ms"].max()))
    inputs = Inputs(ms, candles)
    checked = 0
    for (sym, h), part in oof.groupby(["symbol", "horizon"]):
        times = np.sort(part["open_time_ms"].unique())
        rows = inputs.rows(sym, times)
        assert (rows >= 0).all()
        out, members = predict_model_rows(ms, inputs, sym, rows)
        for fam, stored in part.groupby("family"):
            stored = stored.sort_values("open_time_ms")["p_up"].to_numpy()
            if fam == "ensemble":
                got = out[out["horizon"] == h]["p_up"].to_numpy()
            else:
                got = members[h][fam]
            assert got.tobytes() == stored.tobytes(), f"{sym} h={h} {fam}: serving differs from training"
            checked += 1
    families = set(oof["family"])
    assert {"xgboost", "lightgbm", "random_forest", "lstm", "transformer", "ensemble"} <= families
    assert set(oof[oof["family"] == "ensemble"]["horizon"]) == set(ms.horizons), "a served combiner at every horizon"
    assert checked == len(oof.groupby(["symbol", "horizon", "family"]))
