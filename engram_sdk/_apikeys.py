"""API keys: each scoped to one team with one role, stored as a hash, shown once when created.

A key reads ``egk_<key id>_<secret>``. The key id finds the row; the secret's sha256 is compared in
constant time (the secret is 256 random bits, so a fast hash is enough; nothing to brute-force).

Roles and what they may do, for their own team only:

    ingest   POST events
    query    ask questions, list adapters
    admin    everything above, plus signing keys, training, rollback
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from . import _schema as t
from ._store import EventStore, as_utc

__all__ = ["ROLES", "ApiKey", "ApiKeys", "PERMISSIONS"]

ROLES = ("ingest", "query", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest"}),
    "query": frozenset({"query", "read"}),
    "admin": frozenset({"ingest", "query", "read", "admin"}),
}
_KEY_RE = re.compile(r"^egk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    team_id: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    def __init__(self, store: EventStore):
        self.store = store

    def create(self, team_id: str, role: str, name: str = "") -> tuple[ApiKey, str]:
        """Make a key; returns it and the token (shown once: only its hash is kept)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not team_id:
            raise ValueError("an API key needs a team")
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        with self.store._write() as conn:
            conn.execute(t.api_keys.insert().values(key_id=key_id, team_id=team_id, role=role,
                                                    secret_sha256=_sha(secret), name=name, created_at=now))
        return ApiKey(key_id, team_id, role, name, now), f"egk_{key_id}_{secret}"

    def authenticate(self, token: str) -> ApiKey | None:
        """The key for this token, or None (unknown, malformed, wrong secret, revoked)."""
        m = _KEY_RE.match(token or "")
        if not m:
            return None
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_id == m.group(1))).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_sha256, _sha(m.group(2))):
            return None
        return ApiKey(row.key_id, row.team_id, row.role, row.name, as_utc(row.created_at))

    def list(self, team_id: str | None = None) -> list[ApiKey]:
        q = sa.select(t.api_keys).order_by(t.api_keys.c.created_at)
        if team_id is not None:
            q = q.where(t.api_keys.c.team_id == team_id)
        with self.store.engine.connect() as conn:
            return [ApiKey(r.key_id, r.team_id, r.role, r.name, as_utc(r.created_at), as_utc(r.revoked_at))
                    for r in conn.execute(q)]

    def revoke(self, key_id: str) -> bool:
        key_id = key_id.split("_")[1] if key_id.startswith("egk_") else key_id
        with self.store._write() as conn:
            n = conn.execute(t.api_keys.update().where(t.api_keys.c.key_id == key_id,
                                                      t.api_keys.c.revoked_at.is_(None))
                             .values(revoked_at=datetime.now(timezone.utc))).rowcount
        return n > 0
