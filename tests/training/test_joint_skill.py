"""The run's pooled skill treats coins as correlated: loss differences are summed per time stamp and blocks
of time are resampled (all coins together), so a market factor shared by the coins does not turn noise
into "significant skill" the way bootstrapping the concatenated coins does."""

from __future__ import annotations

import math

import numpy as np

from coinline.evaluation.baselines import chance_test
from coinline.training.skill import pooled_skill

BLOCK, N_BOOT, COINS, TIMES = 24, 200, 10, 360


def _pooled(seed: int, rho: float = 0.8):
    """10 coins driven by one market factor; an uninformative model vs an equally uninformative baseline
    (a shared per-time tilt, mirrored), so E[loss_model - loss_baseline] = 0 exactly."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal(TIMES)
    r = math.sqrt(rho) * m[:, None] + math.sqrt(1 - rho) * rng.standard_normal((TIMES, COINS))
    y = (r > 0).astype(int)
    tilt = rng.normal(0, 0.08, (TIMES, 1)) + rng.normal(0, 0.02, (TIMES, COINS))
    p, base = np.clip(0.5 + tilt, 0.1, 0.9), np.clip(0.5 - tilt, 0.1, 0.9)
    t = np.arange(TIMES, dtype=np.int64) * 3_600_000
    parts = {"y": [y[:, c] for c in range(COINS)], "p": [p[:, c] for c in range(COINS)],
             "base": [base[:, c] for c in range(COINS)], "t": [t] * COINS}
    return {(4, "noise"): parts}, (y, p, base)


def test_correlated_coins_do_not_make_noise_significant():
    seeds = range(40)
    joint = naive = 0
    for s in seeds:
        pooled, (y, p, base) = _pooled(s)
        row = pooled_skill(pooled, seed=s, block=BLOCK)["by_model"]["4/noise"]
        assert row["chance"]["n_times"] == TIMES and row["chance"]["n"] == TIMES * COINS
        joint += row["chance"]["p_value"] <= 0.05
        yc, pc, bc = (a.T.ravel() for a in (y, p, base))   # the coins concatenated, as if independent
        naive += chance_test(yc, pc, bc, n_boot=N_BOOT, block=BLOCK, seed=s)["p_value"] <= 0.05
    assert joint / len(seeds) <= 0.15          # alpha = 0.05 plus a binomial allowance for 40 seeds
    assert naive > joint


def test_real_skill_is_still_found():
    pooled, (y, _, _) = _pooled(7)
    parts = pooled[(4, "noise")]
    rng = np.random.default_rng(1)
    right = rng.random((TIMES, COINS)) < 0.7                                 # knows the sign 70% of the time
    parts["p"] = [np.where((y[:, c] == 1) == right[:, c], 0.6, 0.4) for c in range(COINS)]
    parts["base"] = [np.full(TIMES, 0.5)] * COINS
    row = pooled_skill(pooled, seed=7, block=BLOCK)["by_model"]["4/noise"]
    assert row["significant"] and row["p_value_holm"] <= 0.05
