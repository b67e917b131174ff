"""The framework on PostgreSQL (a scratch database on the server named by ENGRAM_TEST_POSTGRES_URL):
migration 0002, connections, the runner with checkpoints, encrypted secrets in the shared
database, and the webhook queue drained by the worker."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from engram_sdk._pgtemp import temporary_database
from engram_sdk.connectors import DatabaseSecretStore
from engram_sdk import EventStore
from engram_sdk.testing import Harness

from .conftest import TOKEN, example_config

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url():
    with temporary_database(prefix="engram_fw") as url:
        yield url


@pytest.fixture
def pg_harness(tmp_path, pg_url, server, clock):
    store = EventStore.open(pg_url)
    secrets = DatabaseSecretStore(store.engine, Fernet.generate_key())
    h = Harness(tmp_path / "home", clock=clock, database_url=pg_url, secrets=secrets)
    h.connect("example", "ex", scope="all", config=example_config(server))
    yield h
    h.close()
    store.close()


def test_sync_edit_reconcile_on_postgres(pg_harness, admin) -> None:
    h = pg_harness
    assert h.sync("ex").stored == 12
    assert h.checkpoint("ex") == {"after": 12}
    admin.op("edit_note", id="note-0001", text="changed")
    admin.op("delete_silently", id="note-0002")
    result = h.sync("ex", reconcile=True)
    assert result.ok and result.stored == 3 and result.tombstones == 1
    assert h.latest()["note-0001"][1]["text"] == "changed"


def test_secrets_are_encrypted_rows_on_postgres(pg_harness) -> None:
    h = pg_harness
    assert h.secrets.get("ex", "token").get_secret_value() == TOKEN
    with h.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT connection_id, name, ciphertext FROM connector_secrets")).all()
    assert [(r.connection_id, r.name) for r in rows] == [("ex", "token")]
    assert TOKEN not in rows[0].ciphertext


def test_webhook_queue_on_postgres(pg_harness, admin) -> None:
    h = pg_harness
    h.sync("ex")
    admin.op("edit_note", id="note-0003", text="via webhook")
    queue = h.queue()
    assert queue.enqueue("ex", ["note-0003", "note-0003"], delivery_id="d1") == 1
    assert queue.enqueue("ex", ["note-0003"], delivery_id="d1") == 0
    report = h.worker().drain()
    assert report.done == 1 and report.stored == 2
    assert queue.counts("ex") == {"pending": 0, "done": 1, "dead": 0}


def test_one_sync_per_connection_on_postgres(pg_harness) -> None:
    from engram_sdk._exceptions import ConnectorError
    from engram_sdk._sync import _connection_lock

    with _connection_lock(pg_harness.store, "ex"):
        with pytest.raises(ConnectorError, match="already running"):
            pg_harness.sync("ex")
    assert pg_harness.sync("ex").ok
