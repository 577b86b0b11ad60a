"""Off the primary horizon the combiner is chosen by the same pooled rule without the stack
(params["stack"] = False) and a fold without meta rows serves the base rate (params["fallback"]): the stack
is neither scored nor servable, the base rate wins on noise, a member that carries the signal wins on
signal, and the blob keeps the choice; learners without those params write the same blob as before."""

import json

import numpy as np
import pytest

from coinline.models.stacking import (
    CombinerError,
    StackingMetaLearner,
    pooled_choice,
    stack_selection,
    walk_forward_stack,
)
from tests.models_meta import synthetic

FAMS = ("lightgbm", "random_forest", "xgboost")
PARAMS = {"C": 0.05, "select_margin": 0.001, "stack": False, "fallback": "base_rate"}


def _coin(seed, signal=0.0):
    """Three members of noise around 0.5; with `signal`, lightgbm is the true P(up)."""
    return synthetic.coin(seed, FAMS, signal, n_folds=3, regimes=False)


def _pooled(signal, coins=5):
    data = {c: _coin(200 + c, signal) for c in range(coins)}
    records = {c: stack_selection(*d, FAMS, seed=3, params=PARAMS) for c, d in data.items()}
    return data, records, pooled_choice(records, PARAMS)


def test_without_the_stack_nothing_scores_or_serves_it():
    meta = StackingMetaLearner(PARAMS, families=FAMS)
    assert meta.candidates() == ["base_rate", "mean", *(f"member:{f}" for f in FAMS)]
    _, records, pooled = _pooled(0.0)
    for rec in records[0].values():
        if rec["loss"]:
            assert "stack" not in rec["loss"] and "stack" not in rec["rows"]
    assert all(v["choice"] != "stack" for per in pooled.values() for v in per.values())
    fold, P, _, y = _coin(1)
    with pytest.raises(CombinerError, match="'stack'"):
        StackingMetaLearner(PARAMS, families=FAMS).fit(P, None, y, seed=1, choice="stack")
    own = StackingMetaLearner(PARAMS, families=FAMS).fit(P, None, y, seed=1)   # its own choice, never the stack
    assert own.choice in own.candidates() and own.coef_ is None


def test_noise_gets_the_base_rate_and_a_signal_member_gets_picked():
    _, _, noise = _pooled(0.0)
    later = [v["choice"] for per in noise.values() for k, v in per.items() if k > 0]
    assert later and set(later) == {"base_rate"}
    _, _, signal = _pooled(1.5)
    later = [v["choice"] for per in signal.values() for k, v in per.items() if k > 0]
    assert later and set(later) == {"member:lightgbm"}


def test_fold0_serves_the_climatology_and_the_choice_survives_the_blob():
    data, _, pooled = _pooled(0.0)
    fold, P, _, y = data[0]
    hour = 3_600_000
    t = np.arange(len(y)) * hour
    history = (np.arange(-400, 0) * hour, np.r_[np.ones(300), np.zeros(100)])   # label times before fold 0
    climatology = (np.r_[history[0], t + hour], np.r_[history[1], y])
    metas: list = []
    p, _, per_fold = walk_forward_stack(fold, P, None, y, FAMS, 3, params=PARAMS, models=metas,
                                        row_time=t, label_time=t + hour, climatology=climatology,
                                        choices={k: v["choice"] for k, v in pooled[0].items()})
    assert per_fold[0]["fallback"] and per_fold[0]["choice"] == "base_rate"
    assert (p[fold == 0] == 0.75).all()                  # the history's up share, not the members' mean
    last = metas[-1]
    assert last.choice == "base_rate" and per_fold[2]["choice"] == "base_rate"
    assert last.base_rate == pytest.approx(float(np.mean(np.r_[history[1], y[fold < 2][:-1]])))
    back = StackingMetaLearner.from_bytes(last.to_bytes())
    assert back.candidates() == last.candidates() and back.choice == "base_rate"
    served, _ = back.predict(P[fold == 2], None)
    assert served.tobytes() == p[fold == 2].tobytes()


def test_a_learner_without_those_params_writes_neither_and_a_bad_fallback_is_named():
    fold, P, _, y = _coin(7)
    meta = StackingMetaLearner({"C": 0.05}, families=FAMS).fit(P, None, y, seed=1)
    assert not {"stack", "fallback"} & set(json.loads(meta.to_bytes())["params"])
    assert "stack" in meta.candidates()
    few = StackingMetaLearner({"C": 0.05}, families=FAMS).fit(P[:10], None, y[:10], seed=1, prior=0.6)
    assert few.fallback and few.choice == "mean"
    with pytest.raises(CombinerError, match="fallback 'median'"):
        StackingMetaLearner({"fallback": "median"}, families=FAMS)
