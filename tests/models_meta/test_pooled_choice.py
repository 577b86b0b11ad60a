"""The combiner is chosen per fold POOLED across coins, among the base rate, the mean, each member and the
stack, by a stated rule (a more complex candidate must win by more than a margin): noise coins get the base
rate, a member that carries the signal on every coin gets picked, the choice never pools a later fold, the
base rate is the climatology realized before the fold, and the meta-learner blob keeps it (old blobs load)."""

import json

import numpy as np
import pytest

from coinline.errors import CoinlineError
from coinline.models.stacking import (
    StackingMetaLearner,
    choose_combiner,
    pooled_choice,
    stack_selection,
    walk_forward_stack,
)

FAMS = ("xgboost", "lightgbm", "random_forest", "lstm", "transformer")
PARAMS = {"C": 0.05, "select_margin": 0.001}


def _coin(seed, signal=0.0, n_folds=4, per_fold=500):
    """Five members of pure noise around 0.5; with `signal`, lightgbm is the true P(up) (logit sd `signal`)."""
    rng = np.random.default_rng(seed)
    n = n_folds * per_fold
    truth = 1 / (1 + np.exp(-signal * rng.standard_normal(n)))
    y = (rng.random(n) < truth).astype(float)
    P = 1 / (1 + np.exp(-0.3 * rng.standard_normal((n, len(FAMS)))))
    if signal:
        P[:, 1] = truth
    R = rng.dirichlet(np.ones(4), size=n)
    return np.repeat(np.arange(n_folds), per_fold), P, R, y


