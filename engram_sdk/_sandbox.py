"""The sandbox base: what every platform sandbox shares.

A sandbox is a local server that speaks one platform's real HTTP API over a workspace held in
memory, so connectors are tested (and the demo runs) through their real client libraries over
loopback. A platform sandbox subclasses ``Sandbox`` and adds only the platform's own routes::

    class MySandbox(Sandbox):
        platform = "example"

        def routes(self):
            return [Route("/v1/items", self.list_items)]

        async def list_items(self, request):
            with self.lock:
                return JSONResponse({"items": self.workspace["items"]})

        def error(self, status, code, message, headers=None):   # the platform's error shape
            return JSONResponse({"error": code, "message": message}, status, headers=headers)

        def op_edit_item(self, body):       # POST /_sandbox/ops/edit_item  {"id": ..., "text": ...}
            ...; self.deliver({"type": "item.updated", "id": body["id"]})

Run it in a test: ``with serve(MySandbox(workspace)) as server: server.url`` (a free port on
127.0.0.1 in a background thread), or ``serve(..., tls=True)`` for https with a throwaway
``trustme`` CA whose bundle is ``server.ca_bundle``. ``engram sandbox <platform>`` runs one in the
foreground through ``run_forever``.

The base provides, before a platform route runs (admin routes are exempt):

- **authentication**: the subclass's ``authenticate(request)`` names the principal (a route reads
  it as ``request.state.principal``) or answers the platform's 401; ``open_paths`` need none

- **request counting**: ``GET /_sandbox/stats`` -> ``{"requests": N, "by_path": {...}}``;
  ``POST /_sandbox/stats/reset``
- **revoked tokens**: ``POST /_sandbox/tokens/revoke {"token": T}`` -> every request bearing T gets
  ``error(401, "unauthorized", ...)``; with ``"after": N`` only once T was used N more times
  (revoked mid-sync); ``POST /_sandbox/tokens/restore`` undoes it
- **latency**: ``PUT /_sandbox/latency {"seconds": 0.005}`` slows every platform request
- **injected faults**: ``POST /_sandbox/faults {"status": 429, "times": 3, "retry_after": 0.5,
  "path": "/v1/", "method": "GET"}`` answers the next 3 matching requests with that status (429 or
  any 5xx); ``{"delay": 5}`` holds matching requests that long first (client timeouts);
  ``DELETE /_sandbox/faults`` clears them
- **rate-limit budgets**: ``PUT /_sandbox/budget {"requests": 3, "window": 1.0, "per": "token"}``
  -> 429 with a fractional ``Retry-After`` once a token (or, ``"per": "global"``, everyone) has made
  ``requests`` requests in the current window; ``DELETE /_sandbox/budget``
- **the workspace**: ``GET /_sandbox/workspace``, ``PUT /_sandbox/workspace`` (replace), and the
  subclass's edit operations ``POST /_sandbox/ops/<name>`` (methods named ``op_<name>``)
- **outbound webhooks**: ``PUT /_sandbox/webhook {"url": ..., "secret": ...}``; ``self.deliver()``
  queues a delivery (sent in order from a background thread, signed by ``sign_delivery``);
  ``GET /_sandbox/deliveries``; ``POST /_sandbox/deliveries/<i>/replay`` sends one again
- **time**: a sandbox built with a ``FakeClock`` moves it with ``POST /_sandbox/clock/advance``

``SandboxAdmin(url)`` wraps those admin endpoints for tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._http import Clock, FakeClock, SystemClock
from ._webhooks import StandardWebhook

__all__ = [
    "Budget",
    "Delivery",
    "Fault",
    "Sandbox",
    "SandboxAdmin",
    "SandboxServer",
    "run_forever",
    "serve",
    "standard_webhook_headers",
]

log = logging.getLogger("engram.sandbox")

ADMIN_PREFIX = "/_sandbox"


@dataclass
class Fault:
    """Answer the next ``times`` matching requests with ``status`` (or hold them ``delay`` s first)."""

    status: int | None = None
    times: int = 1
    retry_after: float | None = None
    path: str = ""  # a path prefix; "" matches every platform path
    method: str | None = None
    delay: float | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and path.startswith(self.path) and (self.method is None or self.method == method)


@dataclass
class Budget:
    """At most ``requests`` per ``window`` seconds, per bearer token or for everyone."""

    requests: int
    window: float = 1.0
    per: str = "token"  # "token" | "global"


@dataclass
class Delivery:
    index: int
    url: str
    body: str
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None
    attempts: int = 0


def standard_webhook_headers(secret: str, body: bytes, *, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks v1 headers (HMAC-SHA256 over ``id.timestamp.body``, base64), signed by
    ``StandardWebhook`` (the ``standardwebhooks`` package), plus the JSON content type."""
    return {**StandardWebhook(secret).sign(body, msg_id=msg_id, timestamp=timestamp),
            "content-type": "application/json"}


