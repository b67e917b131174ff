"""The secrets store: tokens, refresh tokens, token caches, webhook verification tokens.

Two backends behind one interface (``get``/``set``/``delete``/``names``, per connection):

- ``FileSecretStore`` (default): ``<ENGRAM_HOME>/secrets/secrets.json``, mode 0600 in a 0700
  directory. A file readable or writable by anyone but its owner is refused (``ConfigError``
  naming the fix), never silently used. Writes are atomic (temp file + rename) under a file lock,
  so a sync and a webhook worker refreshing tokens at once cannot lose each other's writes.
- ``DatabaseSecretStore``: when ``ENGRAM_DATABASE_URL`` is set (a shared database), Fernet-encrypted
  rows in the ``connector_secrets`` table, keyed by ``ENGRAM_SECRET_KEY`` (generate one with
  ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``),
  so a webhook worker on another host reads the same secrets. ``ENGRAM_SECRETS=file|database``
  overrides the choice.

Values come back as ``pydantic.SecretStr``: printing, logging or formatting one shows ``**********``;
only ``.get_secret_value()`` reveals it. No message of this module contains a value.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import SecretStr

from . import _schema as t
from ._config import Settings, ensure_private_dir
from ._exceptions import ConfigError, StoreError

__all__ = [
    "ConnectionSecrets",
    "DatabaseSecretStore",
    "FileSecretStore",
    "SecretStore",
    "mask",
    "open_secret_store",
]


def mask(value: str | SecretStr | None) -> str:
    """How ``connections show`` displays a secret: set or not, never its characters."""
    return "(not set)" if value is None else "********"


class SecretStore(Protocol):
    def get(self, connection: str, name: str) -> SecretStr | None: ...

    def set(self, connection: str, name: str, value: str | SecretStr) -> None: ...

    def delete(self, connection: str, name: str | None = None) -> None: ...

    def names(self, connection: str) -> list[str]: ...


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


class FileSecretStore:
    """Secrets in one 0600 JSON file; see the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def _check_mode(self, path: Path) -> None:
        st = path.stat()
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(f"refusing to use {path}: its mode is {mode:o}, readable by others; "
                              f"run `chmod 600 {path}`")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise ConfigError(f"refusing to use {path}: it belongs to another user")

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        self._check_mode(self.path)
        try:
            raw = json.loads(self.path.read_text())
            data = raw["connections"]
            if not isinstance(data, dict):
                raise TypeError("connections")
            return data
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.path} is not a secrets file written by engram") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"format": "engram-secrets/1", "connections": data}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def get(self, connection: str, name: str) -> SecretStr | None:
        value = self._read().get(connection, {}).get(name)
        return SecretStr(value) if value is not None else None

    def set(self, connection: str, name: str, value: str | SecretStr) -> None:
        with self._locked():
            data = self._read()
            data.setdefault(connection, {})[name] = _plain(value)
            self._write(data)

    def delete(self, connection: str, name: str | None = None) -> None:
        with self._locked():
            data = self._read()
            if name is None:
                data.pop(connection, None)
            else:
                data.get(connection, {}).pop(name, None)
            self._write(data)

    def names(self, connection: str) -> list[str]:
        return sorted(self._read().get(connection, {}))


class DatabaseSecretStore:
    """Fernet-encrypted rows in the event store's database; see the module docstring."""

    def __init__(self, engine: sa.engine.Engine, key: str | bytes):
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError("ENGRAM_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes)") from None
        self.engine = engine

    def _decrypt(self, token: str, connection: str, name: str) -> SecretStr:
        from cryptography.fernet import InvalidToken

        try:
            return SecretStr(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise ConfigError(f"secret {name!r} of connection {connection!r} does not decrypt with "
                              "ENGRAM_SECRET_KEY (was the key changed?)") from None

    def get(self, connection: str, name: str) -> SecretStr | None:
        s = t.connector_secrets
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.c.ciphertext).where(s.c.connection_id == connection, s.c.name == name)).first()
        return self._decrypt(row.ciphertext, connection, name) if row else None

    def set(self, connection: str, name: str, value: str | SecretStr) -> None:
        s = t.connector_secrets
        token = self._fernet.encrypt(_plain(value).encode()).decode()
        now = datetime.now(timezone.utc)
        with _write(self.engine) as conn:
            where = (s.c.connection_id == connection) & (s.c.name == name)
            if conn.execute(s.update().where(where).values(ciphertext=token, updated_at=now)).rowcount == 0:
                conn.execute(s.insert().values(connection_id=connection, name=name, ciphertext=token, updated_at=now))

    def delete(self, connection: str, name: str | None = None) -> None:
        s = t.connector_secrets
        where = s.c.connection_id == connection
        if name is not None:
            where &= s.c.name == name
        with _write(self.engine) as conn:
            conn.execute(s.delete().where(where))

    def names(self, connection: str) -> list[str]:
        s = t.connector_secrets
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(s.c.name).where(s.c.connection_id == connection)))


@contextmanager
def _write(engine: sa.engine.Engine) -> Iterator[sa.Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite, via the store's engine options)."""
    try:
        with engine.connect().execution_options(engram_write=True) as conn, conn.begin():
            yield conn
    except sa.exc.OperationalError as exc:
        raise StoreError(f"secrets write failed: {type(exc).__name__}") from None


def open_secret_store(settings: Settings, engine: sa.engine.Engine | None = None) -> SecretStore:
    """The store this deployment uses (see the module docstring for the rule)."""
    choice = os.environ.get("ENGRAM_SECRETS", "").strip().lower()
    if choice not in ("", "file", "database"):
        raise ConfigError("ENGRAM_SECRETS must be 'file' or 'database'")
    if choice == "database" or (not choice and os.environ.get("ENGRAM_DATABASE_URL")):
        key = os.environ.get("ENGRAM_SECRET_KEY")
        if not key:
            raise ConfigError("secrets are kept in the shared database (ENGRAM_DATABASE_URL is set): "
                              "set ENGRAM_SECRET_KEY to a Fernet key, or ENGRAM_SECRETS=file")
        if engine is None:
            raise ValueError("the database secrets store needs the event store's engine")
        return DatabaseSecretStore(engine, key)
    return FileSecretStore(settings.home / "secrets" / "secrets.json")


class ConnectionSecrets:
    """One connection's view of the secrets store (what ``ctx.secrets`` is)."""

    def __init__(self, store: SecretStore, connection: str):
        self._store = store
        self.connection = connection

    def get(self, name: str) -> SecretStr | None:
        return self._store.get(self.connection, name)

    def require(self, name: str) -> str:
        """The plain value, for putting into a request header; ``ConfigError`` if missing."""
        value = self._store.get(self.connection, name)
        if value is None:
            raise ConfigError(f"connection {self.connection!r} has no secret {name!r}: run `engram connect` again")
        return value.get_secret_value()

    def set(self, name: str, value: str | SecretStr) -> None:
        self._store.set(self.connection, name, value)

    def delete(self, name: str) -> None:
        self._store.delete(self.connection, name)

    def names(self) -> list[str]:
        return self._store.names(self.connection)

    def __repr__(self) -> str:
        return f"ConnectionSecrets({self.connection!r}, names={self.names()!r})"

    def as_dict_masked(self) -> dict[str, Any]:
        return {n: mask("x") for n in self.names()}
