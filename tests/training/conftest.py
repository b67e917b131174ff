"""Fixtures for the trainer's tests.

- ``tiny_model``: a 2-layer, hidden-64 random Llama written once per session (with the real
  SmolLM2 tokenizer, so prompts and chat templates are the real ones).
- ``real_model_cache``: the session's per-user cache (``user_cache``) holding the real SmolLM2 model
  converted once; ``engram_training.base.load`` then keeps it in memory for the whole session.
- ``team_env``: a fresh ENGRAM_HOME, a real SQLite store file and a real Ed25519 keyring whose key
  is trusted for team "kestrel" only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engram_sdk import EventStore, Keyring, Settings, load_key_set


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engram_training.base import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def real_model_cache(user_cache: Path) -> Path:
    """<user cache>/models with the converted SmolLM2 copy, made once per session (the base model's
    evaluation answers are cached there too, so they are also made once)."""
    from engram_training import base

    base.load(None, user_cache)  # converts the GGUF once and keeps the model in memory
    return user_cache / "models"


@dataclass
class TeamEnv:
    settings: Settings
    store: EventStore
    keyring: Keyring
    team: str = "kestrel"


def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_model: str | None) -> TeamEnv:
    home = tmp_path / "home"
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    monkeypatch.delenv("ENGRAM_DATABASE_URL", raising=False)
    if base_model:
        monkeypatch.setenv("ENGRAM_BASE_MODEL", base_model)
    else:
        monkeypatch.delenv("ENGRAM_BASE_MODEL", raising=False)
    settings = Settings.load(home)
    settings.init_home()
    store = EventStore.open(settings.database_url)
    keyring = Keyring(settings.keys_dir)
    keyring.generate(["kestrel"])
    store.trust(load_key_set(keyring.export_public()))
    return TeamEnv(settings, store, keyring)


@pytest.fixture
def team_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path):
    env = _env(tmp_path, monkeypatch, str(tiny_model))
    yield env
    env.store.close()


@pytest.fixture
def real_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_model_cache: Path):
    env = _env(tmp_path, monkeypatch, None)
    yield env
    env.store.close()
