"""Fixtures shared by the whole suite.

- every test: ENGRAM_CACHE_DIR points at one scratch per-user cache for the session, so no test
  writes into the real ~/.cache/engram and the real base model is dequantised once per session.
- ``engram_home``: a fresh ENGRAM_HOME (and no ENGRAM_DATABASE_URL) for the test.
- ``store_url``: a fresh event store URL, once on SQLite (a file) and once on PostgreSQL (a
  scratch database on the server named by ENGRAM_TEST_POSTGRES_URL, default the local test server).
  PostgreSQL being down fails those tests: CI starts it, and a skipped backend proves nothing.
- ``keyring`` / ``signer``: a real Ed25519 keyring for team "acme".
- ``tiny_model``: a tiny random transformers model (the real tokenizer), built once per session, for
  tests that run the server's inference or training without the real base model. tests/training
  has its own (another seed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engram_sdk import EventStore, Keyring, load_key_set
from engram_sdk._pgtemp import temporary_database


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("user-cache")
        mp.setenv("ENGRAM_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture
def engram_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "engram-home"
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    monkeypatch.delenv("ENGRAM_DATABASE_URL", raising=False)
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with temporary_database(prefix="engram_test") as url:
            yield url


@pytest.fixture
def store(store_url: str):
    s = EventStore.open(store_url)
    yield s
    s.close()


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    k = Keyring(tmp_path / "keys")
    k.generate(["acme"])
    return k


@pytest.fixture
def trusting_store(store: EventStore, keyring: Keyring) -> EventStore:
    store.trust(load_key_set(keyring.export_public()))
    return store


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engram_training.base import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-model"), seed=3)
