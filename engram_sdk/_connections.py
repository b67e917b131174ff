"""Connections: one platform account linked to one team, with a scope. Stored in the event store's
database (table ``connections``); secrets live in the secrets store, never in these rows.

Status of a connection (``connections list``): ``never_synced``, ``ok``, ``error`` (the last sync
failed; ``last_error`` says why), ``reconnect_needed`` (the grant is revoked or expired: run
``engram connect`` again; the checkpoint is kept), ``awaiting_authorization`` (an OAuth step is
left to the operator).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr, ValidationError

from . import _schema as t
from ._connector import (
    Connection,
    ConnectionInfo,
    Connector,
    ConnectorContext,
    Scope,
    load_connector,
    secret_fields,
)
from ._exceptions import ConfigError
from ._http import Clock
from ._secrets import ConnectionSecrets, SecretStore
from ._store import EventStore

__all__ = ["STATUSES", "Connections", "config_error", "connect", "open_connector", "split_config"]

STATUSES = ("never_synced", "ok", "error", "reconnect_needed", "awaiting_authorization")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def config_error(exc: ValidationError, *, flag_style: bool = True) -> str:
    """A one-line description of what is wrong with a config, naming flags, never values."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        name = "--" + loc.replace("_", "-") if flag_style and loc else loc or "config"
        parts.append(f"{name}: {err['msg']}")
    return "; ".join(parts)


class Connections:
    """The connections table."""

    def __init__(self, store: EventStore):
        self.store = store

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.store._write() as conn:
            yield conn

    @staticmethod
    def _row(r: Any) -> Connection:
        return Connection(
            name=r.name, platform=r.platform, team_id=r.team_id, scope=r.scope, config=json.loads(r.config),
            status=r.status, source=r.source, account_name=r.account_name, last_sync_at=r.last_sync_at,
            last_error=r.last_error, last_counts=json.loads(r.last_counts) if r.last_counts else None,
            meta=json.loads(r.meta), created_at=r.created_at, updated_at=r.updated_at,
        )

    def get(self, name: str) -> Connection:
        c = t.connections
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(c).where(c.c.name == name)).first()
        if row is None:
            raise ConfigError(f"no connection named {name!r} (see `engram connections list`)")
        return self._row(row)

    def find(self, name: str) -> Connection | None:
        try:
            return self.get(name)
        except ConfigError:
            return None

    def list(self) -> list[Connection]:
        c = t.connections
        with self.store.engine.connect() as conn:
            return [self._row(r) for r in conn.execute(sa.select(c).order_by(c.c.name))]

    def save(self, conn_: Connection) -> Connection:
        """Insert or replace a connection (``engram connect``); keeps its created_at."""
        if not _NAME_RE.match(conn_.name):
            raise ValueError("a connection name is letters, digits, '.', '_' and '-' (at most 200)")
        c = t.connections
        now = _now()
        values = dict(
            platform=conn_.platform, team_id=conn_.team_id, scope=conn_.scope,
            config=json.dumps(conn_.config, sort_keys=True, default=str), source=conn_.source,
            account_name=conn_.account_name, status=conn_.status, last_error=conn_.last_error,
            meta=json.dumps(conn_.meta, sort_keys=True), updated_at=now,
        )
        with self._write() as conn:
            if conn.execute(c.update().where(c.c.name == conn_.name).values(**values)).rowcount == 0:
                conn.execute(c.insert().values(name=conn_.name, created_at=now, **values))
        return self.get(conn_.name)

    def update(self, name: str, **values: Any) -> None:
        """Set status, last_error, last_sync_at, last_counts (dict) or meta (dict, merged)."""
        c = t.connections
        with self._write() as conn:
            row = conn.execute(sa.select(c.c.meta).where(c.c.name == name)).first()
            if row is None:
                raise ConfigError(f"no connection named {name!r}")
            if "status" in values and values["status"] not in STATUSES:
                raise ValueError(f"unknown status {values['status']!r}")
            if "last_counts" in values and values["last_counts"] is not None:
                values["last_counts"] = json.dumps(values["last_counts"], sort_keys=True)
            if "meta" in values:
                merged = {**json.loads(row.meta), **values["meta"]}
                values["meta"] = json.dumps(merged, sort_keys=True)
            conn.execute(c.update().where(c.c.name == name).values(updated_at=_now(), **values))

    def change_meta(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """Merge ``change(stored meta)`` into the meta in one write transaction (writers are
        serialised: BEGIN IMMEDIATE on SQLite, the advisory lock on PostgreSQL), so a decision
        on the stored value holds against a concurrent writer. Returns what was set."""
        c = t.connections
        with self._write() as conn:
            row = conn.execute(sa.select(c.c.meta).where(c.c.name == name)).first()
            if row is None:
                raise ConfigError(f"no connection named {name!r}")
            meta = json.loads(row.meta)
            updates = change(dict(meta)) or {}
            if updates:
                conn.execute(c.update().where(c.c.name == name).values(
                    meta=json.dumps({**meta, **updates}, sort_keys=True), updated_at=_now()))
        return updates

    def remove(self, name: str, secrets: SecretStore | None = None) -> None:
        """Forget a connection: its row, checkpoint, failures, queued webhook work and secrets.
        Its stored events stay (they are the team's history); delete them separately if wanted."""
        self.get(name)
        with self._write() as conn:
            conn.execute(t.connections.delete().where(t.connections.c.name == name))
            conn.execute(t.checkpoints.delete().where(t.checkpoints.c.connection_id == name))
            conn.execute(t.sync_failures.delete().where(t.sync_failures.c.connection_id == name))
            conn.execute(t.webhook_queue.delete().where(t.webhook_queue.c.connection_id == name))
            conn.execute(t.webhook_deliveries.delete().where(t.webhook_deliveries.c.connection_id == name))
        if secrets is not None:
            secrets.delete(name)

    # --- per-item failures ---------------------------------------------------------------------------

    def record_failure(self, name: str, entity_id: str, reason: str) -> None:
        f = t.sync_failures
        now = _now()
        with self._write() as conn:
            where = (f.c.connection_id == name) & (f.c.entity_id == entity_id)
            if conn.execute(f.update().where(where).values(reason=reason, attempts=f.c.attempts + 1,
                                                            last_at=now)).rowcount == 0:
                conn.execute(f.insert().values(connection_id=name, entity_id=entity_id, reason=reason, attempts=1,
                                               first_at=now, last_at=now))

    def clear_failures(self, name: str, entity_ids: list[str]) -> None:
        if not entity_ids:
            return
        f = t.sync_failures
        with self._write() as conn:
            for i in range(0, len(entity_ids), 500):
                conn.execute(f.delete().where(f.c.connection_id == name, f.c.entity_id.in_(entity_ids[i:i + 500])))

    def failures(self, name: str) -> list[dict[str, Any]]:
        f = t.sync_failures
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(f).where(f.c.connection_id == name).order_by(f.c.entity_id)).all()
        return [{"entity_id": r.entity_id, "reason": r.reason, "attempts": r.attempts,
                 "last_at": r.last_at} for r in rows]


