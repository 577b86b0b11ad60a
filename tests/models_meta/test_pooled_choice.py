"""The combiner is chosen per fold POOLED across coins, among the base rate, the mean, each member and the
stack, by a stated rule (a more complex candidate must win by more than max(margin, 2 standard errors)):
noise coins get the base rate, a member that carries the signal on every coin gets picked, coins at the same
time stamps count as one draw, the choice never pools a later fold, the base rate is the climatology realized
before the fold, and the meta-learner blob keeps it (old blobs load)."""

import json

import numpy as np
import pytest

from coinline.errors import CoinlineError
from coinline.models.stacking import (
    StackingMetaLearner,
    _block_se,
    choose_combiner,
    pooled_choice,
    stack_selection,
    walk_forward_stack,
)
from tests.models_meta import synthetic

FAMS = ("xgboost", "lightgbm", "random_forest", "lstm", "transformer")
PARAMS = {"C": 0.05, "select_margin": 0.001}


def _coin(seed, signal=0.0):
    """Five members of pure noise around 0.5; with `signal`, lightgbm is the true P(up)."""
    return synthetic.coin(seed, FAMS, signal)


def _log_loss(y, p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _run(signal, coins=8):
    data = {c: _coin(100 + c, signal) for c in range(coins)}
    records = {c: stack_selection(*d, FAMS, seed=1, params=PARAMS) for c, d in data.items()}
    pooled = pooled_choice(records, PARAMS)
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
    # the stack is measured against the choice so far (the base rate here) ...
    assert choose_combiner({"base_rate": 0.6930, "member:a": 0.6925, "stack": 0.6918}, m) == "stack"
    # ... and must not lose to any simpler candidate; with standard errors the gain must clear 2 of them
    def compare(losses, se):
        return lambda a, b: (losses[b] - losses[a], se.get((a, b), 0.0))
    se = {("member:a", "base_rate"): 0.01, ("stack", "base_rate"): 0.0005}
    losses = {"base_rate": 0.6930, "member:a": 0.6900, "stack": 0.6905}
    trail = []
    assert choose_combiner(losses, m, compare(losses, se), 2.0, trail) == "base_rate"
    assert [(t["candidate"], t["needed"], t["taken"]) for t in trail] == [("member:a", 0.02, False),
                                                                          ("stack", 0.001, False)]
    losses = {"base_rate": 0.6930, "member:a": 0.6910, "stack": 0.6905}
    assert choose_combiner(losses, m, compare(losses, se), 2.0) == "stack"
    # within a level: lowest loss, then name
    assert choose_combiner({"base_rate": 0.70, "mean": 0.68, "member:a": 0.68}, m) == "mean"
    assert choose_combiner({}, m) is None


def _rec(start, n, means, t0=0):
    """A record whose rows all have the same loss per candidate (paired differences without noise)."""
    return {"test_start": start, "n": n, "loss": {c: m * n for c, m in means.items()},
            "count": {c: n for c in means}, "rows": {c: np.full(n, m) for c, m in means.items()},
            "t": t0 + np.arange(n)}


def test_pooled_stack_margin_counts_rows_of_every_coin():
    """Coin a: the stack wins by 0.004 on 100 rows; coin b: it loses by 0.001 on 300 rows. Pooled it wins by
    0.00025 < margin: the member is served on both, although coin a alone would take the stack."""
    records = {"a": {0: _rec(0, 100, {"base_rate": 0.70, "member:x": 0.690, "stack": 0.686})},
               "b": {0: _rec(0, 300, {"base_rate": 0.70, "member:x": 0.690, "stack": 0.691})}}
    out = pooled_choice(records, {"select_margin": 0.001})
    assert out["a"][0]["choice"] == out["b"][0]["choice"] == "member:x"
    assert out["a"][0]["n"] == 400 and out["a"][0]["coins"] == 2
    assert [(c["candidate"], c["against"], c["taken"]) for c in out["a"][0]["tests"]] == \
        [("member:x", "base_rate", True), ("stack", "member:x", False)]
    assert pooled_choice({"a": records["a"]}, {"select_margin": 0.001})["a"][0]["choice"] == "stack"
    assert out["a"][0]["selection"]["stack"] == pytest.approx((0.686 * 100 + 0.691 * 300) / 400)
    # the same pooled result whatever the order the coins are given in
    again = pooled_choice(dict(reversed(list(records.items()))), {"select_margin": 0.001})
    assert json.dumps(again, default=str) == json.dumps(out, default=str)


def test_a_gain_inside_two_standard_errors_does_not_leave_the_base_rate():
    """A member 0.005 better than the base rate on average, with per-row differences of sd 0.2: on 1,000 rows
    (SE ~0.0063) that is noise; on 100,000 rows (SE ~0.0006) it is taken."""
    rng = np.random.default_rng(4)
    for n, taken in ((1000, False), (100_000, True)):
        d = -0.005 + 0.2 * rng.standard_normal(n)
        d -= d.mean() + 0.005                          # exactly 0.005 better on average
        rec = {"test_start": 0, "n": n, "loss": {"base_rate": 0.69 * n, "member:x": float(np.sum(0.69 + d))},
               "count": {"base_rate": n, "member:x": n},
               "rows": {"base_rate": np.full(n, 0.69), "member:x": 0.69 + d}, "t": np.arange(n)}
        out = pooled_choice({"a": {0: rec}}, {"select_margin": 0.001, "select_block": 24})["a"][0]
        assert (out["choice"] == "member:x") is taken, out["tests"]
        assert out["tests"][0]["needed"] == pytest.approx(2 * out["tests"][0]["se"])


def test_coins_at_the_same_time_stamps_count_as_one_draw():
    rng = np.random.default_rng(5)
    t, d = np.arange(480), rng.standard_normal(480)
    one = _block_se(t, d, 24)
    assert _block_se(np.r_[t, t], np.r_[d, d], 24) == pytest.approx(one)            # a copy adds nothing
    assert _block_se(np.r_[t, t + 480], np.r_[d, d], 24) == pytest.approx(one / np.sqrt(2), rel=0.05)
    assert _block_se(t[:24], d[:24], 24) == np.inf                                   # one block: no evidence
    # by hand: 2 blocks of sums 3 and -1 over 4 rows, mean 0.5
    assert _block_se(np.array([0, 0, 1, 1]), np.array([1.0, 2.0, -1.0, 0.0]), 1) == pytest.approx(
        np.sqrt(2 * ((3 - 1) ** 2 + (-1 - 1) ** 2)) / 4)


def test_a_coin_pools_only_folds_that_start_no_later_than_its_own():
    """Coin b's fold 1 starts after coin a's fold 1: a's fold 1 pools b's fold 0 (all realized before it)."""
    flat = {"base_rate": 0.693, "stack": 0.693}
    records = {"a": {0: _rec(0, 100, flat), 1: _rec(100, 100, flat, 100)},
               "b": {0: _rec(0, 100, flat), 1: _rec(150, 100, {"base_rate": 0.693, "stack": 0.600}, 150)}}
    out = pooled_choice(records, {"select_margin": 0.001})
    assert out["a"][1]["choice"] == "base_rate" and out["a"][1]["selection"]["stack"] == pytest.approx(0.693)
    assert out["b"][1]["choice"] == "stack"           # b's own fold 1 and a's fold 1 (it started earlier)
    # a fold without losses of its own (None) still gets the pooled choice of what is known
    records["a"][1]["loss"] = None
    assert pooled_choice(records, {"select_margin": 0.001})["a"][1]["coins"] == 2


def test_noise_coins_get_the_base_rate_where_per_coin_choices_chase_luck():
    pooled, out = _run(signal=0.0)
    for c, (d, _, served) in out.items():
        folds = d[0]
        for k in (1, 2, 3):
            assert pooled[c][k]["choice"] == "base_rate" and served[2][k]["choice"] == "base_rate"
            test = folds == k
            np.testing.assert_array_equal(served[0][test], np.full(test.sum(), served[2][k]["base_rate"]))
    # the margin alone (no standard-error guard), coin by coin, picks lucky candidates on these coins and
    # loses to the pooled, guarded choice out of sample
    lucky = {c: walk_forward_stack(*d, FAMS, seed=1, params={**PARAMS, "select_z": 0.0}) for c, (d, _, _) in out.items()}
    assert {lucky[c][2][k]["choice"] for c in lucky for k in (1, 2, 3)} - {"base_rate"}
    later = [(d[3][d[0] >= 1], lucky[c][0][d[0] >= 1], served[0][d[0] >= 1]) for c, (d, _, served) in out.items()]
    y = np.concatenate([t[0] for t in later])
    assert _log_loss(y, np.concatenate([t[2] for t in later])) < _log_loss(y, np.concatenate([t[1] for t in later]))


def test_the_member_with_the_signal_on_every_coin_is_picked():
    pooled, out = _run(signal=0.5)
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
    assert not np.array_equal(a[folds == 3], b[folds == 3])       # the base rate of fold 3 did learn them
    # the base-rate candidate is scored at each meta row with the climatology realized before that row
    rec = stack_selection(folds, P, R, y, FAMS, 1, climatology=clim, **kw)[2]
    meta = (folds < 2) & (label_time < row_time[folds == 2].min())
    q = np.array([clim[1][clim[0] < r].mean() for r in row_time[meta]])
    np.testing.assert_allclose(rec["rows"]["base_rate"], -(y[meta] * np.log(q) + (1 - y[meta]) * np.log(1 - q)))
    assert rec["count"]["base_rate"] == meta.sum() and rec["count"]["stack"] == round(0.3 * meta.sum())
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
