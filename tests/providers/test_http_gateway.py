"""The HTTP gateway: backoff schedule, Retry-After / X-RateLimit-Reset parsing, rate budget, error
mapping and retries. All traffic goes through `httpx.MockTransport`; `sleep` and `clock` are injected."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from coinline.errors import (
    BadDataError,
    DamagedAnswerError,
    IncompletePageError,
    NoDataError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from coinline.providers.http import (
    Gateway,
    RateBudget,
    RetryPolicy,
    backoff_delay,
    build_client,
    describe,
    parse_retry_after,
)

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "sk-live-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OK = [{"ok": 1}]


class Script:
    """Answers requests from a list (responses, exceptions or callables); repeats the last one."""

    def __init__(self, *steps: Any):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(request)
        return step


def gateway(script: Callable[[httpx.Request], httpx.Response], *, max_attempts: int = 4,
            headers: dict[str, str] | None = None) -> tuple[Gateway, list[float]]:
    waits: list[float] = []
    client = build_client("https://api.example.test", headers=headers,
                          transport=httpx.MockTransport(script))
    gw = Gateway("testprov", client, policy=RetryPolicy(max_attempts=max_attempts, base_delay=0.5, max_delay=60.0),
                 sleep=waits.append, clock=lambda: NOW)
    return gw, waits


def json_ok(body: Any = OK, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers)


# ------------------------------------------------------------------------------------ pure helpers


def test_backoff_delay_is_exponential_capped_and_hint_wins():
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=10.0)
    assert [backoff_delay(a, policy) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff_delay(1, policy, retry_after=3.0) == 3.0
    assert backoff_delay(5, policy, retry_after=0.0) == 0.0
    assert backoff_delay(1, policy, retry_after=500.0) == 10.0
    assert backoff_delay(1, policy, retry_after=-4.0) == 0.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "Fri, 01 Mar 2024 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Fri, 01 Mar 2024 11:00:00 GMT"}, 0.0),
        ({"x-ratelimit-reset": "2024-03-01T12:00:12.5000000Z"}, 12.5),
        ({"x-ratelimit-reset": "2024-03-01T11:59:00Z"}, 0.0),
        ({"retry-after": "4", "x-ratelimit-reset": "2024-03-01T13:00:00Z"}, 4.0),
        ({"retry-after": "soon", "x-ratelimit-reset": "2024-03-01T12:00:05Z"}, 5.0),
        ({"retry-after": "nan", "x-ratelimit-reset": "2024-03-01T12:00:05Z"}, 5.0),
        ({"retry-after": "inf"}, None),
        ({"x-ratelimit-reset": "tomorrow"}, None),
        ({"x-ratelimit-reset": "0001-01-01T00:00:00+14:00"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers, NOW) == expected


def test_parse_retry_after_is_case_insensitive_on_httpx_headers():
    assert parse_retry_after(httpx.Headers({"Retry-After": "9"}), NOW) == 9.0
    assert parse_retry_after(httpx.Headers({"X-RateLimit-Reset": "2024-03-01T12:01:00Z"}), NOW) == 60.0


def test_describe_sorts_params_and_never_shows_headers():
    assert describe("GET", "/v1/x", {"b": 2, "a": "x y"}) == "GET /v1/x?a=x+y&b=2"
    assert describe("GET", "/v1/x", None) == "GET /v1/x"
    assert describe("GET", "/v1/x", {}) == "GET /v1/x"


def test_rate_budget_update_and_wait():
    budget = RateBudget()
    assert budget.wait_needed() == 0.0
    budget.update({"x-ratelimit-remaining": "10", "x-ratelimit-overage": "DISABLED",
                   "x-ratelimit-reset": "2024-03-01T12:10:00Z"}, NOW)
    assert (budget.remaining, budget.overage, budget.reset_in) == (10.0, False, 600.0)
    assert budget.wait_needed() == 0.0
    budget.update({"x-ratelimit-remaining": "0", "x-ratelimit-overage": "disabled",
                   "x-ratelimit-reset": "2024-03-01T12:00:45Z"}, NOW)
    assert budget.wait_needed() == 45.0
    budget.update({"x-ratelimit-remaining": "-66181", "x-ratelimit-overage": "enabled",
                   "x-ratelimit-reset": "2024-03-02T12:00:00Z"}, NOW)
    assert budget.remaining == -66181.0 and budget.overage and budget.wait_needed() == 0.0
    budget.update({"x-ratelimit-remaining": "lots"}, NOW)    # unparseable: keep the last value
    assert budget.remaining == -66181.0
    assert RateBudget(remaining=0, reset_in=None).wait_needed() == 1.0


# ------------------------------------------------------------------------------------ success path


def test_get_json_returns_body_and_response_and_counts():
    script = Script(json_ok())
    gw, waits = gateway(script)
    body, response = gw.get_json("/v1/thing", {"z": 1, "a": "b"}, series="s1")
    assert body == OK and response.status_code == 200
    assert gw.requests_made == 1 and gw.retries_made == 0 and waits == []
    assert dict(script.requests[0].url.params) == {"z": "1", "a": "b"}


def test_headers_are_sent_and_not_described():
    script = Script(json_ok())
    gw, _ = gateway(script, headers={"X-Api-Key": SECRET})
    gw.get_json("/v1/thing", {"q": 1})
    assert script.requests[0].headers["x-api-key"] == SECRET
    assert SECRET not in str(script.requests[0].url)


# ------------------------------------------------------------------------------------ error mapping


@pytest.mark.parametrize("status", [400, 401, 403, 404, 301, 418])
def test_client_errors_are_provider_errors_without_retry(status):
    script = Script(httpx.Response(status, json={"error": f"nope {status}"}))
    gw, waits = gateway(script)
    with pytest.raises(ProviderError, match=f"HTTP {status}") as info:
        gw.get_json("/v1/thing", {"a": 1}, series="BTC-USD")
    assert type(info.value) is ProviderError
    assert info.value.provider == "testprov" and info.value.series == "BTC-USD"
    assert info.value.request == "GET /v1/thing?a=1"
    assert len(script.requests) == 1 and waits == []


def test_error_body_shapes_are_summarised():
    gw, _ = gateway(Script(httpx.Response(403, json={"status": {"error_message": "plan too small"}})))
    with pytest.raises(ProviderError, match="HTTP 403: plan too small"):
        gw.get_json("/x")
    gw, _ = gateway(Script(httpx.Response(400, text="plain\ntext")))
    with pytest.raises(ProviderError, match="HTTP 400: plain text"):
        gw.get_json("/x")


def test_error_body_echoing_a_secret_header_is_redacted():
    script = Script(httpx.Response(401, json={"error": f"Invalid API key: {SECRET}"}))
    gw, _ = gateway(script, headers={"X-CoinAPI-Key": SECRET})
    with pytest.raises(ProviderError) as info:
        gw.get_json("/x")
    assert SECRET not in str(info.value)
    assert "Invalid API key: **********" in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 520])
def test_server_errors_are_retried_then_succeed(status):
    script = Script(httpx.Response(status, text="busy"), httpx.Response(status, text="busy"), json_ok())
    gw, waits = gateway(script)
    body, _ = gw.get_json("/x")
    assert body == OK
    assert waits == [0.5, 1.0] and gw.retries_made == 2 and len(script.requests) == 3


def test_give_up_after_max_attempts_keeps_the_type_and_names_everything():
    script = Script(httpx.Response(503, text="busy"))
    gw, waits = gateway(script, max_attempts=3)
    with pytest.raises(TransientError) as info:
        gw.get_json("/v1/x", {"p": "q"}, series="ser")
    text = str(info.value)
    assert text.startswith("gave up after 3 attempts: server error (HTTP 503)")
    assert "provider=testprov" in text and "series=ser" in text and "request=GET /v1/x?p=q" in text
    assert isinstance(info.value.__cause__, TransientError)
    assert len(script.requests) == 3 and waits == [0.5, 1.0]


def test_550_is_no_data_without_retry():
    script = Script(httpx.Response(550, json={"error": "No data"}))
    gw, waits = gateway(script)
    with pytest.raises(NoDataError, match="HTTP 550"):
        gw.get_json("/x")
    assert len(script.requests) == 1 and waits == []


def test_429_retry_after_seconds_is_honoured():
    script = Script(httpx.Response(429, headers={"Retry-After": "3"}), json_ok())
    gw, waits = gateway(script)
    assert gw.get_json("/x")[0] == OK
    assert waits == [3.0]


def test_429_retry_after_http_date_is_honoured():
    script = Script(httpx.Response(429, headers={"Retry-After": "Fri, 01 Mar 2024 12:00:20 GMT"}), json_ok())
    gw, waits = gateway(script)
    gw.get_json("/x")
    assert waits == [20.0]


def test_429_x_ratelimit_reset_is_honoured():
    script = Script(httpx.Response(429, headers={"x-ratelimit-reset": "2024-03-01T12:00:04.2500000Z"}), json_ok())
    gw, waits = gateway(script)
    gw.get_json("/x")
    assert waits == [4.25]


def test_429_with_spent_budget_waits_once_not_twice():
    headers = {"x-ratelimit-reset": "2024-03-01T12:00:09Z", "x-ratelimit-remaining": "0",
               "x-ratelimit-overage": "DISABLED"}
    script = Script(httpx.Response(429, headers=headers), json_ok())
    gw, waits = gateway(script)
    gw.get_json("/x")
    assert waits == [9.0]


def test_429_without_hint_uses_backoff_and_gives_up_as_rate_limited():
    script = Script(httpx.Response(429, json={"error": "You have exceeded your API key rate limits"}))
    gw, waits = gateway(script, max_attempts=4)
    with pytest.raises(RateLimitedError, match="gave up after 4 attempts: rate limited"):
        gw.get_json("/x")
    assert waits == [0.5, 1.0, 2.0]


def test_retry_after_longer_than_max_delay_is_capped():
    script = Script(httpx.Response(429, headers={"retry-after": "3600"}), json_ok())
    gw, waits = gateway(script)
    gw.get_json("/x")
    assert waits == [60.0]


# ------------------------------------------------------------------------------------ rate budget


def test_spent_budget_with_overage_disabled_waits_until_reset_before_the_next_request():
    spent = {"x-ratelimit-remaining": "0", "x-ratelimit-overage": "DISABLED",
             "x-ratelimit-reset": "2024-03-01T12:00:30.0000000Z"}
    script = Script(json_ok(**spent), json_ok(**{**spent, "x-ratelimit-remaining": "99"}), json_ok())
    gw, waits = gateway(script)
    gw.get_json("/a")
    assert waits == []                   # the first request had no budget information yet
    gw.get_json("/b")
    assert waits == [30.0]               # waited for the reset before sending
    gw.get_json("/c")
    assert waits == [30.0]               # budget replenished: no further wait
    assert len(script.requests) == 3


def test_spent_budget_wait_is_capped_at_max_delay():
    spent = {"x-ratelimit-remaining": "-1", "x-ratelimit-overage": "disabled",
             "x-ratelimit-reset": "2024-03-02T12:00:00Z"}
    gw, waits = gateway(Script(json_ok(**spent)))
    gw.get_json("/a")
    gw.get_json("/b")
    assert waits == [60.0]


def test_negative_remaining_with_overage_enabled_never_waits():
    headers = {"x-ratelimit-remaining": "-66181", "x-ratelimit-overage": "enabled",
               "x-ratelimit-reset": "2024-03-02T12:00:00Z"}
    gw, waits = gateway(Script(json_ok(**headers)))
    for _ in range(3):
        gw.get_json("/a")
    assert waits == [] and gw.budget.remaining == -66181.0


# ------------------------------------------------------------------------------------ transport failures


class _BrokenStream(httpx.SyncByteStream):
    """A body that starts and then dies, like a connection cut mid-response."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'[{"time_period_start": "2024-'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