def open_connector(
    connection: Connection,
    secrets: SecretStore,
    *,
    store: EventStore | None = None,
    clock: Clock | None = None,
    http: dict[str, Any] | None = None,
    cls: type[Connector[Any, Any]] | None = None,
) -> Connector[Any, Any]:
    """Build the connector of a stored connection: config from the row plus its secret fields."""
    cls = cls or load_connector(connection.platform)
    box = ConnectionSecrets(secrets, connection.name)
    values: dict[str, Any] = dict(connection.config)
    for name in secret_fields(cls.Config):
        value = box.get(name)
        if value is not None:
            values[name] = value
    try:
        config = cls.Config.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"connection {connection.name!r} has an invalid config: "
                          f"{config_error(exc, flag_style=False)}") from None
    scope = Scope.parse(connection.scope, kinds=cls.scope_kinds,
                        default_kind=cls.scope_kinds[0] if cls.scope_kinds else None)
    info = ConnectionInfo(name=connection.name, platform=connection.platform, team_id=connection.team_id,
                          scope=scope, source=connection.source, meta=dict(connection.meta))
    ctx = ConnectorContext(info, box, store=store, clock=clock, http=http)
    return cls(config, ctx)


def split_config(model: type[BaseModel], config: BaseModel) -> tuple[dict[str, Any], dict[str, SecretStr]]:
    """A validated config as (plain fields for the connections row, secret fields for the store)."""
    secret = set(secret_fields(model))
    plain = {k: v for k, v in config.model_dump(mode="json").items() if k not in secret}
    secrets = {k: getattr(config, k) for k in secret if getattr(config, k) is not None}
    return plain, secrets


