"""The sync runner: connector -> records -> signed events -> store, in crash-safe batches.

``SyncRunner(store, keyring, secrets).run("acme-notion")`` does, for one connection:

1. **Retry earlier failures**: ids recorded as ``ItemFailed`` by earlier runs are refetched with the
   connector's ``fetch`` (when it has one); those that now succeed are cleared.
2. **Sync** from the stored checkpoint (``full=True``: from scratch). Records are wrapped, split,
   signed with the keyring's active key and buffered. When the connector yields a checkpoint, the
   buffered events and that checkpoint are written in **one transaction**; a full buffer
   (``batch_size`` events) is written without a checkpoint. Because event ids are derived from
   content, a run killed at any point (even ``kill -9``) and run again stores exactly the events an
   uninterrupted run would have: what was committed is skipped as duplicate, what was not is
   produced again from the last committed checkpoint.
3. **Reconcile** (``reconcile=True``): the connector lists every entity id in scope; each entity
   stored for this team and account whose latest event is not a deletion, and that is no longer
   listed, gets a ``Tombstone`` built by the connectors' own rule (``ConnectorContext.tombstone``):
   its event id is derived from the last stored event, so running reconcile twice, again after a
   crash, or after a webhook refetch noticed the same deletion, emits one deletion per entity.

One sync per connection at a time: a second ``run`` of a connection that is syncing (another
process, a scheduled job overlapping a manual run) fails at once with ``ConnectorError`` instead of
racing it (a file lock next to a SQLite store, an advisory lock on PostgreSQL; both die with the
process holding them).

Failures: an ``ItemFailed`` is recorded (``sync_failures``) and the sync goes on. ``AuthError`` /
``ReconnectNeeded`` stops the run, stores what was already built (without moving the checkpoint)
and sets the connection's status to ``reconnect_needed``. Any other ``ConnectorError`` sets status
``error`` with ``last_error``. The result says what happened; ``SyncResult.ok`` is False on both.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from . import _schema as t
from ._connections import Connections, open_connector
from ._connector import Connection, Connector, ItemFailed, load_connector, tombstone_after
from ._exceptions import (
    AuthError,
    ConfigError,
    ConnectorError,
    EventError,
    KeyringError,
    RateLimited,
    RecordError,
)
from ._http import Clock
from ._records import Document, Edit, Thread, Tombstone, parse_record
from ._secrets import SecretStore
from ._events import TrainingEvent, build_events
from ._signing import Keyring, sign_event
from ._store import EventStore

__all__ = ["Signer", "SyncProgress", "SyncResult", "SyncRunner", "sync_all"]

log = logging.getLogger("engram.sync")

_RECORD_TYPES = (Document, Thread, Edit, Tombstone)


@dataclass
class SyncProgress:
    """Counts so far, passed to the runner's ``progress`` callback after every write."""

    connection: str
    phase: str  # "retry" | "sync" | "reconcile"
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    failures: int = 0
    batches: int = 0


@dataclass
class SyncResult:
    connection: str
    mode: str  # "incremental" | "full"
    reconcile: bool = False
    records: int = 0  # records the connector produced
    stored: int = 0  # new events written
    duplicates: int = 0  # events already stored (unchanged content)
    conflicts: int = 0  # same id, different content: left as stored
    tombstones: int = 0  # deletions emitted by reconcile
    retried: int = 0  # earlier failures that succeeded this time
    failures: list[ItemFailed] = field(default_factory=list)
    batches: int = 0
    status: str = "ok"
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = [{"entity_id": f.entity_id, "reason": f.reason} for f in self.failures]
        return out


class Signer:
    """Signs envelopes with the keyring's active key, loaded once per run."""

    def __init__(self, keyring: Keyring, team_id: str):
        info = keyring.active()
        if team_id not in info.teams:
            raise KeyringError(f"the active signing key {info.kid} does not sign for team {team_id!r}: "
                               f"run `engram keys rotate --team {team_id}` (with its other teams)")
        self.kid = info.kid
        self._key: Ed25519PrivateKey = keyring.private_key(info.kid)

    def __call__(self, event: TrainingEvent) -> TrainingEvent:
        return sign_event(event, self._key, self.kid)


def record_events(record: Any, conn: Connection, signer: Signer) -> list[TrainingEvent] | ItemFailed:
    """A record a connector yielded -> its signed events, or why it can't be stored (a record that
    fails validation, or something that is no record at all). The one step from record to event
    that the sync runner and the webhook worker share, so a bad record is counted and skipped on
    both paths alike, never stored half-built and never fatal to the run."""
    if not isinstance(record, _RECORD_TYPES):
        entity = record.get("entity_id") if isinstance(record, dict) else getattr(record, "entity_id", None)
        return ItemFailed(entity_id=str(entity or "?"),
                          reason=f"the connector yielded a {type(record).__name__}, not a record")
    try:
        built = build_events(record, team_id=conn.team_id, connection_id=conn.name, source=conn.source or "")
    except (RecordError, EventError) as exc:
        return ItemFailed.of(getattr(record, "entity_id", "?"), exc)
    return [signer(e) for e in built]