def _log_loss(y, p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _run(signal, coins=8):
    data = {c: _coin(100 + c, signal) for c in range(coins)}
    records = {c: stack_selection(*d, FAMS, seed=1, params=PARAMS) for c, d in data.items()}
    pooled = pooled_choice(records, PARAMS["select_margin"])
    out = {}
    for c, d in data.items():
        own = walk_forward_stack(*d, FAMS, seed=1, params=PARAMS)
        served = walk_forward_stack(*d, FAMS, seed=1, params=PARAMS,
                                    choices={k: v["choice"] for k, v in pooled[c].items()})
        out[c] = (d, own, served)
    return pooled, out


def test_rule_prefers_the_simpler_candidate_unless_the_complex_one_wins_by_the_margin():
    m = 0.001
    assert choose_combiner({"base_rate": 0.6930, "mean": 0.6930, "member:a": 0.6930, "stack": 0.6930}, m) == "base_rate"
    assert choose_combiner({"base_rate": 0.6930, "member:a": 0.6925, "stack": 0.6922}, m) == "base_rate"
    assert choose_combiner({"base_rate": 0.6930, "member:a": 0.6915, "stack": 0.6910}, m) == "member:a"
    assert choose_combiner({"base_rate": 0.6930, "member:a": 0.6915, "stack": 0.6900}, m) == "stack"
    # the stack must beat the best simpler candidate, not only the chosen one
    assert choose_combiner({"base_rate": 0.6930, "member:a": 0.6925, "stack": 0.6918}, m) == "base_rate"
    assert choose_combiner({"base_rate": 0.6930, "member:a": 0.6925, "stack": 0.6912}, m) == "stack"
    # within a level: lowest loss, then name
    assert choose_combiner({"base_rate": 0.70, "mean": 0.68, "member:a": 0.68}, m) == "mean"
    assert choose_combiner({}, m) is None


def test_pooled_stack_margin_counts_rows_of_every_coin():
    """Coin a: the stack wins by 0.004 on 100 rows; coin b: it loses by 0.001 on 300 rows. Pooled it wins by
    0.00025 < margin: the member is served on both, although coin a alone would take the stack."""
    def rec(n, member, stack):
        return {0: {"test_start": 0, "n": n, "loss": {"base_rate": 0.70 * n, "member:x": member * n, "stack": stack * n}}}
    records = {"a": rec(100, 0.690, 0.686), "b": rec(300, 0.690, 0.691)}
    out = pooled_choice(records, 0.001)
    assert out["a"][0]["choice"] == out["b"][0]["choice"] == "member:x"
    assert out["a"][0]["n"] == 400 and out["a"][0]["coins"] == 2
    assert pooled_choice({"a": records["a"]}, 0.001)["a"][0]["choice"] == "stack"
    assert out["a"][0]["selection"]["stack"] == pytest.approx((0.686 * 100 + 0.691 * 300) / 400)
    # the same pooled sums whatever the order the coins are given in
    assert pooled_choice(dict(reversed(list(records.items()))), 0.001) == out


def test_a_coin_pools_only_folds_that_start_no_later_than_its_own():
    """Coin b's fold 1 starts after coin a's fold 1: a's fold 1 pools b's fold 0 (all realized before it)."""
    def r(start, stack):
        return {"test_start": start, "n": 100, "loss": {"base_rate": 69.3, "stack": stack}}
    records = {"a": {0: r(0, 69.3), 1: r(100, 69.3)}, "b": {0: r(0, 69.3), 1: r(150, 60.0)}}
    out = pooled_choice(records, 0.001)
    assert out["a"][1]["choice"] == "base_rate" and out["a"][1]["selection"]["stack"] == pytest.approx(0.693)
    assert out["b"][1]["choice"] == "stack"           # b's own fold 1 and a's fold 1 (it started earlier)
    # a fold without losses of its own (None) still gets the pooled choice of what is known
    records["a"][1]["loss"] = None
    assert pooled_choice(records, 0.001)["a"][1]["coins"] == 2


def test_noise_coins_get_the_base_rate_where_per_coin_choices_chase_luck():
    pooled, out = _run(signal=0.0)
    for c, (d, _, served) in out.items():
        folds = d[0]
        for k in (1, 2, 3):
            assert pooled[c][k]["choice"] == "base_rate" and served[2][k]["choice"] == "base_rate"
            test = folds == k
            np.testing.assert_array_equal(served[0][test], np.full(test.sum(), served[2][k]["base_rate"]))
    own_choices = {own[2][k]["coin_choice"] for _, own, _ in out.values() for k in (1, 2, 3)}
    assert own_choices - {"base_rate"}, "the per-coin choice picks lucky candidates on these coins"
    later = [(d[3][d[0] >= 1], own[0][d[0] >= 1], served[0][d[0] >= 1]) for d, own, served in out.values()]
    y = np.concatenate([t[0] for t in later])
    assert _log_loss(y, np.concatenate([t[2] for t in later])) < _log_loss(y, np.concatenate([t[1] for t in later]))


def test_the_member_with_the_signal_on_every_coin_is_picked():
    pooled, out = _run(signal=0.3)
    for c, (d, _, served) in out.items():
        folds, P, _, _ = d
        for k in (1, 2, 3):
            assert pooled[c][k]["choice"] == "member:lightgbm"
            np.testing.assert_array_equal(served[0][folds == k], P[folds == k, 1])
        assert served[2][0]["fallback"] is True        # fold 0: no history, no warmup: the mean, as before


def test_climatology_base_rate_uses_only_labels_realized_before_the_fold():
    folds, P, R, y = _coin(7)
    h = 4
    # 1,000 labelled rows before the first test row, then the test rows; time = row number
    pre = (np.random.default_rng(8).random(1000) < 0.56).astype(float)
    t = np.arange(1000 + len(y))
    row_time, label_time = t[1000:], t[1000:] + h
    clim = (t + h, np.concatenate([pre, y]))
    kw = {"params": PARAMS, "row_time": row_time, "label_time": label_time}
    p, _, pf = walk_forward_stack(folds, P, R, y, FAMS, 1, climatology=clim, choices={k: "base_rate" for k in range(4)},
                                  **{**kw, "warmup": {0: (P[:300], y[:300], row_time[:300] - 1000)}})
    for k in range(4):
        start = row_time[folds == k].min()
        assert pf[k]["base_rate"] == pytest.approx(clim[1][clim[0] < start].mean())
    assert pf[0]["base_rate"] == pytest.approx(pre[:1000 - h].mean())
    # flipping fold 2's labels (in the climatology too) leaves folds 0..2 as they were
    y2 = y.copy()
    y2[folds == 2] = 1 - y2[folds == 2]
    clim2 = (clim[0], np.concatenate([pre, y2]))
    for choices in (None, {k: "base_rate" for k in range(4)}):
        a, _, _ = walk_forward_stack(folds, P, R, y, FAMS, 1, climatology=clim, choices=choices, **kw)
        b, _, _ = walk_forward_stack(folds, P, R, y2, FAMS, 1, climatology=clim2, choices=choices, **kw)
        np.testing.assert_array_equal(a[folds <= 2], b[folds <= 2])
        assert not np.array_equal(a[folds == 3], b[folds == 3])
    with pytest.raises(ValueError, match="climatology"):
        walk_forward_stack(folds, P, R, y, FAMS, 1, climatology=clim, params=PARAMS)


def test_base_rate_blob_round_trip_old_blobs_load_and_bad_choices_are_named():
    folds, P, R, y = _coin(3)
    m = StackingMetaLearner(PARAMS, families=FAMS).fit(P, R, y, seed=1, choice="base_rate", prior=0.53)
    assert m.choice == "base_rate" and m.weights() == {} and set(m.family_weights().values()) == {0.0}
    back = StackingMetaLearner.from_bytes(m.to_bytes())
    assert back.to_bytes() == m.to_bytes()
    np.testing.assert_array_equal(back.predict(P, R)[0], np.full(len(P), 0.53))
    # a blob written before the base-rate candidate: no base_rate, no select_margin; it loads and predicts alike
    stack = StackingMetaLearner(PARAMS, families=FAMS).fit(P, R, y, seed=1, choice="stack")
    doc = json.loads(stack.to_bytes())
    del doc["base_rate"], doc["params"]["select_margin"]
    old = StackingMetaLearner.from_bytes(json.dumps(doc).encode())
    assert old.base_rate is None and old.choice == "stack"
    np.testing.assert_array_equal(old.predict(P, R)[0], stack.predict(P, R)[0])
    doc["choice"] = "base_rate"
    with pytest.raises(CoinlineError, match="base_rate"):
        StackingMetaLearner.from_bytes(json.dumps(doc).encode())
    with pytest.raises(CoinlineError, match="member:catboost"):
        StackingMetaLearner(PARAMS, families=FAMS).fit(P, R, y, seed=1, choice="member:catboost")


def test_pooled_selection_is_deterministic():
    a, _ = _run(signal=0.3, coins=3)
    b, _ = _run(signal=0.3, coins=3)
    assert a == b
