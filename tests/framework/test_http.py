"""The HTTP toolkit: token buckets on an injected clock, retries honouring Retry-After, budgets,
error mapping. Most tests run against the real example sandbox over loopback; a few use
httpx.MockTransport where a precise sequence of answers matters."""

from __future__ import annotations

import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from engram_sdk.connectors import (
    AuthError,
    FakeClock,
    NotFound,
    PermissionDenied,
    PlatformError,
    Rate,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    build_client,
    client_stats,
    parse_retry_after,
    platform_errors,
    raise_for_status,
)

from .conftest import TOKEN


def answers(*responses: httpx.Response | Exception) -> httpx.MockTransport:
    """A transport answering with ``responses`` in order (the last one repeats)."""
    seq = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = seq.pop(0) if len(seq) > 1 else seq[0]
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler)


# --- rate limits -----------------------------------------------------------------------------------


def test_rate_parse() -> None:
    assert Rate.parse("3/s") == Rate(3, per=1)
    assert Rate.parse("20/min") == Rate(20, per=60)
    assert Rate.parse("1000/5min") == Rate(1000, per=300)
    with pytest.raises(ValueError):
        Rate.parse("fast")


def test_minute_window_runs_in_fake_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"vault": "10/min"}, clock=clock)
    for _ in range(10):  # the burst
        limiter.acquire("vault")
    assert clock.monotonic() == 0
    for _ in range(20):  # then one every 6 seconds
        limiter.acquire("vault")
    assert clock.monotonic() == pytest.approx(120.0)


def test_buckets_are_per_key_and_per_kind() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"channel": Rate(1), "default": Rate(100)}, clock=clock)
    limiter.acquire("channel:a")
    limiter.acquire("channel:b")  # another channel: its own bucket, no wait
    assert clock.monotonic() == 0
    limiter.acquire("channel:a")
    assert clock.monotonic() == pytest.approx(1.0)
    assert limiter.rate_for("history") == Rate(100)  # unknown keys use "default"
    assert RateLimiter({}, clock=clock).acquire("anything") == 0  # no rate: unlimited


def test_client_waits_for_the_limiter(server, clock) -> None:
    limiter = RateLimiter({"default": "3/s"}, clock=clock)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, limiter=limiter, clock=clock) as c:
        for _ in range(9):
            assert c.get("/api/me").status_code == 200
    assert clock.monotonic() == pytest.approx(2.0)  # 3 at once, then 6 more at 3/s


def test_rate_key_per_request(server, clock) -> None:
    limiter = RateLimiter({"vault": "1/min", "history": "1/min"}, clock=clock)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, limiter=limiter, clock=clock) as c:
        c.get("/api/me", extensions={"rate_key": "vault"})
        c.get("/api/me", extensions={"rate_key": "history"})
        assert clock.monotonic() == 0
        c.get("/api/me", extensions={"rate_key": "vault"})
        assert clock.monotonic() == pytest.approx(60.0)


# --- Retry-After -----------------------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert parse_retry_after(format_datetime(when, usegmt=True)) == pytest.approx(30, abs=2)
    assert parse_retry_after("-5") == 0.0


def test_429_with_integer_retry_after_is_honoured(server, admin, clock) -> None:
    admin.fault(status=429, times=2, retry_after=3)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, clock=clock) as c:
        assert c.get("/api/me").status_code == 200
        assert clock.sleeps == [3.0, 3.0]
        assert client_stats(c).requests == 3 and client_stats(c).retries == 2


def test_429_with_fractional_retry_after_is_honoured(server, admin, clock) -> None:
    admin.fault(status=429, times=1, retry_after=0.25)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, clock=clock) as c:
        assert c.get("/api/me").status_code == 200
    assert clock.sleeps == [0.25]


def test_429_pauses_the_shared_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"default": Rate(100)}, clock=clock)
    transport = answers(httpx.Response(429, headers={"Retry-After": "5"}), httpx.Response(200))
    with build_client("http://platform", transport=transport, limiter=limiter, clock=clock) as c:
        c.get("/a")
    assert limiter.bucket("default").reserve() == 0  # the pause is over by the time the retry ran
    limiter.pause("default", 7)
    assert limiter.acquire("default") == pytest.approx(7)


def test_backoff_with_jitter_when_no_retry_after(server, admin, clock) -> None:
    admin.fault(status=503, times=4)
    policy = RetryPolicy(backoff_base=1.0)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, clock=clock, retry=policy,
                      rng=random.Random(7)) as c:
        assert c.get("/api/me").status_code == 200
    assert len(clock.sleeps) == 4
    for attempt, slept in enumerate(clock.sleeps, 1):
        cap = 2 ** (attempt - 1)
        assert cap / 2 <= slept <= cap  # exponential, jittered in [b/2, b]
    assert len(set(clock.sleeps)) == 4


