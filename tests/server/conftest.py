"""A server per test, on a real SQLite file, with real Ed25519 keys and hashed API keys for two
teams. Models are tiny and random (built once per session from the real tokenizer): these tests
check the plumbing, never learning quality."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engram_sdk import EventStore, Keyring, Settings, load_key_set
from engram_sdk._apikeys import ApiKeys
from engram_sdk.server import ServerConfig, create_app

# Gates off and a short run: a random 2-layer model learns nothing, and must still publish here.
TINY_TRAINING = {"min_recall": 0.0, "general_tolerance": 1.0, "retention_tolerance": 1.0, "epochs": 1.0,
                 "max_new_tokens": 4, "rank": 4, "alpha": 8, "checkpoint_every": 1000, "replay_general": 0.0}


@dataclass
class Deployment:
    settings: Settings
    store: EventStore
    keyrings: dict[str, Keyring]
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (team, role) -> API key

    def headers(self, team: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(team, role)]}"}


def make_deployment(tmp_path: Path, base_model: Path | None = None) -> Deployment:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'server.db'}",
                        base_model=str(base_model) if base_model else None)
    settings.init_home()
    store = EventStore.open(settings.database_url)
    keyrings = {}
    for team in ("acme", "globex"):
        kr = Keyring(tmp_path / f"{team}-connector-keys")
        kr.generate([team])
        store.trust(load_key_set(kr.export_public()))
        keyrings[team] = kr
    dep = Deployment(settings, store, keyrings)
    keys = ApiKeys(store)
    for team in ("acme", "globex"):
        for role in ("ingest", "query", "admin"):
            dep.tokens[(team, role)] = keys.create(team, role, f"{team}-{role}")[1]
    return dep


@pytest.fixture
def deployment(tmp_path: Path):
    dep = make_deployment(tmp_path)
    yield dep
    dep.store.close()


@pytest.fixture
def server(deployment: Deployment):
    app = create_app(deployment.settings, store=deployment.store,
                     config=ServerConfig(workers=False, query_rate="1000/min", max_body_bytes=1024 * 1024))
    with TestClient(app) as client:
        yield client
