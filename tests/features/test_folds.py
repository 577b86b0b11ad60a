"""Walk-forward folds: blocks, purge/embargo in rows and time, calibration slice, modes, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coinline.training.config import FoldConfig, TrainConfig
from coinline.training.folds import folds_for, folds_to_dict, walk_forward

H = 3_600_000
T0 = 1_700_000_000_000 // H * H


def _times(n: int, gaps: dict[int, int] | None = None) -> np.ndarray:
    """n hourly open times; gaps {row: extra hours} pushes row and everything after it later."""
    step = np.ones(n, dtype="int64")
    for row, extra in (gaps or {}).items():
        step[row] += extra
    step[0] = 0
    return T0 + np.cumsum(step) * H


KW = dict(n_folds=4, test_bars=100, min_train_bars=300, embargo_bars=24, calib_fraction=0.2, max_horizon=24)


def _check_fold(f, t, embargo):
    tr, ca, te = f.train_idx, f.calib_idx, f.test_idx
    assert tr.dtype == ca.dtype == te.dtype == np.int64
    # contiguous, ordered, disjoint: train < calib < test
    for idx in (tr, ca, te):
        assert (np.diff(idx) == 1).all()
    assert tr[-1] < ca[0] and ca[-1] < te[0]
    assert not (set(tr) & set(ca)) and not (set(ca) & set(te)) and not (set(tr) & set(te))
    # embargo in rows: no training/calibration label (h <= embargo rows ahead) reaches the next slice
    assert te[0] - ca[-1] > embargo and ca[0] - tr[-1] > embargo
    # and in time
    assert t[te[0]] - t[ca[-1]] > embargo * H and t[ca[0]] - t[tr[-1]] > embargo * H
    assert (f.train_start, f.train_end) == (t[tr[0]], t[tr[-1]])
    assert (f.calib_start, f.calib_end, f.test_start, f.test_end) == (t[ca[0]], t[ca[-1]], t[te[0]], t[te[-1]])
    assert f.embargo_bars == embargo


def test_expanding_folds_blocks_embargo_and_calibration():
    n = 1500
    t = _times(n)
    folds = walk_forward(t, **KW)
    assert [f.index for f in folds] == [0, 1, 2, 3] and [f.block for f in folds] == [0, 1, 2, 3]
    tests = np.concatenate([f.test_idx for f in folds])
    np.testing.assert_array_equal(tests, np.arange(n - 400, n))          # the last n_folds * test_bars rows
    for f in folds:
        _check_fold(f, t, 24)
        assert f.train_idx[0] == 0                                      # expanding
        assert f.calib_idx[-1] == f.test_idx[0] - 24 - 1                # window ends embargo rows before test
        window = f.calib_idx[-1] + 1
        assert len(f.calib_idx) == round(0.2 * window)
        assert f.train_idx[-1] == f.calib_idx[0] - 24 - 1
    sizes = [len(f.train_idx) for f in folds]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_rolling_folds_have_a_fixed_window():
    t = _times(1500)
    folds = walk_forward(t, **{**KW, "mode": "rolling"}, rolling_train_bars=500)
    for f in folds:
        _check_fold(f, t, 24)
        assert f.calib_idx[-1] - f.train_idx[0] + 1 == 500
    assert len({len(f.train_idx) for f in folds}) == 1
    assert folds[1].train_idx[0] == folds[0].train_idx[0] + 100
    # default window: min_train_bars
    f0 = walk_forward(t, **{**KW, "mode": "rolling"})[0]
    assert f0.calib_idx[-1] - f0.train_idx[0] + 1 == 300


def test_time_purge_with_gaps_in_the_rows():
    n = 1500
    t = _times(n)
    folds = walk_forward(t, **KW)
    # irregular rows: the time rule is implied by the row rule on a grid; it binds with a coarser interval
    coarse = walk_forward(t, **KW, interval_ms=2 * H)
    for f, g in zip(folds, coarse, strict=True):
        np.testing.assert_array_equal(f.test_idx, g.test_idx)
        assert t[g.test_idx[0]] - t[g.calib_idx[-1]] > 24 * 2 * H
        assert g.calib_idx[-1] < f.calib_idx[-1]
    gappy = _times(n, {1150: 30, 1050: 5})
    for f in walk_forward(gappy, **KW):
        _check_fold(f, gappy, 24)


def test_fold_dropped_when_training_is_too_short_and_error_when_none_remain():
    t = _times(800)          # 400 test rows; fold 0 trains on 400 - 24 = 376 rows
    folds = walk_forward(t, **{**KW, "min_train_bars": 450})   # fold 1: 500 - 24 = 476 rows
    assert [f.block for f in folds] == [1, 2, 3] and [f.index for f in folds] == [0, 1, 2]
    with pytest.raises(ValueError) as e:
        walk_forward(_times(700), **{**KW, "min_train_bars": 600})
    msg = str(e.value)
    assert "700 rows" in msg and "min_train_bars=600" in msg and "need at least 724 rows" in msg
    with pytest.raises(ValueError, match="leave nothing to train on"):
        walk_forward(_times(400), **KW)


def test_argument_errors():
    t = _times(1500)
    with pytest.raises(ValueError, match="embargo_bars=4 < max_horizon=24"):
        walk_forward(t, **{**KW, "embargo_bars": 4})
    with pytest.raises(ValueError, match="calib_fraction"):
        walk_forward(t, **{**KW, "calib_fraction": 1.0})
    with pytest.raises(ValueError, match="mode"):
        walk_forward(t, **{**KW, "mode": "sliding"})
    with pytest.raises(ValueError, match="strictly increasing"):
        walk_forward(t[::-1], **KW)
    with pytest.raises(ValueError, match="rolling_train_bars=100 < min_train_bars"):
        walk_forward(t, **{**KW, "mode": "rolling"}, rolling_train_bars=100)


def test_no_calibration_slice():
    t = _times(1500)
    for f in walk_forward(t, **{**KW, "calib_fraction": 0.0}):
        assert len(f.calib_idx) == 0 and f.calib_start is None
        assert f.test_idx[0] - f.train_idx[-1] == 25


def test_folds_to_dict_and_from_config():
    t = _times(1500)
    folds = walk_forward(t, **KW)
    d = folds_to_dict(folds)
    json.dumps(d)
    assert d["n_folds"] == 4
    f0 = d["folds"][0]
    assert f0["test"]["start"].endswith("Z") and f0["test"]["rows"] == 100
    assert f0["train"]["first_row"] == 0 and f0["calib"]["last_row"] == folds[0].calib_idx[-1]
    cfg = TrainConfig(folds=FoldConfig(n_folds=2, test_bars=200, min_train_bars=300))
    got = folds_for(t, cfg)
    assert len(got) == 2 and got[0].embargo_bars == 24          # embargo defaults to the longest horizon