def test_500_is_retried(server, admin, clock) -> None:
    admin.fault(status=500, times=1)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, clock=clock) as c:
        assert c.get("/api/me").status_code == 200


def test_4xx_is_not_retried(server, clock) -> None:
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, clock=clock) as c:
        assert c.get("/api/notes/nope").status_code == 404
        assert client_stats(c).requests == 1 and clock.sleeps == []


def test_max_attempts_returns_the_last_answer() -> None:
    clock = FakeClock()
    transport = answers(httpx.Response(429, headers={"Retry-After": "1"}))
    with build_client("http://platform", transport=transport, clock=clock, retry=RetryPolicy(max_attempts=4)) as c:
        r = c.get("/a")
    assert r.status_code == 429 and len(clock.sleeps) == 3
    with pytest.raises(RateLimited) as info:
        raise_for_status(r)
    assert info.value.retry_after == 1.0


def test_total_budget_stops_retrying() -> None:
    clock = FakeClock()
    transport = answers(httpx.Response(503, headers={"Retry-After": "40"}))
    with build_client("http://platform", transport=transport, clock=clock, retry=RetryPolicy(budget=100)) as c:
        r = c.get("/a")
    assert r.status_code == 503
    assert clock.sleeps == [40.0, 40.0]  # a third wait would end past the 100 s budget


def test_retry_after_beyond_the_budget_is_not_waited() -> None:
    clock = FakeClock()
    transport = answers(httpx.Response(429, headers={"Retry-After": "315"}), httpx.Response(200))
    with build_client("http://platform", transport=transport, clock=clock, retry=RetryPolicy(budget=300)) as c:
        assert c.get("/a").status_code == 429
    assert clock.sleeps == []


def test_a_long_429_storm_is_ridden_out_within_the_budget_not_a_count() -> None:
    clock = FakeClock()
    storm = [httpx.Response(429, headers={"Retry-After": "2"})] * 40
    with build_client("http://platform", transport=answers(*storm, httpx.Response(200)), clock=clock) as c:
        assert c.get("/a").status_code == 200
    assert client_stats(c).requests == 41 and clock.sleeps == [2.0] * 40  # 80 s of a 300 s budget


def test_network_errors_follow_the_same_policy_as_429s() -> None:
    clock = FakeClock()
    outage = [httpx.ConnectError("refused")] * 10  # backoff 0.5 s doubling to 60 s: 10 fit in 300 s
    with build_client("http://platform", transport=answers(*outage, httpx.Response(200)), clock=clock,
                      rng=random.Random(1)) as c:
        assert c.get("/a").status_code == 200
    assert client_stats(c).requests == 11 and clock.slept <= 300


def test_a_storm_longer_than_the_budget_stops_and_says_so() -> None:
    clock = FakeClock()
    with build_client("http://platform", transport=answers(httpx.Response(429, headers={"Retry-After": "30"})),
                      clock=clock) as c:
        r = c.get("/a")
    assert r.status_code == 429 and clock.slept == 300.0  # ten 30 s waits fill the budget exactly
    stop = r.extensions["engram.retry"]
    assert (stop.attempts, stop.reason) == (11, "retry_after_beyond_budget")
    with pytest.raises(RateLimited) as info:
        raise_for_status(r)
    assert "asked to wait 30 s" in str(info.value) and "300 s retry budget" in str(info.value)


def test_a_retry_after_beyond_the_budget_says_how_long_the_platform_asked() -> None:
    clock = FakeClock()
    transport = answers(httpx.Response(429, headers={"Retry-After": "400"}), httpx.Response(200))
    with build_client("http://platform", transport=transport, clock=clock) as c:
        r = c.get("/a")
    assert r.status_code == 429 and clock.sleeps == []  # not waited for at all
    with pytest.raises(RateLimited) as info:
        raise_for_status(r)
    text = str(info.value)
    assert "asked to wait 400 s (Retry-After)" in text and "300 s retry budget" in text
    assert info.value.retry_after == 400.0


def test_each_wait_is_logged_as_it_starts(caplog) -> None:
    clock = FakeClock()
    transport = answers(httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(503),
                        httpx.Response(200))
    with caplog.at_level("INFO", logger="engram.http"):
        with build_client("http://platform", transport=transport, clock=clock, rng=random.Random(2)) as c:
            assert c.get("/v1/search?token=abc").status_code == 200
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying ")]
    assert len(waits) == 2
    assert waits[0] == "retrying platform in 3.0 s (0.0 s of 300 s used): HTTP 429 on GET /v1/search, as Retry-After asks"
    assert waits[1].startswith("retrying platform in ") and "(3.0 s of 300 s used): HTTP 503 on GET /v1/search" in waits[1]
    assert "Retry-After" not in waits[1]
    assert "token=abc" not in caplog.text


