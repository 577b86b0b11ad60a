"""Hindcast / forward checks on a hand-made calendar."""

import json

import numpy as np

from coinline.evaluation import forward, hindcast, rolling_summary, score_forward

H = 3_600_000
D = 24 * H


def _calendar():
    times = np.arange(0, 5 * D + 1, H, dtype=np.int64)  # hourly closes, day 0 .. day 5
    p = np.linspace(0.2, 0.8, times.size)
    y = (np.arange(times.size) % 3 == 0).astype(float)
    return times, p, y


def test_hindcast_picks_the_row_at_t_minus_2d():
    times, p, y = _calendar()
    T = 4 * D
    [e] = hindcast(times, p, y, window_ends_ms=[T], interval_ms=H, horizon_bars=24)
    i = int(np.where(times == 2 * D)[0][0])
    assert e["pred_time_ms"] == 2 * D and e["cutoff_ms"] == 2 * D
    assert e["target_time_ms"] == 3 * D == T - D  # "prediction for T-1d"
    assert e["scored"] and e["reason"] is None
    assert e["p"] == p[i] and e["y"] == int(y[i])
    assert e["hit"] == ((p[i] >= 0.5) == (y[i] == 1))
    assert e["brier"] == (p[i] - y[i]) ** 2
    json.dumps(e, allow_nan=False)
    # a window end between bars uses the last row at or before the cutoff
    [e2] = hindcast(times, p, y, window_ends_ms=[T + H // 2], interval_ms=H, horizon_bars=24)
    assert e2["pred_time_ms"] == 2 * D


def test_hindcast_with_gaps_missing_predictions_and_unrealized_targets():
    times, p, y = _calendar()
    keep = (times <= 2 * D - 3 * H) | (times > 2 * D)  # drop the three bars up to the cutoff
    t, pp, yy = times[keep], p[keep].copy(), y[keep]
    out = hindcast(t, pp, yy, window_ends_ms=[4 * D, 10 * H, 4 * D + 5 * H], interval_ms=H, horizon_bars=24)
    assert out[0]["pred_time_ms"] == 2 * D - 3 * H and out[0]["scored"]
    assert out[1]["reason"] == "no_row" and out[1]["pred_time_ms"] is None
    assert out[2]["pred_time_ms"] == 2 * D + 5 * H and out[2]["scored"]
    # horizon longer than the lookback: outcome not known at T
    [late] = hindcast(times, p, y, window_ends_ms=[4 * D], interval_ms=H, horizon_bars=72)
    assert late["target_time_ms"] == 5 * D and not late["scored"] and late["reason"] == "not_realized"
    # no out-of-sample prediction at that row
    p_nan = p.copy()
    p_nan[times == 2 * D] = np.nan
    [none] = hindcast(times, p_nan, y, window_ends_ms=[4 * D], interval_ms=H, horizon_bars=24)
    assert none["reason"] == "no_prediction" and none["p"] is None
    # unknown label
    y_nan = y.copy()
    y_nan[times == 2 * D] = np.nan
    [nolab] = hindcast(times, p, y_nan, window_ends_ms=[4 * D], interval_ms=H, horizon_bars=24)
    assert nolab["reason"] == "no_label"


def test_forward_and_score_forward():
    times, p, _ = _calendar()
    p_by_h = {1: p, 4: 1 - p, 24: np.full(times.size, np.nan)}
    T = 3 * D + H // 2
    pending = forward(times, p_by_h, T_ms=T, horizons=[1, 4, 24], interval_ms=H)
    i = int(np.where(times == 3 * D)[0][0])
    assert [(e["horizon_bars"], e["pred_time_ms"], e["target_time_ms"]) for e in pending] == [
        (1, 3 * D, 3 * D + H), (4, 3 * D, 3 * D + 4 * H)]  # horizon 24 has no prediction there
    assert pending[0]["p"] == p[i] and pending[1]["p"] == 1 - p[i]
    labels = {1: {3 * D: 1}, 4: {3 * D: 0}}
    assert len(score_forward(pending, labels, as_of_ms=3 * D + 2 * H)) == 1  # only horizon 1 due
    scored = score_forward(pending, labels)
    assert [s["y"] for s in scored] == [1, 0]
    assert scored[0]["hit"] == (p[i] >= 0.5) and scored[1]["hit"] == (1 - p[i] < 0.5)
    assert score_forward(pending, {1: {}, 4: {3 * D: float("nan")}}) == []
    json.dumps(scored, allow_nan=False)
    assert forward(times, p, T_ms=-1, horizons=[1], interval_ms=H) == []


def test_rolling_summary():
    times, p, y = _calendar()
    windows = [hindcast(times, p, y, window_ends_ms=[T], interval_ms=H, horizon_bars=24)
               for T in (3 * D, 4 * D, 5 * D, 10 * H)]
    s = rolling_summary(windows)
    scored = [e for w in windows for e in w if e["scored"]]
    assert s["n_entries"] == 4 and s["count"] == len(scored) == 3
    assert s["hit_rate"] == sum(e["hit"] for e in scored) / 3
    assert s["mean_brier"] == sum(e["brier"] for e in scored) / 3
    assert rolling_summary([])["count"] == 0 and rolling_summary([])["hit_rate"] is None
    assert rolling_summary([e for w in windows for e in w]) == s  # flat list works too
