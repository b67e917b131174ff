"""Harvey's REST API over httpx, on the framework's HTTP toolkit.

One method per documented endpoint the connector reads, plus the two page iterators (Vault
projects page by ``page``, files by ``cursor``). Every request names its rate category
(``history``, ``vault``, ``audit``, ``client_matters``), and the framework's token buckets keep
each under Harvey's per-minute limit; a 429 waits (``Retry-After`` when sent, else the minute),
5xx answers are retried with backoff, and anything else becomes the SDK's ``ConnectorError``
tree through ``raise_for_status``. Nothing here logs a body: query history is confidential work
product.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from engram_sdk.connectors import (
    AuthError,
    Clock,
    ConnectorError,
    NotFound,
    PermissionDenied,
    PlatformError,
    Rate,
    RateLimiter,
    RequestStats,
    RetryPolicy,
    build_client,
    client_stats,
    platform_errors,
    raise_for_status,
)

from ._assumptions import AUDIT_MAX_TAKE, RATE_LIMIT_RETRY_AFTER_S, RATE_LIMITS_PER_MINUTE, REGIONS
from ._normalize import v1_to_v2
from ._windows import Window

__all__ = ["HarveyClient", "base_url_for", "harvey_limiter"]

_GET_FILES_BATCH = 50  # file ids per get_files call (the docs give no limit; kept well under URL limits)


def base_url_for(region: str, base_url: str | None = None) -> str:
    """The API host of a region (us, eu, au), unless ``base_url`` overrides it (a sandbox)."""
    if base_url:
        return base_url.rstrip("/")
    try:
        return REGIONS[region.lower()]
    except KeyError:
        raise ValueError(f"unknown Harvey region {region!r}: expected one of {', '.join(REGIONS)}") from None


def harvey_limiter(clock: Clock | None = None, limits: dict[str, int] | None = None) -> RateLimiter:
    """Token buckets per category at Harvey's documented per-minute limits.

    ``burst=1`` spaces requests by 60/N seconds, so no fixed one-minute window (Harvey's) ever
    sees more than N of them.
    """
    per_minute = {**RATE_LIMITS_PER_MINUTE, **(limits or {})}
    return RateLimiter({k: Rate(n, per=60.0, burst=1) for k, n in per_minute.items()}, clock=clock)


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """The list in an answer: the body itself, or under ``key`` (or ``data``); dicts only."""
    if isinstance(body, dict):
        body = body.get(key, body.get("data"))
    return [item for item in body or [] if isinstance(item, dict)] if isinstance(body, list) else []


class _MinuteOn429(httpx.BaseTransport):
    """Harvey documents no rate-limit headers: a 429 without ``Retry-After`` waits out the minute."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if response.status_code == 429 and "retry-after" not in response.headers:
            response.headers["Retry-After"] = str(int(RATE_LIMIT_RETRY_AFTER_S))
        return response

    def close(self) -> None:
        self.inner.close()


class HarveyClient:
    """A bearer-token client for one Harvey organisation's API host."""

    def __init__(
        self,
        token: str,
        *,
        region: str = "us",
        base_url: str | None = None,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: Any = True,
        timeout: float = 60.0,
    ):
        if not token:
            raise ValueError("a Harvey API token is required")
        self.base_url = base_url_for(region, base_url)
        self.limiter = limiter or harvey_limiter(clock)
        if isinstance(verify, str):  # a CA bundle path (e.g. a TLS sandbox's trustme CA)
            verify = ssl.create_default_context(cafile=verify)
        inner = transport or httpx.HTTPTransport(verify=verify)
        self.http = build_client(
            self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            limiter=self.limiter,
            rate_key=None,
            retry=retry or RetryPolicy(budget=600.0, backoff_base=1.0),  # minute-long windows: a longer budget
            clock=clock or self.limiter.clock,
            transport=_MinuteOn429(inner),
            timeout=timeout,
        )
        self.history_version: str | None = None  # "v2", or "v1" after v2 answered 404

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HarveyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> RequestStats:
        return client_stats(self.http)

    # --- plumbing ------------------------------------------------------------------------------------

    def _get(self, path: str, category: str | None, params: Any = None, *, what: str | None = None) -> Any:
        label = what or f"GET {path.split('?')[0]}"
        with platform_errors(f"Harvey {label}"):
            response = self.http.get(path, params=params, extensions={"rate_key": category} if category else {})
        raise_for_status(response, what=f"Harvey {label}")
        try:
            return response.json()
        except ValueError:
            raise PlatformError(f"Harvey {label}: answer is not JSON", status=response.status_code) from None

    # --- identity ------------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """``GET /api/whoami``: the service user behind the token (raises ``AuthError`` on 401)."""
        body = self._get("/api/whoami", None)
        return body if isinstance(body, dict) else {}

    # --- history -------------------------------------------------------------------------------------

    def query_history(self, window: Window, *, include_file_ids: bool = True) -> list[dict[str, Any]]:
        """One window of query history as v2-shaped events (v1 items are renamed by ``v1_to_v2``).

        v2 first; once it answers 404 or 403 the client uses v1 for the rest of its life.
        """
        if self.history_version != "v1":
            params: dict[str, Any] = {**window.params(), "include_file_ids": str(include_file_ids).lower()}
            try:
                body = self._get("/api/v2/history/query", "history", params)
            except (NotFound, PermissionDenied):
                # v2 is not generally available everywhere: an org without it may answer 404 or 403.
                # v1 needs the same permission, so a token that may not read history fails there too.
                self.history_version = "v1"
            else:
                self.history_version = "v2"
                return _items(body, "events")
        body = self._get("/api/v1/history/query", "history", window.params())
        return [v1_to_v2(i) for i in _items(body, "events")]

    # --- vault ---------------------------------------------------------------------------------------

    def projects(self, *, per_page: int = 100) -> Iterator[dict[str, Any]]:
        """Every Vault project and knowledge base, page by page."""
        page = 1
        while True:
            body = self._get("/api/v1/vault/workspace/projects", "vault", {"page": page, "per_page": per_page})
            content = body.get("response", body) if isinstance(body, dict) else {}
            content = content.get("content", content) if isinstance(content, dict) else {}
            yield from content.get("projects") or []
            pagination = content.get("pagination") or {}
            if page >= int(pagination.get("total_pages") or 1):
                return
            page += 1

    def files(self, project_id: str, *, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every live file of a project, following ``next_cursor`` until ``has_more`` is false."""
        params: dict[str, Any] = {"limit": limit, "sort_by": "uploaded_at", "sort_order": "asc"}
        while True:
            body = self._get(f"/api/v1/vault/projects/{project_id}/files", "vault", params,
                             what="GET /api/v1/vault/projects/{id}/files")
            yield from _items(body, "files")
            pagination = body.get("pagination") or {}
            if not pagination.get("has_more") or not pagination.get("next_cursor"):
                return
            params = {**params, "cursor": pagination["next_cursor"]}

    def project_metadata(self, project_id: str) -> dict[str, Any]:
        return self._get(f"/api/v1/vault/get_metadata/{project_id}", "vault",
                         what="GET /api/v1/vault/get_metadata/{id}")

    def file_details(self, file_ids: Sequence[str]) -> list[dict[str, Any]]:
        """``get_files`` in batches: each detail has ``deleted_at`` or ``error: "not_found"``."""
        out: list[dict[str, Any]] = []
        ids = list(file_ids)
        for i in range(0, len(ids), _GET_FILES_BATCH):
            body = self._get("/api/v1/vault/get_files", "vault", {"file_ids": ",".join(ids[i : i + _GET_FILES_BATCH])})
            out += _items(body, "files")
        return out

    def review_table(self, table_id: str) -> dict[str, Any]:
        return self._get(f"/api/v1/vault/review_table/{table_id}", "vault", what="GET /api/v1/vault/review_table/{id}")

    def review_row(self, table_id: str, file_id: str) -> dict[str, Any]:
        return self._get(f"/api/v1/vault/get_row/{table_id}/{file_id}", "vault",
                         what="GET /api/v1/vault/get_row/{table}/{file}")

    # --- client matters ------------------------------------------------------------------------------

    def client_matters(self) -> list[dict[str, Any]]:
        body = self._get("/api/v1/client_matters", "client_matters")
        return _items(body, "client_matters")

    # --- audit logs ----------------------------------------------------------------------------------

    def audit_search(self, at: int) -> dict[str, Any] | None:
        """The first log at or after ``at`` (epoch s); None when there is none (Harvey answers 404)."""
        try:
            body = self._get("/api/v1/logs/audit/search", "audit", {"time": at})
        except NotFound:
            return None
        return body.get("log") if isinstance(body, dict) else None

    def audit_earliest(self) -> dict[str, Any] | None:
        try:
            body = self._get("/api/v1/logs/audit/earliest", "audit")
        except NotFound:
            return None
        return body.get("log") if isinstance(body, dict) else None

    def audit_page(self, after_id: str, *, take: int = AUDIT_MAX_TAKE) -> list[dict[str, Any]]:
        """Logs after ``after_id`` (``from`` is exclusive), oldest first, at most ``take``."""
        if not 1 <= take <= AUDIT_MAX_TAKE:
            raise ValueError(f"take must be between 1 and {AUDIT_MAX_TAKE}")
        body = self._get("/api/v1/logs/audit", "audit", {"from": after_id, "take": take})
        return _items(body, "logs")

    # --- permissions ---------------------------------------------------------------------------------

    def probe(self, *, now: int) -> dict[str, str]:
        """Which streams this token may read: stream -> "ok" | "forbidden" | "unavailable: <why>".

        One cheap request per stream; a 403 on one says nothing about the others. A 401 means the
        token itself is bad and is raised.
        """
        checks = {
            "history": lambda: self.query_history(Window(now - 60, now), include_file_ids=False),
            "vault": lambda: self._get("/api/v1/vault/workspace/projects", "vault", {"page": 1, "per_page": 1}),
            "audit": lambda: self.audit_search(now),
            "client_matters": self.client_matters,
        }
        result = {}
        for stream, check in checks.items():
            try:
                check()
                result[stream] = "ok"
            except AuthError:
                raise
            except PermissionDenied:
                result[stream] = "forbidden"
            except ConnectorError as exc:
                result[stream] = f"unavailable: {exc}"
        return result