class _Overlay:
    """A secrets store that buffers writes until ``commit``: a failed ``engram connect`` leaves no
    secrets behind."""

    def __init__(self, base: SecretStore):
        self.base = base
        self.writes: dict[tuple[str, str], SecretStr | None] = {}

    def get(self, connection: str, name: str) -> SecretStr | None:
        if (connection, name) in self.writes:
            return self.writes[(connection, name)]
        return self.base.get(connection, name)

    def set(self, connection: str, name: str, value: str | SecretStr) -> None:
        self.writes[(connection, name)] = value if isinstance(value, SecretStr) else SecretStr(value)

    def delete(self, connection: str, name: str | None = None) -> None:
        names = [name] if name is not None else self.names(connection)
        for n in names:
            self.writes[(connection, n)] = None

    def names(self, connection: str) -> list[str]:
        names = set(self.base.names(connection))
        for (c, n), v in self.writes.items():
            if c == connection:
                (names.add if v is not None else names.discard)(n)
        return sorted(names)

    def commit(self) -> None:
        for (c, n), v in self.writes.items():
            if v is None:
                self.base.delete(c, n)
            else:
                self.base.set(c, n, v)
        self.writes.clear()


def connect(
    store: EventStore,
    secrets: SecretStore,
    *,
    platform: str,
    name: str,
    team_id: str,
    scope: str,
    config: dict[str, Any],
    cls: type[Connector[Any, Any]] | None = None,
    clock: Clock | None = None,
    http: dict[str, Any] | None = None,
) -> Connection:
    """What ``engram connect`` does: validate the config and scope, check the credentials against
    the platform, then save the connection and its secrets. Connecting an existing name again
    (new token, new scope, after "reconnect needed") keeps its checkpoint, provided the platform
    account is the same. ``AuthorizationPending`` is re-raised after saving the connection as
    ``awaiting_authorization``."""
    from ._exceptions import AuthorizationPending

    cls = cls or load_connector(platform)
    if not _NAME_RE.match(name):
        raise ConfigError("a connection name is letters, digits, '.', '_' and '-' (at most 200)")
    if not team_id:
        raise ConfigError("--team is required")
    try:
        scope_obj = Scope.parse(scope, kinds=cls.scope_kinds, default_kind=cls.scope_kinds[0] if cls.scope_kinds else None)
    except ValueError as exc:
        raise ConfigError(f"--scope: {exc}") from None
    repo = Connections(store)
    existing = repo.find(name)
    if existing is not None and existing.platform != platform:
        raise ConfigError(f"connection {name!r} is a {existing.platform} connection; remove it first")
    values = dict(existing.config) if existing is not None else {}
    values.update({k: v for k, v in config.items() if v is not None})
    overlay = _Overlay(secrets)
    for field_name in secret_fields(cls.Config):
        if field_name not in values:
            current = secrets.get(name, field_name)
            if current is not None:
                values[field_name] = current
    try:
        cfg = cls.Config.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(config_error(exc)) from None
    plain, secret_values = split_config(cls.Config, cfg)
    for k, v in secret_values.items():
        overlay.set(name, k, v)
    info = ConnectionInfo(name=name, platform=platform, team_id=team_id, scope=scope_obj,
                          source=existing.source if existing else None, meta=dict(existing.meta) if existing else {})
    ctx = ConnectorContext(info, ConnectionSecrets(overlay, name), store=store, clock=clock, http=http)
    connector = cls(cfg, ctx)
    status = "never_synced" if existing is None or existing.last_sync_at is None else "ok"
    pending: AuthorizationPending | None = None
    account = None
    try:
        account = connector.check()
    except AuthorizationPending as exc:
        pending, status = exc, "awaiting_authorization"
    finally:
        connector.close()
    if account is not None and existing is not None and existing.source and existing.source != account.source:
        raise ConfigError(f"connection {name!r} belongs to {existing.source}, but these credentials open "
                          f"{account.source}: use a new connection name")
    conn = Connection(
        name=name, platform=platform, team_id=team_id, scope=str(scope_obj), config=plain, status=status,
        source=account.source if account else (existing.source if existing else None),
        account_name=account.name if account else (existing.account_name if existing else None),
        meta={**(dict(existing.meta) if existing else {}), **ctx._meta_updates},
    )
    overlay.commit()
    saved = repo.save(conn)
    if pending is not None:
        raise pending
    return saved
