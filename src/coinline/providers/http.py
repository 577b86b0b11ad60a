"""The HTTP edge shared by every adapter: client factory, error mapping, retry with backoff, rate budget.

`Gateway.get` (and `get_json`) is the one way adapters talk to the network. It maps transport failures
and HTTP statuses to the typed errors of `coinline.errors`, retries what `RetryPolicy.retryable` says a
fresh request may repair with a pure backoff schedule that honours `Retry-After` / `X-RateLimit-Reset`,
and tracks a provider's advertised request budget. The adapter's own parsing runs inside the retry loop
(`parse=`), so a damaged page (malformed JSON, rows repeated or out of order, a page contradicting the
provider's own listing) is retried exactly like a 5xx, for every provider alike. Attempts are counted,
never timed; every retry is logged at INFO on `coinline.providers.http` (shown by `coinline -v`).
Secrets travel only in headers and never appear in error text (requests are described without them).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx

from coinline import jsonbody
from coinline.errors import (
    BadDataError,
    DamagedAnswerError,
    NoDataError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from coinline.timeframes import parse_iso_utc

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry policy of every provider: which failures a fresh request may repair, how many
    attempts (counted, never timed) and how long to wait between them (`backoff_delay`)."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0

    def retryable(self, exc: BaseException) -> bool:
        """Transient faults (5xx, 429, timeouts, refused or reset connections) and damaged answers
        (malformed JSON, empty body, repeated or out-of-order rows, an empty or short page where the
        provider says data exists). Client errors, "no data", HTML pages and rule-breaking values are
        answers a retry would only repeat."""
        return isinstance(exc, TransientError | DamagedAnswerError)


def backoff_delay(attempt: int, policy: RetryPolicy, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based). Pure and deterministic:
    the provider's own hint wins; otherwise exponential, capped."""
    if retry_after is not None:
        return max(0.0, min(retry_after, policy.max_delay))
    return min(policy.base_delay * (2 ** (attempt - 1)), policy.max_delay)


