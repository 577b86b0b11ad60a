"""`ReplayServer`: a local HTTP server speaking CoinAPI REST v1 (/v1/...), Kraken public REST
(/0/public/...) and CoinGecko v3 (/api/v3/...) over a `SimulatedMarket`, with switchable faults.

Point the adapters at `coinapi_url`, `kraken_url` (base + "/0") and `coingecko_url` (base + "/api/v3").
`requests` logs method, path, query parameters (secrets redacted), status, provider, fault and row
count of every request; header values are never logged.
"""

from __future__ import annotations

import select
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from coinline.replay import coinapi_routes, coingecko_routes, kraken_routes
from coinline.replay.faults import (
    AFTER,
    BEFORE,
    CLOUDFLARE_HTML,
    PAGE,
    Fault,
    FaultPlan,
    apply_page_fault,
    malform,
)
from coinline.replay.market import SimulatedMarket
from coinline.replay.profiles import crc
from coinline.replay.reply import Reply

_ROUTES = {"coinapi": coinapi_routes.handle, "kraken": kraken_routes.handle, "coingecko": coingecko_routes.handle}
_HOSTS = {"coinapi": "rest.coinapi.io", "kraken": "api.kraken.com", "coingecko": "api.coingecko.com"}
_SECRET_WORDS = ("key", "token", "secret", "auth", "sign")
_PAGE_KEYS = ("pair", "interval", "period_id", "vs_currency")
COINGECKO_429 = {"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit. Please visit "
                            "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits."}}


def provider_of(path: str) -> str | None:
    if path.startswith("/v1/"):
        return "coinapi"
    if path.startswith("/0/"):
        return "kraken"
    if path == "/api/v3" or path.startswith("/api/v3/"):
        return "coingecko"
    return None


