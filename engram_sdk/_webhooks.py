"""Webhooks: signature checks, the receiver, the durable queue and the worker that drains it.

**Receiver** (``WebhookReceiver``, an ASGI app): ``POST /webhooks/<connection>`` hands the raw
request to the connection's ``Connector.handle_webhook``, which verifies the platform's signature
scheme (raising ``WebhookError`` -> 401 ``{"error": reason, "message": ...}``) and returns the
entity ids to refetch. The receiver writes
them to the ``webhook_queue`` table and answers at once (202 unless the connector asks for a
handshake answer); it never calls the platform itself.

**Queue** (``WebhookQueue``): a delivery id seen before is dropped (exact replays); an entity that
already waits unclaimed in the queue is not queued twice (bursts coalesce). Rows are claimed with a
lease, so several workers can drain one queue and a crashed worker's rows come back.

**Worker** (``WebhookWorker``, ``engram worker``): claims due rows, refetches their entities with
``Connector.fetch`` (the *current* state, so deliveries that arrive repeated or out of order give
the same events: event ids are content-derived), signs and stores the records, and marks the rows
done. A failing row is retried with exponential backoff and, after ``max_attempts``, dead-lettered
(status ``dead``, kept with its last error). A revoked grant parks the connection's rows and marks
the connection ``reconnect_needed``.

**Signature helpers** for connectors: ``verify_hmac_sha256`` (constant-time compare of a hex or
base64 HMAC; ``sign_hmac_sha256`` makes one for sandboxes and tests) and ``StandardWebhook``
(Standard Webhooks v1: ``webhook-id``/``webhook-timestamp``/``webhook-signature``; timestamps
outside +-5 minutes rejected by default), with ``sign`` for tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from standardwebhooks import Webhook

from . import _schema as t
from ._connections import Connections, open_connector
from ._connector import Connector, ItemFailed, WebhookRequest, WebhookResult
from ._exceptions import AuthError, ConfigError, ConnectorError, EngramError, RateLimited, WebhookError
from ._http import Clock
from ._secrets import SecretStore
from ._signing import Keyring
from ._store import EventStore
from ._sync import Signer, SyncResult, SyncRunner, record_events

if TYPE_CHECKING:  # starlette is imported only by the receiver (the "server" extra)
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "StandardWebhook",
    "WebhookQueue",
    "WebhookReceiver",
    "WebhookWorker",
    "WorkerReport",
    "sign_hmac_sha256",
    "verify_hmac_sha256",
]

log = logging.getLogger("engram.webhooks")

DEFAULT_TOLERANCE = 300  # seconds, both directions (the Standard Webhooks reference libraries)


# --- signature helpers -----------------------------------------------------------------------------


def sign_hmac_sha256(secret: str | bytes, payload: bytes, *, prefix: str = "", encoding: str = "hex") -> str:
    """``prefix`` + the HMAC-SHA256 of ``payload`` keyed with ``secret``, as lower-case hex or
    base64: what a platform puts in its signature header (for sandboxes and tests)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, payload, hashlib.sha256).digest()
    return prefix + (digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())


def verify_hmac_sha256(secret: str | bytes, payload: bytes, signature: str | None, *, prefix: str = "",
                       encoding: str = "hex", header: str = "signature") -> None:
    """Raise ``WebhookError`` unless ``signature`` (e.g. ``"sha256=<hex>"``) is the HMAC-SHA256 of
    ``payload`` keyed with ``secret``. Compared in constant time; hex is compared without regard
    to case. ``header`` (e.g. ``"X-Notion-Signature"``) names the signature in the messages."""
    if not signature:
        raise WebhookError(WebhookError.MISSING_HEADER, f"no {header} in the delivery")
    if prefix and not signature.startswith(prefix):
        raise WebhookError(WebhookError.MALFORMED_HEADER, f"{header} does not start with {prefix!r}")
    got = signature[len(prefix):]
    expected = sign_hmac_sha256(secret, payload, encoding=encoding)
    if encoding == "hex":
        got = got.lower()
    if not hmac.compare_digest(expected.encode(), got.encode()):
        raise WebhookError(WebhookError.NO_MATCH, f"{header} does not match the body")


