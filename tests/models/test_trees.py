"""Tree specialists: real signal is learned, noise stays at the base rate, fits are reproducible,
and calibration / prediction only ever look at the rows they are allowed to."""

import numpy as np
import pytest

from coinline.models.calibration import ISOTONIC_CLIP, PROB_CLIP, reliability, resolve_method
from coinline.models.trees import (
    DEFAULT_PARAMS,
    SEARCH_SPACES,
    TREE_FAMILIES,
    LightGBMModel,
    RandomForestModel,
    XGBoostModel,
    from_bytes,
    make_tree_model,
)

N, D = 3000, 10
TRAIN, CALIB, TEST = np.arange(0, 1800), np.arange(1800, 2400), np.arange(2400, N)


def _log_loss(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _base_log_loss(y_train, y_test):
    return _log_loss(y_test, np.full(len(y_test), y_train.mean()))


def _data(signal: float, seed: int = 0, bias: float = 0.0):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(N, D))
    logit = bias + signal * (F[:, 0] - 0.5 * F[:, 1] * F[:, 2])
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    targets = {"dir": y, "ret": rng.normal(scale=0.01, size=N), "risk": rng.random(N)}
    return F, targets


@pytest.fixture(scope="module")
def signal_data():
    return _data(signal=1.5, seed=1)


@pytest.fixture(scope="module")
def noise_data():
    return _data(signal=0.0, seed=2, bias=0.2)   # P(up) ~ 0.55, independent of F


def _fit(family, F, targets, seed=7, params=None, train=TRAIN, calib=CALIB):
    return make_tree_model(family, params).fit(F, targets, train_idx=train, calib_idx=calib, seed=seed)


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_learns_real_signal_out_of_sample(family, signal_data):
    F, targets = signal_data
    y = targets["dir"]
    m = _fit(family, F, targets)
    p = m.predict_proba(F, TEST)
    assert p.shape == (len(TEST),) and p.dtype == np.float64
    assert np.all((p >= PROB_CLIP) & (p <= 1 - PROB_CLIP))
    assert np.mean((p > 0.5) == y[TEST]) > 0.65
    assert _log_loss(y[TEST], p) < _base_log_loss(y[TRAIN], y[TEST]) - 0.05
    assert m.calibration_method_ == "sigmoid"          # 600 calibration rows < 1000
    assert m.n_train_ == len(TRAIN) and m.n_calib_ == len(CALIB)
    assert m.predict_extra(F, TEST) == {}


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_noise_stays_at_the_base_rate(family, noise_data):
    F, targets = noise_data
    y = targets["dir"]
    m = _fit(family, F, targets)
    p = m.predict_proba(F, TEST)
    raw = m.raw_proba(F, TEST)
    base = y[CALIB].mean()
    assert abs(p.mean() - base) < 0.05
    base_ll = _base_log_loss(y[TRAIN], y[TEST])
    assert _log_loss(y[TEST], p) > base_ll - 0.01       # no skill to find
    assert _log_loss(y[TEST], p) < base_ll + 0.02       # and calibration keeps it from hurting
    assert _log_loss(y[TEST], p) < _log_loss(y[TEST], raw) + 0.005
    assert p.std() < 0.07
    if family != "random_forest":                       # boosters overfit noise; Platt shrinks that back
        assert p.std() < 0.5 * raw.std()


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_same_seed_same_model_other_seed_other_model(family, signal_data):
    F, targets = signal_data
    a, b = _fit(family, F, targets, seed=11), _fit(family, F, targets, seed=11)
    np.testing.assert_array_equal(a.predict_proba(F, TEST), b.predict_proba(F, TEST))
    assert a.to_bytes() == b.to_bytes()
    assert a.artifact_sha256() == b.artifact_sha256()
    c = _fit(family, F, targets, seed=12)                # subsampling / bagging depend on the seed
    assert not np.array_equal(a.raw_proba(F, TEST), c.raw_proba(F, TEST))
    assert a.to_bytes() != c.to_bytes()


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_fit_and_predictions_use_only_allowed_rows(family, signal_data):
    F, targets = signal_data
    rng = np.random.default_rng(99)
    changed = TEST[::2]
    F2 = F.copy()
    F2[changed] = rng.normal(size=(len(changed), D)) * 5
    t2 = {k: v.copy() for k, v in targets.items()}
    t2["dir"][TEST] = 1 - t2["dir"][TEST]                # labels outside train/calib are never read
    a, b = _fit(family, F, targets), _fit(family, F2, t2)
    assert a.to_bytes() == b.to_bytes()
    same = TEST[1::2]
    np.testing.assert_array_equal(a.predict_proba(F, same), b.predict_proba(F2, same))
    # a row's prediction depends on that row only: predicting a subset equals the subset of predictions
    full = a.predict_proba(F, TEST)
    np.testing.assert_array_equal(a.predict_proba(F, TEST[5:9]), full[5:9])
    # calibration does read the calibration labels
    t3 = {k: v.copy() for k, v in targets.items()}
    t3["dir"][CALIB] = 1 - t3["dir"][CALIB]
    c = _fit(family, F, t3)
    np.testing.assert_array_equal(a.raw_proba(F, TEST), c.raw_proba(F, TEST))
    assert not np.array_equal(a.predict_proba(F, TEST), c.predict_proba(F, TEST))


