"""Per-coin tree specialists: XGBoost, LightGBM and a random forest, each with calibrated P(up).

Every model follows `coinline.models.base.ProbModel`: it is fitted on `F[train_idx]` against
`targets["dir"]`, then calibrated on `F[calib_idx]` (a later, disjoint slice) by
`coinline.models.calibration.calibrate` (Platt by default: on held-out rows isotonic scored 0.001-0.018
worse log loss in our probes; `params["calibration"]` overrides: "auto" (isotonic from 1000 calibration
rows) | "sigmoid" | "isotonic" | "temperature" | "none").
Probabilities are kept inside [1e-4, 1 - 1e-4] ([0.01, 0.99] after isotonic calibration, whose extreme
steps are otherwise exactly 0 or 1).
A tree's prediction for a row depends on that row's features only.

Determinism: all three run single-threaded with fixed seeds (LightGBM also `deterministic=True`,
`force_col_wise=True`), so two fits with the same data, params and seed give identical probabilities and
identical `to_bytes()`; a different seed changes the (sub/bagged-sampled) fit.

Params use each library's own keyword names (see DEFAULT_PARAMS); threading and seed keywords are set
by the model and cannot be overridden. SEARCH_SPACES describes the tunable ranges as small tuples:
("int", lo, hi), ("logint", lo, hi), ("uniform", lo, hi), ("loguniform", lo, hi), ("choice", (v, ...)),
bounds inclusive; `coinline.training.tune` draws candidates from them.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from coinline.models.calibration import calibrate, clip_for, positive_proba, resolve_method

TREE_FAMILIES = ("xgboost", "lightgbm", "random_forest")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {
        "n_estimators": 150,
        "max_depth": 4,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5.0,
        "reg_lambda": 1.0,
        "calibration": "sigmoid",
    },
    "lightgbm": {
        "n_estimators": 150,
        "max_depth": 4,
        "num_leaves": 15,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "min_child_samples": 40,
        "reg_lambda": 1.0,
        "calibration": "sigmoid",
    },
    "random_forest": {
        "n_estimators": 100,
        "max_depth": 8,
        "min_samples_leaf": 20,
        "max_features": "sqrt",
        "calibration": "sigmoid",
    },
}

SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "xgboost": {
        "n_estimators": ("int", 60, 300),
        "max_depth": ("int", 2, 6),
        "learning_rate": ("loguniform", 0.01, 0.2),
        "subsample": ("uniform", 0.6, 1.0),
        "min_child_weight": ("loguniform", 1.0, 50.0),
    },
    "lightgbm": {
        "n_estimators": ("int", 60, 300),
        "num_leaves": ("int", 4, 31),
        "max_depth": ("int", 3, 6),
        "learning_rate": ("loguniform", 0.01, 0.2),
        "min_child_samples": ("logint", 10, 200),
    },
    "random_forest": {
        "n_estimators": ("int", 50, 150),
        "max_depth": ("int", 4, 12),
        "min_samples_leaf": ("logint", 5, 100),
        "max_features": ("choice", ("sqrt", 0.25, 0.4)),
    },
}

_NOT_ESTIMATOR_PARAMS = ("calibration",)


def _rows(F: np.ndarray, idx: np.ndarray) -> np.ndarray:
    F = np.asarray(F)
    if F.ndim != 2:
        raise ValueError(f"F must be 2-D (rows x features), got shape {F.shape}")
    idx = np.asarray(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError("row indices must be a 1-D integer array")
    return F[idx]


def _labels(targets: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    if "dir" not in targets:
        raise KeyError('targets must hold "dir" (0/1 direction label)')
    y = np.asarray(targets["dir"])[np.asarray(idx)]
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError('targets["dir"] must be 0/1 on the indexed rows')
    return y.astype(np.int64)


class _TreeModel:
    """Shared fit / calibrate / predict / serialize logic; subclasses only build the estimator."""

    family: str = ""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        merged = dict(DEFAULT_PARAMS[self.family])
        merged.update(dict(params or {}))
        resolve_method(str(merged["calibration"]), 0)  # validate the name early
        self.params: dict[str, Any] = merged
        self.estimator_: Any = None
        self.calibrator_: Any = None
        self.calibration_method_: str | None = None
        self.seed_: int | None = None
        self.n_train_: int = 0
        self.n_calib_: int = 0

    def __repr__(self) -> str:
        state = "fitted" if self.estimator_ is not None else "unfitted"
        return f"{type(self).__name__}({self.params!r}, {state})"

    # -- subclass hook -------------------------------------------------------------------------------
    def _build(self, seed: int) -> Any:
        raise NotImplementedError

    def _estimator_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in _NOT_ESTIMATOR_PARAMS}

    # -- ProbModel -----------------------------------------------------------------------------------
    def fit(self, F: np.ndarray, targets: Mapping[str, np.ndarray], *, train_idx: np.ndarray,
            calib_idx: np.ndarray, seed: int) -> _TreeModel:
        train_idx = np.asarray(train_idx)
        calib_idx = np.asarray(calib_idx)
        if np.intersect1d(train_idx, calib_idx).size:
            raise ValueError("train_idx and calib_idx overlap")
        X, y = _rows(F, train_idx), _labels(targets, train_idx)
        if np.unique(y).size < 2:
            raise ValueError(f"{self.family}: training labels hold a single class ({len(y)} rows)")
        est = self._build(int(seed))
        est.fit(X, y)
        Xc, yc = _rows(F, calib_idx), _labels(targets, calib_idx)
        method = resolve_method(str(self.params["calibration"]), len(yc))
        self.estimator_ = est
        self.calibrator_ = calibrate(est, Xc, yc, method)
        self.calibration_method_ = method if self.calibrator_ is not None else "none"
        self.seed_ = int(seed)
        self.n_train_, self.n_calib_ = len(y), len(yc)
        return self

    def _check_fitted(self) -> None:
        if self.estimator_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")

    def predict_proba(self, F: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Calibrated P(up) for the rows in idx (raw P(up) when calibration was off or impossible)."""
        self._check_fitted()
        X = _rows(F, idx)
        if len(X) == 0:
            return np.zeros(0, dtype=np.float64)
        if self.calibrator_ is None:
            return positive_proba(self.estimator_, X)
        return positive_proba(self.calibrator_, X, clip_for(str(self.calibration_method_)))

    def raw_proba(self, F: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Uncalibrated P(up) of the fitted trees, for reporting the calibration effect."""
        self._check_fitted()
        X = _rows(F, idx)
        if len(X) == 0:
            return np.zeros(0, dtype=np.float64)
        return positive_proba(self.estimator_, X)

    def predict_extra(self, F: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def to_bytes(self) -> bytes:
        """Pickle of the fitted model (family, params, estimator, calibrator); see `from_bytes`.

        Byte-identical for identical fits (same data, params, seed, library versions): the libraries
        serialize their boosters / tree arrays, and nothing time- or address-dependent is stored.
        """
        self._check_fitted()
        return pickle.dumps(self, protocol=5)

    def artifact_sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def feature_importances(self) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.estimator_.feature_importances_, dtype=np.float64)


class XGBoostModel(_TreeModel):
    family = "xgboost"

    def _build(self, seed: int) -> Any:
        from xgboost import XGBClassifier

        return XGBClassifier(
            **self._estimator_params(),
            objective="binary:logistic",
            tree_method="hist",
            n_jobs=1,
            random_state=seed,
            verbosity=0,
        )


class LightGBMModel(_TreeModel):
    family = "lightgbm"

    def _build(self, seed: int) -> Any:
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            **self._estimator_params(),
            objective="binary",
            n_jobs=1,
            random_state=seed,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )


class RandomForestModel(_TreeModel):
    family = "random_forest"

    def _build(self, seed: int) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(**self._estimator_params(), n_jobs=1, random_state=seed)


_CLASSES: dict[str, type[_TreeModel]] = {
    "xgboost": XGBoostModel,
    "lightgbm": LightGBMModel,
    "random_forest": RandomForestModel,
}


def make_tree_model(family: str, params: Mapping[str, Any] | None = None) -> _TreeModel:
    """A fresh, unfitted tree model of `family` with DEFAULT_PARAMS[family] updated by `params`."""
    try:
        cls = _CLASSES[family]
    except KeyError:
        raise ValueError(f"unknown tree family {family!r}; expected one of {TREE_FAMILIES}") from None
    return cls(params)


def from_bytes(data: bytes) -> _TreeModel:
    """Load a model written by `to_bytes` (a pickle: only load artifacts from your own lake)."""
    model = pickle.loads(data)
    if not isinstance(model, _TreeModel):
        raise TypeError(f"not a tree model artifact: {type(model).__name__}")
    return model