def parse_retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `X-RateLimit-Reset` (ISO-8601)."""
    value = headers.get("retry-after")
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                from email.utils import parsedate_to_datetime

                return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
            except (TypeError, ValueError, OverflowError):
                pass
        else:
            if math.isfinite(seconds):  # "nan"/"inf" are no hint; fall through to the reset header
                return max(0.0, seconds)
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, (parse_iso_utc(reset) - now).total_seconds())
        except (ValueError, OverflowError):
            return None
    return None


@dataclass
class RateBudget:
    """A provider's advertised request budget (CoinAPI `X-RateLimit-*`). When it is spent and the
    provider does not allow overage, requests wait for the reset instead of burning 429s."""

    remaining: float | None = None
    reset_in: float | None = None
    overage: bool = False

    def update(self, headers: Mapping[str, str], now: datetime) -> None:
        rem = headers.get("x-ratelimit-remaining")
        if rem is not None:
            try:
                self.remaining = float(rem)
            except ValueError:
                pass
        self.overage = headers.get("x-ratelimit-overage", "").upper() == "ENABLED"
        if "x-ratelimit-reset" in headers:
            self.reset_in = parse_retry_after({"x-ratelimit-reset": headers["x-ratelimit-reset"]}, now)

    def wait_needed(self) -> float:
        if self.remaining is not None and self.remaining <= 0 and not self.overage:
            return self.reset_in or 1.0
        return 0.0


def describe(method: str, path: str, params: Mapping[str, Any] | None) -> str:
    """A request as text for errors and manifests: method, path and query, never headers."""
    query = f"?{urlencode(sorted((params or {}).items()))}" if params else ""
    return f"{method} {path}{query}"


@dataclass
class Gateway:
    """One provider's HTTP connection with retries. Pass an `httpx.Client` built on a MockTransport
    or aimed at the replay server in tests; `sleep` and `clock` are injectable."""

    provider: str
    client: httpx.Client
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    budget: RateBudget = field(default_factory=RateBudget)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    requests_made: int = 0
    retries_made: int = 0

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, series: str = "",
                 check: Callable[[Any], None] | None = None) -> tuple[Any, httpx.Response]:
        """GET `path` and parse JSON. `check(body)`, when given, runs inside the retry loop so a
        provider's HTTP-200 error envelope (e.g. Kraken `EGeneral:Too many requests`) can raise a
        `TransientError`/`RateLimitedError` and be retried like a 5xx/429; other errors propagate."""

        def answer(body: Any, response: httpx.Response) -> tuple[Any, httpx.Response]:
            if check is not None:
                check(body)
            return body, response

        return self._retrying(path, params, series, answer)

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, series: str = "",
            parse: Callable[[Any], T]) -> T:
        """GET `path` and return `parse(body)`. `parse` runs inside the retry loop: what it raises is
        retried when the policy calls it retryable (a damaged page: `DamagedAnswerError`), up to the
        same limit as a 5xx, then re-raised with "gave up after N attempts"; anything else propagates."""
        return self._retrying(path, params, series, lambda body, _response: parse(body))

    def _retrying(self, path: str, params: Mapping[str, Any] | None, series: str,
                  attempt_once: Callable[[Any, httpx.Response], T]) -> T:
        request = describe("GET", path, params)
        attempt = 0
        while True:
            attempt += 1
            wait = self.budget.wait_needed()
            if wait:
                self.sleep(min(wait, self.policy.max_delay))
                self.budget.remaining = None
            try:
                body, response = self._once(path, params, series, request)
                return attempt_once(body, response)
            except ProviderError as exc:
                if not self.policy.retryable(exc):
                    raise
                if attempt >= self.policy.max_attempts:
                    raise _gave_up(exc, attempt, provider=self.provider, series=series, request=request) from exc
                hint = exc.retry_after if isinstance(exc, RateLimitedError) else None
                delay = backoff_delay(attempt, self.policy, hint)
                self.retries_made += 1
                log.info("%s: retry %d of %d in %gs after: %s", self.provider, attempt,
                         self.policy.max_attempts - 1, delay, exc)
                self.sleep(delay)
                if isinstance(exc, RateLimitedError):
                    # the 429's own hint (Retry-After, else X-RateLimit-Reset) has just been waited;
                    # do not wait for the same reset a second time through the budget
                    self.budget.remaining = None

    def _once(self, path: str, params: Mapping[str, Any] | None, series: str, request: str) -> tuple[Any, httpx.Response]:
        ctx = {"provider": self.provider, "series": series, "request": request}
        self.requests_made += 1
        try:
            # Streamed and joined here rather than `response.content`: httpx would cache the body on
            # the Response, which sits in a reference cycle with its stream, so every page (tens of MB)
            # would stay alive until a full garbage collection. Measured: 3.7 GB -> bounded on 5M rows.
            with self.client.stream("GET", path, params=params) as response:
                content = b"".join(response.iter_bytes())
        except httpx.TimeoutException:
            raise TransientError("request timed out", **ctx) from None
        except httpx.ConnectError as exc:
            raise TransientError(_connect_failure(exc, self.client), **ctx) from None
        except (httpx.TransportError, httpx.DecodingError, httpx.StreamError) as exc:
            raise TransientError(f"transport failure ({type(exc).__name__}: truncated or reset body)", **ctx) from None
        self.budget.update(response.headers, self.clock())
        status = response.status_code
        if status == 429:
            raise RateLimitedError("rate limited (HTTP 429)", retry_after=parse_retry_after(response.headers, self.clock()), **ctx)
        if status == 550:
            raise NoDataError("provider has no data (HTTP 550)", **ctx)
        if 500 <= status < 600:
            raise TransientError(f"server error (HTTP {status})", **ctx)
        if status != 200:
            raise ProviderError(f"HTTP {status}: {_short_body(content, response)}", **ctx)
        content_type = response.headers.get("content-type", "")
        head = content.lstrip()[:1]
        if "html" in content_type or head == b"<":
            raise BadDataError("got an HTML page instead of JSON (error or captcha page)", **ctx)
        if not head:
            raise DamagedAnswerError("empty response body", **ctx)
        try:
            return jsonbody.loads(content), response
        except json.JSONDecodeError as exc:
            raise DamagedAnswerError(f"malformed JSON ({exc.msg} at char {exc.pos} of {len(content)})", **ctx) from None
        except (ValueError, RecursionError) as exc:  # e.g. an integer over 4300 digits, absurd nesting
            raise BadDataError(f"unreadable JSON ({type(exc).__name__}) in a body of {len(content)} bytes",
                               **ctx) from None


def _gave_up(exc: ProviderError, attempts: int, *, provider: str, series: str, request: str) -> ProviderError:
    """The last error again, same type and attributes, saying how many attempts were made."""
    bare = str(exc).rsplit(" [provider=", 1)[0]        # without the context suffix ProviderError adds
    final = type(exc)(f"gave up after {attempts} attempts: {bare}",
                      provider=provider, series=series, request=request)
    for name, value in vars(exc).items():
        if name not in ("provider", "series", "request"):
            setattr(final, name, value)
    return final


def _connect_failure(exc: httpx.ConnectError, client: httpx.Client) -> str:
    """What a failed connection says: "connection refused to <host:port>" when the peer refused it,
    else "cannot connect to <host:port> (<reason>)". Host and port only: never the URL's user info."""
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised without its request
        url = client.base_url
    where = f"{url.host}:{url.port}" if url.port else url.host
    chain, cause = [], exc.__cause__ or exc.__context__
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ConnectionRefusedError) for c in chain) or "refused" in str(exc).lower():
        return f"connection refused to {where}"
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return f"cannot connect to {where} ({reason})"


_SECRET_HEADER_WORDS = ("key", "auth", "token", "secret", "sign", "session", "cookie", "password")


def _short_body(content: bytes, response: httpx.Response) -> str:
    """The start of an error body, with any secret request-header value (API key, token) removed
    in case the provider echoes it back."""
    return _redact_request_secrets(_body_excerpt(content), response)


def _body_excerpt(content: bytes) -> str:
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return content[:120].decode("utf-8", "replace").replace("\n", " ")
    if isinstance(body, dict):
        status = body.get("status")
        err = body.get("error") or (status.get("error_message") if isinstance(status, dict) else None)
        if err:
            return str(err)[:200]
    return json.dumps(body)[:120]


def _redact_request_secrets(text: str, response: httpx.Response) -> str:
    try:
        headers = response.request.headers
    except RuntimeError:  # a response built without a request
        return text
    for name, value in headers.items():
        if value and len(value) >= 4 and any(word in name.lower() for word in _SECRET_HEADER_WORDS):
            text = text.replace(value, "**********")
    return text


def build_client(base_url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = 30.0,
                 transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for one provider. Secret headers are set here and nowhere else. `timeout=None`
    waits as long as the peer takes (tests against the in-process replay venue)."""
    return httpx.Client(base_url=base_url, headers=dict(headers or {}), timeout=timeout, transport=transport,
                        follow_redirects=False)
