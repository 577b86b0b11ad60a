"""Switchable, count-based faults for the replay server.

Each switch arms a fault for the next `n` requests that match a provider ("coinapi", "kraken",
"coingecko"; None = any) and optionally a substring of the request target (path plus query, e.g.
"KRAKEN_SPOT_BTC_USD" or "pair=XXBTZUSD"). Faults fire in the order they were added, at most one
"before" fault and one "after" fault per request. Thread-safe: tests may arm faults while the server runs.

Before routing: rate_limit, server_error, html_error (replace the answer), timeout (sleep `delay_s`, then
answer; with no `delay_s`, never answer: hold the request until the client hangs up, so the client's own
timeout fires whatever the machine's load, with nothing raced against a server-side delay).
After routing: truncated (Content-Length of the full body, half written, connection closed),
malformed (invalid JSON), and page faults on answers that carry rows: duplicate (rows of the previous
page repeated at the start), out_of_order (deterministic shuffle), empty (no rows), short (only the first
`keep` rows, default half; the rest of the answer, e.g. Kraken's `last`, unchanged).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = ("coinapi", "kraken", "coingecko")
BEFORE = ("rate_limit", "server_error", "html_error", "timeout")
AFTER = ("truncated", "malformed")
PAGE = ("duplicate", "out_of_order", "empty", "short")


@dataclass
class Fault:
    kind: str
    remaining: int
    provider: str | None = None
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, provider: str | None, target: str) -> bool:
        return (self.remaining > 0 and (self.provider is None or self.provider == provider)
                and (self.path is None or self.path in target))


class FaultPlan:
    """An ordered list of armed faults; `fired` logs (kind, provider, target) of each firing."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: list[dict[str, Any]] = []

    def add(self, kind: str, n: int, *, provider: str | None = None, path: str | None = None, **options: Any) -> Fault:
        if kind not in BEFORE + AFTER + PAGE:
            raise ValueError(f"unknown fault {kind!r}")
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
        fault = Fault(kind, int(n), provider, path, options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def rate_limit_burst(self, n: int, retry_after: float = 0, **where: Any) -> Fault:
        return self.add("rate_limit", n, retry_after=retry_after, **where)

    def server_errors(self, n: int, status: int = 500, **where: Any) -> Fault:
        return self.add("server_error", n, status=status, **where)

    def timeouts(self, n: int, delay_s: float | None = None, **where: Any) -> Fault:
        return self.add("timeout", n, delay_s=delay_s, **where)

    def truncated_bodies(self, n: int, **where: Any) -> Fault:
        return self.add("truncated", n, **where)

    def html_error(self, n: int, status: int = 502, **where: Any) -> Fault:
        return self.add("html_error", n, status=status, **where)

    def malformed_json(self, n: int, **where: Any) -> Fault:
        return self.add("malformed", n, **where)

    def duplicate_pages(self, n: int, k: int = 3, **where: Any) -> Fault:
        return self.add("duplicate", n, k=k, **where)

    def out_of_order(self, n: int, **where: Any) -> Fault:
        return self.add("out_of_order", n, **where)

    def empty_pages(self, n: int, **where: Any) -> Fault:
        return self.add("empty", n, **where)

    def short_pages(self, n: int, keep: int | None = None, **where: Any) -> Fault:
        """The next `n` matching pages keep only their first `keep` rows (default: half of them)."""
        return self.add("short", n, keep=keep, **where)

    def take(self, provider: str | None, target: str, kinds: tuple[str, ...]) -> Fault | None:
        """Consume one firing of the first armed fault of `kinds` matching this request."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(provider, target):
                    fault.remaining -= 1
                    fault.fired += 1
                    self.fired.append({"kind": fault.kind, "provider": provider, "target": target})
                    return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def apply_page_fault(fault: Fault, rows: list, previous: list | None) -> None:
    """Rewrite `rows` in place for a page fault."""
    if fault.kind == "empty":
        rows[:] = []
    elif fault.kind == "short":
        keep = fault.options.get("keep")
        del rows[len(rows) // 2 if keep is None else max(0, int(keep)):]
    elif fault.kind == "out_of_order":
        random.Random(fault.fired).shuffle(rows)
    elif fault.kind == "duplicate":
        k = int(fault.options.get("k", 3))
        head = list(previous[-k:]) if previous else list(rows[:k])
        rows[:0] = head


def malform(body: bytes) -> bytes:
    """A complete body that is not valid JSON."""
    return body[: max(1, len(body) // 2)] + b'",,}'


CLOUDFLARE_HTML = """<!DOCTYPE html>
<html lang="en-US">
<head><title>{host} | {status}: {reason}</title><meta charset="UTF-8" /></head>
<body><div id="cf-wrapper"><div id="cf-error-details">
<h1><span>{reason}</span> <span class="code-label">Error code {status}</span></h1>
<p>Visit <a href="https://www.cloudflare.com/5xx-error-landing">cloudflare.com</a> for more information.</p>
<p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Performance &amp; security by Cloudflare</p>
</div></div></body>
</html>
"""
