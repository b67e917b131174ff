"""The SDK client: retries, typed errors, sync and async, without a model."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from engram_sdk.client import (
    APIConnectionError,
    APIError,
    APIRateLimited,
    AsyncEngramClient,
    EngramClient,
    Forbidden,
    Unauthorized,
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


@pytest.mark.parametrize("status, cls", [(401, Unauthorized), (403, Forbidden), (409, APIError)])
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
