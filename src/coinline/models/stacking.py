"""Leakage-safe stacked meta-learner over OUT-OF-FOLD base predictions, gated by regime posteriors.

How the out-of-fold (OOF) predictions arise inside walk-forward
--------------------------------------------------------------
Walk-forward folds are ordered in time. For fold k the base models (xgboost, lightgbm, random_forest,
lstm, transformer) are fit only on rows before fold k's test block (minus the embargo, so no training
label overlaps the test block) and then predict fold k's test block. Every test-block prediction is
therefore out-of-sample, and concatenating the test blocks gives one OOF prediction per row.

The meta-learner must obey the same rule one level up: the meta-learner that produces fold k's stacked
predictions is fit ONLY on the OOF base predictions and realized labels of folds < k. Those labels are
fully realized before fold k's test start minus the embargo; enforcing that is the caller's job (pass
NaN for a label not yet realized, or give `row_time` / `label_time` to `walk_forward_stack`, which then
drops earlier-fold rows whose label is not realized strictly before fold k's first row). This class only takes arrays.
Fold 0 has no earlier folds. Its combiner is learned on a `warmup` set when the caller gives one: the
fold's own base models' predictions on the calibration slice of its training window (an inner split: those
rows lie after the fitted part and an embargo; only the 2-parameter calibration maps saw their labels), fit
without regime gating (no out-of-sample posteriors exist there). Without a warmup, and for any fold whose
meta training set is too small (< params["min_train_rows"]) or holds a single class, the combiner falls
back to the equal-weight average of the base probabilities (flagged `fallback=True`).

The combiner is CHOSEN, not assumed (`choice`): the meta training rows (in time order) are split into an
inner training part and the last `select_fraction` as inner validation; the stack fitted on the inner part,
the equal-weight mean and every single member are scored there by log loss, and the best one is refitted on
all the rows (a member or the mean need no fitting). So stacking is used only where it paid on data the
stack did not see, and otherwise the combiner is the best member (or the mean): an ensemble that is not
worse than its best member beyond what the inner validation could tell apart.

Features (for k base families and the 4 regime posteriors of `models.regime.REGIMES`)
    logit:{fam}                  logit of the base P(up), clipped to [1e-4, 1 - 1e-4]          (k)
    regime:{r}                   regime posterior                                              (4)
    logit:{fam}*regime:{r}       gating interaction logit(p_fam) * posterior_r                 (4k)
The interactions are how the regime gates the specialists: the effective weight of family `fam` at a row
is  w[logit:fam] + sum_r w[logit:fam*regime:r] * posterior_r  (see `family_weights`).
Model: L2 logistic regression (lbfgs, deterministic) with C = params["C"], on the raw (unstandardized)
features so that the coefficients read directly in logit units.

`predict` returns (p_up, confidence) with confidence = |2 p_up - 1| in [0, 1]: 0 for a coin flip, 1 for
a certain call (the distance of p_up from 0.5, rescaled). The regime posteriors given to `predict` are used
only by a combiner fitted with them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from coinline.models.base import FAMILIES, derive_seed, row_linear
from coinline.models.regime import N_REGIMES, REGIMES

CLIP = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), CLIP, 1.0 - CLIP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))   # overflow-free, exact enough for probabilities


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=float), CLIP, 1.0 - CLIP)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


class StackingMetaLearner:
    """L2 logistic regression over logits of OOF base probabilities, regime posteriors and their products.

    params: C (default 1.0), max_iter (1000), tol (1e-6), min_train_rows (50): fewer usable rows (or one
    class only) -> fallback to the equal-weight average of base probabilities; select_fraction (0.3): the
    last share of the rows that chooses between stack, mean and single members (0: always stack).
    Rows with a non-finite base probability, posterior or label are ignored in `fit`.
    `regime_post=None` in fit stacks without regime gating.
    `choice`: "stack", "mean" or "member:<family>"; `selection`: the inner-validation log loss of each.
    """

    DEFAULTS: Mapping[str, Any] = {"C": 1.0, "max_iter": 1000, "tol": 1e-6, "min_train_rows": 50,
                                   "select_fraction": 0.3}

    def __init__(self, params: Mapping[str, Any] | None = None, families: Sequence[str] = FAMILIES):
        self.params = {**self.DEFAULTS, **(params or {})}
        self.families = tuple(families)
        if not self.families or len(set(self.families)) != len(self.families):
            raise ValueError("families must be non-empty and unique")
        self.fallback = True
        self.choice = "mean"
        self.selection: dict[str, float] = {}
        self.use_regime: bool | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.n_train = 0
        self.seed: int | None = None

    # -- features
    def feature_names(self, use_regime: bool | None = None) -> list[str]:
        use_regime = self.use_regime if use_regime is None else use_regime
        names = [f"logit:{f}" for f in self.families]
        if use_regime:
            names += [f"regime:{r}" for r in REGIMES]
            names += [f"logit:{f}*regime:{r}" for f in self.families for r in REGIMES]
        return names

    def _check(self, base_probs: np.ndarray, regime_post: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        P = np.asarray(base_probs, dtype=float)
        if P.ndim != 2 or P.shape[1] != len(self.families):
            raise ValueError(f"base_probs must be (n, {len(self.families)}) in families order {self.families}")
        if regime_post is None:
            return P, None
        R = np.asarray(regime_post, dtype=float)
        if R.shape != (len(P), N_REGIMES):
            raise ValueError(f"regime_post must be (n, {N_REGIMES}) aligned with base_probs")
        return P, R

    @staticmethod
    def _features(P: np.ndarray, R: np.ndarray | None) -> np.ndarray:
        L = _logit(P)
        if R is None:
            return L
        inter = (L[:, :, None] * R[:, None, :]).reshape(len(L), -1)   # family-major, regime-minor
        return np.hstack([L, R, inter])

    # -- fit / predict
    def fit(self, base_probs: np.ndarray, regime_post: np.ndarray | None, y: np.ndarray, *,
            seed: int) -> StackingMetaLearner:
        P, R = self._check(base_probs, regime_post)
        y = np.asarray(y, dtype=float)
        if len(y) != len(P):
            raise ValueError("y must have one label per row")
        self.seed = int(seed)
        self.use_regime = R is not None
        ok = np.isfinite(y) & np.all(np.isfinite(P), axis=1)
        if R is not None:
            ok &= np.all(np.isfinite(R), axis=1)
        if np.any((y[ok] != 0) & (y[ok] != 1)):
            raise ValueError("y must be 0/1 (NaN for unrealized labels)")
        self.n_train = int(ok.sum())
        yk = y[ok].astype(np.int64)
        self.coef_, self.intercept_, self.selection = None, 0.0, {}
        if not self._viable(yk):
            self.fallback, self.choice = True, "mean"
            return self
        self.fallback = False
        Pk, Rk = P[ok], None if R is None else R[ok]
        self.choice = self._select(Pk, Rk, yk)
        if self.choice == "stack":
            self.coef_, self.intercept_ = self._fit_stack(Pk, Rk, yk)
        return self

    def _viable(self, y: np.ndarray) -> bool:
        return len(y) >= int(self.params["min_train_rows"]) and len(np.unique(y)) == 2

    def _fit_stack(self, P: np.ndarray, R: np.ndarray | None, y: np.ndarray) -> tuple[np.ndarray, float]:
        model = LogisticRegression(C=float(self.params["C"]), solver="lbfgs", max_iter=int(self.params["max_iter"]),
                                   tol=float(self.params["tol"]), random_state=self.seed)
        with threadpool_limits(limits=1):   # single-threaded BLAS: bit-identical across machines, no oversubscription
            model.fit(self._features(P, R), y)
        return np.asarray(model.coef_[0], dtype=float), float(model.intercept_[0])

    def _select(self, P: np.ndarray, R: np.ndarray | None, y: np.ndarray) -> str:
        """Stack, mean or the best single member, by log loss on the last `select_fraction` of the rows."""
        frac = float(self.params["select_fraction"])
        cut = len(y) - int(round(frac * len(y)))
        if frac <= 0 or not self._viable(y[:cut]) or len(np.unique(y[cut:])) < 2:
            return "stack"
        coef, b = self._fit_stack(P[:cut], None if R is None else R[:cut], y[:cut])
        Pv, Rv, yv = P[cut:], None if R is None else R[cut:], y[cut:]
        cands = {"stack": _sigmoid(row_linear(self._features(Pv, Rv), coef, b)), "mean": Pv.mean(axis=1)}
        cands.update({f"member:{f}": Pv[:, i] for i, f in enumerate(self.families)})
        self.selection = {name: _log_loss(yv, p) for name, p in cands.items()}
        return min(self.selection, key=lambda k: (self.selection[k], k != "stack", k))

    def predict(self, base_probs: np.ndarray, regime_post: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(p_up, confidence); confidence = |2 p_up - 1|. Fallback: p_up = mean of base probabilities."""
        P, R = self._check(base_probs, regime_post)
        if self.choice == "stack":
            if self.use_regime and R is None:
                raise ValueError("this meta-learner was fit with regime posteriors: give regime_post")
            p = _sigmoid(row_linear(self._features(P, R if self.use_regime else None), self.coef_,
                                    self.intercept_))
        elif self.choice.startswith("member:"):
            p = P[:, self.families.index(self.choice.split(":", 1)[1])].copy()
        else:
            p = P.mean(axis=1)
        return p, np.abs(2.0 * p - 1.0)

    # -- inspection / artifact
    def weights(self) -> dict[str, float]:
        """Feature name -> coefficient, plus "intercept"; {} unless the combiner is the stack."""
        if self.choice != "stack":
            return {}
        out = {name: float(c) for name, c in zip(self.feature_names(), self.coef_, strict=True)}
        out["intercept"] = float(self.intercept_)
        return out

    def family_weights(self, regime_post: np.ndarray | None = None) -> dict[str, float]:
        """Effective logit weight per family: w[logit:f] + sum_r w[logit:f*regime:r] * mean posterior_r
        (mean over the given rows; uniform posteriors if none). Mean: 1/k each; a member: 1 for it, 0 else."""
        k = len(self.families)
        if self.choice == "mean":
            return {f: 1.0 / k for f in self.families}
        if self.choice.startswith("member:"):
            return {f: float(self.choice == f"member:{f}") for f in self.families}
        w = self.coef_
        eff = w[:k].copy()
        if self.use_regime:
            rbar = (np.full(N_REGIMES, 1.0 / N_REGIMES) if regime_post is None
                    else np.asarray(regime_post, dtype=float).reshape(-1, N_REGIMES).mean(axis=0))
            eff += w[k + N_REGIMES:].reshape(k, N_REGIMES) @ rbar
        return {f: float(v) for f, v in zip(self.families, eff, strict=True)}

    def to_bytes(self) -> bytes:
        doc = {
            "kind": "stacking_meta_learner", "families": list(self.families), "regimes": list(REGIMES),
            "params": dict(self.params), "seed": self.seed, "fallback": self.fallback, "choice": self.choice,
            "selection": self.selection, "use_regime": self.use_regime, "n_train": self.n_train,
            "feature_names": self.feature_names() if self.choice == "stack" else [],
            "coef": [] if self.coef_ is None else self.coef_.tolist(), "intercept": self.intercept_,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> StackingMetaLearner:
        doc = json.loads(blob)
        self = cls(doc["params"], families=tuple(doc["families"]))
        self.seed, self.fallback, self.n_train = doc["seed"], doc["fallback"], doc["n_train"]
        self.use_regime = doc["use_regime"]
        self.choice = doc.get("choice", "mean" if self.fallback else "stack")
        self.selection = doc.get("selection", {})
        self.coef_ = np.asarray(doc["coef"], dtype=float) if self.choice == "stack" else None
        self.intercept_ = float(doc["intercept"])
        return self


def walk_forward_stack(fold_ids: np.ndarray, base_probs: np.ndarray, regime_post: np.ndarray | None,
                       y: np.ndarray, families: Sequence[str], seed: int, *,
                       params: Mapping[str, Any] | None = None, row_time: np.ndarray | None = None,
                       label_time: np.ndarray | None = None, models: list | None = None,
                       warmup: Mapping[Any, tuple[np.ndarray, np.ndarray]] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Stack OOF base predictions fold by fold (fold ids ascend in time), never using a fold's own labels.

    Fold f's predictions come from a meta-learner fit on rows with fold_id < f only (y NaN = unrealized,
    ignored). With `row_time` (decision time per row) and `label_time` (time its label is realized), an
    earlier-fold row is also dropped unless label_time < the first row_time of fold f (realized strictly before): the embargo.
    Returns (p_up, confidence, per_fold) where per_fold[f] = {"fallback", "n_train", "weights",
    "family_weights"}; fold 0 (and any fold without enough realized history) has fallback=True and
    p_up = the equal-weight average of the base probabilities.
    `models`, when given a list, receives each fold's fitted meta-learner in fold order (the last one is
    the deployable combiner: it made the last test fold's predictions).
    `warmup[f] = (base_probs, y)`: rows a fold may learn its combiner from when it has too little realized
    earlier-fold history (fold 0: its models' predictions on its calibration slice); fit without regime.
    """
    fold_ids = np.asarray(fold_ids)
    P = np.asarray(base_probs, dtype=float)
    y = np.asarray(y, dtype=float)
    R = None if regime_post is None else np.asarray(regime_post, dtype=float)
    if len(fold_ids) != len(P) or len(y) != len(P) or (R is not None and len(R) != len(P)):
        raise ValueError("fold_ids, base_probs, regime_post and y must be row-aligned")
    if (row_time is None) != (label_time is None):
        raise ValueError("give row_time and label_time together")
    if row_time is not None:
        row_time, label_time = np.asarray(row_time), np.asarray(label_time)
        if len(row_time) != len(P) or len(label_time) != len(P):
            raise ValueError("row_time / label_time must be row-aligned")

    p_up = np.full(len(P), np.nan)
    conf = np.full(len(P), np.nan)
    per_fold: dict = {}
    for f in np.unique(fold_ids):                        # ascending
        test = fold_ids == f
        train = fold_ids < f
        if row_time is not None:
            train &= label_time < row_time[test].min()
        meta = StackingMetaLearner(params, families=families)
        fold_seed = derive_seed(seed, "stacking", f)
        key = f.item() if hasattr(f, "item") else f
        meta.fit(P[train], None if R is None else R[train], y[train], seed=fold_seed)
        if meta.fallback and warmup is not None and key in warmup:
            wP, wy = warmup[key]
            meta = StackingMetaLearner(params, families=families).fit(wP, None, wy, seed=fold_seed)
        p_up[test], conf[test] = meta.predict(P[test], None if R is None else R[test])
        if models is not None:
            models.append(meta)
        per_fold[key] = {"fallback": meta.fallback, "choice": meta.choice, "selection": meta.selection,
                         "use_regime": meta.use_regime, "n_train": meta.n_train, "weights": meta.weights(),
                         "family_weights": meta.family_weights(None if R is None else R[test])}
    return p_up, conf, per_fold
