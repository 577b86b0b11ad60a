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
back (flagged `fallback=True`) to the equal-weight average of the base probabilities, or to the base rate
with params["fallback"] = "base_rate" (when a base rate is known).

The combiner is CHOSEN, not assumed (`choice`), among the candidates
    base_rate        the constant P(up) = the climatology: the mean of every label realized before the fold's
                     first test row when the caller gives `climatology`, else the mean label of the meta
                     training rows (serialised as `base_rate`, so serving reproduces it)
    mean, member:f   the equal-weight mean of the base probabilities, one member alone
    stack            the regularized logistic stack (the only fitted candidate); params["stack"] = False
                     leaves it out (a training run does so off its primary horizon: there the combiner is
                     chosen among the base rate, the mean and the tree members, without regime gating)
Every candidate that needs no fitting (base_rate, mean, members) is scored by log loss on all the meta
training rows: they are out of sample for it (base_rate at a row: the climatology realized before that row;
without a climatology the mean of the earlier rows' labels). The stack is fitted on the first rows (in time
order) and scored on the last `select_fraction` (the inner validation); it is compared with the others on
those rows only (paired).
The rule (`choose_combiner`): candidates rank by complexity, base_rate < mean and members < stack; starting
from the base rate, the best of the next level replaces the current choice only if its mean log loss on the
rows both were scored on is lower than the current choice's by more than max(margin, z * SE) and no higher
than any simpler level's best, SE the standard error of the mean paired loss difference
(`_block_se`: differences summed per time stamp over the coins, time stamps in blocks of
params["select_block"] taken as independent; the run passes max(24, 2h) bars, the block of its pooled skill
test). margin = params["select_margin"] (the run passes its `ensemble_tolerance`, 0.001): the ensemble may
lose that much, so a smaller gain is not worth a more complex combiner. z = params["select_z"] = 2: the best
of up to six noisy members must clear two standard errors (the largest of six independent standard normals
exceeds 1 two times in three, 2 about one time in eight). So base_rate wins ties and anything the inner
validation cannot tell apart, a member must beat the base rate clearly, and the stack must beat the
choice so far clearly and every simpler candidate.
The chosen candidate is refitted on all the rows (only the stack needs fitting).

A coin's few hundred meta rows make that choice noisy, so a training run pools it across coins
(`stack_selection` per coin -> `pooled_choice` -> `walk_forward_stack(choices=...)`): each candidate's log
losses over every coin's rows of the same fold pick one combiner per fold, by the same rule (rows of the coins
at one time stamp count as one draw in the standard error); the stack itself is still fitted per coin. A
coin's fold pools only the folds of other coins that start no later than its own (their meta training labels
were all realized before it starts).
A run makes that choice at every horizon: at the primary one among all the candidates (regime-gated stack
included), at the others without the stack (params["stack"] = False: only the trees predict there and no
regime gating is served) and with blocks of max(24, 2h) bars (overlapping h-bar labels), so a horizon where
the members merely fit noise serves the base rate instead of their mean.
Known bias: on a warmup (fold 0) the members' calibration maps were fitted on the very labels they are
scored against, so the members look better there than out of sample and fold 0 leans towards them.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from coinline.errors import CoinlineError
from coinline.models.base import FAMILIES, derive_seed, row_linear
from coinline.models.regime import N_REGIMES, REGIMES

CLIP = 1e-4


