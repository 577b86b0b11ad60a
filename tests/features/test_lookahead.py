"""The look-ahead check: the real builder passes, planted peeking features are caught and named."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from coinline.features import build_coin_frames, default_cut_times, lookahead_check
from coinline.features.lookahead import LookaheadReport
from coinline.training.config import TrainConfig
from tests.features import market_frames

CFG = TrainConfig()


def _cuts(frames: dict[str, pd.DataFrame], n: int = 3) -> list[int]:
    times = np.concatenate([g["open_time"].dt.as_unit("ms").array.asi8 for g in frames.values()])
    return default_cut_times(times, n)


def _with_feature(frames, name, fn):
    out = {}
    for s, f in frames.items():
        out[s] = dataclasses.replace(f, F=np.column_stack([f.F, fn(f)]), feature_names=f.feature_names + (name,))
    return out


def peeking_builder(candles, cfg, **kw):
    """The real frames plus a feature that uses the NEXT bar's close (shift(-1))."""
    frames = build_coin_frames(candles, cfg, **kw)
    return _with_feature(frames, "peek_next_close",
                         lambda f: np.log(pd.Series(f.close).shift(-1).to_numpy() / f.close))


def centered_builder(candles, cfg, **kw):
    """A subtler leak: a centered rolling mean (uses 2 later bars, finite right up to the cut - 2)."""
    frames = build_coin_frames(candles, cfg, **kw)
    return _with_feature(frames, "centered_mean",
                         lambda f: pd.Series(f.close).rolling(5, center=True).mean().to_numpy() / f.close)


def test_real_builder_passes_on_the_replay_market():
    frames = market_frames()
    cuts = _cuts(frames)
    assert len(cuts) == 3
    rep = lookahead_check(frames, CFG, cuts)
    assert rep.passed, rep.to_dict()
    assert rep.violations == [] and rep.rows_compared > 0 and rep.features_checked >= 30
    assert rep.symbols == sorted(frames)


def test_real_builder_passes_with_gaps():
    frames = market_frames("CAD", ("BTC", "ETH", "SOL"))
    rep = lookahead_check(frames, CFG, _cuts(frames))          # quote read from the candles
    assert rep.passed, rep.to_dict()
    assert rep.to_dict() == lookahead_check(frames, CFG, _cuts(frames), quote="CAD", interval="1h").to_dict()


def test_planted_next_bar_feature_is_caught_and_named():
    frames = market_frames()
    cuts = _cuts(frames)
    rep = lookahead_check(frames, CFG, cuts, builder=peeking_builder)
    assert not rep.passed
    assert rep.bad_features() == ["peek_next_close"]
    v = rep.violations[0]
    assert {x.symbol for x in rep.violations} == set(frames)
    assert {x.cut for x in rep.violations} == set(cuts)
    assert v.first_bad_time == v.cut            # the row at the cut has no next bar in the truncated data
    assert v.max_abs_diff == float("inf")
    d = rep.to_dict()
    json.dumps(d)
    assert d["passed"] is False and d["bad_features"] == ["peek_next_close"]
    assert d["violations"][0]["first_bad_time"].endswith("Z")


def test_centered_window_leak_is_caught():
    frames = market_frames(symbols=("BTC", "ETH"))
    cuts = _cuts(frames, 2)
    rep = lookahead_check(frames, CFG, cuts, builder=centered_builder)
    assert rep.bad_features() == ["centered_mean"]
    assert all(v.first_bad_time == v.cut - 3_600_000 for v in rep.violations)   # row cut-1 needs bar cut+1


def test_wrong_target_is_caught():
    """A target that silently reads a different horizon near the end of the data differs after truncation."""
    def bad_targets(candles, cfg, **kw):
        frames = build_coin_frames(candles, cfg, **kw)
        out = {}
        for s, f in frames.items():
            ret = f.targets[1]["ret"].copy()
            lc = np.log(f.close)
            ret[-1:] = lc[-1] - lc[-2]            # "fill" the unknown last target with a past return
            out[s] = dataclasses.replace(f, targets={**f.targets, 1: {**f.targets[1], "ret": ret}})
        return out

    frames = market_frames(symbols=("BTC", "ETH"))
    rep = lookahead_check(frames, CFG, _cuts(frames, 1), builder=bad_targets)
    assert rep.bad_features() == ["target:ret_h1"]


def test_report_of_a_pass_serializes():
    rep = LookaheadReport(passed=True, violations=[], cuts=[1_700_000_000_000], symbols=["BTC"])
    assert json.loads(json.dumps(rep.to_dict()))["cuts"] == ["2023-11-14T22:13:20Z"]
