from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from notion_data import TOKEN

from engram_notion import NotionConnector
from engram_notion.sandbox import NotionSandbox
from engram_sdk._connections import Connections, connect, open_connector
from engram_sdk._connector import Account, Connection
from engram_sdk._http import FakeClock
from engram_sdk._sandbox import serve
from engram_sdk._secrets import FileSecretStore
from engram_sdk._signing import Keyring
from engram_sdk._store import EventStore
from engram_sdk._sync import SyncRunner

TEAM = "team-a"


@dataclass
class NotionEnv:
    """A live Notion sandbox (sharing a FakeClock with the connector, so rate-limit waits cost no
    real time) plus an event store, keyring, secrets store and sync runner."""

    sandbox: NotionSandbox
    server: Any
    clock: FakeClock
    tmp: Path
    store: EventStore
    keyring: Keyring
    secrets: FileSecretStore
    runner: SyncRunner

    @property
    def admin(self):
        return self.server.admin

    @property
    def url(self) -> str:
        return self.server.url

    def connect(self, name: str = "acme-notion", scope: str = "all", **values: Any):
        """What `engram connect notion` does (the framework's ``connect``): validate, check the
        credentials, store the connection and its secrets. Returns the account (source, name)."""
        if "oauth_client_id" not in values and Connections(self.store).find(name) is None:
            values.setdefault("token", TOKEN)
        values.setdefault("base_url", self.url)
        conn = connect(self.store, self.secrets, platform="notion", name=name, team_id=TEAM, scope=scope,
                       config=values, cls=NotionConnector, clock=self.clock)
        return Account(source=conn.source or "", name=conn.account_name or "")

    def connector(self, conn: Connection | str = "acme-notion") -> NotionConnector:
        if isinstance(conn, str):
            conn = Connections(self.store).get(conn)
        return open_connector(conn, self.secrets, store=self.store, clock=self.clock,
                              cls=NotionConnector)  # type: ignore[return-value]

    def sync(self, name: str = "acme-notion", **kwargs: Any):
        return self.runner.run(name, **kwargs)

    def records(self) -> list[Any]:
        return [e.event.record for e in self.store.iter_events(TEAM)]

    def by_kind(self, kind: str) -> list[Any]:
        return [r for r in self.records() if r.kind == kind]

    def docs(self) -> dict[str, Any]:
        """entity id -> latest Document."""
        return {r.entity_id: r for r in self.records() if r.kind == "document"}

    def requests(self) -> int:
        return self.admin.stats()["requests"]


@pytest.fixture
def make_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "home"))
    opened: list[tuple[Any, EventStore]] = []
    keyring = Keyring(tmp_path / "keys")
    keyring.generate([TEAM])

    def make(workspace: dict[str, Any], **runner_kw: Any) -> NotionEnv:
        clock = FakeClock()
        sb = NotionSandbox(workspace, clock=clock)
        store = EventStore.open(f"sqlite:///{tmp_path / f'store{len(opened)}.db'}")
        secrets = FileSecretStore(tmp_path / "secrets" / f"secrets{len(opened)}.json")
        runner = SyncRunner(store, keyring, secrets, clock=clock, connector_cls=NotionConnector, **runner_kw)
        server = serve(sb)
        opened.append((server, store))
        return NotionEnv(sb, server, clock, tmp_path, store, keyring, secrets, runner)

    yield make
    for server, store in opened:
        server.stop()
        store.close()
