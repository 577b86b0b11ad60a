"""The stacked meta-learner only ever sees earlier folds' labels, falls back on fold 0, learns to trust
the informative base model, and is deterministic."""

import numpy as np
import pytest

from coinline.models.stacking import StackingMetaLearner, walk_forward_stack

FAMS = ("xgboost", "lightgbm", "random_forest", "lstm", "transformer")


def _log_loss(y, p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _data(seed=0, n_folds=5, per_fold=600):
    """Family 0 (xgboost) is informative (but over-confident); the other four are pure noise."""
    rng = np.random.default_rng(seed)
    n = n_folds * per_fold
    z = 1.2 * rng.standard_normal(n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    probs = np.empty((n, len(FAMS)))
    probs[:, 0] = 1 / (1 + np.exp(-(2.0 * z + 0.3 * rng.standard_normal(n))))
    probs[:, 1:] = 1 / (1 + np.exp(-0.8 * rng.standard_normal((n, len(FAMS) - 1))))
    post = rng.dirichlet(np.ones(4), size=n)
    folds = np.repeat(np.arange(n_folds), per_fold)
    return folds, probs, post, y


def test_fold0_falls_back_to_equal_weight_average():
    folds, P, R, y = _data()
    p, conf, per_fold = walk_forward_stack(folds, P, R, y, FAMS, seed=3)
    f0 = folds == 0
    assert per_fold[0]["fallback"] is True and per_fold[0]["weights"] == {}
    np.testing.assert_array_equal(p[f0], P[f0].mean(axis=1))
    assert all(not per_fold[k]["fallback"] for k in (1, 2, 3, 4))
    assert per_fold[1]["n_train"] == 600 and per_fold[4]["n_train"] == 2400
    np.testing.assert_allclose(conf, np.abs(2 * p - 1))
    assert np.all((p > 0) & (p < 1)) and np.all((conf >= 0) & (conf <= 1))


@pytest.mark.parametrize("k", [1, 2])
def test_a_folds_own_labels_never_reach_its_meta_learner(k):
    folds, P, R, y = _data()
    base, _, _ = walk_forward_stack(folds, P, R, y, FAMS, seed=3)
    y2 = y.copy()
    y2[folds == k] = 1 - y2[folds == k]            # flip every label of fold k
    pert, _, _ = walk_forward_stack(folds, P, R, y2, FAMS, seed=3)
    np.testing.assert_array_equal(pert[folds <= k], base[folds <= k])   # fold k and earlier unchanged
    assert np.max(np.abs(pert[folds > k] - base[folds > k])) > 1e-3     # later folds did learn from it


def test_embargo_via_label_time_drops_unrealized_rows():
    folds, P, R, y = _data()
    row_time = np.arange(len(y))
    h = 24
    base, _, per_fold = walk_forward_stack(folds, P, R, y, FAMS, seed=3, row_time=row_time, label_time=row_time + h)
    assert per_fold[1]["n_train"] == 600 - h       # fold 0's last h labels are realized inside fold 1
    assert per_fold[2]["n_train"] == 1200 - h
    # so flipping them cannot affect fold 1
    y2 = y.copy()
    y2[600 - h:600] = 1 - y2[600 - h:600]
    pert, _, _ = walk_forward_stack(folds, P, R, y2, FAMS, seed=3, row_time=row_time, label_time=row_time + h)
    np.testing.assert_array_equal(pert[folds <= 1], base[folds <= 1])
    # NaN labels (not yet realized) are ignored the same way
    y3 = y.copy()
    y3[600 - h:600] = np.nan
    _, _, pf3 = walk_forward_stack(folds, P, R, y3, FAMS, seed=3)
    assert pf3[1]["n_train"] == 600 - h


def test_weight_concentrates_on_informative_model_and_beats_equal_weight():
    """The stack itself (forced: the selection may keep the informative member alone)."""
    folds, P, R, y = _data()
    p, _, per_fold = walk_forward_stack(folds, P, R, y, FAMS, seed=3, choices={k: "stack" for k in range(5)})
    for k in (2, 3, 4):
        fw = per_fold[k]["family_weights"]
        noise = max(abs(fw[f]) for f in FAMS[1:])
        assert fw["xgboost"] > 0.3 and fw["xgboost"] > 3 * noise, fw
        later = folds == k
        assert _log_loss(y[later], p[later]) < _log_loss(y[later], P[later].mean(axis=1)) - 0.02
    later = folds >= 1
    # it also beats the informative model alone (which is over-confident): stacking recalibrates
    assert _log_loss(y[later], p[later]) < _log_loss(y[later], P[later, 0])


def test_deterministic_weights_and_bytes():
    folds, P, R, y = _data()
    a = walk_forward_stack(folds, P, R, y, FAMS, seed=11)
    b = walk_forward_stack(folds, P, R, y, FAMS, seed=11)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2]
    m1 = StackingMetaLearner({"C": 0.5}, families=FAMS).fit(P, R, y, seed=1)
    m2 = StackingMetaLearner({"C": 0.5}, families=FAMS).fit(P, R, y, seed=1)
    assert m1.weights() == m2.weights()
    assert m1.to_bytes() == m2.to_bytes()
    w = m1.weights()
    assert list(w)[:5] == [f"logit:{f}" for f in FAMS] and "intercept" in w
    assert "logit:lstm*regime:stress" in w and len(w) == 5 + 4 + 20 + 1
    back = StackingMetaLearner.from_bytes(m1.to_bytes())
    np.testing.assert_array_equal(back.predict(P, R)[0], m1.predict(P, R)[0])


def test_single_class_or_tiny_history_falls_back_and_shapes_are_checked():
    _, P, R, _ = _data()
    m = StackingMetaLearner(families=FAMS).fit(P[:100], R[:100], np.ones(100), seed=0)
    assert m.fallback and m.family_weights() == {f: 0.2 for f in FAMS}
    m = StackingMetaLearner(families=FAMS).fit(P[:10], R[:10], np.arange(10) % 2, seed=0)
    assert m.fallback
    with pytest.raises(ValueError):
        StackingMetaLearner(families=FAMS[:3]).fit(P, R, np.zeros(len(P)), seed=0)
    # no regime gating: logits only
    m = StackingMetaLearner(families=FAMS).fit(P, None, (P[:, 0] > 0.5).astype(float), seed=0)
    assert list(m.weights()) == [f"logit:{f}" for f in FAMS] + ["intercept"]


def test_fold0_learns_its_combiner_from_the_warmup_without_its_own_labels():
    folds, P, R, y = _data()
    wP, wy = P[folds == 1][:400], y[folds == 1][:400]          # stands in for fold 0's calibration slice
    warm = {0: (wP, wy)}
    p, _, per_fold = walk_forward_stack(folds, P, R, y, FAMS, seed=3, warmup=warm)
    assert per_fold[0]["fallback"] is False and per_fold[0]["use_regime"] is False
    assert per_fold[0]["choice"] in {"stack", "mean", *(f"member:{f}" for f in FAMS)}
    f0 = folds == 0
    assert not np.array_equal(p[f0], P[f0].mean(axis=1))
    y2 = y.copy()
    y2[f0] = 1 - y2[f0]
    p2, _, _ = walk_forward_stack(folds, P, R, y2, FAMS, seed=3, warmup=warm)
    np.testing.assert_array_equal(p2[f0], p[f0])


def test_the_combiner_is_chosen_on_inner_validation_and_is_not_worse_than_the_best_member():
    """One member is the true probability (calibrated, informative), four are noise: whatever the inner
    validation picks, the ensemble's out-of-sample log loss stays within a hair of that member's."""
    rng = np.random.default_rng(2)
    n_folds, per_fold = 5, 400
    n = n_folds * per_fold
    truth = 1 / (1 + np.exp(-0.6 * rng.standard_normal(n)))
    y = (rng.random(n) < truth).astype(float)
    P = np.column_stack([truth, *(1 / (1 + np.exp(-0.8 * rng.standard_normal((4, n)))))])
    R = rng.dirichlet(np.ones(4), size=n)
    folds = np.repeat(np.arange(n_folds), per_fold)
    p, _, per_fold_info = walk_forward_stack(folds, P, R, y, FAMS, seed=3, params={"C": 0.05})
    for k in range(1, n_folds):
        sel = per_fold_info[k]["selection"]
        assert set(sel) == {"base_rate", "stack", "mean", *(f"member:{f}" for f in FAMS)}
        assert per_fold_info[k]["choice"] == per_fold_info[k]["coin_choice"]
        assert per_fold_info[k]["choice"] in {"member:xgboost", "stack"}   # the informative member, alone or stacked
    later = folds >= 1
    assert _log_loss(y[later], p[later]) <= _log_loss(y[later], P[later, 0]) + 0.002
