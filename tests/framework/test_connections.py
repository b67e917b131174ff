"""Connections: `connect` validates credentials against the platform before saving, keeps secrets
out of the row, reconnects in place, and `remove` forgets everything but the events."""

from __future__ import annotations

import json

import pytest

from engram_sdk._exceptions import ConfigError, ReconnectNeeded
from engram_sdk.connectors import Connections
from engram_sdk.testing import Harness

from .conftest import TOKEN, example_config


def test_connect_records_the_account(harness) -> None:
    conn = harness.connections.get("ex")
    assert conn.platform == "example" and conn.team_id == "acme" and conn.scope == "all"
    assert conn.source == "example://workspace/ws-example-1" and conn.account_name == "Example Co"
    assert conn.status == "never_synced"
    assert "token" not in conn.config and TOKEN not in json.dumps(conn.config)
    assert harness.secrets.get("ex", "token").get_secret_value() == TOKEN


def test_bad_credentials_save_nothing(tmp_path, server) -> None:
    h = Harness(tmp_path / "h")
    with pytest.raises(ReconnectNeeded):
        h.connect("example", "bad", scope="all", config=example_config(server, token="wrong"))
    assert h.connections.find("bad") is None
    assert h.secrets.names("bad") == []
    h.close()


def test_invalid_config_names_the_flag(tmp_path, server) -> None:
    h = Harness(tmp_path / "h")
    with pytest.raises(ConfigError, match="--page-size"):
        h.connect("example", "c", scope="all", config=example_config(server, page_size=1000))
    with pytest.raises(ConfigError, match="--token: Field required"):
        h.connect("example", "c", scope="all", config={"base_url": server.url})
    h.close()


def test_scope_is_validated(tmp_path, server) -> None:
    h = Harness(tmp_path / "h")
    with pytest.raises(ConfigError, match="--scope"):
        h.connect("example", "c", scope="page:1", config=example_config(server))
    h.connect("example", "c", scope="eng", config=example_config(server))  # bare id: the first kind
    assert h.connections.get("c").scope == "folder:eng"
    h.close()


def test_bad_connection_name(tmp_path, server) -> None:
    h = Harness(tmp_path / "h")
    with pytest.raises(ConfigError, match="connection name"):
        h.connect("example", "no spaces", scope="all", config=example_config(server))
    h.close()


def test_reconnect_keeps_checkpoint_and_replaces_the_token(harness, server, admin) -> None:
    assert harness.sync("ex").ok
    checkpoint = harness.checkpoint("ex")
    ws = admin.workspace()
    ws["tokens"].append("tok-2")
    admin.put_workspace(ws)
    harness.connect("example", "ex", scope="all", config={"token": "tok-2"})  # other values kept
    assert harness.checkpoint("ex") == checkpoint
    assert harness.secrets.get("ex", "token").get_secret_value() == "tok-2"
    assert harness.connections.get("ex").status == "ok"


def test_reconnect_to_another_account_is_refused(harness, admin) -> None:
    ws = admin.workspace()
    ws["workspace"]["id"] = "ws-other"
    admin.put_workspace(ws)
    with pytest.raises(ConfigError, match="belongs to example://workspace/ws-example-1"):
        harness.connect("example", "ex", scope="all", config={})


def test_same_name_other_platform_is_refused(harness, monkeypatch) -> None:
    from engram_sdk._connections import connect

    monkeypatch.setenv("ENGRAM_CONNECTORS", "other=engram_sdk._example:ExampleConnector")
    with pytest.raises(ConfigError, match="is a example connection"):
        connect(harness.store, harness.secrets, platform="other", name="ex", team_id="acme", scope="all", config={})


def test_remove_forgets_all_but_events(harness) -> None:
    assert harness.sync("ex").ok
    harness.connections.record_failure("ex", "note-x", "PlatformError")
    events = harness.event_count()
    harness.connections.remove("ex", harness.secrets)
    assert harness.connections.find("ex") is None
    assert harness.checkpoint("ex") is None and harness.connections.failures("ex") == []
    assert harness.secrets.names("ex") == []
    assert harness.event_count() == events
    with pytest.raises(ConfigError, match="no connection named"):
        Connections(harness.store).remove("ex")


def test_list_and_status_updates(harness) -> None:
    repo = harness.connections
    repo.update("ex", status="error", last_error="boom", meta={"webhook": "awaiting_verification"})
    repo.update("ex", meta={"other": 1})
    [conn] = repo.list()
    assert conn.status == "error" and conn.last_error == "boom"
    assert conn.meta == {"webhook": "awaiting_verification", "other": 1}
    with pytest.raises(ValueError):
        repo.update("ex", status="weird")