@pytest.mark.parametrize(
    "failure",
    [
        httpx.RemoteProtocolError("incomplete chunked read"),
        httpx.ReadError("connection reset by peer"),
        httpx.ConnectError("connection refused"),
        lambda request: httpx.Response(200, stream=_BrokenStream(), headers={"content-type": "application/json"}),
    ],
    ids=["remote-protocol", "read-error", "connect-error", "truncated-stream"],
)
def test_transport_failures_are_transient_and_retried(failure):
    script = Script(failure, json_ok())
    gw, waits = gateway(script)
    assert gw.get_json("/x")[0] == OK
    assert waits == [0.5]


def test_truncated_stream_gives_up_as_transient():
    script = Script(lambda r: httpx.Response(200, stream=_BrokenStream()))
    gw, _ = gateway(script, max_attempts=2)
    with pytest.raises(TransientError, match="truncated or reset body"):
        gw.get_json("/x")


def test_timeouts_are_transient():
    script = Script(httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect timed out"), json_ok())
    gw, waits = gateway(script)
    assert gw.get_json("/x")[0] == OK
    assert waits == [0.5, 1.0]
    gw, _ = gateway(Script(httpx.ReadTimeout("read timed out")), max_attempts=2)
    with pytest.raises(TransientError, match="gave up after 2 attempts: request timed out"):
        gw.get_json("/x")


# ------------------------------------------------------------------------------------ bad bodies


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text="<html><body>captcha</body></html>", headers={"content-type": "text/html"}),
         "HTML page"),
        (httpx.Response(200, text="  <!doctype html><p>hi</p>"), "HTML page"),
        (httpx.Response(200, text="[" + "9" * 5000 + "]"), "unreadable JSON"),
        (httpx.Response(200, text="[" * 100_000 + "]" * 100_000), "unreadable JSON"),
    ],
    ids=["html", "html-no-type", "huge-int", "deep-nesting"],
)
def test_bad_bodies_are_bad_data_without_retry(response, message):
    script = Script(response)
    gw, waits = gateway(script)
    with pytest.raises(BadDataError, match=message) as info:
        gw.get_json("/v1/x", {"a": 1}, series="ser")
    assert not isinstance(info.value, DamagedAnswerError)
    assert "provider=testprov" in str(info.value) and "request=GET /v1/x?a=1" in str(info.value)
    assert len(script.requests) == 1 and waits == []