class CombinerError(CoinlineError, ValueError):
    """A combiner choice this meta-learner cannot serve (names the choice and the families)."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), CLIP, 1.0 - CLIP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))   # overflow-free, exact enough for probabilities


def _row_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), CLIP, 1.0 - CLIP)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def _inner_cut(n: int, frac: float) -> int:
    """Rows [0, cut) are the inner training part, [cut, n) the inner validation (the last `frac`)."""
    return n - int(round(frac * n))


def candidate_level(name: str) -> int:
    """Complexity rank of a combiner: 0 base_rate (ignores the members), 1 the mean or one member (no
    fitting), 2 the stack (fitted)."""
    return 0 if name == "base_rate" else 2 if name == "stack" else 1


def choose_combiner(mean_loss: Mapping[str, float], margin: float,
                    compare: Callable[[str, str], tuple[float, float | None]] | None = None, z: float = 2.0,
                    trail: list | None = None) -> str | None:
    """The simplest candidate unless a more complex one is clearly better.

    Levels in order of complexity (`candidate_level`), starting from the best of the simplest level present.
    The best of each next level (lowest loss, then name) replaces the current choice when its gain over it
    (mean paired loss difference) exceeds max(`margin`, z * SE) and it loses to no simpler level's best.
    `compare(a, b)` -> (mean loss of b minus a on the rows both were scored on, standard error of that
    difference); None: the difference of `mean_loss` and no standard error (`margin` alone). `trail`, when a
    list, receives each comparison made. None when there is no candidate."""
    def cmp(a: str, b: str) -> tuple[float, float | None]:
        return compare(a, b) if compare is not None else (mean_loss[b] - mean_loss[a], None)

    choice, lower = None, []
    for level in range(3):
        names = sorted((c for c in mean_loss if candidate_level(c) == level), key=lambda c: (mean_loss[c], c))
        if not names:
            continue
        best = names[0]
        if choice is None:
            choice = best
            lower.append(best)
            continue
        gain, se = cmp(best, choice)
        need = margin if se is None else max(margin, z * se)
        taken = bool(gain > need and all(cmp(best, s)[0] >= 0 for s in lower))
        if trail is not None:
            trail.append({"candidate": best, "against": choice, "gain": float(gain),
                          "se": None if se is None or not np.isfinite(se) else float(se),
                          "needed": float(need) if np.isfinite(need) else None, "taken": taken})
        lower.append(best)
        if taken:
            choice = best
    return choice


def _block_se(t: np.ndarray, d: np.ndarray, block: int) -> float:
    """Standard error of mean(d) when rows sharing a time stamp (coins) and nearby time stamps are dependent:
    d summed per time stamp, the stamps cut into consecutive blocks of `block`, the blocks taken as
    independent (batch means). inf with fewer than two blocks: no evidence."""
    stamps, inv = np.unique(t, return_inverse=True)
    blk = (np.arange(len(stamps)) // max(1, int(block)))[inv]
    k = int(blk.max()) + 1 if len(blk) else 0
    if k < 2:
        return float("inf")
    sums = np.bincount(blk, weights=d, minlength=k)
    rows = np.bincount(blk, minlength=k)
    dbar = float(np.sum(d)) / len(d)
    return float(np.sqrt(k / (k - 1) * np.sum((sums - rows * dbar) ** 2)) / len(d))


class StackingMetaLearner:
    """L2 logistic regression over logits of OOF base probabilities, regime posteriors and their products.

    params: C (default 1.0), max_iter (1000), tol (1e-6), min_train_rows (50): fewer usable rows (or one
    class only) -> fallback to the equal-weight average of base probabilities; select_fraction (0.3): the
    last share of the rows, where the stack fitted on the rows before is scored (0: never scored);
    select_margin (0.001), select_z (2) and select_block (24 rows): a more complex candidate must win by
    max(select_margin, select_z * SE) in mean log loss (`choose_combiner`); stack (True): whether the
    stack is a candidate at all (False: base_rate, mean and the members only); fallback ("mean"): what a
    learner without viable rows serves, "mean" or "base_rate" (the mean when no base rate is known). Those
    two are not in DEFAULTS, so the blobs of learners that leave them unset are unchanged.
    Rows with a non-finite base probability, posterior or label are ignored in `fit`.
    `regime_post=None` in fit stacks without regime gating.
    `choice`: "base_rate", "mean", "member:<family>" or "stack"; `selection`: the selection's mean log
    loss of each candidate on this learner's rows (also when the choice was made by a pooled selection);
    `base_rate`: the constant P(up) of the base_rate candidate (None in blobs written before it existed).
    """

    DEFAULTS: Mapping[str, Any] = {"C": 1.0, "max_iter": 1000, "tol": 1e-6, "min_train_rows": 50,
                                   "select_fraction": 0.3, "select_margin": 0.001, "select_z": 2.0,
                                   "select_block": 24}

    def __init__(self, params: Mapping[str, Any] | None = None, families: Sequence[str] = FAMILIES):
        self.params = {**self.DEFAULTS, **(params or {})}
        self.families = tuple(families)
        if not self.families or len(set(self.families)) != len(self.families):
            raise ValueError("families must be non-empty and unique")
        if self.params.get("fallback", "mean") not in ("mean", "base_rate"):
            raise CombinerError(f"stacking params: fallback {self.params['fallback']!r} is not 'mean' or 'base_rate'")
        self.fallback = True
        self.choice = "mean"
        self.selection: dict[str, float] = {}
        self.base_rate: float | None = None
        self.use_regime: bool | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.n_train = 0
        self.seed: int | None = None

    @property
    def with_stack(self) -> bool:
        """Whether the stack is a candidate (params["stack"], default True)."""
        return bool(self.params.get("stack", True))

    def candidates(self) -> list[str]:
        """Every combiner this learner can serve, simplest first."""
        return ["base_rate", "mean", *(f"member:{f}" for f in self.families), *(["stack"] if self.with_stack else [])]

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

    def usable(self, base_probs: np.ndarray, regime_post: np.ndarray | None, y: np.ndarray) -> np.ndarray:
        """Mask of the rows `fit` learns from: finite label, base probabilities and posteriors."""
        P, R = self._check(base_probs, regime_post)
        y = np.asarray(y, dtype=float)
        if len(y) != len(P):
            raise ValueError("y must have one label per row")
        ok = np.isfinite(y) & np.all(np.isfinite(P), axis=1)
        if R is not None:
            ok &= np.all(np.isfinite(R), axis=1)
        if np.any((y[ok] != 0) & (y[ok] != 1)):
            raise ValueError("y must be 0/1 (NaN for unrealized labels)")
        return ok

    # -- fit / predict
    def fit(self, base_probs: np.ndarray, regime_post: np.ndarray | None, y: np.ndarray, *, seed: int,
            choice: str | None = None, prior: float | None = None, row_prior: np.ndarray | None = None,
            selection: Mapping[str, float] | None = None) -> StackingMetaLearner:
        """Fit on the usable rows. `choice` forces the combiner (a pooled selection made it; `selection` is
        then kept as the record of this learner's own selection losses); None chooses it here.
        `prior`: the base_rate candidate's constant (default: the mean usable label); `row_prior`: its value
        at each given row when it is scored there (default: the mean of the earlier rows' labels)."""
        if choice is not None and choice not in self.candidates():
            raise CombinerError(f"combiner choice {choice!r} is not one of {self.candidates()}")
        P, R = self._check(base_probs, regime_post)
        y = np.asarray(y, dtype=float)
        ok = self.usable(P, R, y)
        self.seed = int(seed)
        self.use_regime = R is not None
        self.n_train = int(ok.sum())
        yk = y[ok].astype(np.int64)
        self.coef_, self.intercept_, self.selection = None, 0.0, {}
        self.base_rate = float(prior) if prior is not None else (float(np.mean(yk)) if len(yk) else None)
        if not self._viable(yk):
            self.fallback = True
            wanted = self.params.get("fallback", "mean")
            self.choice = "base_rate" if wanted == "base_rate" and self.base_rate is not None else "mean"
            return self
        self.fallback = False
        Pk, Rk = P[ok], None if R is None else R[ok]
        if choice is None:
            record = self._inner_losses(Pk, Rk, yk, None if row_prior is None else np.asarray(row_prior)[ok],
                                        None)
            pooled = _pool([] if record is None else [record], self.params)
            self.selection = pooled["selection"]
            choice = pooled["choice"] or ("stack" if self.with_stack else "mean")
        else:
            self.selection = {c: float(v) for c, v in (selection or {}).items()}
        self.choice = choice
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

    def selection_record(self, base_probs: np.ndarray, regime_post: np.ndarray | None, y: np.ndarray, *,
                         seed: int, row_prior: np.ndarray | None = None,
                         row_time: np.ndarray | None = None) -> dict[str, Any] | None:
        """{"n": usable rows, "loss": {candidate: summed log loss}, "count": {candidate: rows scored},
        "rows": {candidate: log loss per row, NaN where not scored}, "t": the rows' times (`row_time`, else
        their positions)} on the usable rows, the input of a pooled choice (`_inner_losses`); None when the
        rows are not viable (too few, one class)."""
        P, R = self._check(base_probs, regime_post)
        ok = self.usable(P, R, y)
        yk = np.asarray(y, dtype=float)[ok].astype(np.int64)
        if not self._viable(yk):
            return None
        self.seed = int(seed)
        return self._inner_losses(P[ok], None if R is None else R[ok], yk,
                                  None if row_prior is None else np.asarray(row_prior, dtype=float)[ok],
                                  None if row_time is None else np.asarray(row_time)[ok])

    def _inner_losses(self, P: np.ndarray, R: np.ndarray | None, y: np.ndarray,
                      prior: np.ndarray | None, t: np.ndarray | None) -> dict[str, Any]:
        """Log loss per row of every candidate: base_rate (`prior` per row, else the mean of the earlier
        rows' labels), mean and members on every row; the stack (unless left out, `with_stack`), fitted on
        the rows before the last `select_fraction`, on those last rows only (NaN elsewhere, everywhere when
        that split is not viable)."""
        n = len(y)
        if prior is None:
            prior = np.r_[0.5, np.cumsum(y)[:-1] / np.arange(1, n)] if n else np.zeros(0)
        cands = {"base_rate": prior, "mean": P.mean(axis=1)}
        cands.update({f"member:{f}": P[:, i] for i, f in enumerate(self.families)})
        rows = {name: _row_losses(y, p) for name, p in cands.items()}
        frac = float(self.params["select_fraction"])
        cut = _inner_cut(n, frac)
        if self.with_stack:
            rows["stack"] = np.full(n, np.nan)
        if self.with_stack and frac > 0 and self._viable(y[:cut]) and cut < n:
            coef, b = self._fit_stack(P[:cut], None if R is None else R[:cut], y[:cut])
            z = row_linear(self._features(P[cut:], None if R is None else R[cut:]), coef, b)
            rows["stack"][cut:] = _row_losses(y[cut:], _sigmoid(z))
        return {"n": int(n), "loss": {c: float(np.nansum(v)) for c, v in rows.items()},
                "count": {c: int(np.isfinite(v).sum()) for c, v in rows.items()}, "rows": rows,
                "t": np.arange(n) if t is None else np.asarray(t)}

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
        elif self.choice == "base_rate":
            p = np.full(len(P), float(self.base_rate))
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
        (mean over the given rows; uniform posteriors if none). Mean: 1/k each; a member: 1 for it, 0 else;
        the base rate: 0 for every family."""
        k = len(self.families)
        if self.choice == "mean":
            return {f: 1.0 / k for f in self.families}
        if self.choice.startswith("member:") or self.choice == "base_rate":
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
            "selection": self.selection, "base_rate": self.base_rate, "use_regime": self.use_regime,
            "n_train": self.n_train,
            "feature_names": self.feature_names() if self.choice == "stack" else [],
            "coef": [] if self.coef_ is None else self.coef_.tolist(), "intercept": self.intercept_,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> StackingMetaLearner:
        """Read `to_bytes`; blobs written before the base_rate candidate existed load with base_rate None
        (their choice is never "base_rate")."""
        doc = json.loads(blob)
        self = cls(doc["params"], families=tuple(doc["families"]))
        self.seed, self.fallback, self.n_train = doc["seed"], doc["fallback"], doc["n_train"]
        self.use_regime = doc["use_regime"]
        self.choice = doc.get("choice", "mean" if self.fallback else "stack")
        self.selection = doc.get("selection", {})
        self.base_rate = doc.get("base_rate")
        if self.choice == "base_rate" and self.base_rate is None:
            raise CombinerError("stacking meta-learner blob: choice 'base_rate' without a base_rate value")
        self.coef_ = np.asarray(doc["coef"], dtype=float) if self.choice == "stack" else None
        self.intercept_ = float(doc["intercept"])
        return self


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def _climate_rows(climatology: tuple[np.ndarray, np.ndarray], times: np.ndarray) -> np.ndarray:
    """The climatology at each time: mean of the labels realized strictly before it (0.5 before any)."""
    label_time, labels = climatology
    ok = np.isfinite(labels)
    order = np.argsort(label_time[ok], kind="stable")
    known_time = label_time[ok][order]
    csum = np.r_[0.0, np.cumsum(labels[ok][order])]
    k = np.searchsorted(known_time, np.asarray(times), side="left")
    return np.where(k > 0, csum[k] / np.maximum(k, 1), 0.5)


def _climate(climatology: tuple[np.ndarray, np.ndarray] | None, t: Any) -> float | None:
    """Mean of the climatology labels realized strictly before time t (None: no climatology or no label)."""
    if climatology is None:
        return None
    label_time, labels = climatology
    known = (label_time < t) & np.isfinite(labels)
    return float(np.mean(labels[known])) if known.any() else None


def _fold_plans(fold_ids, base_probs, regime_post, y, families, seed, params, row_time, label_time, warmup,
                climatology) -> list[dict[str, Any]]:
    """Per fold (ascending): its test mask and the rows its meta-learner learns from (earlier folds' rows
    realized before its first test row, or its warmup when those are not viable), with the base rate from
    the climatology: at the fold's first test row (`prior`, served) and at each meta row (`row_prior`, only
    when those rows' times are known, to score the base-rate candidate there)."""
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
    if climatology is not None:
        if row_time is None:
            raise ValueError("climatology needs row_time and label_time (the base rate is known by time)")
        climatology = (np.asarray(climatology[0]), np.asarray(climatology[1], dtype=float))
    probe = StackingMetaLearner(params, families=families)
    plans = []
    for f in np.unique(fold_ids):                        # ascending
        test = fold_ids == f
        train = fold_ids < f
        if row_time is not None:
            train &= label_time < row_time[test].min()
        key = _plain(f)
        start = key if row_time is None else _plain(row_time[test].min())
        mP, mR, my = P[train], None if R is None else R[train], y[train]
        mt = None if row_time is None else row_time[train]
        ok = probe.usable(mP, mR, my)
        if not probe._viable(my[ok]) and warmup is not None and key in warmup:
            w = warmup[key]
            mP, mR, my = np.asarray(w[0], dtype=float), None, np.asarray(w[1], dtype=float)
            mt = np.asarray(w[2]) if len(w) > 2 else None
            ok = probe.usable(mP, None, my)
        row_prior = _climate_rows(climatology, mt) if climatology is not None and mt is not None else None
        plans.append({"key": key, "test": test, "start": start, "seed": derive_seed(seed, "stacking", f),
                      "P": mP, "R": mR, "y": my, "t": mt, "prior": _climate(climatology, start),
                      "row_prior": row_prior})
    return plans


def _record(plan: Mapping[str, Any], params, families) -> dict[str, Any]:
    rec = StackingMetaLearner(params, families=families).selection_record(
        plan["P"], plan["R"], plan["y"], seed=plan["seed"], row_prior=plan["row_prior"], row_time=plan["t"])
    return {"test_start": plan["start"], **({"n": 0, "loss": None} if rec is None else rec)}


def stack_selection(fold_ids: np.ndarray, base_probs: np.ndarray, regime_post: np.ndarray | None,
                    y: np.ndarray, families: Sequence[str], seed: int, *,
                    params: Mapping[str, Any] | None = None, row_time: np.ndarray | None = None,
                    label_time: np.ndarray | None = None,
                    warmup: Mapping[Any, tuple[np.ndarray, ...]] | None = None,
                    climatology: tuple[np.ndarray, np.ndarray] | None = None) -> dict[Any, dict[str, Any]]:
    """Pass 1 of a pooled choice, for one coin: per fold, {"test_start" (first test row time, or the fold id
    without row_time), "n" (meta rows), "loss" ({candidate: summed log loss}, None when the fold's meta
    rows are not viable), "count" ({candidate: rows scored}), "rows" ({candidate: log loss per row, NaN where
    not scored}) and "t" (the rows' times)}. Same arguments as `walk_forward_stack`."""
    plans = _fold_plans(fold_ids, base_probs, regime_post, y, families, seed, params, row_time, label_time,
                        warmup, climatology)
    return {p["key"]: _record(p, params, families) for p in plans}


def _pool(records: list[Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Pool selection records: mean log loss per common candidate over the rows it was scored on, and the
    rule's choice from paired differences on common rows with their standard errors (`_block_se`)."""
    if not records:
        return {"choice": None, "n": 0, "coins": 0, "selection": {}, "tests": []}
    p = {**StackingMetaLearner.DEFAULTS, **params}
    names = sorted(set.intersection(*(set(r["loss"]) for r in records)))
    count = {c: sum(int(r["count"][c]) for r in records) for c in names}
    selection = {c: float(sum(r["loss"][c] for r in records) / count[c]) for c in names if count[c] > 0}
    t = np.concatenate([np.asarray(r["t"]) for r in records])
    rows = {c: np.concatenate([r["rows"][c] for r in records]) for c in selection}

    def compare(a: str, b: str) -> tuple[float, float]:
        both = np.isfinite(rows[a]) & np.isfinite(rows[b])
        if not both.any():
            return -np.inf, np.inf
        d = rows[a][both] - rows[b][both]
        return -float(np.sum(d)) / len(d), _block_se(t[both], d, int(p["select_block"]))

    trail: list = []
    choice = choose_combiner(selection, float(p["select_margin"]), compare, float(p["select_z"]), trail)
    return {"choice": choice, "n": sum(int(r["n"]) for r in records), "coins": len(records),
            "selection": selection, "tests": trail}


def pooled_choice(records: Mapping[Any, Mapping[Any, Mapping[str, Any]]],
                  params: Mapping[str, Any] | None = None) -> dict[Any, dict[Any, dict[str, Any]]]:
    """One combiner per (coin, fold) from every coin's selection losses (`stack_selection`).

    For coin c's fold k: from each coin (c included) the record of its latest fold that has losses and
    starts no later than c's fold k (so every label it holds was realized before c's fold k starts);
    summed log losses / summed rows = pooled mean log loss per candidate (candidates common to all those
    records); `choose_combiner` with the meta-learner params' select_margin, select_z and select_block, the
    paired differences and their standard errors from the pooled rows (rows of different coins at one time
    stamp count as one draw).
    With aligned folds every coin gets the same choice per fold.
    Returns {coin: {fold: {"choice" (None: no record to pool), "n", "coins", "selection", "tests" (the
    comparisons made)}}}; coins in sorted order, so the result does not depend on the order given."""
    coins = sorted(records, key=str)
    out: dict[Any, dict[Any, dict[str, Any]]] = {}
    for coin in coins:
        out[coin] = {}
        for key, rec in sorted(records[coin].items(), key=lambda kv: kv[1]["test_start"]):
            pool = []
            for other in coins:
                known = [r for r in records[other].values() if r["loss"] and r["test_start"] <= rec["test_start"]]
                if known:
                    pool.append(max(known, key=lambda r: r["test_start"]))
            out[coin][key] = _pool(pool, params or {})
    return out


def walk_forward_stack(fold_ids: np.ndarray, base_probs: np.ndarray, regime_post: np.ndarray | None,
                       y: np.ndarray, families: Sequence[str], seed: int, *,
                       params: Mapping[str, Any] | None = None, row_time: np.ndarray | None = None,
                       label_time: np.ndarray | None = None, models: list | None = None,
                       warmup: Mapping[Any, tuple[np.ndarray, ...]] | None = None,
                       climatology: tuple[np.ndarray, np.ndarray] | None = None,
                       choices: Mapping[Any, str | None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Stack OOF base predictions fold by fold (fold ids ascend in time), never using a fold's own labels.

    Fold f's predictions come from a meta-learner fit on rows with fold_id < f only (y NaN = unrealized,
    ignored). With `row_time` (decision time per row) and `label_time` (time its label is realized), an
    earlier-fold row is also dropped unless label_time < the first row_time of fold f (realized strictly before): the embargo.
    Returns (p_up, confidence, per_fold) where per_fold[f] = {"fallback", "choice" (served), "coin_choice"
    (what this coin's own selection picks), "selection" (its selection's mean log losses),
    "base_rate", "use_regime", "n_train", "weights", "family_weights"}; fold 0 (and any fold without enough
    realized history or warmup) has fallback=True and p_up = the equal-weight average of the base
    probabilities (the base rate with params["fallback"] = "base_rate").
    `models`, when given a list, receives each fold's fitted meta-learner in fold order (the last one is
    the deployable combiner: it made the last test fold's predictions).
    `warmup[f] = (base_probs, y[, row_time])`: rows a fold may learn its combiner from when it has too little
    realized earlier-fold history (fold 0: its models' predictions on its calibration slice); fit without regime.
    `climatology = (label_time, y)` of the coin's labelled rows: the base_rate candidate is the mean of the
    labels realized before the fold's first test row (without it: the mean label of the meta training rows).
    `choices[f]`: the combiner of fold f from a pooled choice (`pooled_choice`); None or absent: this coin's own.
    """
    plans = _fold_plans(fold_ids, base_probs, regime_post, y, families, seed, params, row_time, label_time,
                        warmup, climatology)
    records = {p["key"]: _record(p, params, families) for p in plans}
    own = pooled_choice({0: records}, params)[0]
    P = np.asarray(base_probs, dtype=float)
    R = None if regime_post is None else np.asarray(regime_post, dtype=float)
    p_up = np.full(len(P), np.nan)
    conf = np.full(len(P), np.nan)
    per_fold: dict = {}
    for plan in plans:
        key, test = plan["key"], plan["test"]
        rec = records[key]
        mine = {} if rec["loss"] is None else {c: v / rec["count"][c] for c, v in rec["loss"].items()
                                               if rec["count"][c]}
        coin_choice = own[key]["choice"]
        chosen = (choices or {}).get(key) or coin_choice
        meta = StackingMetaLearner(params, families=families).fit(
            plan["P"], plan["R"], plan["y"], seed=plan["seed"], choice=chosen, prior=plan["prior"],
            row_prior=plan["row_prior"], selection=mine)
        p_up[test], conf[test] = meta.predict(P[test], None if R is None else R[test])
        if models is not None:
            models.append(meta)
        per_fold[key] = {"fallback": meta.fallback, "choice": meta.choice, "coin_choice": coin_choice,
                         "selection": meta.selection, "base_rate": meta.base_rate,
                         "use_regime": meta.use_regime, "n_train": meta.n_train, "weights": meta.weights(),
                         "family_weights": meta.family_weights(None if R is None else R[test])}
    return p_up, conf, per_fold
