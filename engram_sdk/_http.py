"""The HTTP toolkit every connector uses: one client factory, rate limits, retries, error mapping.

Typical use in a connector::

    from engram_sdk.connectors import Rate, RateLimiter, RetryPolicy, build_client, raise_for_status

    limiter = RateLimiter({"default": Rate(3, per=1)}, clock=ctx.clock)     # Notion: 3 req/s
    client = build_client("https://api.example.com", headers={"Authorization": f"Bearer {token}"},
                          limiter=limiter, clock=ctx.clock)
    resp = client.get("/v1/items", extensions={"rate_key": "vault"})      # per-category bucket
    raise_for_status(resp)   # AuthError / RateLimited / PermissionDenied / NotFound / PlatformError

What ``build_client`` returns is a plain ``httpx.Client`` (so it can be handed to libraries that
take one, e.g. ``notion_client.Client(client=...)``) whose transport is a ``ResilientTransport``:

- **Rate limits**: before every attempt the transport takes one token from each bucket named by the
  request's rate key(s) (``extensions={"rate_key": "channel:19:abc"}``, or the client's default
  ``rate_key``). A key ``kind:rest`` uses the ``Rate`` registered for ``kind`` (one bucket per full
  key, so "1 request/s per channel" is ``{"channel": Rate(1)}``); unknown keys use ``"default"``;
  with no rate at all a key is unlimited. A 429's ``Retry-After`` also pauses the bucket, so every
  caller sharing it waits, not just the one that was told.
- **Retries** (tenacity), one policy for all of them: 429, 500, 502, 503, 504 and 529 answers and
  transport errors (timeouts, refused connections) are retried. The wait is the ``Retry-After``
  header when present (integer or fractional seconds, or an HTTP date), else exponential backoff
  with jitter. What bounds it is time, not a count: retrying goes on while the next wait ends
  within the ``budget`` (seconds on the clock since the first attempt; 300 by default), so a long
  429 storm of short ``Retry-After`` waits is ridden out, and a ``Retry-After`` beyond what is left
  of the budget stops at once, without sleeping on it. Each wait is logged (logger
  ``engram.http``, INFO) as it starts, naming the host (``retrying api.notion.com in 4.0 s (12 s of
  300 s used): ConnectError on POST /v1/search``); every CLI command prints these lines on stderr.
- **Connect timeouts** are short on the first attempts (``RetryPolicy.connect_timeouts``: 1.5, 3
  and 6 s, never above the client's own connect timeout) and the client's afterwards: a host that
  drops packets is reported within two seconds, and a slow link still connects on a later try.
  ``network_error`` turns a transport error into a ``PlatformError`` naming the host and what to
  check (``platform_errors`` uses it).
  After the last attempt the last answer is returned with a ``RetryStop`` in
  ``response.extensions["engram.retry"]`` (``raise_for_status`` turns a 429 into ``RateLimited``
  saying how long the platform asked to wait and how much of the budget was used), or the last
  transport error is raised. ``extensions={"retry": False}`` sends a request exactly once;
  ``RetryPolicy(max_attempts=N)`` adds a count limit for callers that want one.
- **Clock**: waits go through a ``Clock``; tests pass a ``FakeClock`` whose ``sleep`` only advances
  its time, so a minute-long rate window is tested in milliseconds.
- **Counting**: ``client_stats(client)`` gives requests sent, retries and seconds waited (what the
  benchmarks report as requests per item).

Log lines name the method, host and path only: never headers, query strings or bodies.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import httpx
import tenacity

from ._exceptions import (
    AuthError,
    ConnectorError,
    NotFound,
    PermissionDenied,
    PlatformError,
    RateLimited,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Clock",
    "FakeClock",
    "Rate",
    "RateLimiter",
    "RequestStats",
    "ResilientTransport",
    "RetryPolicy",
    "RetryStop",
    "SystemClock",
    "TokenBucket",
    "build_client",
    "client_stats",
    "network_error",
    "parse_retry_after",
    "platform_errors",
    "raise_for_status",
    "rate_limited",
]

log = logging.getLogger("engram.http")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


# --- clocks ----------------------------------------------------------------------------------------


class Clock(Protocol):
    """Where time comes from: ``monotonic()`` in seconds, and ``sleep(seconds)``."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock for tests: ``sleep`` returns at once and moves time forward; ``sleeps`` lists them."""

    def __init__(self, start: float = 0.0):
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    @property
    def slept(self) -> float:
        """Total seconds slept so far."""
        return sum(self.sleeps)