DAMAGED_BODIES = pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text=""), "empty response body"),
        (httpx.Response(200, text="\n\t "), "empty response body"),
        (httpx.Response(200, text='{"a": 1'), "malformed JSON"),
        (httpx.Response(200, text="[1, 2,]"), "malformed JSON"),
        (httpx.Response(200, text="undefined"), "malformed JSON"),
    ],
    ids=["empty", "blank", "truncated-json", "trailing-comma", "not-json"],
)


@DAMAGED_BODIES
def test_damaged_bodies_are_retried_like_a_5xx(response, message):
    script = Script(response, json_ok())
    gw, waits = gateway(script)
    assert gw.get_json("/x")[0] == OK
    assert waits == [0.5] and gw.retries_made == 1 and len(script.requests) == 2


@DAMAGED_BODIES
def test_damaged_bodies_give_up_as_bad_data_after_the_same_limit(response, message):
    script = Script(response)
    gw, waits = gateway(script, max_attempts=3)
    with pytest.raises(DamagedAnswerError, match=f"gave up after 3 attempts: {message}") as info:
        gw.get_json("/v1/x", {"a": 1}, series="ser")
    assert isinstance(info.value, BadDataError)
    assert "provider=testprov" in str(info.value) and "request=GET /v1/x?a=1" in str(info.value)
    assert len(script.requests) == 3 and waits == [0.5, 1.0]


