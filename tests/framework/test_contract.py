"""The connector contract: scopes, discovery through the entry-point group, config secrets."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from engram_sdk._exceptions import ConfigError
from engram_sdk.connectors import (
    ENTRY_POINT_GROUP,
    Connector,
    ItemFailed,
    Scope,
    ScopeItem,
    available_connectors,
    load_connector,
    register_connector,
    secret_fields,
)
import engram_sdk.connectors as public
from engram_sdk._example import ExampleConnector


def test_scope_all_must_be_explicit() -> None:
    assert Scope.parse("all").all
    with pytest.raises(ValueError, match="required"):
        Scope.parse("")
    with pytest.raises(ValueError, match="required"):
        Scope.parse(" , ")


def test_scope_items() -> None:
    s = Scope.parse("team:T1, channel:19:abc@thread.tacv2,drive:b!x")
    assert s.items == (ScopeItem("team", "T1"), ScopeItem("channel", "19:abc@thread.tacv2"), ScopeItem("drive", "b!x"))
    assert s.ids("channel") == ["19:abc@thread.tacv2"]
    assert s.contains("team", "T1") and not s.contains("team", "T2")
    assert str(s) == "team:T1,channel:19:abc@thread.tacv2,drive:b!x"
    assert Scope.parse(str(s)) == s


def test_scope_bare_ids_take_the_default_kind() -> None:
    s = Scope.parse("abc123,def456", default_kind="page")
    assert s.items == (ScopeItem("page", "abc123"), ScopeItem("page", "def456"))
    with pytest.raises(ValueError, match="kind:ID"):
        Scope.parse("abc123")


def test_scope_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="not one of folder"):
        Scope.parse("page:x", kinds=("folder",))


def test_scope_duplicates_collapse() -> None:
    assert len(Scope.parse("folder:a,folder:a").items) == 1


def test_example_is_discovered_through_the_entry_point_group() -> None:
    from importlib.metadata import entry_points

    assert "example" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert available_connectors()["example"] == "engram_sdk._example:ExampleConnector"
    assert load_connector("example") is ExampleConnector


def test_unknown_platform_names_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match="installed: .*example"):
        load_connector("nope")


def test_connectors_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ENGRAM_CONNECTORS", "dev=engram_sdk._example:ExampleConnector,broken=no.such.module:X")
    assert available_connectors()["dev"] == "engram_sdk._example:ExampleConnector"
    assert load_connector("dev") is ExampleConnector
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_connector("broken")


def test_entry_point_must_name_a_connector(monkeypatch) -> None:
    monkeypatch.setenv("ENGRAM_CONNECTORS", "bad=engram_sdk._example:ExampleConfig,gone=engram_sdk._example:Nope")
    with pytest.raises(ConfigError, match="not a Connector"):
        load_connector("bad")
    with pytest.raises(ConfigError, match="names nothing"):
        load_connector("gone")


class _Cfg(BaseModel):
    url: str
    token: SecretStr
    refresh: SecretStr | None = None
    client_secret: SecretStr | None = None


class _Cp(BaseModel):
    n: int = 0


class _Minimal(Connector[_Cfg, _Cp]):
    platform = "minimal-test"
    Config = _Cfg
    Checkpoint = _Cp


def test_secret_fields() -> None:
    assert secret_fields(_Cfg) == ["token", "refresh", "client_secret"]


def test_register_in_process() -> None:
    register_connector(_Minimal)
    assert load_connector("minimal-test") is _Minimal
    assert available_connectors()["minimal-test"].endswith(":_Minimal")


def test_optional_methods_are_detected() -> None:
    assert ExampleConnector.supports("fetch") and ExampleConnector.supports("list_entity_ids")
    assert not _Minimal.supports("fetch") and not _Minimal.supports("handle_webhook")


def test_item_failed_names_the_error_not_the_content() -> None:
    f = ItemFailed.of("page-1", ValueError("bad value\nwith a second line"))
    assert f == ItemFailed("page-1", "ValueError: bad value")


def test_public_names_are_exported() -> None:
    names = {n for n in dir(public) if not n.startswith("_") and n not in ("annotations", "TYPE_CHECKING")}
    assert set(public.__all__) == names | set(public._SANDBOX_NAMES)
    assert public.__all__ == sorted(public.__all__, key=lambda n: (not n.isupper(), n))


def test_the_contract_needs_no_server_extra() -> None:
    """A partner embedding the core install (no starlette/uvicorn) can still run connectors."""
    import subprocess
    import sys

    code = ("import sys, engram_sdk.connectors, engram_sdk._sync, engram_sdk._webhooks, engram_sdk._example; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'trustme')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
