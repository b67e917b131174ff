"""The SDK client: retries, typed errors, sync and async, event paging, the User-Agent; without a
model except where "no adapter" must come from a real server."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import sys
import time
from importlib.metadata import version

import httpx
import pytest

import engram_sdk
import engram_sdk.client as client_module
from engram_sdk._sandbox import serve
from engram_sdk.client import (
    APIConflict,
    APIConnectionError,
    APIError,
    APINotFound,
    APIRateLimited,
    AsyncEngramClient,
    BadRequest,
    EngramClient,
    Forbidden,
    InternalServerError,
    InvalidRequest,
    MethodNotAllowed,
    NoAdapterError,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from engram_sdk.server import ServerConfig, create_app
from tests.factories import signed_events

KEY = "egk_0123456789abcdef_" + "s" * 43
HEALTH = {"status": "ok", "version": "0", "database": "sqlite", "workers": False}


def scripted(*answers):
    """A transport that answers in order and records when each request came."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((time.monotonic(), request))
        status, headers, body = answers[min(len(calls) - 1, len(answers) - 1)]
        return httpx.Response(status, headers=headers, json=body)

    return httpx.MockTransport(handler), calls


def err(code, msg="nope"):
    return {"error": {"code": code, "message": msg, "request_id": "r1"}}


def test_429_is_retried_after_the_fractional_retry_after():
    transport, calls = scripted((429, {"Retry-After": "0.3"}, err("rate_limited")), (200, {}, HEALTH))
    with EngramClient("http://engram.test", KEY, transport=transport) as c:
        assert c.health().status == "ok"
    assert len(calls) == 2 and calls[1][0] - calls[0][0] >= 0.29


def test_5xx_is_retried_with_backoff_then_succeeds():
    transport, calls = scripted((503, {}, err("unavailable")), (502, {}, err("bad_gateway")), (200, {}, HEALTH))
    with EngramClient("http://engram.test", KEY, transport=transport, backoff=0.01) as c:
        assert c.health().status == "ok"
    assert len(calls) == 3


def test_persistent_429_raises_rate_limited_with_retry_after():
    transport, calls = scripted((429, {"Retry-After": "0.01"}, err("rate_limited", "slow down")))
    with EngramClient("http://engram.test", KEY, transport=transport, max_retries=2) as c:
        with pytest.raises(APIRateLimited) as e:
            c.query("acme", "q")
    assert len(calls) == 3 and e.value.retry_after == pytest.approx(0.01) and "slow down" in str(e.value)


@pytest.mark.parametrize("status, cls", [(401, Unauthorized), (403, Forbidden), (409, APIConflict)])
def test_error_answers_become_typed_exceptions_with_the_servers_reason(status, cls):
    transport, calls = scripted((status, {}, err("some_code", "the server's reason")))
    with EngramClient("http://engram.test", KEY, transport=transport) as c:
        with pytest.raises(cls) as e:
            c.adapters.list("acme")
    assert len(calls) == 1  # not retried
    assert e.value.status == status and e.value.code == "some_code" and e.value.request_id == "r1"
    assert "the server's reason" in str(e.value)


def test_unreachable_server_is_a_connection_error():
    with EngramClient("http://127.0.0.1:9", KEY, max_retries=1, backoff=0.01) as c:
        with pytest.raises(APIConnectionError, match="cannot reach"):
            c.health()


def test_the_key_never_shows_in_repr_or_errors():
    transport, _ = scripted((401, {}, err("unauthorized")))
    c = EngramClient("http://engram.test", KEY, transport=transport)
    with pytest.raises(Unauthorized) as e:
        c.health()
    assert KEY not in repr(c) and KEY not in str(e.value)


def test_the_request_carries_the_bearer_key_and_json_body():
    transport, calls = scripted((200, {}, {"results": [], "accepted": 0, "duplicates": 0, "conflicts": 0,
                                           "rejected": 0}))
    with EngramClient("http://engram.test", KEY, transport=transport) as c:
        c.events.ingest([{"id": "x"}])
    req = calls[0][1]
    assert req.headers["authorization"] == f"Bearer {KEY}" and json.loads(req.content) == {"events": [{"id": "x"}]}