def test_parse_runs_inside_the_retry_loop_and_its_damage_is_retried():
    script = Script(json_ok([3, 1]), json_ok([1, 3]))

    def ascending(body):
        if body != sorted(body):
            raise DamagedAnswerError("rows out of order", provider="testprov")
        return len(body)

    gw, waits = gateway(script)
    assert gw.get("/x", parse=ascending) == 2
    assert waits == [0.5] and gw.retries_made == 1 and len(script.requests) == 2


def test_incomplete_page_gives_up_keeping_what_the_provider_vouched_for():
    def empty_page(body):
        raise IncompletePageError("empty page", missing_from=NOW, missing_until=NOW + timedelta(hours=3),
                                  provider="testprov")

    script = Script(json_ok([]))
    gw, waits = gateway(script, max_attempts=2)
    with pytest.raises(IncompletePageError, match="gave up after 2 attempts: empty page") as info:
        gw.get("/x", series="s", parse=empty_page)
    assert (info.value.missing_from, info.value.missing_until) == (NOW, NOW + timedelta(hours=3))
    assert info.value.series == "s" and waits == [0.5]


def test_a_parse_error_that_is_not_damage_is_not_retried():
    def rule_broken(body):
        raise BadDataError("close is nan", provider="testprov")

    script = Script(json_ok())
    gw, waits = gateway(script)
    with pytest.raises(BadDataError, match="close is nan"):
        gw.get("/x", parse=rule_broken)
    assert len(script.requests) == 1 and waits == []