def test_transport_errors_are_retried_then_raised() -> None:
    clock = FakeClock()
    transport = answers(httpx.ConnectError("refused"))
    with build_client("http://platform", transport=transport, clock=clock, retry=RetryPolicy(max_attempts=3)) as c:
        with pytest.raises(httpx.ConnectError):
            c.get("/a")
        assert client_stats(c).requests == 3


def test_timeout_then_success(server, admin) -> None:
    admin.fault(delay=1.0, times=1)
    policy = RetryPolicy(backoff_base=0.01)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=0.2, retry=policy) as c:
        assert c.get("/api/me").status_code == 200
        assert client_stats(c).requests == 2


def test_retry_can_be_switched_off_per_request(server, admin, clock) -> None:
    admin.fault(status=503, times=1)
    with build_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, clock=clock) as c:
        assert c.get("/api/me", extensions={"retry": False}).status_code == 503


# --- error mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, PermissionDenied), (404, NotFound), (410, NotFound), (400, PlatformError),
     (500, PlatformError)],
)
def test_raise_for_status_maps_statuses(status: int, error: type[Exception]) -> None:
    request = httpx.Request("GET", "http://platform/v1/pages/secret-page?token=abc")
    response = httpx.Response(status, json={"code": "some_code", "message": "quoted content"},
                              headers={"x-request-id": "req-1"}, request=request)
    with pytest.raises(error) as info:
        raise_for_status(response)
    text = str(info.value)
    assert "token=abc" not in text and "quoted content" not in text
    if isinstance(info.value, PlatformError):
        assert info.value.status == status and info.value.code == "some_code"
        assert info.value.request_id == "req-1"


def test_raise_for_status_passes_success() -> None:
    response = httpx.Response(200, request=httpx.Request("GET", "http://platform/"))
    assert raise_for_status(response) is response


def test_platform_errors_translates_transport_errors() -> None:
    request = httpx.Request("GET", "https://api.example.com:8443/x?token=abc")
    with pytest.raises(PlatformError, match="timed out reaching api.example.com:8443") as info:
        with platform_errors("GET /x"):
            raise httpx.ReadTimeout("slow", request=request)
    assert info.value.code == "timeout" and "try again later" in str(info.value)
    with pytest.raises(PlatformError, match="cannot reach api.example.com:8443 \\(ConnectError\\)") as info:
        with platform_errors("GET /x"):
            raise httpx.ConnectError("refused", request=request)
    assert "check that the host is up, the base URL" in str(info.value) and "token=abc" not in str(info.value)
    with pytest.raises(PlatformError, match="does not resolve: check the base URL and DNS"):
        with platform_errors("GET /x"):
            raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)
    with pytest.raises(PlatformError, match="cannot reach the platform"):  # an error without its request
        with platform_errors("GET /x"):
            raise httpx.ConnectError("refused")


def test_a_refused_connection_names_host_and_port_in_the_wait_and_in_the_error(caplog) -> None:
    """A real loopback port nobody listens on: each retry line and the final error name it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connecting is refused
    policy = RetryPolicy(budget=0.3, backoff_base=0.05)
    with caplog.at_level("INFO", logger="engram.http"):
        with build_client(f"http://127.0.0.1:{port}", retry=policy) as c:
            with pytest.raises(PlatformError) as info:
                with platform_errors("GET /v1/me"):
                    c.get("/v1/me?secret=s3cret")
    first = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying "))
    assert first.startswith(f"retrying 127.0.0.1:{port} in ") and first.endswith("ConnectError on GET /v1/me")
    assert f"cannot reach 127.0.0.1:{port} (ConnectError)" in str(info.value)
    assert "s3cret" not in caplog.text + str(info.value)


def test_first_attempts_get_short_connect_timeouts_then_the_clients_own() -> None:
    """An unreachable host is reported after 1.5 s, not after the client's 10 s (or notion-client's
    60 s); later attempts give a slow link more time, never more than the client allows."""
    seen: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["connect"])
        if len(seen) < 5:
            raise httpx.ConnectTimeout("no answer", request=request)
        return httpx.Response(200)

    clock = FakeClock()
    with build_client("http://platform", transport=httpx.MockTransport(handler), clock=clock,
                      timeout=httpx.Timeout(30.0, connect=10.0)) as c:
        assert c.get("/a").status_code == 200
    assert seen == [1.5, 3.0, 6.0, 10.0, 10.0]
    seen.clear()
    with build_client("http://platform", transport=httpx.MockTransport(handler), clock=clock,
                      timeout=httpx.Timeout(30.0, connect=2.0)) as c:
        assert c.get("/a").status_code == 200
    assert seen == [1.5, 2.0, 2.0, 2.0, 2.0]


def test_client_stats_needs_a_built_client() -> None:
    with pytest.raises(TypeError):
        client_stats(httpx.Client())
