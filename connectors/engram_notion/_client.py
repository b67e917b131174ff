"""Every Notion call, made through ``notion-client`` over the framework's HTTP toolkit.

``NotionAPI`` builds one ``notion_client.Client`` whose ``httpx.Client`` comes from
``build_client``: the limiter (3 requests/s by default, on the context's clock) and the retries
(429/5xx honouring ``Retry-After``) live there; notion-client's own retries are off so nothing
is retried twice. 504 is *not* retried by the transport: a list call that times out is asked
again with half the ``page_size`` (Notion times out on big pages), down to 1.

Errors are translated where they leave this module, so callers only see the SDK's tree:
401 -> ``AuthError`` (after one token refresh for OAuth connections; ``ReconnectNeeded`` when the
grant is gone), 404 -> ``NotFound``, 403 -> ``PermissionDenied``, 429 -> ``RateLimited``, any other
answer or a timeout -> ``PlatformError``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from notion_client import Client
from notion_client.errors import HTTPResponseError, RequestTimeoutError

from engram_sdk.connectors import (
    Clock,
    NotFound,
    PermissionDenied,
    PlatformError,
    Rate,
    RateLimiter,
    ReconnectNeeded,
    RetryPolicy,
    RetryStop,
    build_client,
    client_stats,
    network_error,
    rate_limited,
)

__all__ = ["NotionAPI"]

_LOG = logging.getLogger("engram.connectors.notion.client")

# The transport retries these; 504 is handled here by halving page_size.
_RETRY = RetryPolicy(retry_statuses=frozenset({429, 500, 502, 503, 529}))


class NotionAPI:
    """A thin, typed face over notion-client for what the connector reads."""

    def __init__(
        self,
        token: Callable[[], str],
        *,
        base_url: str,
        notion_version: str,
        requests_per_second: float,
        clock: Clock,
        refresh: Callable[[], bool] | None = None,
        http: dict[str, Any] | None = None,
        page_size: int = 100,
    ):
        self._token = token
        self._refresh = refresh
        self.limiter = RateLimiter({"default": Rate(requests_per_second)}, clock=clock)
        self.http: httpx.Client = build_client(limiter=self.limiter, clock=clock, retry=_RETRY, **(http or {}))
        # notion-client's default logger prints to stdout; route its lines through logging instead
        self.client = Client(auth=None, base_url=base_url.rstrip("/"), notion_version=notion_version,
                             retry=False, client=self.http, logger=_LOG, log_level=logging.WARNING)
        self.page_size = max(1, min(100, page_size))

    @property
    def requests(self) -> int:
        """API requests sent so far (retries included)."""
        return client_stats(self.http).requests

    def close(self) -> None:
        self.http.close()

    def _host(self) -> str:
        url = httpx.URL(self.client.options.base_url)
        return f"{url.host}:{url.port}" if url.port is not None else url.host

    # --- calling -----------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call with the current token; a 401 on an OAuth connection refreshes once."""
        refreshed = False
        stats = client_stats(self.http)
        while True:
            stats.last_stop = None  # notion-client keeps only headers: the transport says why it stopped
            try:
                return fn(*args, auth=self._token(), **kwargs)
            except HTTPResponseError as exc:
                if exc.status == 401 and self._refresh is not None and not refreshed:
                    refreshed = True
                    if self._refresh():
                        continue
                raise _translate(what, exc, stats.last_stop) from None
            except RequestTimeoutError:
                # notion-client turns httpx's timeouts into its own error and drops the request.
                raise PlatformError(f"Notion {what}: timed out reaching {self._host()}: the platform did not "
                                    f"answer in time; check the network, or try again later",
                                    status=None, code="timeout") from None
            except httpx.TransportError as exc:
                raise network_error(f"Notion {what}", exc) from None

    def paginate(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every result of a list endpoint, following ``next_cursor`` while ``has_more``."""
        for page in self.pages(what, fn, *args, **kwargs):
            yield from page.get("results") or ()

    def pages(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Like ``paginate`` but one list response at a time (``results``, ``next_cursor``), so a
        caller can checkpoint between them."""
        cursor: str | None = kwargs.pop("start_cursor", None)
        while True:
            try:
                page = self.call(what, fn, *args, start_cursor=cursor, page_size=self.page_size, **kwargs)
            except PlatformError as exc:
                if exc.status == 504 and self.page_size > 1:
                    self.page_size = max(1, self.page_size // 2)
                    continue
                raise
            yield page
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    # --- endpoints the connector uses --------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self.call("users.me", self.client.users.me)

    def oauth_token(self, client_id: str, client_secret: str, **body: Any) -> dict[str, Any]:
        """``POST /v1/oauth/token`` with Basic auth (code exchange or refresh)."""
        try:
            return self.client.oauth.token(client_id=client_id, client_secret=client_secret, **body)
        except HTTPResponseError as exc:
            raise _translate("oauth.token", exc) from None
        except RequestTimeoutError:
            raise PlatformError(f"Notion oauth.token: timed out reaching {self._host()}", code="timeout") from None
        except httpx.TransportError as exc:
            raise network_error("Notion oauth.token", exc) from None

    def users(self) -> list[dict[str, Any]]:
        return list(self.paginate("users.list", self.client.users.list))

    def search_pages(self, start_cursor: str | None = None, *, in_trash: bool = False) -> Iterator[dict[str, Any]]:
        """Search everything shared, newest edit first, one response at a time. ``in_trash``
        searches the trash instead (``filter: {"in_trash": true}``; live content is excluded)."""
        extra: dict[str, Any] = {"filter": {"in_trash": True}} if in_trash else {}
        return self.pages("search", self.client.search, start_cursor=start_cursor,
                          sort={"timestamp": "last_edited_time", "direction": "descending"}, **extra)

    def page(self, page_id: str) -> dict[str, Any]:
        return self.call("pages.retrieve", self.client.pages.retrieve, page_id)

    def block(self, block_id: str) -> dict[str, Any]:
        return self.call("blocks.retrieve", self.client.blocks.retrieve, block_id)

    def children(self, block_id: str) -> Iterator[dict[str, Any]]:
        return self.paginate("blocks.children.list", self.client.blocks.children.list, block_id)

    def database(self, database_id: str) -> dict[str, Any]:
        return self.call("databases.retrieve", self.client.databases.retrieve, database_id)

    def data_source(self, data_source_id: str) -> dict[str, Any]:
        return self.call("data_sources.retrieve", self.client.data_sources.retrieve, data_source_id)

    def query(self, data_source_id: str) -> Iterator[dict[str, Any]]:
        return self.paginate("data_sources.query", self.client.data_sources.query, data_source_id)

    def comments(self, block_id: str) -> list[dict[str, Any]]:
        return list(self.paginate("comments.list", self.client.comments.list, block_id=block_id))

    def property_items(self, page_id: str, property_id: str) -> list[dict[str, Any]]:
        return list(self.paginate("pages.properties.retrieve", self.client.pages.properties.retrieve,
                                  page_id, property_id))


def _body_code(exc: HTTPResponseError) -> str:
    """The API's own error code (notion-client folds codes it does not know, e.g. invalid_grant)."""
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("code") or body.get("error"), str):
        return str(body.get("code") or body.get("error"))
    return str(getattr(exc.code, "value", exc.code))


def _translate(what: str, exc: HTTPResponseError, stop: RetryStop | None = None) -> Exception:
    status, code = exc.status, _body_code(exc)
    msg = f"Notion {what} failed: HTTP {status} ({code})"
    if code == "invalid_grant":
        return ReconnectNeeded(msg + ": the OAuth grant is no longer valid; reconnect needed")
    if status == 401:
        return ReconnectNeeded(msg + ": Notion rejected the token (revoked or expired); reconnect needed")
    if status == 404:
        return NotFound(msg, status=status, code=code, request_id=exc.request_id)
    if status == 403:
        return PermissionDenied(msg, status=status, code=code, request_id=exc.request_id)
    if status == 429:
        return rate_limited(msg, exc.headers, stop)
    return PlatformError(msg, status=status, code=code, request_id=exc.request_id)