def test_async_client_against_the_app_in_process(deployment):
    app = create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False))
    events = signed_events(deployment.keyrings["acme"], 3)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with AsyncEngramClient("http://engram.test", deployment.tokens[("acme", "ingest")],
                                     transport=transport) as c:
            first = await c.events.ingest(events)
            again = await c.events.ingest(events)
            with pytest.raises(Forbidden):
                await c.adapters.list("acme")
            return first, again

    first, again = asyncio.run(go())
    assert first.accepted == 3 and again.duplicates == 3


def test_async_retries_honour_retry_after():
    calls = []

    def handler(request):
        calls.append(time.monotonic())
        return httpx.Response(429, headers={"Retry-After": "0.2"}, json=err("rate_limited")) if len(calls) == 1 \
            else httpx.Response(200, json=HEALTH)

    async def go():
        async with AsyncEngramClient("http://engram.test", KEY, transport=httpx.MockTransport(handler)) as c:
            return await c.health()

    assert asyncio.run(go()).status == "ok" and calls[1] - calls[0] >= 0.19


# --- one class per error code ------------------------------------------------------------------------

# Every code docs/server.md documents (and server/_errors.py sends), with its status and class.
DOCUMENTED = [(400, "bad_request", BadRequest), (401, "unauthorized", Unauthorized), (403, "forbidden", Forbidden),
              (404, "not_found", APINotFound), (405, "method_not_allowed", MethodNotAllowed),
              (409, "conflict", APIConflict), (409, "no_adapter", NoAdapterError),
              (413, "payload_too_large", PayloadTooLarge), (415, "unsupported_media_type", UnsupportedMediaType),
              (422, "invalid_request", InvalidRequest), (429, "rate_limited", APIRateLimited),
              (500, "internal_error", InternalServerError), (503, "unavailable", ServiceUnavailable)]


@pytest.mark.parametrize("status, code, cls", DOCUMENTED)
def test_each_error_code_is_its_own_class_and_still_an_api_error(status, code, cls):
    transport, _ = scripted((status, {"Retry-After": "0"}, err(code, "the server's reason")))
    with EngramClient("http://engram.test", KEY, transport=transport, max_retries=0) as c:
        with pytest.raises(cls) as e:
            c.adapters.list("acme")
    assert type(e.value) is cls and isinstance(e.value, APIError)
    assert (e.value.status, e.value.code, e.value.request_id) == (status, code, "r1")
    assert cls.__name__ in engram_sdk.__all__ and cls.__name__ in client_module.__all__


def test_the_server_sends_no_code_the_client_does_not_know():
    from engram_sdk._api import ERROR_CODES
    from engram_sdk._exceptions import API_ERRORS

    # the server's default code for each status, and the one it names itself (server/_app.py)
    assert set(ERROR_CODES.values()) | {"no_adapter"} == set(API_ERRORS) == {code for _, code, _ in DOCUMENTED}


def test_an_answer_without_a_code_is_classed_by_its_status():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>not here</html>")  # a proxy's page, not the server's body

    with EngramClient("http://engram.test", KEY, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(APINotFound, match="not here"):
            c.health()


@pytest.fixture
def live(deployment, tiny_model):
    """The app on real uvicorn on loopback, answering with a tiny random model; no adapter trained."""
    deployment.settings = type(deployment.settings)(deployment.settings.home, deployment.settings.database_url,
                                                    str(tiny_model))
    app = create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False))
    with serve(app) as srv:
        yield deployment, srv.url


def test_no_adapter_yet_is_a_no_adapter_error_over_http(live):
    dep, url = live
    with EngramClient(url, dep.tokens[("acme", "query")]) as c:
        with pytest.raises(NoAdapterError) as e:
            c.query("acme", "Who approves vendor contracts?")
        with pytest.raises(NoAdapterError):
            list(c.query_stream("acme", "Who approves vendor contracts?"))
    assert e.value.status == 409 and e.value.code == "no_adapter" and e.value.request_id

    async def go():
        async with AsyncEngramClient(url, dep.tokens[("acme", "query")]) as c:
            with pytest.raises(NoAdapterError):
                await c.query("acme", "Who approves vendor contracts?")

    asyncio.run(go())


# --- paging through a team's events ----------------------------------------------------------------


