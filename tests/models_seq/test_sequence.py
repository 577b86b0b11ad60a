"""Sequence specialists (LSTM / Transformer): skill on a lagged pattern, calibration on noise, causality,
train-only scaler, bit-identical determinism, early stopping with best-weight restore, auxiliary heads."""

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from coinline.models.sequence import (
    LSTMModel,
    SequenceModel,
    TransformerModel,
    make_sequence_model,
)
from coinline.training.config import SequenceConfig

FAMILIES = ("lstm", "transformer")
FAST = {"window": 16, "hidden": 16, "epochs": 6, "batch": 64, "patience": 2, "lr": 5e-3,
        "max_train_samples": 1500}
N, D = 2400, 8
TRAIN = np.arange(0, 1600)
CALIB = np.arange(1600, 2000)
TEST = np.arange(2000, N)


def _series(signal: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, D)).astype(np.float32) * 3.0 + 5.0   # off-centre: the scaler matters
    z = rng.standard_normal(N)
    if signal:  # forward return driven by a lagged feature pattern (rows i-2 and i-4 only)
        lagged = np.zeros(N)
        lagged[4:] = (F[2:-2, 0] - 5.0) / 3.0 - (F[:-4, 1] - 5.0) / 3.0
        z = 1.5 * lagged + 0.5 * z
    ret = 0.01 * z
    targets = {"dir": (ret > 0).astype(np.int64), "ret": ret, "risk": np.abs(z)}
    return F, targets


def _fit(family, F, targets, seed=7, **over):
    return make_sequence_model(family, {**FAST, **over}).fit(F, targets, train_idx=TRAIN, calib_idx=CALIB,
                                                             seed=seed)


@pytest.fixture(scope="module")
def signal_models():
    F, t = _series(signal=True)
    return F, t, {fam: _fit(fam, F, t) for fam in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_beats_base_rate_out_of_sample_on_a_lagged_pattern(signal_models, family):
    F, t, models = signal_models
    p = models[family].predict_proba(F, TEST)
    y = t["dir"][TEST]
    base = np.full(len(y), t["dir"][CALIB].mean())
    assert p.shape == (len(TEST),) and np.all((p > 0) & (p < 1))
    assert log_loss(y, p) < log_loss(y, base) - 0.05
    assert ((p > 0.5) == y).mean() > 0.65


@pytest.mark.parametrize("family", FAMILIES)
def test_pure_noise_stays_near_the_base_rate(family):
    F, t = _series(signal=False, seed=1)
    p = _fit(family, F, t).predict_proba(F, TEST)
    base = t["dir"][CALIB].mean()
    assert np.abs(p - base).mean() < 0.05
    assert np.abs(p - base).max() < 0.15


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_windows_later_rows_never_matter(signal_models, family):
    F, _, models = signal_models
    m = models[family]
    i = 2100
    idx = np.arange(i - 50, i + 1)
    before = m.predict_proba(F, idx)
    extra_before = m.predict_extra(F, idx)
    G = F.copy()
    G[i + 1:] = np.random.default_rng(5).standard_normal(G[i + 1:].shape) * 50.0
    np.testing.assert_array_equal(m.predict_proba(G, idx), before)
    for k, v in m.predict_extra(G, idx).items():
        np.testing.assert_array_equal(v, extra_before[k])
    H = F.copy()
    H[i - 2] += 10.0   # inside row i's window
    assert m.predict_proba(H, [i])[0] != before[-1]
    np.testing.assert_array_equal(m.predict_proba(H, idx[:-3]), before[:-3])   # rows before i-2 unaffected


def test_rows_without_a_full_window_get_the_calibration_base_rate(signal_models):
    F, t, models = signal_models
    m = models["lstm"]
    w = m.params["window"]
    idx = np.array([0, w - 2, w - 1, 100])
    p = m.predict_proba(F, idx)
    assert p[0] == p[1] == pytest.approx(t["dir"][CALIB].mean())
    extra = m.predict_extra(F, idx)
    for v in extra.values():
        assert np.isnan(v[:2]).all() and np.isfinite(v[2:]).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_extra_shapes_finite_and_destandardized(signal_models, family):
    F, t, models = signal_models
    extra = models[family].predict_extra(F, TEST)
    assert set(extra) == {"expected_move", "risk"}
    for v in extra.values():
        assert v.shape == (len(TEST),) and v.dtype == np.float64 and np.isfinite(v).all()
    # expected move is in log-return units (scale 0.01 here) and tracks the realized return
    assert np.abs(extra["expected_move"]).max() < 0.1
    assert np.corrcoef(extra["expected_move"], t["ret"][TEST])[0, 1] > 0.3
    assert 0.2 < extra["risk"].mean() < 3.0     # risk targets are |z| (mean ~1.3 here)
    assert models[family].predict_extra(F, np.array([], dtype=np.int64))["risk"].shape == (0,)


def test_scaler_uses_train_rows_only():
    F, t = _series(signal=True)
    cheap = {"epochs": 1, "max_train_samples": 200}
    a = _fit("lstm", F, t, **cheap)
    G = F.copy()
    G[CALIB[0]:] = G[CALIB[0]:] * 100.0 - 7.0     # calib and test rows only
    b = _fit("lstm", G, t, **cheap)
    np.testing.assert_array_equal(a.mean_, b.mean_)
    np.testing.assert_array_equal(a.std_, b.std_)
    np.testing.assert_allclose(a.mean_, F[TRAIN].mean(axis=0), rtol=1e-6)
    H = F.copy()
    H[TRAIN[10]] += 1000.0
    assert not np.array_equal(_fit("lstm", H, t, **cheap).mean_, a.mean_)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_is_bit_identical_and_other_seed_differs(family):
    F, t = _series(signal=True, seed=3)
    cheap = {"epochs": 2, "max_train_samples": 600}
    a, b = _fit(family, F, t, seed=11, **cheap), _fit(family, F, t, seed=11, **cheap)
    assert a.to_bytes() == b.to_bytes()
    np.testing.assert_array_equal(a.predict_proba(F, TEST), b.predict_proba(F, TEST))
    c = _fit(family, F, t, seed=12, **cheap)
    assert c.to_bytes() != a.to_bytes()
    wa = dict(a.net_.state_dict())
    assert any(not torch.equal(wa[k], v) for k, v in c.net_.state_dict().items())
    # the artifact restores to the same predictions
    r = SequenceModel.from_bytes(a.to_bytes())
    assert isinstance(r, LSTMModel if family == "lstm" else TransformerModel)
    np.testing.assert_array_equal(r.predict_proba(F, TEST), a.predict_proba(F, TEST))
    np.testing.assert_array_equal(r.predict_extra(F, TEST)["risk"], a.predict_extra(F, TEST)["risk"])
    assert r.to_bytes() == a.to_bytes()


def test_early_stopping_on_noise_stops_early_and_restores_best_weights():
    F, t = _series(signal=False, seed=2)
    m = _fit("lstm", F, t, epochs=40, patience=2, hidden=32, lr=2e-2, batch=32, max_train_samples=800)
    assert m.epochs_run_ < 40
    assert len(m.history_) == m.epochs_run_
    assert m.best_epoch_ == int(np.argmin(m.history_)) + 1
    assert m.epochs_run_ == m.best_epoch_ + 2          # stopped after `patience` worse epochs
    # the kept weights are the best epoch's: their calib BCE is the minimum of the history
    from coinline.models.sequence_nets import WindowBuilder
    logit = m._outputs(WindowBuilder(m._standardize(F), m.params["window"]), CALIB, torch.device("cpu"))[0]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logit), torch.from_numpy(t["dir"][CALIB].astype(np.float32)))
    assert float(bce) == pytest.approx(min(m.history_), abs=1e-6)
    assert float(bce) < m.history_[-1]


