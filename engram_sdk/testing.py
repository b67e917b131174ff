"""The connector test kit: a harness, and acceptance tests every connector must pass.

``Harness(home)`` is a fresh deployment in a directory: ENGRAM_HOME layout, a real Ed25519 keyring,
a SQLite event store, the file secrets store and a ``FakeClock`` for rate limits and retries (so
waits cost no real time). It connects, syncs (in-process or through the real ``engram`` CLI in a
subprocess), and reads back what was stored.

``ConnectorAcceptanceTests`` is a pytest base class in the spirit of Airbyte's acceptance tests.
Subclass it in a connector's test module, fill in the hooks, and pytest runs: full sync,
incremental after edits, deletions, kill -9 and resume, a 429 storm, a token revoked mid-sync, and
(if the connector takes webhooks) webhook replay::

    class TestExampleAcceptance(ConnectorAcceptanceTests):
        platform = "example"
        scope = "all"
        token = "tok-example-1"

        def make_sandbox(self, clock):
            return ExampleSandbox(sample_workspace(30), clock=clock)

        def connection_config(self, server):
            return {"base_url": server.url, "token": self.token, "requests_per_second": 1000}

        def edit(self, admin):          # change some entities; return their ids
            admin.op("edit_note", id="note-0001", text="new text")
            return ["note-0001"]

        def delete(self, admin):        # delete some (visibly to incremental sync); return ids
            admin.op("delete_note", id="note-0002")
            return ["note-0002"]

        def enlarge(self, admin):       # make the workspace big enough for the kill test
            admin.op("generate", count=150, folder="eng")

The kill test runs ``engram sync`` in a subprocess (found through ``ENGRAM_CONNECTORS``, so the
connector needs no installing), kills it with SIGKILL at random points of its progress, reruns it
to completion, and compares the stored event ids with an uninterrupted run's. Sandbox settings a
subprocess needs (a CA bundle, a fast rate limit) must therefore be part of the connection config.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import _schema as t
from ._config import Settings
from ._connections import Connections, connect
from ._connector import Connection, Connector, load_connector
from ._http import Clock, FakeClock
from ._sandbox import Sandbox, SandboxAdmin, SandboxServer, serve
from ._secrets import FileSecretStore, SecretStore
from ._signing import Keyring, load_key_set
from ._store import EventStore
from ._sync import SyncResult, SyncRunner
from ._webhooks import WebhookQueue, WebhookReceiver, WebhookWorker

__all__ = ["ConnectorAcceptanceTests", "Harness", "Kit"]

TEAM = "acme"


class Harness:
    """A throwaway deployment in ``home``; see the module docstring."""

    def __init__(self, home: str | Path, *, team: str = TEAM, clock: Clock | None = None,
                 connector_cls: type[Connector[Any, Any]] | None = None, http: dict[str, Any] | None = None,
                 database_url: str | None = None, secrets: SecretStore | None = None):
        """``database_url`` (default: a SQLite file in ``home``) and ``secrets`` (default: the
        0600 file in ``home``) let the same tests run on PostgreSQL with encrypted secrets."""
        self.home = Path(home)
        self.team = team
        self.settings = Settings(home=self.home, database_url=database_url or f"sqlite:///{self.home / 'engram.db'}")
        self.settings.init_home()
        self.store = EventStore.open(self.settings.database_url)
        self.keyring = Keyring(self.settings.keys_dir)
        self.keyring.generate([team])
        self.store.trust(load_key_set(self.keyring.export_public()), origin="local-keyring")
        self.secrets: SecretStore = secrets or FileSecretStore(self.home / "secrets" / "secrets.json")
        self.clock = clock or FakeClock()
        self.connector_cls = connector_cls
        self.http = http
        self.connections = Connections(self.store)

    def close(self) -> None:
        self.store.close()

    # --- doing things ------------------------------------------------------------------------------

    def connect(self, platform: str, name: str, *, scope: str, config: dict[str, Any]) -> Connection:
        return connect(self.store, self.secrets, platform=platform, name=name, team_id=self.team, scope=scope,
                       config=config, cls=self.connector_cls, clock=self.clock, http=self.http)

    def runner(self, **kwargs: Any) -> SyncRunner:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("http", self.http)
        kwargs.setdefault("connector_cls", self.connector_cls)
        return SyncRunner(self.store, self.keyring, self.secrets, **kwargs)

    def sync(self, name: str, **kwargs: Any) -> SyncResult:
        run_kwargs = {k: kwargs.pop(k) for k in ("full", "reconcile") if k in kwargs}
        return self.runner(**kwargs).run(name, **run_kwargs)

    def receiver(self) -> WebhookReceiver:
        return WebhookReceiver(self.store, self.secrets, connector_cls=self.connector_cls)

    def worker(self, **kwargs: Any) -> WebhookWorker:
        kwargs.setdefault("connector_cls", self.connector_cls)
        kwargs.setdefault("http", self.http)
        kwargs.setdefault("connector_clock", self.clock)
        return WebhookWorker(self.store, self.keyring, self.secrets, **kwargs)

    def queue(self) -> WebhookQueue:
        return WebhookQueue(self.store)

    def env(self, cls: type[Connector[Any, Any]] | None = None) -> dict[str, str]:
        """Environment for running the ``engram`` CLI against this deployment in a subprocess."""
        env = {k: v for k, v in os.environ.items() if k not in ("ENGRAM_DATABASE_URL", "ENGRAM_SECRETS")}
        env["ENGRAM_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        cls = cls or self.connector_cls
        if cls is not None:
            env["ENGRAM_CONNECTORS"] = f"{cls.platform}={cls.__module__}:{cls.__qualname__}"
        return env

    def cli_args(self, *args: str) -> list[str]:
        return [sys.executable, "-c", "from engram_sdk._cli import main; main()", *args]

    def cli(self, *args: str, timeout: float = 120, cls: type[Connector[Any, Any]] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run ``engram <args>`` in a subprocess against this deployment."""
        return subprocess.run(self.cli_args(*args), env=self.env(cls), capture_output=True, text=True,
                              timeout=timeout)

    # --- reading back ------------------------------------------------------------------------------

    def event_ids(self) -> set[str]:
        with self.store.engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(t.events.c.event_id).where(t.events.c.team_id == self.team))}

    def event_count(self) -> int:
        return self.store.count(self.team)

    def events(self) -> list[dict[str, Any]]:
        return [e.envelope for e in self.store.iter_events(self.team)]

    def latest(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """entity id -> (event type, record) of its latest event (parts folded into one entity)."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for env in self.events():
            out[env["subject"].split("#part-", 1)[0]] = (env["type"], env["data"])
        return out

    def alive(self) -> set[str]:
        return {e for e, (ty, _) in self.latest().items() if ty != "ai.engram.entity.deleted"}

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        return self.store.checkpoint(name)


# --- killing a sync at random points ---------------------------------------------------------------


def kill_at_random_points(harness: Harness, name: str, *, kills: int, rng: random.Random, total_hint: int,
                          extra_args: tuple[str, ...] = (), timeout: float = 120) -> list[int]:
    """Start ``engram sync`` ``kills`` times and SIGKILL it at a random point of its progress (once
    the store holds a random number of events, plus a random few milliseconds); returns how many
    events each killed run had stored when it died."""
    stored_at_kill = []
    for _ in range(kills):
        before = harness.event_count()
        remaining = max(1, total_hint - before)
        target = before + rng.randint(0, max(0, remaining - 1))
        proc = subprocess.Popen(harness.cli_args("sync", "--connection", name, *extra_args), env=harness.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if harness.event_count() >= target:
                    time.sleep(rng.uniform(0, 0.05))
                    break
                time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:  # pragma: no cover - only when wait() itself failed
                proc.kill()
        if proc.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"engram sync failed before it was killed: {proc.stderr.read() if proc.stderr else ''}")
        if proc.stderr:
            proc.stderr.close()
        stored_at_kill.append(harness.event_count())
    return stored_at_kill


# --- the acceptance tests --------------------------------------------------------------------------


@dataclass
class Kit:
    """What each acceptance test gets: a harness connected to a running sandbox, sharing one
    ``FakeClock`` with it (so throttling windows pass in fake time on both sides)."""

    suite: ConnectorAcceptanceTests
    harness: Harness
    server: SandboxServer
    admin: SandboxAdmin
    sandbox: Sandbox
    name: str
    tmp: Path
    refs: list[Harness] = field(default_factory=list)

    def sync(self, **kwargs: Any) -> SyncResult:
        return self.harness.sync(self.name, **kwargs)

    def reference(self, label: str = "reference", **sync_kwargs: Any) -> Harness:
        """A second, fresh deployment synced from scratch against the same sandbox state."""
        h = self.suite._open(self.tmp, label, self.server, clock=self.harness.clock)
        self.refs.append(h)
        result = h.sync(self.name, **sync_kwargs)
        assert result.ok, result.error
        return h


class ConnectorAcceptanceTests:
    """Acceptance tests for one connector; see the module docstring for the hooks to fill in."""

    platform: str = ""
    connector_cls: type[Connector[Any, Any]] | None = None  # default: load_connector(platform)
    scope: str = "all"
    token: str = ""  # the credential the sandbox accepts (revoked in test_revoked_token_mid_sync)
    connection_name: str = "kit"
    webhooks: bool = False  # True: the connector takes webhooks signed by the sandbox
    kills: int = 3  # kill -9 points in test_kill_and_resume
    storm: int = 5  # consecutive 429 answers in test_429_storm (keep below the retry policy's attempts)
    budget: int = 3  # requests per throttling window in test_429_storm
    revoke_after: int = 25  # platform requests before the token dies in test_revoked_token_mid_sync
    webhook_secret = "whsec_" + "c2FuZGJveC13ZWJob29rLXNlY3JldC0wMDAx"

    # --- hooks -------------------------------------------------------------------------------------

    def make_sandbox(self, clock: FakeClock) -> Sandbox:
        """A sandbox on ``clock`` (pass it to the Sandbox constructor) with a small workspace."""
        raise NotImplementedError

    def connection_config(self, server: SandboxServer) -> dict[str, Any]:
        raise NotImplementedError

    def edit(self, admin: SandboxAdmin) -> list[str]:
        """Change some entities through the sandbox's admin ops; return their entity ids."""
        raise NotImplementedError

    def delete(self, admin: SandboxAdmin) -> list[str]:
        """Delete some entities (visibly to an incremental sync); return their entity ids."""
        raise NotImplementedError

    def enlarge(self, admin: SandboxAdmin) -> None:
        """Grow the workspace so that a sync takes many batches (kill and revoke tests)."""

    def configure_webhooks(self, admin: SandboxAdmin, url: str, secret: str) -> dict[str, Any]:
        """Point the sandbox's deliveries at ``url``; return config values the connection needs."""
        admin.set_webhook(url, secret)
        return {"webhook_secret": secret}

    def confirm_webhooks(self, harness: Harness) -> None:
        """The operator's step after the platform's handshake, when it has one (Notion: `engram
        connections verify`, after pasting the token into Notion); none by default."""

    # --- plumbing ----------------------------------------------------------------------------------

    def _cls(self) -> type[Connector[Any, Any]]:
        return self.connector_cls or load_connector(self.platform)

    def _open(self, tmp: Path, label: str, server: SandboxServer, *, clock: FakeClock,
              extra: dict[str, Any] | None = None) -> Harness:
        http = {"verify": server.ca_bundle} if server.ca_bundle else None
        h = Harness(tmp / label, connector_cls=self._cls(), http=http, clock=clock)
        h.connect(self.platform, self.connection_name, scope=self.scope,
                  config={**self.connection_config(server), **(extra or {})})
        return h

    @contextmanager
    def kit(self, tmp: Path) -> Iterator[Kit]:
        """A sandbox, served, and a harness connected to it; everything stopped afterwards."""
        clock = FakeClock()
        sandbox = self.make_sandbox(clock)
        with serve(sandbox) as server:
            admin = server.admin
            h = self._open(tmp, "home", server, clock=clock)
            kit = Kit(self, h, server, admin, sandbox, self.connection_name, tmp)
            try:
                yield kit
            finally:
                for ref in kit.refs:
                    ref.close()
                h.close()
                admin.close()

    # --- the tests ---------------------------------------------------------------------------------

    def test_full_sync(self, tmp_path: Path) -> None:
        with self.kit(tmp_path) as kit:
            result = kit.sync()
            assert result.ok, result.error
            assert result.records > 0 and result.stored > 0 and not result.failures
            assert kit.harness.checkpoint(kit.name) is not None
            assert kit.harness.connections.get(kit.name).status == "ok"
            again = kit.sync(full=True)  # unchanged content: same ids, nothing new
            assert again.ok and again.stored == 0 and again.duplicates > 0

    def test_incremental_after_edits(self, tmp_path: Path) -> None:
        with self.kit(tmp_path) as kit:
            assert kit.sync().ok
            before = kit.harness.event_ids()
            edited = self.edit(kit.admin)
            kit.admin.reset_stats()
            result = kit.sync()
            assert result.ok, result.error
            incremental_requests = kit.admin.stats()["requests"]
            new = kit.harness.event_ids() - before
            subjects = {e["subject"].split("#part-", 1)[0] for e in kit.harness.events() if e["id"] in new}
            assert set(edited) <= subjects, f"edits not synced: {set(edited) - subjects}"
            kit.admin.reset_stats()
            assert kit.sync(full=True).ok
            assert incremental_requests < kit.admin.stats()["requests"], "incremental should cost less than full"

    def test_deletions(self, tmp_path: Path) -> None:
        with self.kit(tmp_path) as kit:
            assert kit.sync().ok
            gone = self.delete(kit.admin)
            result = kit.sync()
            assert result.ok, result.error
            latest = kit.harness.latest()
            for entity in gone:
                assert latest[entity][0] == "ai.engram.entity.deleted", f"{entity} was not tombstoned"
            again = kit.sync(reconcile=True)  # reconcile finds nothing more to delete
            assert again.ok and again.tombstones == 0

    def test_kill_and_resume(self, tmp_path: Path) -> None:
        with self.kit(tmp_path) as kit:
            self.enlarge(kit.admin)
            reference = kit.reference()
            expected = reference.event_ids()
            kit.admin.set_latency(0.002)
            seed = int(os.environ.get("ENGRAM_TEST_SEED", "0")) or random.randrange(1 << 30)
            rng = random.Random(seed)
            kill_at_random_points(kit.harness, kit.name, kills=self.kills, rng=rng, total_hint=len(expected),
                                  extra_args=("--batch-size", "7"))
            kit.admin.set_latency(0)
            done = kit.harness.cli("sync", "--connection", kit.name, "--batch-size", "7")
            assert done.returncode == 0, done.stderr
            assert kit.harness.event_ids() == expected, f"ENGRAM_TEST_SEED={seed}"
            assert kit.harness.event_count() == len(expected)
            assert kit.harness.checkpoint(kit.name) == reference.checkpoint(kit.name)

    def test_429_storm(self, tmp_path: Path) -> None:
        with self.kit(tmp_path) as kit:
            expected = kit.reference().event_ids()
            clock = kit.harness.clock
            # a burst of consecutive 429s, then sustained throttling by a budget on the shared clock
            kit.admin.fault(status=429, times=self.storm, retry_after=1.5)
            kit.admin.set_budget(self.budget, window=10.0)
            slept = clock.slept
            result = kit.sync()
            assert result.ok, result.error
            assert kit.harness.event_ids() == expected
            assert kit.admin.stats()["throttled"] > self.storm, "the budget never throttled"
            assert clock.slept - slept >= self.storm * 1.5, "Retry-After was not honoured"

    def test_revoked_token_mid_sync(self, tmp_path: Path) -> None:
        with self.kit(tmp_path) as kit:
            self.enlarge(kit.admin)
            expected = kit.reference().event_ids()
            kit.admin.revoke(self.token, after=self.revoke_after)
            result = kit.sync()
            assert not result.ok and result.status == "reconnect_needed", result.as_dict()
            assert "connect" in (result.error or "")
            assert kit.harness.connections.get(kit.name).status == "reconnect_needed"
            checkpoint = kit.harness.checkpoint(kit.name)
            stored = kit.harness.event_count()
            assert 0 < stored < len(expected), "the token should die mid-sync: adjust revoke_after or enlarge()"
            again = kit.sync()  # still revoked: nothing moves
            assert again.status == "reconnect_needed"
            assert kit.harness.checkpoint(kit.name) == checkpoint
            kit.admin.restore()
            assert kit.sync().ok
            assert kit.harness.event_ids() == expected
            assert kit.harness.connections.get(kit.name).status == "ok"

    def test_webhook_replay(self, tmp_path: Path) -> None:
        if not self.webhooks:
            return  # a poll-only connector: nothing to test
        with self.kit(tmp_path) as kit, serve(kit.harness.receiver()) as receiver:
            extra = self.configure_webhooks(kit.admin, f"{receiver.url}/webhooks/{kit.name}", self.webhook_secret)
            kit.harness.connect(self.platform, kit.name, scope=self.scope,
                                config={**self.connection_config(kit.server), **extra})
            self.confirm_webhooks(kit.harness)
            assert kit.sync().ok
            edited = self.edit(kit.admin)
            deliveries = kit.admin.deliveries()
            assert deliveries and all(d["status"] == 202 for d in deliveries), deliveries
            report = kit.harness.worker().drain()
            assert report.done >= 1 and report.dead == 0
            after_webhooks = kit.harness.event_ids()
            latest = kit.harness.latest()
            assert all(e in latest for e in edited)
            for d in reversed(deliveries):  # replayed, and out of order
                kit.admin.replay(d["index"])
            kit.admin.deliveries()
            kit.harness.worker().drain()
            assert kit.harness.event_ids() == after_webhooks
            result = kit.sync()  # the sync that follows finds the same content: nothing new
            assert result.ok and result.stored == 0, result.as_dict()
