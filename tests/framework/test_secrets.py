"""The secrets store: a 0600 file by default, Fernet-encrypted rows in a shared database, and
values that never show up when printed, logged or formatted."""

from __future__ import annotations

import json
import os
import stat

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from pydantic import SecretStr

from engram_sdk import EventStore, Settings
from engram_sdk._exceptions import ConfigError
from engram_sdk.connectors import DatabaseSecretStore, FileSecretStore, open_secret_store

VALUE = "s3cr3t-token-value-0123456789"


def test_file_store_roundtrip_with_0600(tmp_path) -> None:
    store = FileSecretStore(tmp_path / "secrets" / "secrets.json")
    assert store.get("c", "token") is None
    store.set("c", "token", VALUE)
    store.set("c", "refresh", SecretStr("r"))
    store.set("d", "token", "other")
    assert store.get("c", "token").get_secret_value() == VALUE
    assert store.names("c") == ["refresh", "token"]
    assert stat.S_IMODE((tmp_path / "secrets" / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    store.delete("c", "refresh")
    assert store.names("c") == ["token"]
    store.delete("c")
    assert store.names("c") == [] and store.get("d", "token").get_secret_value() == "other"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_with_wrong_permissions_is_refused(tmp_path, mode: int) -> None:
    store = FileSecretStore(tmp_path / "secrets.json")
    store.set("c", "token", VALUE)
    os.chmod(tmp_path / "secrets.json", mode)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        store.get("c", "token")
    assert VALUE not in str(info.value)
    with pytest.raises(ConfigError):  # writes are refused too, and leave the file as it was
        store.set("c", "token", "new")
    os.chmod(tmp_path / "secrets.json", 0o600)
    assert store.get("c", "token").get_secret_value() == VALUE


def test_file_not_written_by_engram_is_refused(tmp_path) -> None:
    path = tmp_path / "secrets.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"[1, 2]")
    os.close(fd)
    with pytest.raises(ConfigError, match="not a secrets file"):
        FileSecretStore(path).get("c", "token")


def test_values_are_masked_when_printed(tmp_path) -> None:
    store = FileSecretStore(tmp_path / "secrets.json")
    store.set("c", "token", VALUE)
    value = store.get("c", "token")
    assert VALUE not in repr(value) and VALUE not in str(value) and VALUE not in f"{value}"


def test_database_store_encrypts(tmp_path) -> None:
    events = EventStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    key = Fernet.generate_key()
    store = DatabaseSecretStore(events.engine, key)
    store.set("c", "token", VALUE)
    store.set("c", "token", VALUE + "-2")  # update in place
    assert store.get("c", "token").get_secret_value() == VALUE + "-2"
    assert store.names("c") == ["token"]
    raw = (tmp_path / "db.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("db.sqlite-wal"))
    assert VALUE.encode() not in raw
    with events.engine.connect() as conn:
        (ciphertext,) = conn.execute(sa.text("SELECT ciphertext FROM connector_secrets")).one()
    assert Fernet(key).decrypt(ciphertext.encode()).decode() == VALUE + "-2"
    store.delete("c")
    assert store.get("c", "token") is None
    events.close()


def test_database_store_with_another_key_fails_clearly(tmp_path) -> None:
    events = EventStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    DatabaseSecretStore(events.engine, Fernet.generate_key()).set("c", "token", VALUE)
    with pytest.raises(ConfigError, match="does not decrypt") as info:
        DatabaseSecretStore(events.engine, Fernet.generate_key()).get("c", "token")
    assert VALUE not in str(info.value)
    events.close()


def test_invalid_fernet_key_is_refused(tmp_path) -> None:
    events = EventStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(ConfigError, match="not a valid Fernet key"):
        DatabaseSecretStore(events.engine, "short")
    events.close()


def test_file_store_is_the_default(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ENGRAM_DATABASE_URL", raising=False)
    monkeypatch.delenv("ENGRAM_SECRETS", raising=False)
    store = open_secret_store(Settings.load(tmp_path))
    assert isinstance(store, FileSecretStore) and store.path == tmp_path / "secrets" / "secrets.json"


def test_shared_database_uses_encrypted_rows(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("ENGRAM_DATABASE_URL", url)
    monkeypatch.setenv("ENGRAM_SECRET_KEY", Fernet.generate_key().decode())
    events = EventStore.open(url)
    assert isinstance(open_secret_store(Settings.load(tmp_path), events.engine), DatabaseSecretStore)
    monkeypatch.setenv("ENGRAM_SECRETS", "file")
    assert isinstance(open_secret_store(Settings.load(tmp_path), events.engine), FileSecretStore)
    events.close()


def test_shared_database_without_a_key_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ENGRAM_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    monkeypatch.delenv("ENGRAM_SECRET_KEY", raising=False)
    monkeypatch.delenv("ENGRAM_SECRETS", raising=False)
    with pytest.raises(ConfigError, match="ENGRAM_SECRET_KEY"):
        open_secret_store(Settings.load(tmp_path))


def test_concurrent_writers_lose_nothing(tmp_path) -> None:
    import threading

    path = tmp_path / "secrets.json"
    stores = [FileSecretStore(path) for _ in range(4)]

    def write(i: int) -> None:
        for j in range(10):
            stores[i].set(f"conn{i}", f"k{j}", f"v{i}-{j}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = json.loads(path.read_text())["connections"]
    assert all(len(data[f"conn{i}"]) == 10 for i in range(4))