class ReplayServer:
    """The offline venue. `with ReplayServer(market) as srv:` starts it; `srv.base_url` is its root."""

    def __init__(self, market: SimulatedMarket, *, faults: FaultPlan | None = None,
                 required_coinapi_key: str | None = None, coinapi_exchange: str = "KRAKEN",
                 host: str = "127.0.0.1", port: int = 0, coinapi_quota: int = 1_000_000_000,
                 coinapi_overage: bool = False):
        self.market = market
        self.faults = faults if faults is not None else FaultPlan()
        self.required_coinapi_key = required_coinapi_key
        self.coinapi_exchange = coinapi_exchange.upper()
        self.coinapi_quota, self.coinapi_overage = coinapi_quota, coinapi_overage
        self.host, self.port = host, port
        self.requests: list[dict[str, Any]] = []
        self._used = 0
        self._lock = threading.Lock()
        self._previous: dict[tuple, list] = {}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> str:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
            self._httpd.daemon_threads = True
            self._httpd.replay = self  # type: ignore[attr-defined]
            self.port = self._httpd.server_address[1]
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="replay-server", daemon=True)
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> ReplayServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def coinapi_url(self) -> str:
        return self.base_url

    @property
    def kraken_url(self) -> str:
        return f"{self.base_url}/0"

    @property
    def coingecko_url(self) -> str:
        return f"{self.base_url}/api/v3"

    # ---- CoinAPI quota --------------------------------------------------------------------------
    def coinapi_charge(self, cost: int) -> tuple[int, int]:
        with self._lock:
            self._used += cost
            return self.coinapi_quota, self._used

    def coinapi_quota_spent(self) -> bool:
        with self._lock:
            return not self.coinapi_overage and self._used >= self.coinapi_quota

    # ---- one request ----------------------------------------------------------------------------
    def serve(self, h: BaseHTTPRequestHandler) -> None:
        target = h.path
        url = urlsplit(target)
        path, params = url.path, dict(parse_qsl(url.query, keep_blank_values=True))
        provider = provider_of(path)
        entry: dict[str, Any] = {"method": "GET", "path": path, "params": _redact(params), "provider": provider,
                                 "status": None, "fault": None, "rows": None}
        reply: Reply | None = None
        fault = self.faults.take(provider, target, BEFORE)
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "timeout" and fault.options.get("delay_s") is None:
                self._hold_until_hangup(h)            # never answered: the client's timeout decides
                with self._lock:
                    self.requests.append(entry)
                h.close_connection = True
                return
            if fault.kind == "timeout":
                self._stopping.wait(float(fault.options["delay_s"]))
            else:
                reply = _fault_reply(fault, provider)
        if reply is None:
            reply = self._route(provider, path, params, h.headers, entry)
            if reply.status == 200 and reply.rows is not None:
                key = (path, *(params.get(k) for k in _PAGE_KEYS))
                page_fault = self.faults.take(provider, target, PAGE)
                if page_fault is not None:
                    entry["fault"] = page_fault.kind
                    apply_page_fault(page_fault, reply.rows, self._previous.get(key))
                self._previous[key] = list(reply.rows[-16:])
        body = reply.encode()
        post = self.faults.take(provider, target, AFTER)
        if post is not None:
            entry["fault"] = post.kind
            if post.kind == "malformed":
                body = malform(body)
        entry["status"] = reply.status
        entry["rows"] = len(reply.rows) if reply.rows is not None else None
        with self._lock:
            self.requests.append(entry)
        _send(h, reply, body, truncated=post is not None and post.kind == "truncated")

    def _hold_until_hangup(self, h: BaseHTTPRequestHandler) -> None:
        """Wait, sending nothing, until the client closes the connection (or sends anything more, or
        the server stops)."""
        while not self._stopping.is_set():
            readable, _, _ = select.select([h.connection], [], [], 0.05)
            if readable:
                return

    def _route(self, provider: str | None, path: str, params: dict[str, str], headers: Any, entry: dict) -> Reply:
        route = _ROUTES.get(provider or "")
        if route is None:
            return Reply(404, {"error": f"Unknown path {path}"})
        try:
            return route(self, path, params, headers)
        except Exception as exc:  # a bug or an unexpected input: answer like a server would, log the cause
            entry["error"] = f"{type(exc).__name__}: {exc}"
            return _error_reply(provider, 500, "Internal Server Error")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "coinline-replay"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.replay.serve(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr access logs
        pass


def _send(h: BaseHTTPRequestHandler, reply: Reply, body: bytes, *, truncated: bool) -> None:
    try:
        h.send_response(reply.status)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if truncated:
            h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body[: len(body) // 2] if truncated else body)
        h.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. a timeout fault)
        h.close_connection = True
    if truncated:
        h.close_connection = True


def _redact(params: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in params.items()}


def _error_reply(provider: str | None, status: int, message: str) -> Reply:
    if provider == "kraken":
        return Reply(status, {"error": ["EService:Unavailable"]})
    if provider == "coingecko":
        return Reply(status, {"status": {"error_code": status, "error_message": message}})
    return Reply(status, {"error": message})


def _fault_reply(fault: Fault, provider: str | None) -> Reply:
    if fault.kind == "rate_limit":
        retry = f"{float(fault.options.get('retry_after', 0)):g}"
        if provider == "kraken":
            return Reply(200, {"error": ["EGeneral:Too many requests"]})
        if provider == "coingecko":
            return Reply(429, COINGECKO_429, headers={"retry-after": retry})
        return Reply(429, {"error": "You have exceeded your API key rate limits"}, headers={"Retry-After": retry})
    status = int(fault.options.get("status", 500 if fault.kind == "server_error" else 502))
    if fault.kind == "server_error":
        return _error_reply(provider, status, "Internal Server Error")
    reason = {502: "Bad gateway", 503: "Service unavailable", 520: "Web server is returning an unknown error",
              403: "Forbidden", 200: "Please wait"}.get(status, "Error")
    html = CLOUDFLARE_HTML.format(host=_HOSTS.get(provider or "", "localhost"), status=status, reason=reason,
                                  ray=f"{(crc(provider or '') * 31 + fault.fired) % 16**16:016x}")
    return Reply(status, body=html.encode(), content_type="text/html; charset=UTF-8",
                 headers={"Server": "cloudflare", "cf-ray": "7d2f1c9a8b3e4f10-YUL"})