def test_events_page_and_iterate_over_http(deployment):
    events = signed_events(deployment.keyrings["acme"], 25)
    deployment.store.append(events)
    deployment.store.append(signed_events(deployment.keyrings["globex"], 3, team="globex"))
    app = create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False))
    with serve(app) as srv, EngramClient(srv.url, deployment.tokens[("acme", "admin")]) as c:
        first = c.events.list("acme", limit=10)
        assert [e["id"] for e in first.events] == [e.id for e in events[:10]] and first.has_more
        rest = c.events.list("acme", after=first.cursor, limit=15)  # exactly the rest: no page after it
        assert [e["id"] for e in rest.events] == [e.id for e in events[10:]] and not rest.has_more
        assert [e["id"] for e in c.events.iter("acme", page_size=7)] == [e.id for e in events]
        assert c.events.list("acme", after=rest.cursor).events == []  # nothing newer yet
        with pytest.raises(Forbidden):
            c.events.list("globex")
        with pytest.raises(InvalidRequest, match="after"):
            c.events.list("acme", after="not-a-cursor")
        with EngramClient(srv.url, deployment.tokens[("acme", "query")]) as reader, pytest.raises(Forbidden):
            reader.events.list("acme")  # the team's content: admin keys only


def test_async_events_and_signing_keys_against_the_app_in_process(deployment):
    app = create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False))
    events = signed_events(deployment.keyrings["acme"], 12)
    deployment.store.append(events)
    active = deployment.keyrings["acme"].active()

    async def go():
        async with AsyncEngramClient("http://engram.test", deployment.tokens[("acme", "admin")],
                                     transport=httpx.ASGITransport(app=app)) as c:
            ids = [e["id"] async for e in c.events.iter("acme", page_size=5)]
            keys = await c.signing_keys.list("acme")
            revoked = await c.signing_keys.revoke("acme", active.kid)
            trusted = await c.signing_keys.trust("acme", active.kid, active.public_key)
            return ids, keys, revoked, trusted

    ids, keys, revoked, trusted = asyncio.run(go())
    assert ids == [e.id for e in events]
    assert active.kid in {k.kid for k in keys}
    assert revoked.status == "revoked" and trusted.kid == active.kid


# --- sync / async parity ---------------------------------------------------------------------------

# The async client spells these differently, as httpx does; everything else has the same name.
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}


def _public(obj) -> dict[str, inspect.Signature]:
    return {n: inspect.signature(getattr(obj, n)) for n in dir(obj)
            if not n.startswith("_") and callable(getattr(obj, n))}


def _groups(client) -> dict[str, object]:
    return {n: v for n, v in vars(client).items() if not n.startswith("_") and hasattr(v, "_c")}


def _params(sig: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_sync_and_async_clients_have_the_same_methods_and_parameters():
    sync, asyn = EngramClient("http://engram.test", KEY), AsyncEngramClient("http://engram.test", KEY)
    s_methods, a_methods = _public(sync), _public(asyn)
    assert {RENAMED.get(n, n) for n in s_methods} == set(a_methods)
    for name, sig in s_methods.items():
        assert _params(sig) == _params(a_methods[RENAMED.get(name, name)]), name
    s_groups, a_groups = _groups(sync), _groups(asyn)
    assert set(s_groups) == set(a_groups) == {"events", "signing_keys", "adapters", "training"}
    for group in s_groups:
        s_g, a_g = _public(s_groups[group]), _public(a_groups[group])
        assert set(s_g) == set(a_g), group
        for name, sig in s_g.items():
            assert _params(sig) == _params(a_g[name]), f"{group}.{name}"
            assert inspect.iscoroutinefunction(getattr(a_groups[group], name)) or \
                inspect.isasyncgenfunction(getattr(a_groups[group], name)), f"{group}.{name} is not async"
    sync.close()
    asyncio.run(asyn.aclose())


# --- User-Agent ----------------------------------------------------------------------------------


def test_the_user_agent_names_sdk_python_and_httpx_versions():
    transport, calls = scripted((200, {}, HEALTH))
    with EngramClient("http://engram.test", KEY, transport=transport) as c:
        c.health()
    ua = calls[0][1].headers["user-agent"]
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert ua == f"engram-sdk/{version('engram-sdk')} python/{py} httpx/{httpx.__version__}"
    assert re.fullmatch(r"engram-sdk/\d+\.\d+\S* python/3\.\d+ httpx/\d+\.\d+\S*", ua)