def test_each_retry_is_logged_at_info_without_secrets(caplog):
    script = Script(httpx.Response(503, text="busy"), httpx.Response(200, text="{"), json_ok())
    gw, _ = gateway(script, headers={"X-Api-Key": SECRET})
    with caplog.at_level(logging.INFO, logger="coinline.providers.http"):
        gw.get_json("/v1/x", {"a": 1}, series="ser")
    lines = [r.getMessage() for r in caplog.records if r.name == "coinline.providers.http"]
    assert len(lines) == 2 and all(r.levelno == logging.INFO for r in caplog.records)
    assert lines[0].startswith("testprov: retry 1 of 3 in 0.5s after: server error (HTTP 503)")
    assert lines[1].startswith("testprov: retry 2 of 3 in 1s after: malformed JSON")
    assert all("request=GET /v1/x?a=1" in line and SECRET not in line for line in lines)


def test_a_refused_connection_names_the_host_and_nothing_else():
    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    gw, waits = gateway(Script(refuse), max_attempts=2, headers={"X-Api-Key": SECRET})
    with pytest.raises(TransientError) as info:
        gw.get_json("/v1/x", {"a": 1})
    text = str(info.value)
    assert text.startswith("gave up after 2 attempts: connection refused to api.example.test")
    assert "truncated" not in text and SECRET not in text and waits == [0.5]


def test_a_refused_connection_to_a_real_closed_port_says_so():
    import socket

    with socket.socket() as probe:   # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        client = build_client(f"http://127.0.0.1:{port}")
        gw = Gateway("testprov", client, policy=RetryPolicy(max_attempts=1), sleep=lambda s: None)
        with pytest.raises(TransientError, match=f"connection refused to 127.0.0.1:{port} "):
            gw.get_json("/x")
        client.close()


def test_other_connect_failures_name_the_host_and_the_reason():
    def unresolvable(request):
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    gw, _ = gateway(Script(unresolvable), max_attempts=1)
    with pytest.raises(TransientError, match=r"cannot connect to api.example.test \(\[Errno -2\] Name or service"):
        gw.get_json("/x")


def test_clock_is_used_for_reset_arithmetic():
    ticks = iter([NOW, NOW + timedelta(seconds=10)])
    waits: list[float] = []
    script = Script(httpx.Response(429, headers={"x-ratelimit-reset": "2024-03-01T12:00:30Z"}), json_ok())
    client = build_client("https://api.example.test", transport=httpx.MockTransport(script))
    gw = Gateway("p", client, sleep=waits.append, clock=lambda: next(ticks, NOW + timedelta(seconds=10)))
    gw.get_json("/x")
    # the budget update reads the clock first (t=0), the 429 hint second (t=10): 20 s left then
    assert waits == [20.0]
