"""The SDK client a partner's backend uses to call an Engram server (sync and async, on httpx).

``_Core`` holds everything that does no I/O: building requests, the retry decision and its wait,
and turning an error answer into a typed exception. ``EngramClient`` and ``AsyncEngramClient``
add only sending and sleeping. Endpoints are grouped as the routes are::

    client = EngramClient("https://engram.internal", api_key=os.environ["ENGRAM_API_KEY"])
    client.events.ingest(signed_events)           # -> IngestResponse (a result per event)
    for envelope in client.events.iter("acme"): ...   # every stored event, page by page
    answer = client.query("acme", "Who approves vendor contracts?")
    for piece in client.query_stream("acme", "..."): ...
    client.adapters.list("acme"); client.training.start("acme")

Retries (tenacity): 429 and 5xx answers and connection errors, waiting ``Retry-After`` when the
server sends it (fractional seconds too), else exponential backoff with jitter; at most
``max_retries`` retries. Every endpoint is safe to retry: event ids are content-derived, so a
replayed batch is stored once. An error answer becomes the class of its error code
(``_exceptions.API_ERRORS``: ``NoAdapterError`` for ``no_adapter``, ...), all subclasses of
``APIError``. Tests run against the app in-process with ``transport=httpx.ASGITransport(app)``
(async) or a ``MockTransport``.
"""

from __future__ import annotations

import functools
import json
import platform
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, TypeVar

import httpx
import tenacity
from pydantic import BaseModel

from ._api import (
    ERROR_CODES,
    AdapterInfo,
    AdapterList,
    EventList,
    Health,
    IngestResponse,
    QueryResponse,
    SigningKeyOut,
    TrainJob,
)
from ._events import TrainingEvent
from ._exceptions import API_ERRORS, APIConnectionError, APIError, APIRateLimited
from ._http import parse_retry_after

__all__ = ["AsyncEngramClient", "EngramClient"]

M = TypeVar("M", bound=BaseModel)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@functools.cache
def user_agent() -> str:
    """``engram-sdk/<version> python/<x.y> httpx/<version>``: a server operator reading their logs
    can tell which SDK release (and runtime) sent a request, as with any other client library."""
    try:
        sdk = _dist_version("engram-sdk")
    except PackageNotFoundError:  # running from a source tree that was never installed
        from . import __version__ as sdk
    py = ".".join(platform.python_version_tuple()[:2])
    return f"engram-sdk/{sdk} python/{py} httpx/{httpx.__version__}"


class _Retryable(Exception):
    def __init__(self, response: httpx.Response):
        self.response = response


class _Core:
    def __init__(self, base_url: str, api_key: str, *, max_retries: int = 4, backoff: float = 0.5,
                 max_wait: float = 60.0):
        if not api_key:
            raise ValueError("an API key is required (create one with `engram keys api create`)")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": user_agent()}
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._rng = random.Random()

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base_url!r})"

    def _retrying_kwargs(self) -> dict[str, Any]:
        return dict(
            retry=tenacity.retry_if_exception_type((_Retryable, httpx.TransportError)),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            reraise=True,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable):
            told = parse_retry_after(exc.response.headers.get("retry-after"))
            if told is not None:
                return min(told, self.max_wait)
        b = min(self.max_wait, self.backoff * 2 ** (state.attempt_number - 1))
        return b / 2 + self._rng.uniform(0, b / 2)

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(response)

    @staticmethod
    def _error(response: httpx.Response) -> APIError:
        try:
            err = response.json()["error"]
            message, code, rid = err["message"], err.get("code"), err.get("request_id")
        except (ValueError, KeyError, TypeError):
            message, code, rid = response.text[:200] or response.reason_phrase, None, None
        kw = dict(status=response.status_code, code=code, request_id=rid)
        cls = API_ERRORS.get(code or "") or API_ERRORS.get(ERROR_CODES.get(response.status_code, ""), APIError)
        if cls is APIRateLimited:
            return APIRateLimited(message, retry_after=parse_retry_after(response.headers.get("retry-after")), **kw)
        return cls(message, **kw)

    def _parse(self, response: httpx.Response, model: type[M]) -> M:
        if response.status_code >= 400:
            raise self._error(response)
        return model.model_validate(response.json())

    @staticmethod
    def _events_body(events: Sequence[TrainingEvent | dict[str, Any]]) -> dict[str, Any]:
        return {"events": [e.to_dict() if isinstance(e, TrainingEvent) else e for e in events]}

    @staticmethod
    def _page_params(after: str | None, limit: int) -> dict[str, Any]:
        return {"limit": limit, **({"after": after} if after else {})}

    @staticmethod
    def _query_body(question: str, max_tokens: int, temperature: float, stop: Sequence[str] | None,
                    stream: bool) -> dict[str, Any]:
        return {"question": question, "max_tokens": max_tokens, "temperature": temperature,
                "stop": list(stop or []), "stream": stream}