class _Batcher:
    """Buffers signed events of one connection and writes them with a checkpoint."""

    def __init__(self, runner: SyncRunner, conn: Connection, signer: Signer, result: SyncResult, phase: str):
        self.runner, self.conn, self.signer, self.result, self.phase = runner, conn, signer, result, phase
        self.events: list[TrainingEvent] = []
        self.entities: set[str] = set()

    def add(self, record: Any) -> ItemFailed | None:
        built = record_events(record, self.conn, self.signer)
        if isinstance(built, ItemFailed):
            return built
        self.events.extend(built)
        self.entities.add(record.entity_id)
        self.result.records += 1
        if len(self.events) >= self.runner.batch_size:
            self.flush(None)
        return None

    def flush(self, checkpoint: BaseModel | None) -> None:
        if not self.events and checkpoint is None:
            return
        cp = (self.conn.name, checkpoint.model_dump(mode="json")) if checkpoint is not None else None
        res = self.runner.store.append(self.events, checkpoint=cp)
        self.result.stored += len(res.accepted)
        self.result.duplicates += len(res.duplicates)
        self.result.conflicts += len(res.conflicts)
        self.result.batches += 1
        if res.conflicts:
            log.warning("connection %s: %d event(s) conflict with stored ones and were left as stored",
                        self.conn.name, len(res.conflicts))
        self.events = []
        self.runner._report(self.result, self.phase)


