"""The one protocol every per-coin model follows, so training code never asks which family it holds.

A model sees the WHOLE feature matrix `F` of one coin (rows in time order, one row per candle close)
plus integer row indices. Trees use `F[idx]`; sequence models build causal windows ending at each index
(rows <= idx only). Anything fitted (scalers, calibrators) is fitted on `train_idx` / `calib_idx` rows only,
never on rows it will be scored on. `targets` are aligned with F's rows:
    "dir"  int 0/1   direction of the forward return over the horizon (the label)
    "ret"  float     forward log return over the horizon (expected-move head)
    "risk" float     |forward return| / trailing volatility (risk head)
Rows whose targets would need unseen future data are never in any index (they are dropped upstream).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

FAMILIES = ("xgboost", "lightgbm", "random_forest", "lstm", "transformer")


class ProbModel(Protocol):
    family: str
    params: Mapping[str, Any]

    def fit(self, F: np.ndarray, targets: Mapping[str, np.ndarray], *, train_idx: np.ndarray,
            calib_idx: np.ndarray, seed: int) -> ProbModel:
        """Fit on train_idx rows; calibrate / early-stop on calib_idx rows (a later, disjoint slice)."""
        ...

    def predict_proba(self, F: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Calibrated P(up) for each row in idx, shape (len(idx),), deterministic."""
        ...

    def predict_extra(self, F: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Auxiliary outputs (e.g. "expected_move", "risk" for sequence models; {} for trees)."""
        ...

    def to_bytes(self) -> bytes:
        """A serialized artifact (deterministic for the same fit)."""
        ...


def derive_seed(*parts: object) -> int:
    """Seed for one random source from (run seed, coin, family, fold, ...): stable across processes."""
    import hashlib

    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def row_linear(X: np.ndarray, w: np.ndarray, b: float = 0.0) -> np.ndarray:
    """b + X @ w, summed column by column with elementwise operations only, so each row's value depends on
    that row alone: bit-identical whatever the batch size or memory alignment (BLAS gemv is not), which is
    what lets a loaded model set re-predict its training rows exactly."""
    X = np.asarray(X, dtype=np.float64)
    z = np.full(len(X), float(b))
    for j, wj in enumerate(np.asarray(w, dtype=np.float64)):
        z += X[:, j] * wj
    return z