# --- rate limiting ---------------------------------------------------------------------------------

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|second|m|min|minute|h|hour)s?\s*$")
_UNIT = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``per`` seconds, with bursts of up to ``burst`` (default: ``requests``)."""

    requests: float
    per: float = 1.0
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.per <= 0:
            raise ValueError("a rate needs requests > 0 and per > 0")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be at least 1")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"3/s"``, ``"20/min"``, ``"1000/5min"``, ``"60/hour"``."""
        m = _RATE_RE.match(text)
        if not m:
            raise ValueError(f"not a rate: {text!r} (expected e.g. '3/s' or '20/min')")
        n, mult, unit = m.groups()
        return cls(float(n), per=float(mult or 1) * _UNIT[unit])

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.requests)

    @property
    def per_second(self) -> float:
        return self.requests / self.per


class TokenBucket:
    """A token bucket on a clock. ``acquire`` reserves a token and sleeps until it is due.

    Reservations may drive the level below zero, so concurrent callers queue in arrival order and
    never oversleep in a thundering herd.
    """

    def __init__(self, rate: Rate, clock: Clock):
        self.rate = rate
        self.clock = clock
        self._tokens = rate.capacity
        self._last = clock.monotonic()
        self._blocked_until = float("-inf")
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.rate.capacity, self._tokens + (now - self._last) * self.rate.per_second)
        self._last = now

    def reserve(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` now and return how many seconds the caller must wait before using them."""
        with self._lock:
            now = self.clock.monotonic()
            self._refill(now)
            self._tokens -= tokens
            wait = max(0.0, -self._tokens / self.rate.per_second)
            return max(wait, self._blocked_until - now)

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` only if they are there now; else take nothing and return the wait.
        For servers that refuse (429) rather than queue: a refused caller runs up no debt."""
        with self._lock:
            now = self.clock.monotonic()
            self._refill(now)
            blocked = self._blocked_until - now
            if blocked <= 0 and self._tokens >= tokens:
                self._tokens -= tokens
                return 0.0
            return max(blocked, (tokens - self._tokens) / self.rate.per_second)

    def acquire(self, tokens: float = 1.0) -> float:
        wait = self.reserve(tokens)
        if wait > 0:
            self.clock.sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (the server said so, e.g. a 429 with Retry-After)."""
        with self._lock:
            now = self.clock.monotonic()
            self._blocked_until = max(self._blocked_until, now + seconds)


RateSpec = Union[Rate, str]


def _rate(spec: RateSpec) -> Rate:
    return spec if isinstance(spec, Rate) else Rate.parse(spec)


class RateLimiter:
    """Token buckets by key. ``limits`` maps a key, or a key's kind (the part before ``:``), to a rate.

    ``RateLimiter({"default": "3/s"})`` limits everything to 3 requests/s;
    ``RateLimiter({"vault": "10/min", "history": "60/min"})`` gives each category its own bucket;
    ``RateLimiter({"channel": Rate(1)})`` gives every ``channel:<id>`` key its own 1/s bucket.
    """

    def __init__(self, limits: Mapping[str, RateSpec] | None = None, *, clock: Clock | None = None):
        self.limits = {k: _rate(v) for k, v in (limits or {}).items()}
        self.clock = clock or SystemClock()
        self._buckets: dict[str, TokenBucket | None] = {}
        self._lock = threading.Lock()

    def rate_for(self, key: str) -> Rate | None:
        if key in self.limits:
            return self.limits[key]
        kind = key.split(":", 1)[0]
        if kind in self.limits:
            return self.limits[kind]
        return self.limits.get("default")

    def bucket(self, key: str) -> TokenBucket | None:
        with self._lock:
            if key not in self._buckets:
                rate = self.rate_for(key)
                self._buckets[key] = TokenBucket(rate, self.clock) if rate else None
            return self._buckets[key]

    def acquire(self, key: str | Sequence[str] = "default") -> float:
        """Wait for one token of each key; returns the seconds waited."""
        waited = 0.0
        for k in [key] if isinstance(key, str) else key:
            b = self.bucket(k)
            if b is not None:
                waited += b.acquire()
        return waited

    def pause(self, key: str | Sequence[str], seconds: float) -> None:
        for k in [key] if isinstance(key, str) else key:
            b = self.bucket(k)
            if b is not None:
                b.pause(seconds)


# --- retries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry. Waits are measured on the transport's clock."""

    max_attempts: int | None = None  # None: only the time budget bounds the retries
    budget: float = 300.0  # seconds since the first attempt: no wait is started that would end past it
    backoff_base: float = 0.5  # first backoff without Retry-After, doubled per attempt
    backoff_max: float = 60.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504, 529})
    max_retry_after: float = 3600.0  # a longer Retry-After is treated as this
    # Connect timeouts of attempts 1, 2, 3 (capped by the client's); later attempts use the client's.
    # Short at first so an unreachable host is reported within two seconds, not after 10-60 s of
    # silence; longer later so a slow link still gets through.
    connect_timeouts: tuple[float, ...] = (1.5, 3.0, 6.0)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with equal jitter for attempt 1, 2, ...: in [b/2, b]."""
        b = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return b / 2 + rng.uniform(0, b / 2)


@dataclass(frozen=True)
class RetryStop:
    """Why a request came back with an answer still worth retrying (see the module docstring)."""

    attempts: int
    elapsed: float  # seconds since the first attempt, waits included
    budget: float
    retry_after: float | None  # what the last answer asked for, seconds
    reason: str  # "retry_after_beyond_budget" | "budget_spent" | "max_attempts"

    def describe(self) -> str:
        """A sentence for the operator: what the platform asked and what the budget allowed."""
        if self.reason == "retry_after_beyond_budget" and self.retry_after is not None:
            left = max(0.0, self.budget - self.elapsed)
            return (f"the platform asked to wait {_seconds(self.retry_after)} (Retry-After), more than the "
                    f"{_seconds(left)} left of the {_seconds(self.budget)} retry budget, so it was not waited for")
        if self.reason == "max_attempts":
            return f"still failing after {self.attempts} attempts over {_seconds(self.elapsed)}"
        return (f"still failing after {self.attempts} attempts over {_seconds(self.elapsed)} (retry budget "
                f"{_seconds(self.budget)})" + (
                    f"; the platform last asked to wait {_seconds(self.retry_after)}" if self.retry_after else ""))


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: ``"2"``, ``"0.25"`` or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN / inf
        return None
    return max(0.0, seconds)


@dataclass
class RequestStats:
    """What one transport has done; thread-safe counters."""

    requests: int = 0  # attempts actually sent
    retries: int = 0
    waited: float = 0.0  # seconds slept for rate limits and retries
    by_status: dict[int, int] = field(default_factory=dict)
    last_stop: RetryStop | None = None  # the last request given up on (libraries that only keep headers)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _count(self, status: int | None) -> None:
        with self._lock:
            self.requests += 1
            if status is not None:
                self.by_status[status] = self.by_status.get(status, 0) + 1

    def _wait(self, seconds: float, retry: bool) -> None:
        with self._lock:
            self.waited += seconds
            self.retries += int(retry)

    def reset(self) -> None:
        with self._lock:
            self.requests = self.retries = 0
            self.waited = 0.0
            self.by_status = {}
            self.last_stop = None


RateKey = Union[str, Sequence[str], Callable[[httpx.Request], Union[str, Sequence[str], None]], None]


def _where(request: httpx.Request) -> str:
    return f"{request.method} {request.url.host}{request.url.path}"


def _host(url: httpx.URL) -> str:
    """``host`` or ``host:port`` when the port is not the scheme's default: what an operator checks.
    Never the user info or the query string (either may carry a secret)."""
    return f"{url.host}:{url.port}" if url.port is not None else url.host


class ResilientTransport(httpx.BaseTransport):
    """Wraps another transport with rate limiting and retries (see the module docstring)."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        limiter: RateLimiter | None = None,
        rate_key: RateKey = "default",
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ):
        self.inner = inner
        self.limiter = limiter
        self.rate_key = rate_key
        self.retry = retry if retry is not None else RetryPolicy()
        self.clock = clock or (limiter.clock if limiter else SystemClock())
        self.rng = rng or random.Random()
        self.stats = RequestStats()

    def _keys(self, request: httpx.Request) -> list[str]:
        key = request.extensions.get("rate_key", self.rate_key)
        if callable(key):
            key = key(request)
        if key is None:
            return []
        return [key] if isinstance(key, str) else list(key)

    def _connect_timeout(self, attempt: int, configured: float | None) -> float | None:
        """Attempt ``attempt``'s connect timeout: the policy's step, capped by the client's own."""
        steps = self.retry.connect_timeouts
        if attempt > len(steps):
            return configured
        return steps[attempt - 1] if configured is None else min(steps[attempt - 1], configured)

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        keys = self._keys(request)
        if self.limiter is not None and keys:
            waited = self.limiter.acquire(keys)
            if waited:
                self.stats._wait(waited, retry=False)
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:
            self.stats._count(None)
            raise
        self.stats._count(response.status_code)
        if response.status_code in self.retry.retry_statuses:
            response.read()  # keep headers and body for the caller; frees the connection
            if response.status_code == 429 and self.limiter is not None and keys:
                hint = parse_retry_after(response.headers.get("retry-after"))
                if hint:
                    self.limiter.pause(keys, min(hint, self.retry.max_retry_after))
        return response

    def _retryable(self, response: httpx.Response) -> bool:
        return response.status_code in self.retry.retry_statuses

    @staticmethod
    def _hint(state: tenacity.RetryCallState) -> float | None:
        """The last answer's Retry-After as sent (the operator is told this, not a capped value)."""
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            return parse_retry_after(outcome.result().headers.get("retry-after"))
        return None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        hint = self._hint(state)
        if hint is not None:
            return min(hint, self.retry.max_retry_after)
        return self.retry.backoff(state.attempt_number, self.rng)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.extensions.get("retry") is False:
            return self._attempt(request)
        start = self.clock.monotonic()
        policy = self.retry
        stopped: list[str] = []
        timeouts = request.extensions.get("timeout")
        attempts = itertools.count(1)

        def attempt(req: httpx.Request) -> httpx.Response:
            n = next(attempts)
            if isinstance(timeouts, dict):  # httpx puts the client's timeouts here, as a dict
                connect = self._connect_timeout(n, timeouts.get("connect"))
                req.extensions = {**req.extensions, "timeout": {**timeouts, "connect": connect}}
            return self._attempt(req)

        def stop(state: tenacity.RetryCallState) -> bool:
            if policy.max_attempts is not None and state.attempt_number >= policy.max_attempts:
                stopped.append("max_attempts")
                return True
            if self.clock.monotonic() - start + (state.upcoming_sleep or 0.0) > policy.budget:
                stopped.append("retry_after_beyond_budget" if self._hint(state) is not None else "budget_spent")
                return True
            return False

        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            why = (
                type(outcome.exception()).__name__
                if outcome is not None and outcome.failed
                else f"HTTP {outcome.result().status_code if outcome else '?'}"
            )
            how = ", as Retry-After asks" if self._hint(state) is not None else ""
            self.stats._wait(state.upcoming_sleep, retry=True)
            used = self.clock.monotonic() - start
            # The host comes first: it is what an operator checks when the network is the trouble.
            log.info("retrying %s in %s (%s of %s used): %s on %s %s%s", _host(request.url),
                     _seconds(state.upcoming_sleep), _seconds(used), _seconds(policy.budget), why,
                     request.method, request.url.path, how)

        def give_up(state: tenacity.RetryCallState) -> httpx.Response:
            outcome = state.outcome
            assert outcome is not None
            info = RetryStop(attempts=state.attempt_number, elapsed=self.clock.monotonic() - start,
                             budget=policy.budget, retry_after=self._hint(state),
                             reason=stopped[-1] if stopped else "budget_spent")
            self.stats.last_stop = info
            if outcome.failed:
                log.warning("%s: giving up on %s, %s", _where(request), _host(request.url), info.describe())
                return outcome.result()  # raises the last transport error
            response: httpx.Response = outcome.result()
            response.extensions = {**response.extensions, "engram.retry": info}
            log.warning("%s answered HTTP %d: giving up, %s", _where(request), response.status_code, info.describe())
            return response

        retrying = tenacity.Retrying(
            stop=stop,
            wait=self._wait,
            sleep=self.clock.sleep,
            retry=tenacity.retry_if_exception_type(httpx.TransportError) | tenacity.retry_if_result(self._retryable),
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )
        return retrying(attempt, request)

    def close(self) -> None:
        self.inner.close()


