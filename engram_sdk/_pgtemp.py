"""A throwaway PostgreSQL database for tests and benchmarks (created, then dropped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    return os.environ.get("ENGRAM_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)


@contextmanager
def temporary_database(admin: str | None = None, prefix: str = "engram_tmp") -> Iterator[str]:
    """Create a fresh database on the server named by ``admin`` and yield its URL; drop it after."""
    base = sa.engine.make_url(admin or admin_url())
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
