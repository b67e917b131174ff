"""The event store: append-only, idempotent by event id, partitioned by team.

SQLAlchemy Core over SQLite (one file, WAL) by default, or PostgreSQL when the URL names one; the
same code serves both. It also keeps connector checkpoints, the trusted signing keys and the
adapter index (each team's adapter versions and its current one; the files are the registry's).

- ``append(events, checkpoint=...)`` writes one batch in one transaction, the checkpoint with it.
  Per event the result is *accepted*, *duplicate* (same id, same content) or *conflict* (same id,
  different content: nothing is written for it and the stored event stays as it was).
- ``read(team, after=cursor)`` pages through one team's events in append order; the cursor is
  stable, so a reader that stops can resume exactly where it left off.
- ``add_adapter_version(team, place, publish=...)`` reserves the team's next version number and
  calls ``place`` in the same write transaction, so the registry's rename into place and the row
  commit together or not at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from . import _schema as t
from ._config import ensure_private_dir
from ._events import TrainingEvent, content_core, parse_event
from ._exceptions import StoreError
from ._signing import TrustedKey, TrustedKeys, _b64u, _unb64u

__all__ = ["AppendResult", "EventPage", "EventStore", "StoredAdapter", "StoredEvent"]

_MIGRATIONS = Path(__file__).parent / "_migrations"
_IN_CHUNK = 500  # ids per IN (...) query; far below SQLite's and PostgreSQL's parameter limits


@dataclass
class AppendResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def status_of(self, event_id: str) -> Literal["accepted", "duplicate", "conflict"]:
        if event_id in self.conflicts:
            return "conflict"
        if event_id in self.accepted:
            return "accepted"
        return "duplicate"

    def merge(self, other: AppendResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.conflicts += other.conflicts


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    team_id: str
    event_id: str
    envelope: dict[str, Any]

    @property
    def event(self) -> TrainingEvent:
        return parse_event(self.envelope)


@dataclass(frozen=True)
class EventPage:
    events: list[StoredEvent]
    cursor: str | None  # pass as ``after`` to continue; None when nothing was returned
    # Whether more events were stored after this page when it was read. The cursor stays useful
    # when this is False: reading after it later returns only what arrived since.
    has_more: bool = False


@dataclass(frozen=True)
class StoredAdapter:
    """One version of a team's adapter as the store indexes it; its files are the registry's
    (``engram_training.registry``), under the adapters directory."""

    team_id: str
    version: int
    status: str  # published | rejected
    path: str  # the version's directory, relative to the adapters directory
    manifest: dict[str, Any]  # base model, watermark, config, dataset, metrics, gates
    reason: str | None  # why the gates failed, for a rejected version
    created_at: datetime
    current: bool = False

    @property
    def watermark(self) -> str | None:
        """The store cursor after the last event this version was trained on."""
        return self.manifest.get("watermark")


def _cursor(seq: int) -> str:
    return _b64u(f"v1:{seq}".encode())


def _seq_of(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        version, seq = _unb64u(cursor).decode().split(":")
        if version != "v1":
            raise ValueError(version)
        return int(seq)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"not a cursor returned by this store: {cursor!r}") from None


def _normalize_url(url: str) -> str:
    # psycopg 3 is the driver we ship; a bare postgresql:// would make SQLAlchemy look for psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes even from timezone-aware columns; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class EventStore:
    """Open with ``EventStore.open(url)``; the schema is migrated to the newest version on open."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name

    # --- opening and migrating ---------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> EventStore:
        url = _normalize_url(url)
        try:
            if url.startswith("sqlite"):
                engine = _sqlite_engine(url)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            store = cls(engine)
            if migrate:
                store.migrate()
            return store
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the event store: {_safe(exc, url)}") from None
        except ModuleNotFoundError as exc:
            raise StoreError(f"cannot open the event store: the database driver is missing ({exc.name}); "
                             "install engram-sdk[postgres]") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _alembic(self, conn: Connection) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def schema_version(self) -> tuple[str, ...]:
        """The revisions applied (one per migration branch; parts of the SDK add their own)."""
        with self.engine.connect() as conn:
            return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))

    def head_version(self) -> tuple[str, ...]:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        return tuple(sorted(ScriptDirectory.from_config(cfg).get_heads()))

    def migrate(self) -> None:
        """Upgrade the schema to the newest version; safe to call from several processes at once."""
        heads = self.head_version()
        if self.schema_version() == heads:
            return
        with self._migration_lock(), self._write() as conn:
            if tuple(sorted(MigrationContext.configure(conn).get_current_heads())) != heads:
                command.upgrade(self._alembic(conn), "heads")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        # PostgreSQL: an advisory lock taken inside the migration transaction (see _write).
        # SQLite: DDL under BEGIN IMMEDIATE already serialises writers; the file lock also keeps a
        # second process from reading a half-applied version table.
        if self.dialect != "sqlite" or not self.engine.url.database:
            yield
            return
        fd = os.open(f"{self.engine.url.database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction. SQLite: BEGIN IMMEDIATE, so two writers queue instead of failing
        on a lock upgrade; PostgreSQL: a plain transaction."""
        try:
            with self.engine.connect().execution_options(engram_write=True) as conn:
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
                    yield conn
        except OperationalError as exc:
            raise StoreError(f"event store write failed: {_safe(exc, str(self.engine.url))}") from None

    # --- events ------------------------------------------------------------------------------------

    def append(
        self,
        events: Sequence[TrainingEvent],
        *,
        checkpoint: tuple[str, dict[str, Any]] | None = None,
    ) -> AppendResult:
        """Store a batch in one transaction, with the checkpoint (connection id, state) if given."""
        result = AppendResult()
        rows = []
        for ev in events:
            # Stored as the canonical core (the envelope less signer and connection, which have
            # their own columns): the same bytes give the digest, so one serialisation does both.
            body = ev._top()
            core = content_core(body)
            rows.append(
                {
                    "team_id": ev.teamid,
                    "event_id": ev.id,
                    "connection_id": ev.connectionid,
                    "source": ev.source,
                    "type": ev.type,
                    "subject": ev.subject,
                    "time": body["time"],
                    "kid": ev.engramkid,
                    "sig": ev.engramsig,
                    "digest": hashlib.sha256(core).hexdigest(),
                    "core": core.decode("utf-8"),
                }
            )
        with self._write() as conn:
            stored_at = _now()
            known = self._digests(conn, [(r["team_id"], r["event_id"]) for r in rows])
            fresh = []
            for r in rows:
                key = (r["team_id"], r["event_id"])
                if key in known:
                    (result.duplicates if known[key] == r["digest"] else result.conflicts).append(r["event_id"])
                    continue
                known[key] = r["digest"]
                fresh.append({**r, "stored_at": stored_at})
                result.accepted.append(r["event_id"])
            if fresh:
                conn.execute(t.events.insert(), fresh)
            if checkpoint is not None:
                self._put_checkpoint(conn, checkpoint[0], checkpoint[1])
        return result

    def _digests(self, conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        by_team: dict[str, list[str]] = {}
        for team, eid in keys:
            by_team.setdefault(team, []).append(eid)
        for team, ids in by_team.items():
            for i in range(0, len(ids), _IN_CHUNK):
                q = sa.select(t.events.c.event_id, t.events.c.digest).where(
                    t.events.c.team_id == team, t.events.c.event_id.in_(ids[i : i + _IN_CHUNK])
                )
                out.update({(team, eid): d for eid, d in conn.execute(q)})
        return out

    def digests(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Content digests of the (team, event id) pairs already stored."""
        with self.engine.connect() as conn:
            return self._digests(conn, list(keys))

    _ROW = (t.events.c.seq, t.events.c.event_id, t.events.c.core, t.events.c.connection_id, t.events.c.kid,
            t.events.c.sig)

    @staticmethod
    def _stored(team_id: str, r: Any) -> StoredEvent:
        envelope = json.loads(r.core)
        envelope["connectionid"] = r.connection_id
        if r.kid is not None:
            envelope["engramkid"] = r.kid
        if r.sig is not None:
            envelope["engramsig"] = r.sig
        return StoredEvent(seq=r.seq, team_id=team_id, event_id=r.event_id, envelope=envelope)

    def read(self, team_id: str, *, after: str | None = None, limit: int = 1000) -> EventPage:
        seq = _seq_of(after)
        q = (
            sa.select(*self._ROW)
            .where(t.events.c.team_id == team_id, t.events.c.seq > seq)
            .order_by(t.events.c.seq)
            .limit(limit + 1)  # one row past the page says whether a next page exists
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        has_more = len(rows) > limit
        rows = rows[:limit]
        events = [self._stored(team_id, r) for r in rows]
        return EventPage(events=events, cursor=_cursor(rows[-1].seq) if rows else after, has_more=has_more)

    def iter_events(self, team_id: str, *, after: str | None = None, page_size: int = 1000) -> Iterator[StoredEvent]:
        cursor = after
        while True:
            page = self.read(team_id, after=cursor, limit=page_size)
            if not page.events:
                return
            yield from page.events
            cursor = page.cursor

    def get(self, team_id: str, event_id: str) -> StoredEvent | None:
        q = sa.select(*self._ROW).where(t.events.c.team_id == team_id, t.events.c.event_id == event_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._stored(team_id, row) if row else None

    def count(self, team_id: str | None = None, *, after: str | None = None) -> int:
        """Stored events (of one team); with ``after`` (a cursor, e.g. an adapter's watermark) only
        those stored after it."""
        q = sa.select(sa.func.count()).select_from(t.events)
        if team_id is not None:
            q = q.where(t.events.c.team_id == team_id)
        if after:
            q = q.where(t.events.c.seq > _seq_of(after))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def teams(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(t.events.c.team_id).distinct().order_by(t.events.c.team_id))]

    def purge_team_events(self, team_id: str) -> int:
        """Delete every event of a team (the one exception to append-only: a team that leaves);
        returns how many there were."""
        with self._write() as conn:
            return int(conn.execute(t.events.delete().where(t.events.c.team_id == team_id)).rowcount)

    def insert_unchecked(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert prepared ``events`` rows in one plain INSERT: no digest lookup, no idempotency.
        Only for measuring the store's floor (``engram bench events``); everything else appends."""
        with self._write() as conn:
            conn.execute(t.events.insert(), list(rows))

    # --- checkpoints -------------------------------------------------------------------------------

    def _put_checkpoint(self, conn: Connection, connection_id: str, state: dict[str, Any]) -> None:
        payload = json.dumps(state, sort_keys=True)
        updated = conn.execute(
            t.checkpoints.update()
            .where(t.checkpoints.c.connection_id == connection_id)
            .values(state=payload, updated_at=_now())
        )
        if updated.rowcount == 0:
            conn.execute(t.checkpoints.insert().values(connection_id=connection_id, state=payload, updated_at=_now()))

    def save_checkpoint(self, connection_id: str, state: dict[str, Any]) -> None:
        with self._write() as conn:
            self._put_checkpoint(conn, connection_id, state)

    def checkpoint(self, connection_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.checkpoints.c.state).where(t.checkpoints.c.connection_id == connection_id)
            ).first()
        return json.loads(row.state) if row else None

    # --- trusted signing keys ----------------------------------------------------------------------

    def trust(self, keys: Iterable[TrustedKey], *, origin: str = "local") -> list[TrustedKey]:
        """Trust each (key, team); a key revoked here stays revoked whatever a later import says."""
        keys = list(keys)
        with self._write() as conn:
            for k in keys:
                where = (t.trusted_keys.c.kid == k.kid) & (t.trusted_keys.c.team_id == k.team_id)
                row = conn.execute(sa.select(t.trusted_keys.c.status).where(where)).first()
                if row is None:
                    conn.execute(t.trusted_keys.insert().values(
                        kid=k.kid, team_id=k.team_id, algorithm=k.algorithm, public_key=_b64u(k.public_key),
                        status=k.status, origin=origin, added_at=_now()))
                elif k.status == "revoked" and row.status != "revoked":
                    conn.execute(t.trusted_keys.update().where(where).values(status="revoked"))
        return keys

    def revoke_key(self, kid: str, team_id: str | None = None) -> int:
        where = t.trusted_keys.c.kid == kid
        if team_id is not None:
            where &= t.trusted_keys.c.team_id == team_id
        with self._write() as conn:
            return conn.execute(t.trusted_keys.update().where(where).values(status="revoked")).rowcount

    def trusted_keys(self, team_id: str | None = None) -> TrustedKeys:
        q = sa.select(t.trusted_keys)
        if team_id is not None:
            q = q.where(t.trusted_keys.c.team_id == team_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.trusted_keys.c.kid, t.trusted_keys.c.team_id)).all()
        return TrustedKeys.of(
            TrustedKey(kid=r.kid, team_id=r.team_id, public_key=_unb64u(r.public_key), status=r.status,
                       algorithm=r.algorithm)
            for r in rows
        )

    # --- the adapter index -------------------------------------------------------------------------
    # One row per trained version and each team's current version. The registry in engram_training
    # owns the files; the scheduler and the status read what is current from here without it.

    def _adapters(self) -> sa.Select[Any]:
        v, c = t.adapter_versions, t.adapter_current
        return (sa.select(v, c.c.version.label("current_version"))
                .select_from(v.outerjoin(c, c.c.team_id == v.c.team_id)))

    @staticmethod
    def _adapter(r: Any) -> StoredAdapter:
        return StoredAdapter(team_id=r.team_id, version=r.version, status=r.status, path=r.path,
                             manifest=json.loads(r.manifest), reason=r.reason, created_at=as_utc(r.created_at),
                             current=r.current_version == r.version)

    def add_adapter_version(self, team_id: str, place: Callable[[int], tuple[str, dict[str, Any]]], *,
                            publish: bool, reason: str | None = None) -> StoredAdapter:
        """Index the team's next adapter version; published and made current when ``publish`` (its
        gates passed), else kept as rejected with ``reason``.

        One write transaction, so writers queue behind it: the next number is reserved, then
        ``place(number)`` puts the version's files where they belong and returns their path and
        manifest, then the row is inserted. If ``place`` raises, or the process dies before the
        commit, nothing is indexed and the number stays free for the next run (whose ``place``
        must replace what a crash left at that path)."""
        v = t.adapter_versions
        with self._write() as conn:
            last = conn.execute(sa.select(sa.func.max(v.c.version)).where(v.c.team_id == team_id)).scalar()
            version = int(last or 0) + 1
            path, manifest = place(version)
            now = _now()
            conn.execute(v.insert().values(
                team_id=team_id, version=version, status="published" if publish else "rejected", path=path,
                manifest=json.dumps(manifest, default=str), reason=reason, created_at=now))
            if publish:
                self._put_current(conn, team_id, version, now)
            row = conn.execute(self._adapters().where(v.c.team_id == team_id, v.c.version == version)).one()
        return self._adapter(row)

    def adapter_version(self, team_id: str, version: int | None = None) -> StoredAdapter | None:
        """One version of a team's adapter; None means the current one. None if there is no such version."""
        v, c = t.adapter_versions, t.adapter_current
        q = self._adapters().where(v.c.team_id == team_id)
        q = q.where(c.c.version == v.c.version) if version is None else q.where(v.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._adapter(row) if row else None

    def adapter_versions(self, team_id: str) -> list[StoredAdapter]:
        """Every version of a team's adapter, oldest first."""
        v = t.adapter_versions
        with self.engine.connect() as conn:
            rows = conn.execute(self._adapters().where(v.c.team_id == team_id).order_by(v.c.version)).all()
        return [self._adapter(r) for r in rows]

    def current_adapter_version(self, team_id: str) -> int | None:
        with self.engine.connect() as conn:
            n = conn.execute(sa.select(t.adapter_current.c.version)
                             .where(t.adapter_current.c.team_id == team_id)).scalar()
        return int(n) if n is not None else None

    def adapter_teams(self) -> list[str]:
        """Teams with at least one adapter version (published or not)."""
        v = t.adapter_versions
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(v.c.team_id).distinct().order_by(v.c.team_id))]

    def set_current_adapter(self, team_id: str, version: int, *, publish: bool = False) -> None:
        """Make ``version`` the team's current adapter; with ``publish`` also mark it published (an
        operator publishing a version whose gates failed). The registry decides what is allowed."""
        v = t.adapter_versions
        with self._write() as conn:
            if publish:
                conn.execute(v.update().where(v.c.team_id == team_id, v.c.version == version)
                             .values(status="published"))
            self._put_current(conn, team_id, version, _now())

    def _put_current(self, conn: Connection, team_id: str, version: int, now: datetime) -> None:
        c = t.adapter_current
        updated = conn.execute(c.update().where(c.c.team_id == team_id).values(version=version, updated_at=now))
        if updated.rowcount == 0:
            conn.execute(c.insert().values(team_id=team_id, version=version, updated_at=now))

    def delete_adapter_versions(self, team_id: str) -> int:
        """Forget every version of a team's adapter (the registry removes the files); returns how many."""
        with self._write() as conn:
            n = conn.execute(t.adapter_versions.delete().where(t.adapter_versions.c.team_id == team_id)).rowcount
            conn.execute(t.adapter_current.delete().where(t.adapter_current.c.team_id == team_id))
        return int(n)

    def events_since_adapter(self, team_id: str) -> int:
        """Events of a team stored after its current adapter's watermark (all of them when it has
        none): what the next training run would read."""
        current = self.adapter_version(team_id)
        return self.count(team_id, after=current.watermark if current else None)


_PG_LOCK = int.from_bytes(hashlib.sha256(b"engram-store-write").digest()[:7], "big")


def _sqlite_engine(url: str) -> Engine:
    db = sa.engine.make_url(url).database
    if db and db != ":memory:" and not db.startswith("file:"):
        ensure_private_dir(Path(db).parent)
        # SQLite would create the file 0644 (less the umask), and its -wal and -shm files take the
        # database file's mode: creating it 0600 first keeps all three private to this account.
        try:
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own handling defers it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("engram_write") else "BEGIN")

    return engine


def _safe(exc: BaseException, url: str) -> str:
    """An error message without the database password."""
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    password = sa.engine.make_url(url).password
    return text.replace(password, "***") if password else text