class Sandbox:
    """Base class of a platform sandbox; see the module docstring."""

    platform: str = "sandbox"
    # Platform paths (prefixes) served without a credential: OAuth endpoints, pre-signed downloads.
    open_paths: tuple[str, ...] = ()

    def __init__(self, workspace: dict[str, Any] | None = None, *, clock: Clock | None = None):
        self.lock = threading.RLock()
        self.clock: Clock = clock or SystemClock()
        self.workspace: dict[str, Any] = {}
        self.requests = 0
        self.throttled = 0  # 429s sent (faults and budget)
        self.by_path: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.budget: Budget | None = None
        self._windows: dict[str, tuple[float, int]] = {}
        self.revoked: set[str] = set()
        self._revoke_after: dict[str, int] = {}  # token -> platform requests left before revocation
        self.latency = 0.0  # seconds added to every platform request
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.deliveries: list[Delivery] = []
        self._outbox: queue.Queue[Delivery | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self.load(workspace or {})
        self.app: ASGIApp = self._build_app()

    # --- what subclasses override ---------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The platform's routes."""
        return []

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        """An error in the platform's shape."""
        return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)

    def token_of(self, request: Request) -> str | None:
        """The credential a request carries (default: the bearer token)."""
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def authenticate(self, request: Request) -> Any:
        """Who a platform request comes from, decided once for every platform route (under the
        lock, after the base's own checks): return the principal, which the route reads as
        ``request.state.principal``, or a ``Response`` to answer instead (the platform's 401).
        Paths under ``open_paths`` skip it. The default lets every request in as its token."""
        return self.token_of(request)

    @classmethod
    def default_workspace(cls) -> dict[str, Any]:
        """The workspace ``engram sandbox <platform>`` serves when given no ``--workspace``."""
        return {}

    def on_load(self) -> None:
        """Called (under the lock) after the workspace was replaced: rebuild any indexes."""

    def sign_delivery(self, body: bytes, index: int) -> dict[str, str]:
        """Headers for one outbound webhook delivery (default: Standard Webhooks v1)."""
        return standard_webhook_headers(self.webhook_secret or "", body, msg_id=f"msg_{index}")

    # --- workspace ---------------------------------------------------------------------------------

    def load(self, workspace: dict[str, Any]) -> None:
        with self.lock:
            self.workspace = json.loads(json.dumps(workspace))  # a private deep copy
            self.on_load()

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Sandbox:
        return cls(json.loads(Path(path).read_text()), **kwargs)

    # --- webhooks ----------------------------------------------------------------------------------

    def deliver(self, payload: dict[str, Any] | bytes, *, url: str | None = None,
                headers: dict[str, str] | None = None) -> Delivery | None:
        """Queue one delivery to ``url`` (default: the configured webhook URL), with ``headers``
        (default: ``sign_delivery``'s); None when there is no URL to send to."""
        with self.lock:
            url = url or self.webhook_url
            if not url:
                return None
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            index = len(self.deliveries)
            d = Delivery(index=index, url=url, body=body.decode(),
                         headers=headers if headers is not None else self.sign_delivery(body, index))
            self.deliveries.append(d)
        self._enqueue(d)
        return d

    def _enqueue(self, d: Delivery) -> None:
        with self.lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._send_loop, name=f"{self.platform}-webhooks", daemon=True)
                self._sender.start()
        self._outbox.put(d)

    def _send_loop(self) -> None:
        with httpx.Client(timeout=15.0) as client:
            while True:
                d = self._outbox.get()
                try:
                    if d is None:
                        return
                    d.attempts += 1
                    try:
                        r = client.post(d.url, content=d.body.encode(), headers=d.headers)
                        d.status, d.error = r.status_code, None
                    except httpx.HTTPError as exc:
                        d.status, d.error = None, type(exc).__name__
                finally:
                    self._outbox.task_done()

    def wait_for_deliveries(self, timeout: float = 10.0) -> None:
        """Block until every queued delivery was attempted."""
        deadline = time.monotonic() + timeout
        while self._outbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    # --- the ASGI app ------------------------------------------------------------------------------

    def _build_app(self) -> ASGIApp:
        admin = [
            Route("/health", self._health),
            Route("/workspace", self._workspace, methods=["GET", "PUT"]),
            Route("/ops/{op}", self._op, methods=["POST"]),
            Route("/stats", self._stats),
            Route("/stats/reset", self._stats_reset, methods=["POST"]),
            Route("/faults", self._faults, methods=["GET", "POST", "DELETE"]),
            Route("/budget", self._budget, methods=["GET", "PUT", "DELETE"]),
            Route("/tokens/revoke", self._revoke, methods=["POST"]),
            Route("/tokens/restore", self._restore, methods=["POST"]),
            Route("/latency", self._latency, methods=["PUT"]),
            Route("/webhook", self._webhook, methods=["GET", "PUT", "DELETE"]),
            Route("/deliveries", self._deliveries),
            Route("/deliveries/wait", self._deliveries_wait, methods=["POST"]),
            Route("/deliveries/{index:int}/replay", self._replay, methods=["POST"]),
            Route("/clock/advance", self._advance, methods=["POST"]),
        ]
        app = Starlette(routes=[Mount(ADMIN_PREFIX, routes=admin), *self.routes()])
        return _Gate(self, app)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "platform": self.platform})

    async def _workspace(self, request: Request) -> Response:
        if request.method == "PUT":
            self.load(await request.json())
        with self.lock:
            return JSONResponse(self.workspace)

    async def _op(self, request: Request) -> Response:
        op = request.path_params["op"]
        fn: Callable[[dict[str, Any]], Any] | None = getattr(self, f"op_{op}", None)
        if fn is None:
            return JSONResponse({"error": f"unknown op {op!r}"}, 404)
        body = await request.json() if await request.body() else {}
        try:
            with self.lock:
                result = fn(body)
        except (KeyError, ValueError, LookupError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return JSONResponse({"ok": True, "result": result})

    async def _stats(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"requests": self.requests, "throttled": self.throttled,
                                 "by_path": dict(self.by_path)})

    async def _stats_reset(self, request: Request) -> Response:
        with self.lock:
            self.requests = self.throttled = 0
            self.by_path.clear()
        return JSONResponse({"ok": True})

    async def _faults(self, request: Request) -> Response:
        with self.lock:
            if request.method == "POST":
                body = await request.json()
                faults = body if isinstance(body, list) else [body]
                self.faults.extend(Fault(**f) for f in faults)
            elif request.method == "DELETE":
                self.faults.clear()
            return JSONResponse([asdict(f) for f in self.faults])

    async def _budget(self, request: Request) -> Response:
        with self.lock:
            if request.method == "PUT":
                self.budget = Budget(**(await request.json()))
                self._windows.clear()
            elif request.method == "DELETE":
                self.budget = None
            return JSONResponse(asdict(self.budget) if self.budget else None)

    async def _revoke(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            if body.get("after"):
                self._revoke_after[body["token"]] = int(body["after"])
            else:
                self.revoked.add(body["token"])
        return JSONResponse({"ok": True})

    async def _latency(self, request: Request) -> Response:
        with self.lock:
            self.latency = float((await request.json())["seconds"])
        return JSONResponse({"ok": True})

    async def _restore(self, request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        with self.lock:
            if "token" in body:
                self.revoked.discard(body["token"])
                self._revoke_after.pop(body["token"], None)
            else:
                self.revoked.clear()
                self._revoke_after.clear()
        return JSONResponse({"ok": True})

    async def _webhook(self, request: Request) -> Response:
        with self.lock:
            if request.method == "PUT":
                body = await request.json()
                self.webhook_url = body["url"]
                self.webhook_secret = body.get("secret")
            elif request.method == "DELETE":
                self.webhook_url = self.webhook_secret = None
            return JSONResponse({"url": self.webhook_url, "secret_set": self.webhook_secret is not None})

    async def _deliveries(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse([asdict(d) for d in self.deliveries])

    async def _deliveries_wait(self, request: Request) -> Response:
        await asyncio.to_thread(self.wait_for_deliveries)
        return await self._deliveries(request)

    async def _replay(self, request: Request) -> Response:
        i = request.path_params["index"]
        with self.lock:
            if i >= len(self.deliveries):
                return JSONResponse({"error": "no such delivery"}, 404)
            d = self.deliveries[i]
        self._enqueue(d)
        return JSONResponse({"ok": True})

    async def _advance(self, request: Request) -> Response:
        if not isinstance(self.clock, FakeClock):
            return JSONResponse({"error": "this sandbox runs on the real clock"}, 409)
        self.clock.advance(float((await request.json())["seconds"]))
        return JSONResponse({"now": self.clock.monotonic()})

    # --- gatekeeping (runs before each platform route) ---------------------------------------------

    def _gate(self, request: Request) -> tuple[Response | None, float]:
        """Count the request and decide whether a fault, a revoked token or the budget answers it."""
        path, method = request.url.path, request.method
        with self.lock:
            self.requests += 1
            self.by_path[path] += 1
            token = self.token_of(request)
            if token is not None and token in self._revoke_after:
                self._revoke_after[token] -= 1
                if self._revoke_after[token] < 0:
                    del self._revoke_after[token]
                    self.revoked.add(token)
            if token is not None and token in self.revoked:
                return self.error(401, "unauthorized", "API token is invalid."), 0.0
            for f in self.faults:
                if f.matches(method, path):
                    f.times -= 1
                    if f.delay:
                        return None, f.delay + self.latency
                    headers = {"Retry-After": _fmt(f.retry_after)} if f.retry_after is not None else None
                    code = "rate_limited" if f.status == 429 else "internal_server_error"
                    self.throttled += f.status == 429
                    return self.error(f.status or 500, code, "injected fault", headers), 0.0
            if self.budget is not None:
                key = (token or "") if self.budget.per == "token" else "*"
                now = self.clock.monotonic()
                start, used = self._windows.get(key, (now, 0))
                if now - start >= self.budget.window:
                    start, used = now, 0
                if used >= self.budget.requests:
                    wait = self.budget.window - (now - start)
                    self.throttled += 1
                    return self.error(429, "rate_limited", "You have been rate limited.",
                                      {"Retry-After": _fmt(wait)}), 0.0
                self._windows[key] = (start, used + 1)
            return None, self.latency


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


class _Gate:
    """Plain ASGI middleware: admin paths pass, platform paths go through ``Sandbox._gate`` first."""

    def __init__(self, sandbox: Sandbox, app: ASGIApp):
        self.sandbox = sandbox
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response, delay = self.sandbox._gate(request)
        if response is None and not scope["path"].startswith(self.sandbox.open_paths):
            with self.sandbox.lock:
                principal = self.sandbox.authenticate(request)
            if isinstance(principal, Response):
                response = principal
            else:
                request.state.principal = principal
        if delay:
            await asyncio.sleep(delay)
        if response is not None:
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# --- serving ---------------------------------------------------------------------------------------


@dataclass
class _Tls:
    directory: Path
    ca_bundle: Path
    certfile: Path
    keyfile: Path


def _make_tls(directory: Path | None) -> _Tls:
    import trustme

    d = Path(directory or tempfile.mkdtemp(prefix="engram-sandbox-tls-"))
    d.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = _Tls(d, d / "ca.pem", d / "server.pem", d / "server.key")
    ca.cert_pem.write_to_path(str(tls.ca_bundle))
    cert.private_key_pem.write_to_path(str(tls.keyfile))
    with open(tls.certfile, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    return tls


class SandboxServer:
    """One sandbox (or any ASGI app, e.g. a ``WebhookReceiver``) served by uvicorn on 127.0.0.1 in a
    background thread; see ``serve``."""

    def __init__(self, sandbox: Sandbox | ASGIApp, *, port: int = 0, host: str = "127.0.0.1", tls: bool = False,
                 tls_dir: Path | None = None):
        import uvicorn

        self.sandbox = sandbox
        self._name = getattr(sandbox, "platform", None) or type(sandbox).__name__
        self.host = host
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (else each
        # response waits ~40 ms on delayed ACKs)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self.tls = _make_tls(tls_dir) if tls else None
        config = uvicorn.Config(
            sandbox.app if isinstance(sandbox, Sandbox) else sandbox, log_level="warning", access_log=False,
            lifespan="off" if isinstance(sandbox, Sandbox) else "auto",  # a plain app keeps its startup work
            ssl_certfile=str(self.tls.certfile) if self.tls else None,
            ssl_keyfile=str(self.tls.keyfile) if self.tls else None,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._admin: SandboxAdmin | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ca_bundle(self) -> str | None:
        """The trustme CA bundle to trust when serving TLS (``verify=`` for httpx)."""
        return str(self.tls.ca_bundle) if self.tls else None

    @property
    def admin(self) -> SandboxAdmin:
        """An admin client for this server (one per server, closed by ``stop``)."""
        if self._admin is None:
            self._admin = SandboxAdmin(self.url, verify=self.ca_bundle or True)
        return self._admin

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"sandbox-{self._name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self._name} server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=0.5)
            if self._thread.is_alive():  # idle keep-alive TLS connections: don't wait for them
                self._server.force_exit = True
                self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> SandboxServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(sandbox: Sandbox | ASGIApp, *, port: int = 0, tls: bool = False, tls_dir: Path | None = None) -> SandboxServer:
    """Start ``sandbox`` (or any ASGI app) on 127.0.0.1 (a free port unless given) in a background thread.

    Use as a context manager (``with serve(sb) as server: ...``) or call ``.stop()``.
    """
    return SandboxServer(sandbox, port=port, tls=tls, tls_dir=tls_dir).start()


def run_forever(sandbox: Sandbox, *, port: int, tls: bool = False, tls_dir: Path | None = None,
                echo: Callable[[str], None] = print) -> None:
    """Serve in the foreground until interrupted (what ``engram sandbox <platform>`` runs)."""
    server = SandboxServer(sandbox, port=port, tls=tls, tls_dir=tls_dir).start()
    echo(f"{sandbox.platform} sandbox listening on {server.url}")
    if server.ca_bundle:
        echo(f"CA bundle: {server.ca_bundle}")
    echo(f"admin endpoints under {server.url}{ADMIN_PREFIX}/ ; Ctrl-C to stop")
    try:
        while server._thread is not None and server._thread.is_alive():
            server._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# --- admin client ----------------------------------------------------------------------------------


@dataclass
class SandboxAdmin:
    """Drive a running sandbox's ``/_sandbox`` endpoints over HTTP (tests, demos, benchmarks)."""

    url: str
    verify: Any = True
    _client: httpx.Client | None = field(default=None, repr=False)

    def _c(self) -> httpx.Client:
        if self._client is None:
            verify = self.verify
            if isinstance(verify, str):
                import ssl

                verify = ssl.create_default_context(cafile=verify)
            self._client = httpx.Client(base_url=self.url + ADMIN_PREFIX, verify=verify, timeout=30)
        return self._client

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self._c().request(method, path, json=body) if body is not None else self._c().request(method, path)
        if r.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {path}: HTTP {r.status_code} {r.text[:200]}")
        return r.json()

    def op(self, name: str, **body: Any) -> Any:
        return self._call("POST", f"/ops/{name}", body)["result"]

    def workspace(self) -> dict[str, Any]:
        return self._call("GET", "/workspace")

    def put_workspace(self, workspace: dict[str, Any]) -> None:
        self._call("PUT", "/workspace", workspace)

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def fault(self, *, status: int | None = None, times: int = 1, retry_after: float | None = None,
              path: str = "", method: str | None = None, delay: float | None = None) -> None:
        self._call("POST", "/faults", {"status": status, "times": times, "retry_after": retry_after,
                                       "path": path, "method": method, "delay": delay})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def set_budget(self, requests: int, window: float = 1.0, per: str = "token") -> None:
        self._call("PUT", "/budget", {"requests": requests, "window": window, "per": per})

    def clear_budget(self) -> None:
        self._call("DELETE", "/budget")

    def revoke(self, token: str, *, after: int = 0) -> None:
        """Revoke ``token`` now, or after it was used for ``after`` more platform requests."""
        self._call("POST", "/tokens/revoke", {"token": token, "after": after})

    def set_latency(self, seconds: float) -> None:
        self._call("PUT", "/latency", {"seconds": seconds})

    def restore(self, token: str | None = None) -> None:
        self._call("POST", "/tokens/restore", {"token": token} if token else {})

    def set_webhook(self, url: str, secret: str | None = None) -> None:
        self._call("PUT", "/webhook", {"url": url, "secret": secret})

    def deliveries(self, *, wait: bool = True) -> list[dict[str, Any]]:
        return self._call("POST", "/deliveries/wait") if wait else self._call("GET", "/deliveries")

    def replay(self, index: int) -> None:
        self._call("POST", f"/deliveries/{index}/replay")

    def advance_clock(self, seconds: float) -> float:
        return self._call("POST", "/clock/advance", {"seconds": seconds})["now"]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