class SyncRunner:
    """Runs connectors for stored connections; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        keyring: Keyring,
        secrets: SecretStore,
        *,
        batch_size: int = 200,
        clock: Clock | None = None,
        http: dict[str, Any] | None = None,
        progress: Callable[[SyncProgress], None] | None = None,
        connector_cls: type[Connector[Any, Any]] | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.keyring = keyring
        self.secrets = secrets
        self.batch_size = batch_size
        self.clock = clock
        self.http = http
        self.progress = progress
        self.connector_cls = connector_cls
        self.connections = Connections(store)

    def _report(self, result: SyncResult, phase: str) -> None:
        if self.progress is not None:
            self.progress(SyncProgress(result.connection, phase, result.records, result.stored,
                                       result.duplicates, len(result.failures), result.batches))

    def _fail_item(self, conn: Connection, result: SyncResult, failure: ItemFailed) -> None:
        result.failures.append(failure)
        self.connections.record_failure(conn.name, failure.entity_id, failure.reason)
        log.warning("connection %s: item %s failed: %s", conn.name, failure.entity_id, failure.reason)

    def run(self, name: str, *, full: bool = False, reconcile: bool = False) -> SyncResult:
        with _connection_lock(self.store, name):
            return self._run_locked(name, full=full, reconcile=reconcile)

    def _run_locked(self, name: str, *, full: bool, reconcile: bool) -> SyncResult:
        started = time.monotonic()
        conn = self.connections.get(name)
        result = SyncResult(connection=name, mode="full" if full else "incremental", reconcile=reconcile)
        if conn.source is None:
            raise ConfigError(f"connection {name!r} has no verified account: run `engram connections test {name}`")
        signer = Signer(self.keyring, conn.team_id)
        cls = self.connector_cls or load_connector(conn.platform)
        if reconcile and not cls.supports("list_entity_ids"):
            raise ConfigError(f"the {conn.platform} connector does not support --reconcile")
        connector = open_connector(conn, self.secrets, store=self.store, clock=self.clock, http=self.http, cls=cls)
        try:
            self._run(conn, connector, signer, result, full=full, reconcile=reconcile)
            status = "ok"
        except AuthError as exc:
            status = "reconnect_needed"
            result.error = f"{exc} (run `engram connect {conn.platform} --name {name} ...` again)"
        except RateLimited as exc:
            # What was stored before the stop is kept with its checkpoint: nothing is lost or redone.
            status = "error"
            result.error = (f"{exc}. Stopped; a rerun (`engram sync --connection {name}`) resumes from the last "
                            "checkpoint")
        except ConnectorError as exc:
            status = "error"
            result.error = str(exc) or type(exc).__name__
        except BaseException as exc:
            self._finish(conn, connector, result, "error", started, error=f"{type(exc).__name__}: {exc}"[:500])
            raise
        self._finish(conn, connector, result, status, started, error=result.error)
        return result

    def _finish(self, conn: Connection, connector: Connector[Any, Any], result: SyncResult, status: str,
                started: float, *, error: str | None) -> None:
        result.status = status
        result.seconds = round(time.monotonic() - started, 3)
        try:
            connector.close()
        finally:
            counts = {k: getattr(result, k) for k in ("records", "stored", "duplicates", "tombstones", "retried")}
            counts["failures"] = len(result.failures)
            updates: dict[str, Any] = dict(status=status, last_error=error, last_counts=counts)
            if status == "ok":
                updates["last_sync_at"] = datetime.now(timezone.utc)
            if connector.ctx._meta_updates:
                updates["meta"] = connector.ctx._meta_updates
            self.connections.update(conn.name, **updates)
            if error:
                log.warning("connection %s: sync stopped: %s", conn.name, error)
            else:
                log.info("connection %s: %d records, %d new events, %d failures", conn.name, result.records,
                         result.stored, len(result.failures))

    def _run(self, conn: Connection, connector: Connector[Any, Any], signer: Signer, result: SyncResult, *,
             full: bool, reconcile: bool) -> None:
        cls = type(connector)
        earlier = {f["entity_id"] for f in self.connections.failures(conn.name)}

        # 1. earlier failures
        if earlier and cls.supports("fetch"):
            batch = _Batcher(self, conn, signer, result, "retry")
            still: set[str] = set()
            try:
                for item in connector.fetch(sorted(earlier)):
                    if isinstance(item, ItemFailed):
                        still.add(item.entity_id)
                        self._fail_item(conn, result, item)
                    elif isinstance(item, _RECORD_TYPES):
                        failed = batch.add(item)
                        if failed:
                            still.add(failed.entity_id)
                            self._fail_item(conn, result, failed)
            finally:
                batch.flush(None)
            # An id fetch answered without an ItemFailed is done, records or not: one that is gone
            # and was never stored yields nothing (``ConnectorContext.tombstone``), and must clear.
            fixed = sorted(earlier - still)
            self.connections.clear_failures(conn.name, fixed)
            result.retried += len(fixed)
            earlier -= set(fixed)

        # 2. sync from the checkpoint
        state = None
        if not full:
            raw = self.store.checkpoint(conn.name)
            if raw is not None:
                try:
                    state = cls.Checkpoint.model_validate(raw)
                except ValidationError:
                    raise ConnectorError(f"the stored checkpoint of {conn.name!r} is not a valid "
                                         f"{cls.__name__}.Checkpoint: run `engram sync --connection "
                                         f"{conn.name} --full`") from None
        batch = _Batcher(self, conn, signer, result, "sync")
        failed_now: set[str] = set()
        try:
            for item in connector.sync(state):
                if isinstance(item, _RECORD_TYPES):
                    failure = batch.add(item)
                    if failure:
                        failed_now.add(failure.entity_id)
                        self._fail_item(conn, result, failure)
                elif isinstance(item, ItemFailed):
                    failed_now.add(item.entity_id)
                    self._fail_item(conn, result, item)
                elif isinstance(item, cls.Checkpoint):
                    batch.flush(item)
                else:
                    raise TypeError(f"{cls.__name__}.sync yielded a {type(item).__name__}; expected a record, "
                                    f"a {cls.__name__}.Checkpoint or ItemFailed")
        finally:
            # What was built before an error is stored (without moving the checkpoint): it is
            # deterministic, so a later run finds it as duplicate instead of losing it.
            batch.flush(None)
        fixed = sorted((earlier & batch.entities) - failed_now)
        self.connections.clear_failures(conn.name, fixed)
        result.retried += len(fixed)

        # 3. reconcile
        if reconcile:
            self._reconcile(conn, connector, signer, result)

    def _reconcile(self, conn: Connection, connector: Connector[Any, Any], signer: Signer,
                   result: SyncResult) -> None:
        listed = set(connector.list_entity_ids())
        alive = _alive_entities(self.store, conn.team_id, conn.source or "")
        gone = sorted(set(alive) - listed)
        batch = _Batcher(self, conn, signer, result, "reconcile")
        for entity_id in gone:
            last_event_id = alive[entity_id]
            stored = self.store.get(conn.team_id, last_event_id)
            if stored is None:  # pragma: no cover - the id was just read from the same table
                continue
            batch.add(tombstone_after(parse_record(stored.envelope["data"]), last_event_id))
            result.tombstones += 1
        batch.flush(None)


@contextmanager
def _connection_lock(store: EventStore, name: str) -> Iterator[None]:
    """Hold the per-connection sync lock, or raise ``ConnectorError`` if someone else holds it."""
    busy = ConnectorError(f"a sync of connection {name!r} is already running")
    digest = hashlib.sha256(f"engram-sync:{name}".encode()).digest()
    if store.dialect == "postgresql":
        key = int.from_bytes(digest[:7], "big")
        with store.engine.connect() as conn:
            if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                raise busy
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = store.engine.url.database
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.sync-{digest.hex()[:16]}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _alive_entities(store: EventStore, team_id: str, source: str) -> dict[str, str]:
    """entity id -> id of its latest event, for entities whose latest event is not a deletion."""
    ev = t.events
    q = (
        sa.select(ev.c.subject, ev.c.type, ev.c.event_id)
        .where(ev.c.team_id == team_id, ev.c.source == source)
        .order_by(ev.c.seq)
    )
    latest: dict[str, tuple[str, str]] = {}
    with store.engine.connect() as conn:
        for subject, type_, event_id in conn.execute(q):
            entity = subject.split("#part-", 1)[0]
            latest[entity] = (type_, event_id)
    return {e: eid for e, (ty, eid) in latest.items() if ty != "ai.engram.entity.deleted"}


def sync_all(runner: SyncRunner, names: Iterable[str], **kwargs: Any) -> list[SyncResult]:
    """Run several connections one after the other; one failing does not stop the others."""
    return [runner.run(n, **kwargs) for n in names]