def test_calibration_method_choice(signal_data):
    F, targets = signal_data
    big_train, big_calib = np.arange(0, 1900), np.arange(1900, 2900)
    assert _fit("lightgbm", F, targets, train=big_train, calib=big_calib).calibration_method_ == "sigmoid"  # default
    m = _fit("lightgbm", F, targets, params={"calibration": "auto"}, train=big_train, calib=big_calib)
    assert m.calibration_method_ == "isotonic"
    p = m.predict_proba(F, np.arange(2900, N))
    assert np.all((p >= ISOTONIC_CLIP) & (p <= 1 - ISOTONIC_CLIP))
    m = _fit("lightgbm", F, targets, params={"calibration": "sigmoid"}, train=big_train, calib=big_calib)
    assert m.calibration_method_ == "sigmoid"
    m = _fit("xgboost", F, targets, params={"calibration": "none"})
    assert m.calibration_method_ == "none"
    np.testing.assert_array_equal(m.predict_proba(F, TEST), m.raw_proba(F, TEST))
    m = _fit("xgboost", F, targets, calib=np.arange(0))  # no calibration rows: raw probabilities
    assert m.calibration_method_ == "none"
    assert resolve_method("auto", 999) == "sigmoid" and resolve_method("auto", 1000) == "isotonic"
    with pytest.raises(ValueError):
        make_tree_model("xgboost", {"calibration": "magic"})


def test_factory_params_and_round_trip(signal_data):
    F, targets = signal_data
    assert isinstance(make_tree_model("xgboost"), XGBoostModel)
    assert isinstance(make_tree_model("lightgbm"), LightGBMModel)
    assert isinstance(make_tree_model("random_forest"), RandomForestModel)
    with pytest.raises(ValueError):
        make_tree_model("lstm")
    m = make_tree_model("xgboost", {"max_depth": 2})
    assert m.family == "xgboost"
    assert m.params["max_depth"] == 2 and m.params["n_estimators"] == DEFAULT_PARAMS["xgboost"]["n_estimators"]
    assert DEFAULT_PARAMS["xgboost"]["max_depth"] == 4              # defaults are not mutated
    assert set(SEARCH_SPACES) == set(TREE_FAMILIES) == set(DEFAULT_PARAMS)
    with pytest.raises(RuntimeError):
        m.predict_proba(F, TEST)
    m.fit(F, targets, train_idx=TRAIN, calib_idx=CALIB, seed=3)
    back = from_bytes(m.to_bytes())
    np.testing.assert_array_equal(back.predict_proba(F, TEST), m.predict_proba(F, TEST))
    assert m.feature_importances().shape == (D,)
    with pytest.raises(ValueError):
        make_tree_model("xgboost").fit(F, targets, train_idx=TRAIN, calib_idx=TRAIN[-10:], seed=1)


def test_reliability_table():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    r = reliability(y, p, n_bins=10)
    assert r["n"] == 20000 and sum(r["count"]) == 20000 and len(r["edges"]) == 11
    assert r["ece"] < 0.02
    bad = reliability(y, np.clip(p * 0.5 + 0.5, 0, 1), n_bins=10)
    assert bad["ece"] > 0.2
    assert np.isnan(reliability(np.array([1, 0]), np.array([0.05, 0.06]))["frac_pos"][5])
