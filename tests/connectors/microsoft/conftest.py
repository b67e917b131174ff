from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from msft_data import APP, NAME, OBSERVED, SANDBOX_TENANT, SCOPE, TENANT, workspace

from engram_microsoft import MicrosoftConfig, MicrosoftConnector, Origin
from engram_microsoft.sandbox import MicrosoftSandbox
from engram_sdk._connections import Connections, open_connector, split_config
from engram_sdk._connector import Connection
from engram_sdk._exceptions import AuthorizationPending
from engram_sdk._http import FakeClock
from engram_sdk._sandbox import serve
from engram_sdk._secrets import FileSecretStore
from engram_sdk._signing import Keyring
from engram_sdk._store import EventStore
from engram_sdk._sync import SyncRunner



@pytest.fixture
def origin() -> Origin:
    return Origin(tenant_id=TENANT, observed_at=OBSERVED)


@dataclass
class MicrosoftEnv:
    """The sandbox over TLS (IdP + Graph), an event store, keyring, secrets and the sync runner."""

    server: Any
    sandbox: MicrosoftSandbox
    clock: FakeClock
    tmp: Path
    store: EventStore
    secrets: FileSecretStore
    runner: SyncRunner

    @property
    def admin(self):
        return self.server.admin

    def config(self, **values: Any) -> MicrosoftConfig:
        values.setdefault("client_secret", APP["client_secret"])
        values.setdefault("client_id", APP["client_id"])
        return MicrosoftConfig(tenant=SANDBOX_TENANT,
                               authority=f"{self.server.url}/{SANDBOX_TENANT}", graph_url=f"{self.server.url}/v1.0",
                               ca_bundle=self.server.ca_bundle, **values)

    def save(self, name: str = NAME, scope: str = SCOPE, **values: Any) -> Connection:
        plain, secret = split_config(MicrosoftConfig, self.config(**values))
        conn = Connection(name=name, platform="microsoft", team_id="team-a", scope=scope, config=plain,
                          status="never_synced")
        for k, v in secret.items():
            self.secrets.set(name, k, v)
        Connections(self.store).save(conn)
        return conn

    def connector(self, name: str = NAME) -> MicrosoftConnector:
        conn = Connections(self.store).get(name)
        return open_connector(conn, self.secrets, store=self.store, clock=self.clock, cls=MicrosoftConnector)

    def check(self, name: str = NAME):
        connector = self.connector(name)
        try:
            account = connector.check()
        finally:
            connector.close()
        Connections(self.store).update(name, source=account.source, account_name=account.name)
        return account

    def connect(self, name: str = NAME, scope: str = SCOPE, user: str = "u-ann", **values: Any):
        """`engram connect`: store, check; with --delegated, approve the device code and check again."""
        values.setdefault("delegated", True)
        self.save(name, scope, **values)
        if not values["delegated"]:
            return self.check(name)
        with pytest.raises(AuthorizationPending) as pending:
            self.check(name)
        code = pending.value.instructions.rsplit("enter the code ", 1)[1].split()[0]
        self.admin.op("approve_device", user_code=code, user=user)
        return self.check(name)

    def sync(self, name: str = NAME, **kwargs: Any):
        return self.runner.run(name, **kwargs)

    def events(self) -> list[Any]:
        return list(self.store.iter_events("team-a"))

    def records(self) -> list[Any]:
        return [e.event.record for e in self.events()]

    def by_kind(self, kind: str) -> list[Any]:
        return [r for r in self.records() if r.kind == kind]

    def latest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in self.records():
            if r.kind != "edit":
                out[r.entity_id] = r
        return out


@pytest.fixture
def ms(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "home"))
    clock = FakeClock()
    sandbox = MicrosoftSandbox(workspace(), clock=clock)
    keyring = Keyring(tmp_path / "keys")
    keyring.generate(["team-a"])
    store = EventStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    secrets = FileSecretStore(tmp_path / "secrets" / "secrets.json")
    runner = SyncRunner(store, keyring, secrets, clock=clock, connector_cls=MicrosoftConnector)
    with serve(sandbox, tls=True, tls_dir=tmp_path / "tls") as server:
        yield MicrosoftEnv(server, sandbox, clock, tmp_path, store, secrets, runner)
    store.close()