def build_client(
    base_url: str = "",
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    limiter: RateLimiter | None = None,
    rate_key: RateKey = "default",
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
    verify: Any = True,
    transport: httpx.BaseTransport | None = None,
    follow_redirects: bool = False,
    rng: random.Random | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with timeouts, rate limits and retries; see the module docstring.

    ``verify`` is what httpx takes: True, a CA bundle path (e.g. a sandbox's trustme CA) or an
    ``ssl.SSLContext``. ``transport`` replaces the network (``httpx.MockTransport`` in unit tests).
    """
    if isinstance(verify, str):
        import ssl

        verify = ssl.create_default_context(cafile=verify)
    inner = transport or httpx.HTTPTransport(verify=verify)
    resilient = ResilientTransport(inner, limiter=limiter, rate_key=rate_key, retry=retry, clock=clock, rng=rng)
    return httpx.Client(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        transport=resilient,
        follow_redirects=follow_redirects,
    )


def client_stats(client: httpx.Client) -> RequestStats:
    """The counters of a client made by ``build_client``."""
    transport = getattr(client, "_transport", None)
    if not isinstance(transport, ResilientTransport):
        raise TypeError("client_stats() needs a client made by build_client()")
    return transport.stats


# --- error mapping ---------------------------------------------------------------------------------

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-ms-request-id", "client-request-id", "x-amzn-requestid")


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict):
        code = body.get("code")
        if code is None and isinstance(body.get("error"), dict):
            code = body["error"].get("code")
        elif code is None and isinstance(body.get("error"), str):
            code = body["error"]
        return str(code) if code is not None else None
    return None


def raise_for_status(response: httpx.Response, *, what: str | None = None) -> httpx.Response:
    """Return a 2xx response; map anything else to the ``ConnectorError`` tree.

    401 -> ``AuthError``; 403 -> ``PermissionDenied``; 404/410 -> ``NotFound``; 429 ->
    ``RateLimited`` (with ``retry_after``); other -> ``PlatformError``. The message names the method,
    path, status and the platform's error code, never the body text (it may quote content).
    Connectors that can tell a revoked grant apart raise ``ReconnectNeeded`` themselves.
    """
    if response.is_success:
        return response
    request = response.request
    status = response.status_code
    code = _error_code(response)
    request_id = next((response.headers[h] for h in _REQUEST_ID_HEADERS if h in response.headers), None)
    where = what or _where(request)
    msg = f"{where} failed: HTTP {status}" + (f" ({code})" if code else "")
    if status == 401:
        raise AuthError(msg + ": the platform rejected the credentials")
    if status == 429:
        raise rate_limited(msg, response.headers, response.extensions.get("engram.retry"))
    cls = {403: PermissionDenied, 404: NotFound, 410: NotFound}.get(status, PlatformError)
    raise cls(msg, status=status, code=code, request_id=request_id)


def rate_limited(message: str, headers: Mapping[str, str], stop: RetryStop | None) -> RateLimited:
    """The ``RateLimited`` for a 429 the transport gave up on: says how long the platform asked
    to wait and what the retry budget allowed (one wording for every connector)."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    if stop is not None:
        return RateLimited(f"{message}: {stop.describe()}", retry_after=retry_after)
    asked = f"; the platform asks to wait {_seconds(retry_after)}" if retry_after else ""
    return RateLimited(f"{message}: still rate limited{asked}", retry_after=retry_after)


def network_error(what: str, exc: httpx.TransportError) -> PlatformError:
    """The ``PlatformError`` for a request that never got an answer: it names the host (and port)
    and what to check, so "network error" is never the whole story. No URL path, query or header."""
    try:
        host = _host(exc.request.url)
    except RuntimeError:  # an error raised without its request (hand-made in tests)
        host = "the platform"
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            hint = "no connection in time: check the network, a firewall or proxy, and that the host is up"
        else:
            hint = "the platform did not answer in time: it may be overloaded; try again later"
        return PlatformError(f"{what}: timed out reaching {host} ({name}): {hint}", code="timeout")
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        hint = "the host name does not resolve: check the base URL and DNS"
    elif "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        hint = "the TLS handshake failed: check the base URL's scheme and the CA bundle (a proxy may intercept TLS)"
    elif isinstance(exc, httpx.ConnectError):
        hint = "nothing answered there: check that the host is up, the base URL, and any proxy or firewall"
    else:
        hint = "the connection broke: check the network and any proxy"
    return PlatformError(f"{what}: cannot reach {host} ({name}): {hint}", code="network_error")


@contextmanager
def platform_errors(what: str) -> Iterator[None]:
    """Turn httpx transport errors (timeouts, refused connections) into ``PlatformError`` naming the
    host and what to check (``network_error``)."""
    try:
        yield
    except ConnectorError:
        raise
    except httpx.TransportError as exc:
        raise network_error(what, exc) from None
