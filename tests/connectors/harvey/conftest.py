from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from harvey_data import NOW, workspace

from engram_harvey import HarveyConnector
from engram_harvey._client import HarveyClient
from engram_harvey.sandbox import HarveySandbox
from engram_sdk._connections import Connections, connect, open_connector
from engram_sdk._http import FakeClock
from engram_sdk._sandbox import serve
from engram_sdk._secrets import FileSecretStore
from engram_sdk._signing import Keyring
from engram_sdk._store import EventStore
from engram_sdk._sync import SyncRunner


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock):
    sb = HarveySandbox(workspace(NOW), clock=clock, epoch=NOW.timestamp())
    with serve(sb) as server:
        yield server


@pytest.fixture
def make_client(sandbox, clock):
    clients = []

    def make(token: str = "tok-full", **kwargs) -> HarveyClient:
        kwargs.setdefault("clock", clock)
        c = HarveyClient(token, base_url=sandbox.url, **kwargs)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# --- the whole path: connection -> connector -> sync runner -> signed events in the store ----------


@dataclass
class HarveyEnv:
    """A live sandbox (wall clock = real time) plus an event store, keyring and secrets store."""

    server: Any
    clock: FakeClock
    now: datetime
    tmp: Path
    store: EventStore
    secrets: FileSecretStore
    runner: SyncRunner

    @property
    def admin(self):
        return self.server.admin

    def connect(self, name: str = "acme-harvey", scope: str = "all", token: str = "tok-full", **values: Any):
        """What `engram connect harvey` does (the framework's ``connect``): check, probe, save."""
        config = {"token": token, "base_url": self.server.url, "lookback_days": 30,
                  "audit_dir": str(self.tmp / "audit"), **values}
        return connect(self.store, self.secrets, platform="harvey", name=name, team_id="team-a", scope=scope,
                       config=config, cls=HarveyConnector, clock=self.clock)

    def connector(self, name: str = "acme-harvey") -> HarveyConnector:
        conn = Connections(self.store).get(name)
        return open_connector(conn, self.secrets, store=self.store, clock=self.clock, cls=HarveyConnector)

    def sync(self, name: str = "acme-harvey", **kwargs: Any):
        return self.runner.run(name, **kwargs)

    def records(self) -> list[Any]:
        return [e.event.record for e in self.store.iter_events("team-a")]

    def by_kind(self, kind: str) -> list[Any]:
        return [r for r in self.records() if r.kind == kind]


@pytest.fixture
def harvey(tmp_path, clock, monkeypatch):
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "home"))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    sb = HarveySandbox(workspace(now), clock=clock, epoch=now.timestamp())
    keyring = Keyring(tmp_path / "keys")
    keyring.generate(["team-a"])
    store = EventStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    secrets = FileSecretStore(tmp_path / "secrets" / "secrets.json")
    runner = SyncRunner(store, keyring, secrets, clock=clock, connector_cls=HarveyConnector)
    with serve(sb) as server:
        yield HarveyEnv(server, clock, now, tmp_path, store, secrets, runner)
    store.close()
