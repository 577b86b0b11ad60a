"""Strict, stable JSON for artifacts and records: non-finite floats become null, numpy scalars and arrays
become plain Python, keys are strings, output is sorted and rejects NaN."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(obj: Any) -> Any:
    """A JSON-safe copy of `obj` (NaN/inf -> None, numpy -> Python, tuples -> lists, keys -> str)."""
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # numpy scalar
    elif hasattr(obj, "tolist") and hasattr(obj, "dtype"):
        obj = obj.tolist()  # numpy array
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def json_bytes(obj: Any) -> bytes:
    """Deterministic bytes of `clean(obj)`: sorted keys, one-space indent, trailing newline."""
    return (json.dumps(clean(obj), indent=1, sort_keys=True, default=str, allow_nan=False) + "\n").encode()
