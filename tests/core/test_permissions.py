"""Files on disk: ENGRAM_HOME is 0700 and the SQLite store (with its -wal and -shm files) 0600, so
no other account on the machine reads a team's content; what is already open to others is named
by ``engram init`` and by the server, never silently chmod-ed."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from engram_sdk import EventStore, Keyring, Settings
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._config import exposure_warnings
from tests.factories import signed_events


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The most permissive umask an account can have: modes must not rely on a strict one."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_init_creates_a_private_home_and_store_even_with_an_open_umask(engram_home, capsys, open_umask):
    assert run_app(app, ["init", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["warnings"] == []
    assert mode(engram_home) == 0o700
    assert mode(engram_home / "keys") == 0o700 and mode(engram_home / "adapters") == 0o700
    assert mode(engram_home / "engram.db") == 0o600


def test_the_wal_and_shm_files_are_private_while_the_store_is_written(engram_home, tmp_path, open_umask):
    s = Settings.load()
    s.init_home()
    keyring = Keyring(tmp_path / "keys")
    keyring.generate(["acme"])
    with EventStore.open(s.database_url) as store:
        store.append(signed_events(keyring, 3))
        db = s.home / "engram.db"
        wal, shm = db.with_name("engram.db-wal"), db.with_name("engram.db-shm")
        assert wal.exists() and shm.exists()
        assert (mode(db), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
        assert mode(db.with_name("engram.db.migrate.lock")) == 0o600


def test_a_store_opened_where_nothing_exists_yet_creates_private_directories(tmp_path, open_umask):
    db = tmp_path / "srv" / "data" / "engram.db"  # e.g. a server started before `engram init`
    EventStore.open(f"sqlite:///{db}").close()
    assert mode(tmp_path / "srv") == 0o700 and mode(tmp_path / "srv" / "data") == 0o700
    assert mode(db) == 0o600


def _open_to_others(home: Path) -> None:
    os.chmod(home, 0o755)
    os.chmod(home / "engram.db", 0o644)


def test_init_warns_about_an_existing_home_and_store_readable_by_others(engram_home, capsys):
    assert run_app(app, ["init"]) == 0
    _open_to_others(engram_home)
    capsys.readouterr()
    assert run_app(app, ["init", "--json"]) == 0  # a warning, not a failure
    out = capsys.readouterr()
    warnings = json.loads(out.out.strip().splitlines()[-1])["warnings"]
    assert len(warnings) == 2
    assert f"chmod 700 {engram_home}" in out.err and f"chmod 600 {engram_home / 'engram.db'}" in out.err
    assert "mode 755" in out.err and "mode 644" in out.err
    assert mode(engram_home) == 0o755  # told, not changed behind the operator's back


def test_exposure_warnings_name_a_wal_file_left_open(engram_home):
    s = Settings.load()
    s.init_home()
    EventStore.open(s.database_url).close()
    wal = s.home / "engram.db-wal"
    wal.touch(mode=0o600)
    assert exposure_warnings(s) == []
    os.chmod(wal, 0o640)
    (line,) = exposure_warnings(s)
    assert str(wal) in line and "chmod 600" in line


def test_the_server_warns_at_start_about_a_store_readable_by_others(engram_home, caplog):
    from engram_sdk.server import ServerConfig, create_app

    assert run_app(app, ["init"]) == 0
    _open_to_others(engram_home)
    with caplog.at_level(logging.WARNING, logger="engram.server"):
        app_ = create_app(Settings.load(), config=ServerConfig(workers=False))
    lines = [r.getMessage() for r in caplog.records if r.name == "engram.server"]
    assert any(str(engram_home) in ln and "chmod 700" in ln for ln in lines)
    assert any("engram.db" in ln and "chmod 600" in ln for ln in lines)
    app_.state.engram.store.close()


def test_a_private_home_draws_no_warning_from_the_server(engram_home, caplog):
    from engram_sdk.server import ServerConfig, create_app

    assert run_app(app, ["init"]) == 0
    with caplog.at_level(logging.WARNING, logger="engram.server"):
        app_ = create_app(Settings.load(), config=ServerConfig(workers=False))
    assert not [r for r in caplog.records if "open to other users" in r.getMessage()]
    app_.state.engram.store.close()
