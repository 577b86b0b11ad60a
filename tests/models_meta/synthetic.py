"""Out-of-fold member predictions for the combiner tests: members of pure noise around 0.5 and, with
`signal`, lightgbm carrying the true P(up) (logit sd `signal`)."""

import numpy as np


def coin(seed, families, signal=0.0, n_folds=4, per_fold=500, regimes=True):
    """(fold ids, P (rows, members), regime posteriors (rows, 4) or None, labels) of one synthetic coin."""
    rng = np.random.default_rng(seed)
    n = n_folds * per_fold
    truth = 1 / (1 + np.exp(-signal * rng.standard_normal(n)))
    y = (rng.random(n) < truth).astype(float)
    P = 1 / (1 + np.exp(-0.3 * rng.standard_normal((n, len(families)))))
    if signal:
        P[:, families.index("lightgbm")] = truth
    R = rng.dirichlet(np.ones(4), size=n) if regimes else None
    return np.repeat(np.arange(n_folds), per_fold), P, R, y