class _SSE:
    """Server-sent events, fed one line at a time; ``feed`` returns (event, data) when one ends."""

    def __init__(self) -> None:
        self.event, self.data = "message", []

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if line == "":
            out = (self.event, json.loads("\n".join(self.data))) if self.data else None
            self.event, self.data = "message", []
            return out
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].strip())
        return None


def _item(event: str, data: dict[str, Any]) -> str | QueryResponse:
    if event == "done":
        return QueryResponse.model_validate(data)
    if event == "error":
        code = data["error"].get("code")
        raise API_ERRORS.get(code or "", APIError)(data["error"]["message"], code=code)
    return str(data["delta"])


class _Group:
    def __init__(self, client: Any):
        self._c = client


# --- sync --------------------------------------------------------------------------------------------


class EngramClient(_Core):
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(self, base_url: str, api_key: str, *, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, max_retries: int = 4, backoff: float = 0.5):
        super().__init__(base_url, api_key, max_retries=max_retries, backoff=backoff)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport)
        self.events = _Events(self)
        self.signing_keys = _SigningKeys(self)
        self.adapters = _Adapters(self)
        self.training = _Training(self)

    def __enter__(self) -> EngramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        def once() -> httpx.Response:
            r = self._http.request(method, path, **kw)
            self._check(r)
            return r

        try:
            return tenacity.Retrying(**self._retrying_kwargs())(once)
        except _Retryable as exc:
            return exc.response
        except httpx.TransportError as exc:
            raise APIConnectionError(f"cannot reach {self.base_url}: {type(exc).__name__}") from None

    def health(self) -> Health:
        return self._parse(self._request("GET", "/v1/health"), Health)

    def query(self, team: str, question: str, *, max_tokens: int = 128, temperature: float = 0.0,
              stop: Sequence[str] | None = None) -> QueryResponse:
        body = self._query_body(question, max_tokens, temperature, stop, False)
        return self._parse(self._request("POST", f"/v1/teams/{team}/query", json=body), QueryResponse)

    def query_stream(self, team: str, question: str, *, max_tokens: int = 128, temperature: float = 0.0,
                     stop: Sequence[str] | None = None) -> Iterator[str | QueryResponse]:
        """Yield text pieces as they are generated, then the whole ``QueryResponse``."""
        body = self._query_body(question, max_tokens, temperature, stop, True)
        with self._http.stream("POST", f"/v1/teams/{team}/query", json=body) as r:
            if r.status_code >= 400:
                r.read()
                raise self._error(r)
            sse = _SSE()
            for line in r.iter_lines():
                ev = sse.feed(line)
                if ev is not None:
                    yield _item(*ev)