def test_params_factory_and_runtime_restored():
    assert make_sequence_model("lstm").params["hidden"] == SequenceConfig().hidden
    assert make_sequence_model("transformer", SequenceConfig(hidden=32, heads=4)).params["hidden"] == 32
    assert make_sequence_model("lstm").family == "lstm"
    assert make_sequence_model("transformer").family == "transformer"
    with pytest.raises(ValueError):
        make_sequence_model("gru")
    with pytest.raises(ValueError):
        make_sequence_model("lstm", {"hidden_size": 8})
    with pytest.raises(ValueError):
        make_sequence_model("transformer", {"hidden": 10, "heads": 3})
    with pytest.raises(RuntimeError):
        make_sequence_model("lstm").predict_proba(np.zeros((5, 2)), [4])
    F, t = _series(signal=False)
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    state = torch.get_rng_state()
    _fit("transformer", F, t, epochs=1, max_train_samples=100)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.get_rng_state(), state)


def test_a_device_that_is_not_cpu_or_cuda_is_refused_by_name():
    with pytest.raises(ValueError, match="device must be cpu, cuda or cuda:N, got 'gpu'"):
        make_sequence_model("lstm", {**FAST, "device": "gpu"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("family", FAMILIES)
def test_asking_for_cuda_without_a_gpu_fails_instead_of_quietly_using_the_cpu(family):
    F, targets = _series(signal=False)
    with pytest.raises(RuntimeError, match=r"sequence.device='cuda' but torch .* sees no CUDA GPU"):
        _fit(family, F, targets, device="cuda")


def test_the_device_is_part_of_the_training_config_and_its_hash():
    from coinline.training.config import TrainConfig, train_config_from_json

    cfg = train_config_from_json('{"sequence": {"device": "cuda:1"}}')
    assert cfg.sequence.device == "cuda:1" and TrainConfig().sequence.device == "cpu"
    assert cfg.config_hash() != TrainConfig().config_hash()
