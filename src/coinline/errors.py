"""Typed errors. Each names what failed (provider, series, request, field, file) in one line.

Transient and rate-limited errors, and damaged answers (`DamagedAnswerError`), may be retried; other
bad-data and configuration errors may not.
"""

from __future__ import annotations


class CoinlineError(Exception):
    """Base of every error coinline raises on purpose. `exit_code` is what the CLI exits with: 2 for a
    configuration or input problem (the default), 1 for a provider or runtime failure, 3 for a held lease."""

    exit_code = 2


class ConfigError(CoinlineError):
    """A setting is missing, unknown or malformed (names the variable)."""


class ProviderError(CoinlineError):
    """A provider request failed. `context` names provider, series and request."""

    exit_code = 1

    def __init__(self, message: str, *, provider: str, series: str = "", request: str = ""):
        parts = [f"provider={provider}"]
        if series:
            parts.append(f"series={series}")
        if request:
            parts.append(f"request={request}")
        super().__init__(f"{message} [{' '.join(parts)}]")
        self.provider = provider
        self.series = series
        self.request = request


class TransientError(ProviderError):
    """5xx, timeouts, connection resets, truncated bodies: retry with backoff."""


class RateLimitedError(TransientError):
    """429 or a provider's rate-limit error; `retry_after` seconds when the provider said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BadDataError(ProviderError):
    """The provider answered, but the body is malformed, mistyped or violates candle rules."""


class DamagedAnswerError(BadDataError):
    """The answer is damaged in a way a fresh request may repair: malformed or empty JSON, rows repeated
    or out of order, a page that contradicts what the provider itself says exists. Retried by the
    gateway's `RetryPolicy` like a transient fault; after the last attempt it is bad data."""


class IncompletePageError(DamagedAnswerError):
    """A page is empty or stops short while the provider says candles exist there (its listing, its own
    cursor). `missing_from`/`missing_until` bound the candles the provider vouches for but did not send,
    when it says (open times, [from, until))."""

    def __init__(self, message: str, *, missing_from=None, missing_until=None, **kw):
        super().__init__(message, **kw)
        self.missing_from = missing_from
        self.missing_until = missing_until


class NoDataError(ProviderError):
    """The provider says it has no data for this request (CoinAPI 550, empty history)."""


class NotListedError(ProviderError):
    """The venue does not list this (coin, quote) pair: an explicit, reported outcome."""


class LeaseHeldError(CoinlineError):
    """Another ingester holds the lease on this series."""

    exit_code = 3


class QualityGateError(CoinlineError):
    """A data-quality suite failed; materialization is blocked."""

    exit_code = 1


class ImportFormatError(CoinlineError):
    """A file given to `coinline import` cannot be read in the stated format (names file and line)."""


class VersionGoneError(CoinlineError):
    """A table version was asked for that `coinline maintain` cleaned out of the Delta log (it keeps the newest
    state and every version a dataset pins)."""


class DamagedTableError(CoinlineError):
    """A lake table's Delta log or data files are damaged (names the table and object); `coinline doctor`
    explains the damage and `coinline doctor --repair` performs the safe repairs. A runtime failure: exit 1."""

    exit_code = 1