class _Events(_Group):
    def ingest(self, events: Sequence[TrainingEvent | dict[str, Any]]) -> IngestResponse:
        """Send signed events (at most 1,000 per call); safe to replay."""
        return self._c._parse(self._c._request("POST", "/v1/events", json=self._c._events_body(events)),
                              IngestResponse)

    def list(self, team: str, *, after: str | None = None, limit: int = 100) -> EventList:
        """One page of the team's stored events (admin), oldest first; pass ``cursor`` back as
        ``after`` for the next page while ``has_more``."""
        r = self._c._request("GET", f"/v1/teams/{team}/events", params=self._c._page_params(after, limit))
        return self._c._parse(r, EventList)

    def iter(self, team: str, *, after: str | None = None, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every stored event of the team after ``after``, as signed envelopes, fetching page by page."""
        while True:
            page = self.list(team, after=after, limit=page_size)
            yield from page.events
            if not page.has_more:
                return
            after = page.cursor


class _SigningKeys(_Group):
    def trust(self, team: str, kid: str, public_key: str) -> SigningKeyOut:
        body = {"kid": kid, "algorithm": "Ed25519", "public_key": public_key}
        return self._c._parse(self._c._request("POST", f"/v1/teams/{team}/signing-keys", json=body), SigningKeyOut)

    def list(self, team: str) -> list[SigningKeyOut]:
        r = self._c._request("GET", f"/v1/teams/{team}/signing-keys")
        if r.status_code >= 400:
            raise self._c._error(r)
        return [SigningKeyOut.model_validate(k) for k in r.json()]

    def revoke(self, team: str, kid: str) -> SigningKeyOut:
        return self._c._parse(self._c._request("DELETE", f"/v1/teams/{team}/signing-keys/{kid}"), SigningKeyOut)


class _Adapters(_Group):
    def list(self, team: str) -> AdapterList:
        return self._c._parse(self._c._request("GET", f"/v1/teams/{team}/adapters"), AdapterList)

    def rollback(self, team: str, version: int) -> AdapterInfo:
        return self._c._parse(self._c._request("POST", f"/v1/teams/{team}/adapters/{version}/rollback"), AdapterInfo)


class _Training(_Group):
    def start(self, team: str, *, from_scratch: bool = False) -> TrainJob:
        r = self._c._request("POST", f"/v1/teams/{team}/train", json={"from_scratch": from_scratch})
        return self._c._parse(r, TrainJob)

    def status(self, team: str, job_id: str) -> TrainJob:
        return self._c._parse(self._c._request("GET", f"/v1/teams/{team}/train/{job_id}"), TrainJob)

    def cancel(self, team: str, job_id: str) -> TrainJob:
        return self._c._parse(self._c._request("POST", f"/v1/teams/{team}/train/{job_id}/cancel"), TrainJob)


# --- async -------------------------------------------------------------------------------------------


class AsyncEngramClient(_Core):
    """Asynchronous client; the same endpoints, awaited."""

    def __init__(self, base_url: str, api_key: str, *, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None, max_retries: int = 4, backoff: float = 0.5):
        super().__init__(base_url, api_key, max_retries=max_retries, backoff=backoff)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout,
                                       transport=transport)
        self.events = _AsyncEvents(self)
        self.signing_keys = _AsyncSigningKeys(self)
        self.adapters = _AsyncAdapters(self)
        self.training = _AsyncTraining(self)

    async def __aenter__(self) -> AsyncEngramClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def once() -> httpx.Response:
            r = await self._http.request(method, path, **kw)
            self._check(r)
            return r

        try:
            return await tenacity.AsyncRetrying(**self._retrying_kwargs())(once)
        except _Retryable as exc:
            return exc.response
        except httpx.TransportError as exc:
            raise APIConnectionError(f"cannot reach {self.base_url}: {type(exc).__name__}") from None

    async def health(self) -> Health:
        return self._parse(await self._request("GET", "/v1/health"), Health)

    async def query(self, team: str, question: str, *, max_tokens: int = 128, temperature: float = 0.0,
                    stop: Sequence[str] | None = None) -> QueryResponse:
        body = self._query_body(question, max_tokens, temperature, stop, False)
        return self._parse(await self._request("POST", f"/v1/teams/{team}/query", json=body), QueryResponse)

    async def query_stream(self, team: str, question: str, *, max_tokens: int = 128, temperature: float = 0.0,
                           stop: Sequence[str] | None = None) -> AsyncIterator[str | QueryResponse]:
        body = self._query_body(question, max_tokens, temperature, stop, True)
        async with self._http.stream("POST", f"/v1/teams/{team}/query", json=body) as r:
            if r.status_code >= 400:
                await r.aread()
                raise self._error(r)
            sse = _SSE()
            async for line in r.aiter_lines():
                ev = sse.feed(line)
                if ev is not None:
                    yield _item(*ev)


class _AsyncEvents(_Group):
    async def ingest(self, events: Sequence[TrainingEvent | dict[str, Any]]) -> IngestResponse:
        r = await self._c._request("POST", "/v1/events", json=self._c._events_body(events))
        return self._c._parse(r, IngestResponse)

    async def list(self, team: str, *, after: str | None = None, limit: int = 100) -> EventList:
        r = await self._c._request("GET", f"/v1/teams/{team}/events", params=self._c._page_params(after, limit))
        return self._c._parse(r, EventList)

    async def iter(self, team: str, *, after: str | None = None,
                   page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        while True:
            page = await self.list(team, after=after, limit=page_size)
            for envelope in page.events:
                yield envelope
            if not page.has_more:
                return
            after = page.cursor


class _AsyncSigningKeys(_Group):
    async def trust(self, team: str, kid: str, public_key: str) -> SigningKeyOut:
        body = {"kid": kid, "algorithm": "Ed25519", "public_key": public_key}
        r = await self._c._request("POST", f"/v1/teams/{team}/signing-keys", json=body)
        return self._c._parse(r, SigningKeyOut)

    async def list(self, team: str) -> list[SigningKeyOut]:
        r = await self._c._request("GET", f"/v1/teams/{team}/signing-keys")
        if r.status_code >= 400:
            raise self._c._error(r)
        return [SigningKeyOut.model_validate(k) for k in r.json()]

    async def revoke(self, team: str, kid: str) -> SigningKeyOut:
        return self._c._parse(await self._c._request("DELETE", f"/v1/teams/{team}/signing-keys/{kid}"), SigningKeyOut)


class _AsyncAdapters(_Group):
    async def list(self, team: str) -> AdapterList:
        return self._c._parse(await self._c._request("GET", f"/v1/teams/{team}/adapters"), AdapterList)

    async def rollback(self, team: str, version: int) -> AdapterInfo:
        r = await self._c._request("POST", f"/v1/teams/{team}/adapters/{version}/rollback")
        return self._c._parse(r, AdapterInfo)


class _AsyncTraining(_Group):
    async def start(self, team: str, *, from_scratch: bool = False) -> TrainJob:
        r = await self._c._request("POST", f"/v1/teams/{team}/train", json={"from_scratch": from_scratch})
        return self._c._parse(r, TrainJob)

    async def status(self, team: str, job_id: str) -> TrainJob:
        return self._c._parse(await self._c._request("GET", f"/v1/teams/{team}/train/{job_id}"), TrainJob)

    async def cancel(self, team: str, job_id: str) -> TrainJob:
        r = await self._c._request("POST", f"/v1/teams/{team}/train/{job_id}/cancel")
        return self._c._parse(r, TrainJob)