def _standard_key(secret: str) -> bytes:
    """``whsec_<base64>`` as bytes; a secret that is not base64 is used as its UTF-8 bytes (the
    ``standardwebhooks`` package would drop its non-base64 characters instead)."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


class StandardWebhook:
    """Standard Webhooks v1 (HMAC-SHA256 over ``id.timestamp.body``); secret ``whsec_<base64>``.

    The signature is the ``standardwebhooks`` package's (``Webhook.sign``); the checks around it
    are ours, because its ``Webhook.verify`` differs from what this class documents: its window is
    a fixed 5 minutes of the wall clock (ours: ``tolerance`` and a ``now`` for tests), it checks the
    timestamp before the signature (ours: a stale or future timestamp is reported only for a
    genuine delivery), it accepts fractional timestamps, and every failure is one
    ``WebhookVerificationError`` without a reason (ours: ``WebhookError`` with ``missing_header``,
    ``malformed_header``, ``no_match``, ``too_old``, ``too_new``). Several space-separated
    signatures (secret rotation) are accepted by both; an empty secret, which the package refuses,
    still signs and verifies here with an empty key, as before.
    """

    def __init__(self, secret: str, *, tolerance: int = DEFAULT_TOLERANCE):
        if tolerance <= 0:
            raise ValueError("tolerance must be positive: replay protection cannot be switched off")
        self._key = _standard_key(secret)
        self.tolerance = tolerance

    def _sig(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """``v1,<base64 HMAC>``."""
        if not self._key:  # the package refuses an empty secret
            mac = hmac.new(b"", f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
            return "v1," + base64.b64encode(mac).decode()
        return Webhook(self._key).sign(msg_id, datetime.fromtimestamp(timestamp, timezone.utc), body)

    def sign(self, body: bytes, *, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": self._sig(msg_id, ts, body)}

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> str:
        """Check a delivery; returns its ``webhook-id`` (the idempotency key)."""
        msg_id, ts_text, sigs = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
        if not msg_id or not ts_text or not sigs:
            raise WebhookError(WebhookError.MISSING_HEADER, "webhook-id, webhook-timestamp and "
                                                            "webhook-signature are required")
        try:
            ts = int(ts_text)
        except ValueError:
            raise WebhookError(WebhookError.MALFORMED_HEADER, "webhook-timestamp is not an integer") from None
        candidates = [s for s in sigs.split() if s.startswith("v1,")]
        if not candidates:
            raise WebhookError(WebhookError.MALFORMED_HEADER, "no v1 signature in webhook-signature")
        expected = self._sig(msg_id, ts, body).encode()
        if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
            raise WebhookError(WebhookError.NO_MATCH, "no signature matches the payload")
        now = time.time() if now is None else now
        if ts < now - self.tolerance:
            raise WebhookError(WebhookError.TOO_OLD, "the delivery's timestamp is too old")
        if ts > now + self.tolerance:
            raise WebhookError(WebhookError.TOO_NEW, "the delivery's timestamp is in the future")
        return msg_id


# --- the queue -------------------------------------------------------------------------------------


def _now_dt() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class QueueItem:
    id: int
    connection_id: str
    kind: str
    entity_id: str
    attempts: int


class WebhookQueue:
    """The ``webhook_queue`` table; see the module docstring."""

    def __init__(self, store: EventStore, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def enqueue(self, connection: str, entity_ids: Sequence[str], *, delivery_id: str | None = None,
                resync: bool = False) -> int:
        """Queue work in one transaction; returns the rows added (0 for a replayed delivery)."""
        q = t.webhook_queue
        now, now_dt = self.clock(), _now_dt()
        added = 0
        with self.store._write() as conn:
            if delivery_id is not None:
                d = t.webhook_deliveries
                seen = conn.execute(sa.select(d.c.delivery_id).where(
                    d.c.connection_id == connection, d.c.delivery_id == delivery_id)).first()
                if seen:
                    return 0
                conn.execute(d.insert().values(connection_id=connection, delivery_id=delivery_id, received_at=now_dt))
            work = [("entity", e) for e in dict.fromkeys(entity_ids)] + ([("resync", "")] if resync else [])
            for kind, entity in work:
                waiting = conn.execute(sa.select(q.c.id).where(
                    q.c.connection_id == connection, q.c.entity_id == entity, q.c.kind == kind,
                    q.c.status == "pending", q.c.locked_until <= now)).first()
                if waiting:
                    continue
                conn.execute(q.insert().values(connection_id=connection, kind=kind, entity_id=entity,
                                               status="pending", attempts=0, next_attempt_at=now, locked_until=0.0,
                                               received_at=now_dt, updated_at=now_dt))
                added += 1
        return added

    def claim(self, *, limit: int = 100, lease: float = 120.0) -> list[QueueItem]:
        q = t.webhook_queue
        now = self.clock()
        with self.store._write() as conn:
            rows = conn.execute(
                sa.select(q.c.id, q.c.connection_id, q.c.kind, q.c.entity_id, q.c.attempts)
                .where(q.c.status == "pending", q.c.next_attempt_at <= now, q.c.locked_until <= now)
                .order_by(q.c.id).limit(limit)
            ).all()
            if rows:
                conn.execute(q.update().where(q.c.id.in_([r.id for r in rows]))
                             .values(locked_until=now + lease, updated_at=_now_dt()))
        return [QueueItem(r.id, r.connection_id, r.kind, r.entity_id, r.attempts) for r in rows]

    def done(self, ids: Sequence[int]) -> None:
        if ids:
            q = t.webhook_queue
            with self.store._write() as conn:
                conn.execute(q.update().where(q.c.id.in_(list(ids)))
                             .values(status="done", locked_until=0.0, last_error=None, updated_at=_now_dt()))

    def failed(self, item: QueueItem, error: str, *, max_attempts: int, backoff: float,
               count_attempt: bool = True) -> str:
        """Retry later, or dead-letter after ``max_attempts``; returns the new status."""
        q = t.webhook_queue
        attempts = item.attempts + (1 if count_attempt else 0)
        status = "dead" if attempts >= max_attempts else "pending"
        with self.store._write() as conn:
            conn.execute(q.update().where(q.c.id == item.id).values(
                status=status, attempts=attempts, next_attempt_at=self.clock() + backoff, locked_until=0.0,
                last_error=error[:1000], updated_at=_now_dt()))
        return status

    def counts(self, connection: str | None = None) -> dict[str, int]:
        q = t.webhook_queue
        stmt = sa.select(q.c.status, sa.func.count()).group_by(q.c.status)
        if connection is not None:
            stmt = stmt.where(q.c.connection_id == connection)
        with self.store.engine.connect() as conn:
            out = {"pending": 0, "done": 0, "dead": 0}
            out.update({s: int(n) for s, n in conn.execute(stmt)})
        return out

    def dead(self, connection: str | None = None) -> list[dict[str, Any]]:
        q = t.webhook_queue
        stmt = sa.select(q).where(q.c.status == "dead").order_by(q.c.id)
        if connection is not None:
            stmt = stmt.where(q.c.connection_id == connection)
        with self.store.engine.connect() as conn:
            return [{"id": r.id, "connection": r.connection_id, "kind": r.kind, "entity_id": r.entity_id,
                     "attempts": r.attempts, "last_error": r.last_error} for r in conn.execute(stmt)]


# --- the receiver ----------------------------------------------------------------------------------


class WebhookReceiver:
    """ASGI app receiving platform deliveries at ``{prefix}/<connection>``."""

    def __init__(self, store: EventStore, secrets: SecretStore, *, prefix: str = "/webhooks",
                 connector_cls: type[Connector[Any, Any]] | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.secrets = secrets
        self.connector_cls = connector_cls
        self.connections = Connections(store)
        self.queue = WebhookQueue(store, clock=clock)
        self.prefix = prefix.rstrip("/")
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.app = Starlette(routes=[Route(self.prefix + "/{connection}", self._endpoint, methods=["GET", "POST"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def _endpoint(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await request.body()
        req = WebhookRequest(method=request.method, path=request.url.path,
                             headers={k.lower(): v for k, v in request.headers.items()},
                             query=dict(request.query_params), body=body,
                             client=request.client.host if request.client else None)
        return await run_in_threadpool(self.handle, request.path_params["connection"], req)

    def handle(self, name: str, req: WebhookRequest) -> Response:
        """Verify and queue one delivery (what the endpoint runs, off the event loop)."""
        response = self._handle(name, req)
        # Some answers echo what the sender chose (a handshake token): never let a browser
        # sniff them into something other than the declared type.
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def _handle(self, name: str, req: WebhookRequest) -> Response:
        from starlette.responses import JSONResponse, Response

        conn = self.connections.find(name)
        if conn is None:
            return JSONResponse({"error": WebhookError.UNKNOWN_CONNECTION, "message": f"no connection named {name!r}"},
                                404)
        try:
            connector = open_connector(conn, self.secrets, store=self.store, cls=self.connector_cls)
        except EngramError as exc:
            log.error("webhook for %s: cannot open the connector: %s", name, exc)
            return JSONResponse({"error": "connection_unusable"}, 503)
        try:
            result: WebhookResult = connector.handle_webhook(req)
        except WebhookError as exc:
            log.warning("webhook for %s rejected: %s", name, exc.reason)
            # The reason word for machines, the connector's message for the person reading the
            # platform's delivery log (messages name headers and checks, never secrets).
            return JSONResponse({"error": exc.reason, "message": str(exc)}, 401)
        except NotImplementedError:
            return JSONResponse({"error": "webhooks_not_supported"}, 404)
        finally:
            connector.close()
        if connector.ctx._meta_updates:
            self.connections.update(name, meta=connector.ctx._meta_updates)
        if result.entity_ids or result.resync:
            added = self.queue.enqueue(name, list(result.entity_ids), delivery_id=result.delivery_id,
                                       resync=result.resync)
            log.info("webhook for %s: %d id(s), %d queued", name, len(result.entity_ids), added)
        body = result.body.encode() if isinstance(result.body, str) else result.body
        return Response(body, result.status, media_type=result.media_type)


# --- the worker ------------------------------------------------------------------------------------


@dataclass
class WorkerReport:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    stored: int = 0  # new events


class WebhookWorker:
    """Drains the queue; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        keyring: Keyring,
        secrets: SecretStore,
        *,
        max_attempts: int = 6,
        backoff_base: float = 5.0,
        backoff_max: float = 3600.0,
        lease: float = 300.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
        connector_cls: type[Connector[Any, Any]] | None = None,
        http: dict[str, Any] | None = None,
        connector_clock: Clock | None = None,
    ):
        """``clock`` times the queue (unix seconds); ``connector_clock`` is what connectors wait on
        (rate limits, retries): a ``FakeClock`` in tests."""
        self.store, self.keyring, self.secrets = store, keyring, secrets
        self.connector_clock = connector_clock
        self.max_attempts, self.backoff_base, self.backoff_max = max_attempts, backoff_base, backoff_max
        self.lease, self.batch = lease, batch
        self.queue = WebhookQueue(store, clock=clock)
        self.connections = Connections(store)
        self.connector_cls = connector_cls
        self.http = http

    def _backoff(self, attempts: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts))

    def _fail(self, item: QueueItem, error: str, report: WorkerReport, *, count: bool = True,
              delay: float | None = None) -> None:
        status = self.queue.failed(item, error, max_attempts=self.max_attempts,
                                   backoff=self._backoff(item.attempts) if delay is None else delay,
                                   count_attempt=count)
        if status == "dead":
            report.dead += 1
            log.error("webhook work %s/%s dead-lettered after %d attempts: %s", item.connection_id,
                      item.entity_id or item.kind, item.attempts + 1, error)
        else:
            report.retried += 1

    def run_once(self) -> WorkerReport:
        """Claim one batch of due work and process it."""
        report = WorkerReport()
        items = self.queue.claim(limit=self.batch, lease=self.lease)
        report.claimed = len(items)
        by_conn: dict[str, list[QueueItem]] = {}
        for it in items:
            by_conn.setdefault(it.connection_id, []).append(it)
        for name, group in by_conn.items():
            self._process(name, group, report)
        return report

    def drain(self, *, max_rounds: int = 1000) -> WorkerReport:
        """Process until nothing is due (what ``engram worker --once`` does)."""
        total = WorkerReport()
        for _ in range(max_rounds):
            r = self.run_once()
            if not r.claimed:
                break
            for k in ("claimed", "done", "retried", "dead", "stored"):
                setattr(total, k, getattr(total, k) + getattr(r, k))
        return total

    def run_forever(self, *, interval: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                r = self.run_once()
            except Exception:  # e.g. the database away for a moment: claimed work comes back after its lease
                log.exception("webhook worker: a round failed; trying again in %.0f s", interval)
                stop.wait(interval)
                continue
            if not r.claimed:
                stop.wait(interval)

    def _process(self, name: str, items: list[QueueItem], report: WorkerReport) -> None:
        conn = self.connections.find(name)
        if conn is None:
            for it in items:
                self._fail(it, "the connection was removed", report, delay=0)
            return
        resyncs = [i for i in items if i.kind == "resync"]
        entities = [i for i in items if i.kind == "entity"]
        if resyncs:
            runner = SyncRunner(self.store, self.keyring, self.secrets, connector_cls=self.connector_cls,
                                http=self.http, clock=self.connector_clock)
            try:
                res = runner.run(name)
            except EngramError as exc:  # e.g. a sync of this connection is running right now
                res = SyncResult(connection=name, mode="incremental", status="busy", error=str(exc))
            report.stored += res.stored
            if res.ok:
                self.queue.done([i.id for i in resyncs])
                report.done += len(resyncs)
            else:  # only a failed sync counts as an attempt: not a busy one, not a revoked grant
                for it in resyncs:
                    self._fail(it, res.error or "sync failed", report, count=res.status == "error",
                               delay=self.backoff_base if res.status == "busy" else None)
        if not entities:
            return
        try:
            signer = Signer(self.keyring, conn.team_id)
            connector = open_connector(conn, self.secrets, store=self.store, cls=self.connector_cls, http=self.http,
                                       clock=self.connector_clock)
        except (ConfigError, EngramError) as exc:
            for it in entities:
                self._fail(it, str(exc), report)
            return
        by_entity = {i.entity_id: i for i in entities}
        failed: dict[str, str] = {}
        events = []
        try:
            for item in connector.fetch(sorted(by_entity)):
                built = item if isinstance(item, ItemFailed) else record_events(item, conn, signer)
                if isinstance(built, ItemFailed):
                    failed[built.entity_id] = built.reason
                    log.warning("connection %s: %s not stored: %s", name, built.entity_id, built.reason)
                else:
                    events.extend(built)
            if events:
                res = self.store.append(events)
                report.stored += len(res.accepted)
            if connector.ctx._meta_updates:  # e.g. a Graph subscription renewed while refetching
                self.connections.update(name, meta=connector.ctx._meta_updates)
        except AuthError as exc:
            self.connections.update(name, status="reconnect_needed", last_error=str(exc))
            for it in entities:  # parked until the operator reconnects; not counted as attempts
                self._fail(it, str(exc), report, count=False, delay=self.backoff_max)
            return
        except RateLimited as exc:
            # Throttling is not the work's fault: wait as long as the platform asked (at least the
            # backoff), and do not count it towards dead-lettering, so a long storm loses nothing.
            for it in entities:
                self._fail(it, f"RateLimited: {exc}", report, count=False,
                           delay=max(exc.retry_after or 0.0, self._backoff(it.attempts)))
            return
        except (ConnectorError, NotImplementedError) as exc:
            for it in entities:
                self._fail(it, f"{type(exc).__name__}: {exc}", report)
            return
        except Exception as exc:  # a connector's own bug: its work retries and dead-letters, the worker lives
            log.exception("connection %s: refetching %d item(s) failed", name, len(entities))
            for it in entities:
                self._fail(it, f"{type(exc).__name__}: {exc}", report)
            return
        finally:
            connector.close()
        ok = [i.id for e, i in by_entity.items() if e not in failed]
        self.queue.done(ok)
        report.done += len(ok)
        for e, reason in failed.items():
            if e in by_entity:
                self._fail(by_entity[e], reason, report)
