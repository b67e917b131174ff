"""Plain ASGI middleware (not BaseHTTPMiddleware): request ids, body limits, content type, metrics."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Scope = dict[str, Any]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("engram_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("engram_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry)
        self.queue_depth = Gauge("engram_queue_depth", "Queued work items", ["queue"], registry=self.registry)
        self.adapter_cache = Counter("engram_adapter_cache", "Adapter cache lookups", ["result"],
                                     registry=self.registry)
        self.events = Counter("engram_events_ingested", "Events by ingest outcome", ["status"],
                              registry=self.registry)


def _error(status: int, code: str, message: str, rid: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()


class EdgeMiddleware:
    """Outermost: gives each request an id, refuses oversize or non-JSON bodies before any parsing,
    and records count and latency per route template (never per raw path: no unbounded labels)."""

    def __init__(self, app: Any, *, max_body_bytes: int, metrics: Metrics):
        self.app = app
        self.max_body = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status_holder = {"status": 500}
        started = time.perf_counter()

        async def send_wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        refusal = None
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if length is not None and length.isdigit() and int(length) > self.max_body:
                refusal = _error(413, "payload_too_large", f"body over {self.max_body} bytes", rid)
            elif not scope["path"].startswith("/v1/webhooks/") and ctype != "application/json" and (
                    length not in (None, "0")):
                refusal = _error(415, "unsupported_media_type", "send application/json", rid)
        body = b""
        if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # Read the body here, bounded: a chunked upload with no content-length is refused as
            # soon as it passes the limit, and the app gets the bytes replayed.
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    refusal = _error(413, "payload_too_large", f"body over {self.max_body} bytes", rid)
                    break
        if refusal is not None:
            status, payload = refusal
            await send_wrapped({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json")]})
            await send_wrapped({"type": "http.response.body", "body": payload})
        elif scope["method"] in ("POST", "PUT", "PATCH"):
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapped)
        else:
            await self.app(scope, receive, send_wrapped)
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(scope["method"], template, str(status_holder["status"])).inc()
        self.metrics.latency.labels(template).observe(time.perf_counter() - started)
