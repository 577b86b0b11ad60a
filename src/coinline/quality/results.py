"""Typed, JSON-ready results of the candle quality suites.

A `QualityResult` is plain data: it holds no Great Expectations objects, no run times and no ids,
so two validations of the same table give equal results and equal `to_dict()` output.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation.

    `name` is a stable check id (e.g. "ohlc.high_ge_close"); `expectation` is the Great Expectations
    expectation type that ran it; `columns` are the columns it ran on (derived columns start with
    "_q_" and are described in `description`). `examples` holds up to 5 unexpected values (JSON-safe)
    and `series` up to 5 labels of offending series, in table order. `observed` is the observed
    value of table-level checks (schema, types). `error` is set when the expectation itself raised.
    """

    name: str
    expectation: str
    columns: tuple[str, ...]
    description: str
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    examples: tuple[Any, ...] = ()
    series: tuple[str, ...] = ()
    observed: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expectation": self.expectation,
            "columns": list(self.columns),
            "description": self.description,
            "success": self.success,
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "examples": [json_safe(v) for v in self.examples],
            "series": list(self.series),
            "observed": json_safe(self.observed),
            "error": self.error,
        }

    def brief(self) -> str:
        """One short phrase for summaries, e.g. "ohlc.high_ge_close (3 rows; BTC series ...)"."""
        parts = []
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} unexpected")
        if self.series:
            parts.append("series " + ", ".join(self.series))
        if self.error:
            parts.append(f"error: {self.error}")
        elif not self.unexpected_count and self.observed is not None:
            parts.append(f"observed {json_safe(self.observed)}")
        return f"{self.name} ({'; '.join(parts)})" if parts else self.name


@dataclass(frozen=True)
class QualityResult:
    """The outcome of one suite run over a table that may hold many series.

    `skipped` names checks that could not run because a column they need is missing or has an
    unusable type; the failed schema check that causes it is in `checks`.
    """

    suite: str
    success: bool
    checks: tuple[CheckResult, ...]
    row_count: int
    series_count: int
    skipped: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def check(self, name: str) -> CheckResult:
        """The check with this id; KeyError when it did not run."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def summary(self) -> str:
        failed = self.failures()
        head = (f"{self.suite}: {'PASSED' if self.success else 'FAILED'} "
                f"{len(self.checks) - len(failed)}/{len(self.checks)} checks passed, "
                f"{self.row_count} rows, {self.series_count} series")
        if failed:
            head += "; failed: " + "; ".join(c.brief() for c in failed)
        if self.skipped:
            head += f"; skipped: {', '.join(self.skipped)}"
        return head

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> QualityResult:
        """A result back from its `to_dict()` form (e.g. a stored result, to report it again)."""
        checks = tuple(CheckResult(**{**c, "columns": tuple(c.get("columns") or ()),
                                      "examples": tuple(c.get("examples") or ()),
                                      "series": tuple(c.get("series") or ())}) for c in doc.get("checks") or [])
        return cls(suite=doc["suite"], success=bool(doc["success"]), checks=checks, row_count=int(doc["row_count"]),
                   series_count=int(doc["series_count"]), skipped=tuple(doc.get("skipped") or ()),
                   parameters=dict(doc.get("parameters") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "success": self.success,
            "row_count": self.row_count,
            "series_count": self.series_count,
            "parameters": {k: json_safe(v) for k, v in sorted(self.parameters.items())},
            "checks": [c.to_dict() for c in self.checks],
            "skipped": list(self.skipped),
        }


def json_safe(value: Any) -> Any:
    """Convert numpy/pandas scalars, timestamps, tuples and non-finite floats to JSON-safe values.

    Non-finite floats become the strings "NaN", "Infinity", "-Infinity" so `json.dumps(...,
    allow_nan=False)` works; timestamps become ISO-8601 strings.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [json_safe(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    # numpy / pandas scalars, without importing them here
    kind = type(value).__module__.split(".")[0]
    if kind in ("numpy", "pandas"):
        if type(value).__name__ in ("datetime64", "timedelta64"):
            return None if str(value) in ("NaT", "nat") else str(value)
        if hasattr(value, "isoformat"):  # pandas Timestamp
            try:
                return value.isoformat()
            except ValueError:  # NaT
                return None
        if type(value).__name__ in ("NAType", "NaTType"):
            return None
        if hasattr(value, "item"):
            return json_safe(value.item())
        if hasattr(value, "tolist"):
            return json_safe(value.tolist())
    return str(value)


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(x)
