"""Torch building blocks of the sequence specialists: causal multi-resolution windows and the networks.

Multi-resolution view of one sample (row i of F, already standardized), built only from rows <= i:

    lookback L = 16 * ceil(window / 4)  (>= 4 * window) rows ending at i
    coarse16 : means over consecutive blocks of 16 rows across the whole lookback -> L / 16 tokens
    coarse4  : means over blocks of 4 rows across the last 4 * window rows          -> window tokens
    full     : the last `window` rows at full resolution                            -> window tokens

The tokens are concatenated oldest-summary first: [coarse16..., coarse4..., full...] so the last token is
row i itself (T = L/16 + 2*window tokens; 72 for window 32). Every block ends at or before row i, so a
window never contains a later row. Rows before the start of F are padded with zeros (= the train mean
after standardization); the model only emits samples for i >= window - 1 (a full full-resolution window),
so padding can only reach the coarse summaries of the earliest samples.

Each token is projected by one shared Linear layer plus a learned per-token embedding (which encodes both
the resolution and the position; initialized N(0, 1) so positions are distinguishable from the start),
then encoded by an LSTM (read out: last hidden state) or a pre-norm Transformer encoder (read out: a
Linear layer over all T normalized token outputs, flattened: a position-aware readout; a last-token
readout had to discover positions through attention alone and stalled for many epochs on CPU budgets).
Three linear heads share the encoding: direction logit, expected move, risk. Dropout is 0 everywhere:
the only randomness is weight init (seeded) and batch order (local generator).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn


def lookback_rows(window: int) -> int:
    """Rows ending at i that feed one sample (coarse16 span, a multiple of 16 and >= 4 * window)."""
    return 16 * math.ceil(window / 4)


def n_tokens(window: int) -> int:
    return lookback_rows(window) // 16 + 2 * window


class WindowBuilder:
    """Builds (n, T, d) float32 token arrays for row indices of one standardized matrix, causally."""

    def __init__(self, Fs: np.ndarray, window: int):
        self.window = int(window)
        self.lookback = lookback_rows(self.window)
        n, d = Fs.shape
        pad = np.zeros((self.lookback - 1, d), dtype=np.float32)
        self._padded = np.concatenate([pad, np.asarray(Fs, dtype=np.float32)], axis=0)
        # view[i] = padded rows i .. i+L-1 = original rows i-L+1 .. i; shape (n, d, L), no copy
        self._view = sliding_window_view(self._padded, self.lookback, axis=0)
        self.n_rows = n

    def tokens(self, idx: np.ndarray) -> np.ndarray:
        w, L = self.window, self.lookback
        x = np.ascontiguousarray(self._view[np.asarray(idx, dtype=np.int64)].transpose(0, 2, 1))  # (n, L, d)
        n, _, d = x.shape
        full = x[:, L - w:]
        c4 = x[:, L - 4 * w:].reshape(n, w, 4, d).mean(axis=2, dtype=np.float32)
        c16 = x.reshape(n, L // 16, 16, d).mean(axis=2, dtype=np.float32)
        return np.ascontiguousarray(np.concatenate([c16, c4, full], axis=1), dtype=np.float32)


class SequenceNet(nn.Module):
    """Shared encoder (LSTM or Transformer) over the token sequence + three heads."""

    def __init__(self, family: str, n_features: int, window: int, hidden: int, layers: int, heads: int):
        super().__init__()
        if family not in ("lstm", "transformer"):
            raise ValueError(f"unknown sequence family {family!r}")
        self.family = family
        T = n_tokens(window)
        self.inp = nn.Linear(n_features, hidden)
        self.tok = nn.Parameter(torch.randn(T, hidden))  # N(0, 1) like nn.Embedding: positions stand out
        if family == "lstm":
            self.rnn = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        else:
            if hidden % heads:
                raise ValueError(f"transformer hidden ({hidden}) must be divisible by heads ({heads})")
            layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
            self.read = nn.Linear(T * hidden, hidden)
        self.dir_head = nn.Linear(hidden, 1)
        self.move_head = nn.Linear(hidden, 1)
        self.risk_head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.inp(x) + self.tok
        if self.family == "lstm":
            out, _ = self.rnn(h)
            z = out[:, -1]
        else:
            z = self.read(self.norm(self.enc(h)).flatten(1))
        return self.dir_head(z).squeeze(-1), self.move_head(z).squeeze(-1), self.risk_head(z).squeeze(-1)
