"""Per-coin sequence specialists (LSTM / Transformer) behind the `ProbModel` protocol.

fit(F, targets, train_idx, calib_idx, seed):
  * scaler: per-column mean/std of F over train_idx rows only (NaN-aware; constant or all-NaN columns get
    std 1); standardized values have NaN -> 0 and are clipped to +-10;
  * samples: row i gives the causal multi-resolution window of rows <= i (see `sequence_nets`); only rows
    with i >= window - 1 have a sample; training uses the most recent `max_train_samples` train rows;
  * heads on a shared encoder, loss = BCE(dir) + 0.5 * Huber(ret / train std of ret)
    + 0.5 * Huber((risk - train mean) / train std); non-finite ret / risk targets are masked out;
  * Adam, gradient-norm clip 1, shuffling from a local generator; after every epoch the BCE on calib_idx
    decides early stopping (`patience` epochs without improvement) and the best epoch's weights are kept;
  * Platt scaling of the direction logit on calib_idx rows only (LogisticRegression, lbfgs); with no calib
    rows, or only one class there, the raw sigmoid is used.
predict_proba(F, idx): calibrated P(up); rows with i < window - 1 (no full window) get the calibration base
rate (mean of dir on calib rows, train rows if there are none). predict_extra(F, idx): {"expected_move"
(log return), "risk"} de-standardized, NaN for rows without a window.

Determinism: fit / predict run with torch.set_num_threads(1), deterministic algorithms on, the global torch
RNG forked and seeded (restored afterwards), float32, dropout 0. Same seed -> bit-identical predictions and
`to_bytes` on CPU. `device="cuda"` (params, `SequenceConfig.device`) trains on a GPU and fails when torch
sees none; determinism is only promised on CPU. `to_bytes` is a custom, byte-stable format (JSON header with sorted keys + raw little-endian arrays);
`SequenceModel.from_bytes` restores it.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.nn import functional as fn

from coinline.models.base import derive_seed
from coinline.models.sequence_nets import SequenceNet, WindowBuilder
from coinline.training.config import SequenceConfig

_MAGIC = b"COINSEQ1"
_PRED_BATCH = 2048
_CLIP = 10.0


def _resolve_params(params: SequenceConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = asdict(SequenceConfig())
    if isinstance(params, SequenceConfig):
        out.update(asdict(params))
    elif params is not None:
        unknown = sorted(set(params) - set(out))
        if unknown:
            raise ValueError(f"unknown sequence params: {unknown}")
        out.update(params)
    for k in ("window", "hidden", "layers", "heads", "epochs", "batch", "patience", "max_train_samples"):
        out[k] = int(out[k])
        if out[k] < 1:
            raise ValueError(f"sequence param {k} must be >= 1, got {out[k]}")
    out["lr"] = float(out["lr"])
    out["device"] = str(out["device"])
    if not re.fullmatch(r"cpu|cuda(:\d+)?", out["device"]):
        raise ValueError(f"sequence param device must be cpu, cuda or cuda:N, got {out['device']!r}")
    return out


@contextmanager
def _torch_runtime(seed: int | None = None) -> Iterator[None]:
    """One thread, deterministic algorithms, a private seeded RNG; everything restored afterwards."""
    threads = torch.get_num_threads()
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn)


def _finite_std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    s = float(np.std(x)) if x.size else 0.0
    return s if s > 1e-12 else 1.0


def _finite_mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else 0.0


class SequenceModel:
    """Shared implementation; use `LSTMModel` / `TransformerModel` / `make_sequence_model`."""

    family = "sequence"

    def __init__(self, params: SequenceConfig | Mapping[str, Any] | None = None):
        self.params: dict[str, Any] = _resolve_params(params)
        if self.family == "transformer" and self.params["hidden"] % self.params["heads"]:
            raise ValueError("transformer hidden must be divisible by heads")
        self.net_: SequenceNet | None = None
        self.history_: list[float] = []     # calib BCE after each epoch run
        self.epochs_run_ = 0
        self.best_epoch_ = 0                # 1-based; 0 = no calib rows (last epoch kept)

    # ---------------------------------------------------------------- helpers
    def _device(self) -> torch.device:
        want = self.params["device"]
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"sequence.device={want!r} but torch {torch.__version__} sees no CUDA GPU (CUDA build: "
                               f"{torch.version.cuda or 'none'}); use the trainer image built with TORCH_VARIANT=cuXYZ "
                               f"on a GPU node, or device 'cpu'")
        return torch.device(want)

    def _standardize(self, F: np.ndarray) -> np.ndarray:
        Fs = (np.asarray(F, dtype=np.float64) - self.mean_) / self.std_
        Fs = np.nan_to_num(Fs, nan=0.0, posinf=_CLIP, neginf=-_CLIP)
        return np.clip(Fs, -_CLIP, _CLIP).astype(np.float32)

    def _check(self, F: np.ndarray) -> np.ndarray:
        F = np.asarray(F)
        if F.ndim != 2:
            raise ValueError(f"F must be 2-D, got shape {F.shape}")
        if self.net_ is not None and F.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"F has {F.shape[1]} columns, model was fit on {self.mean_.shape[0]}")
        return F

    def _outputs(self, builder: WindowBuilder, idx: np.ndarray, device: torch.device) -> tuple[np.ndarray, ...]:
        """Raw (logit, move, risk) in network units for rows idx (all must have a window)."""
        assert self.net_ is not None
        self.net_.eval()
        parts: list[tuple[np.ndarray, ...]] = []
        with torch.no_grad():
            for b in range(0, len(idx), _PRED_BATCH):
                x = torch.from_numpy(builder.tokens(idx[b:b + _PRED_BATCH])).to(device)
                parts.append(tuple(t.detach().cpu().numpy() for t in self.net_(x)))
        if not parts:
            return tuple(np.zeros(0, dtype=np.float32) for _ in range(3))
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def _raw(self, F: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        if self.net_ is None:
            raise RuntimeError("model is not fitted")
        F = self._check(F)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= F.shape[0]):
            raise IndexError("row index out of range")
        ok = idx >= self.params["window"] - 1
        with _torch_runtime():
            self.net_.to("cpu")
            out = self._outputs(WindowBuilder(self._standardize(F), self.params["window"]), idx[ok],
                                torch.device("cpu"))
        return idx, ok, out

    # ---------------------------------------------------------------- protocol
    def fit(self, F: np.ndarray, targets: Mapping[str, np.ndarray], *, train_idx: np.ndarray,
            calib_idx: np.ndarray, seed: int) -> SequenceModel:
        p = self.params
        self.net_ = None
        F = self._check(F)
        n_rows, d = F.shape
        w = p["window"]
        y = np.asarray(targets["dir"], dtype=np.float64)
        ret = np.asarray(targets["ret"], dtype=np.float64)
        risk = np.asarray(targets["risk"], dtype=np.float64)
        train_idx = np.unique(np.asarray(train_idx, dtype=np.int64))
        calib_idx = np.unique(np.asarray(calib_idx, dtype=np.int64))

        Xtr = np.asarray(F[train_idx], dtype=np.float64)
        with np.errstate(all="ignore"):
            fin = np.isfinite(Xtr)
            cnt = fin.sum(axis=0)
            mean = np.where(fin, Xtr, 0.0).sum(axis=0) / np.maximum(cnt, 1)
            var = (np.where(fin, Xtr - mean, 0.0) ** 2).sum(axis=0) / np.maximum(cnt, 1)
        std = np.sqrt(var)
        self.mean_ = np.where(cnt > 0, mean, 0.0)
        self.std_ = np.where((cnt > 0) & (std > 1e-12), std, 1.0)
        self.ret_scale_ = _finite_std(ret[train_idx])
        self.risk_mean_ = _finite_mean(risk[train_idx])
        self.risk_std_ = _finite_std(risk[train_idx])

        tr = train_idx[(train_idx >= w - 1) & np.isfinite(y[train_idx])][-p["max_train_samples"]:]
        cal = calib_idx[(calib_idx >= w - 1) & np.isfinite(y[calib_idx])]
        if tr.size == 0:
            raise ValueError(f"no train rows with a full window (window={w})")
        ycal_all = y[calib_idx][np.isfinite(y[calib_idx])]
        self.base_rate_ = float(ycal_all.mean()) if ycal_all.size else float(y[tr].mean())

        device = self._device()
        builder = WindowBuilder(self._standardize(F), w)
        t_dir = torch.from_numpy(np.nan_to_num(y).astype(np.float32))
        t_move = ret / self.ret_scale_
        t_risk = (risk - self.risk_mean_) / self.risk_std_
        m_move = torch.from_numpy(np.isfinite(t_move).astype(np.float32))
        m_risk = torch.from_numpy(np.isfinite(t_risk).astype(np.float32))
        t_move = torch.from_numpy(np.nan_to_num(t_move, posinf=0.0, neginf=0.0).astype(np.float32))
        t_risk = torch.from_numpy(np.nan_to_num(t_risk, posinf=0.0, neginf=0.0).astype(np.float32))

        def masked_huber(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return (fn.huber_loss(pred, target, reduction="none") * mask).sum() / mask.sum().clamp(min=1.0)

        with _torch_runtime(seed):
            gen = torch.Generator().manual_seed(derive_seed(seed, self.family, "shuffle"))
            net = SequenceNet(self.family, d, w, p["hidden"], p["layers"], p["heads"]).float().to(device)
            self.net_ = net
            opt = torch.optim.Adam(net.parameters(), lr=p["lr"])
            ycal = t_dir[torch.from_numpy(cal)]
            best, best_state, bad = math.inf, None, 0
            self.history_, self.epochs_run_, self.best_epoch_ = [], 0, 0
            for epoch in range(1, p["epochs"] + 1):
                net.train()
                perm = torch.randperm(tr.size, generator=gen).numpy()
                for b in range(0, tr.size, p["batch"]):
                    rows = tr[perm[b:b + p["batch"]]]
                    r = torch.from_numpy(rows)
                    x = torch.from_numpy(builder.tokens(rows)).to(device)
                    logit, move, rsk = net(x)
                    loss = (fn.binary_cross_entropy_with_logits(logit, t_dir[r].to(device))
                            + 0.5 * masked_huber(move, t_move[r].to(device), m_move[r].to(device))
                            + 0.5 * masked_huber(rsk, t_risk[r].to(device), m_risk[r].to(device)))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                self.epochs_run_ = epoch
                if cal.size == 0:
                    continue
                z = torch.from_numpy(self._outputs(builder, cal, device)[0])
                vl = float(fn.binary_cross_entropy_with_logits(z, ycal))
                self.history_.append(vl)
                if vl < best - 1e-9:
                    best, bad, self.best_epoch_ = vl, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                    if bad >= p["patience"]:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
            net.to("cpu")
            zcal = self._outputs(builder, cal, torch.device("cpu"))[0].astype(np.float64)

        self.platt_ = (1.0, 0.0)
        ycal_np = y[cal]
        if cal.size >= 2 and 0 < ycal_np.sum() < cal.size:
            lr = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000).fit(zcal[:, None], ycal_np.astype(int))
            self.platt_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    def predict_proba(self, F: np.ndarray, idx: np.ndarray) -> np.ndarray:
        idx, ok, (z, _, _) = self._raw(F, idx)
        out = np.full(idx.shape, self.base_rate_, dtype=np.float64)
        a, b = self.platt_
        out[ok] = 1.0 / (1.0 + np.exp(-(a * z.astype(np.float64) + b)))
        return out

    def predict_extra(self, F: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        idx, ok, (_, move, rsk) = self._raw(F, idx)
        em = np.full(idx.shape, np.nan, dtype=np.float64)
        rk = np.full(idx.shape, np.nan, dtype=np.float64)
        em[ok] = move.astype(np.float64) * self.ret_scale_
        rk[ok] = rsk.astype(np.float64) * self.risk_std_ + self.risk_mean_
        return {"expected_move": em, "risk": rk}

    # ---------------------------------------------------------------- serialization
    def to_bytes(self) -> bytes:
        if self.net_ is None:
            raise RuntimeError("model is not fitted")
        arrays: dict[str, np.ndarray] = {"scaler/mean": self.mean_, "scaler/std": self.std_}
        for k, v in self.net_.state_dict().items():
            arrays[f"state/{k}"] = v.detach().cpu().numpy()
        entries, blobs, offset = [], [], 0
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            raw = a.tobytes()
            entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                            "nbytes": len(raw)})
            blobs.append(raw)
            offset += len(raw)
        header = {
            "family": self.family, "params": self.params, "arrays": entries,
            "platt": list(self.platt_), "base_rate": self.base_rate_, "ret_scale": self.ret_scale_,
            "risk_mean": self.risk_mean_, "risk_std": self.risk_std_, "history": self.history_,
            "epochs_run": self.epochs_run_, "best_epoch": self.best_epoch_,
        }
        hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return _MAGIC + struct.pack("<Q", len(hb)) + hb + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> SequenceModel:
        if data[:8] != _MAGIC:
            raise ValueError("not a coinline sequence artifact")
        (hlen,) = struct.unpack("<Q", data[8:16])
        header = json.loads(data[16:16 + hlen])
        body = memoryview(data)[16 + hlen:]
        arrays = {e["name"]: np.frombuffer(body[e["offset"]:e["offset"] + e["nbytes"]], dtype=e["dtype"])
                  .reshape(e["shape"]).copy() for e in header["arrays"]}
        model = make_sequence_model(header["family"], header["params"])
        model.mean_, model.std_ = arrays["scaler/mean"], arrays["scaler/std"]
        p = model.params
        net = SequenceNet(model.family, model.mean_.shape[0], p["window"], p["hidden"], p["layers"], p["heads"])
        net.load_state_dict({k[len("state/"):]: torch.from_numpy(v) for k, v in arrays.items()
                             if k.startswith("state/")})
        model.net_ = net
        model.platt_ = tuple(header["platt"])
        model.base_rate_, model.ret_scale_ = header["base_rate"], header["ret_scale"]
        model.risk_mean_, model.risk_std_ = header["risk_mean"], header["risk_std"]
        model.history_, model.epochs_run_ = header["history"], header["epochs_run"]
        model.best_epoch_ = header["best_epoch"]
        return model


class LSTMModel(SequenceModel):
    family = "lstm"


class TransformerModel(SequenceModel):
    family = "transformer"


def make_sequence_model(family: str, params: SequenceConfig | Mapping[str, Any] | None = None) -> SequenceModel:
    classes = {"lstm": LSTMModel, "transformer": TransformerModel}
    if family not in classes:
        raise ValueError(f"unknown sequence family {family!r} (expected one of {sorted(classes)})")
    return classes[family](params)
