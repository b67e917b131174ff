"""`engram connect / connections / sync / worker` as an operator runs them, and secrets kept out
of everything the operator or a log collector sees."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version

import pytest

from engram_sdk import Settings
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app

from .conftest import SECRET, TOKEN

WEBHOOK_SECRET = SECRET


def engram(capsys, *args: str) -> tuple[int, str, str]:
    code = run_app(app, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(engram_home, capsys):
    assert engram(capsys, "init")[0] == 0
    assert engram(capsys, "keys", "generate", "--team", "acme")[0] == 0
    return engram_home


@pytest.fixture
def connected(home, server, capsys, monkeypatch):
    monkeypatch.setenv("EXAMPLE_TOKEN", TOKEN)
    code, out, err = engram(capsys, "connect", "example", "--name", "ex", "--team", "acme", "--scope", "eng,sales",
                            "--base-url", server.url, "--token-env", "EXAMPLE_TOKEN", "--page-size", "5", "--retry-budget", "2",
                            "--webhook-secret", WEBHOOK_SECRET, "--json")
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_connect_builds_flags_from_the_config_model(home, capsys) -> None:
    code, out, _ = engram(capsys, "connect", "example", "--help")
    assert code == 0
    for flag in ("--base-url", "--token", "--token-env", "--webhook-secret-env", "--page-size", "--scope"):
        assert flag in out


def test_connect_lists_installed_platforms(home, capsys) -> None:
    code, out, _ = engram(capsys, "connect", "--help")
    assert code == 0 and "example" in out


def _third_party_package(root) -> None:
    """An installed third-party connector package, as pip would leave it: a module and a dist-info
    whose entry point joins the ``engram.connectors`` group (one broken one beside it)."""
    (root / "acme_wiki_connector").mkdir()
    (root / "acme_wiki_connector" / "__init__.py").write_text(
        "from engram_sdk._example import ExampleConnector\n\n\n"
        "class AcmeWikiConnector(ExampleConnector):\n"
        "    platform = 'acmewiki'\n"
        "    description = 'Acme Wiki pages'\n")
    info = root / "acme_wiki_connector-2.3.1.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: acme-wiki-connector\nVersion: 2.3.1\n")
    info.joinpath("entry_points.txt").write_text(
        "[engram.connectors]\nacmewiki = acme_wiki_connector:AcmeWikiConnector\n"
        "broken = acme_wiki_connector_missing:Nothing\n")
    info.joinpath("top_level.txt").write_text("acme_wiki_connector\n")


def test_connectors_list_shows_built_in_and_third_party_connectors(engram_home, tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _third_party_package(site)
    env = {k: v for k, v in os.environ.items() if k != "ENGRAM_CONNECTORS"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *(p for p in sys.path if p)])
    run = [sys.executable, "-c", "from engram_sdk._cli import main; main()", "connectors", "list"]
    listed = subprocess.run([*run, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {r["platform"]: r for r in json.loads(listed.stdout.strip().splitlines()[-1])["connectors"]}
    sdk = version("engram-sdk")
    for builtin in ("example", "notion", "microsoft", "harvey"):
        assert (rows[builtin]["package"], rows[builtin]["version"], rows[builtin]["builtin"]) == (
            "engram-sdk", sdk, True)
    wiki = rows["acmewiki"]
    assert (wiki["package"], wiki["version"], wiki["builtin"], wiki["loads"]) == ("acme-wiki-connector", "2.3.1",
                                                                                  False, True)
    assert wiki["target"] == "acme_wiki_connector:AcmeWikiConnector" and wiki["description"] == "Acme Wiki pages"
    assert rows["broken"]["loads"] is False and "cannot be imported" in rows["broken"]["problem"]
    table = subprocess.run(run, env={**env, "COLUMNS": "100"}, capture_output=True, text=True, timeout=120)
    line = next(x for x in table.stdout.splitlines() if "acmewiki" in x)
    assert "acme-wiki-connector" in line and "2.3.1" in line and "third-party" in line and "ok" in line


def test_connect_saves_a_validated_connection(connected) -> None:
    assert connected["name"] == "ex" and connected["status"] == "never_synced"
    assert connected["scope"] == "folder:eng,folder:sales" and connected["account"] == "Example Co"


def test_connect_with_a_bad_token_fails_in_one_line(home, server, capsys) -> None:
    code, out, err = engram(capsys, "connect", "example", "--name", "ex", "--team", "acme", "--scope", "all",
                            "--base-url", server.url, "--token", "wrong-token")
    assert code == 1 and err.startswith("error: ") and "rejected the token" in err
    assert "wrong-token" not in out + err
    code, out, _ = engram(capsys, "connections", "list", "--json")
    assert json.loads(out)["connections"] == []


def test_connect_with_an_unset_env_variable(home, server, capsys) -> None:
    code, _, err = engram(capsys, "connect", "example", "--name", "ex", "--team", "acme", "--scope", "all",
                          "--base-url", server.url, "--token-env", "NOT_SET_ANYWHERE")
    assert code == 1 and "NOT_SET_ANYWHERE is not set" in err


def test_new_connection_needs_team_and_scope(home, server, capsys) -> None:
    code, _, err = engram(capsys, "connect", "example", "--name", "ex", "--base-url", server.url, "--token", TOKEN)
    assert code == 1 and "--team and --scope" in err


def test_unknown_platform(home, capsys) -> None:
    code, _, _ = engram(capsys, "connect", "nope", "--name", "x")
    assert code != 0


def test_connections_list_and_show_mask_secrets(connected, capsys) -> None:
    code, out, _ = engram(capsys, "connections", "list", "--json")
    assert code == 0 and [c["name"] for c in json.loads(out)["connections"]] == ["ex"]
    code, out, _ = engram(capsys, "connections", "show", "ex", "--json")
    shown = json.loads(out)
    assert shown["secrets"] == {"token": "********", "webhook_secret": "********"}
    assert TOKEN not in out and WEBHOOK_SECRET not in out
    code, out, _ = engram(capsys, "connections", "show", "ex", "--containers", "--json")
    assert [c["id"] for c in json.loads(out)["containers"]] == ["eng", "sales"]
    code, out, _ = engram(capsys, "connections", "show", "ex")
    assert code == 0 and "********" in out and TOKEN not in out


def test_connections_test(connected, admin, capsys) -> None:
    code, out, _ = engram(capsys, "connections", "test", "ex")
    assert code == 0 and "ok" in out
    admin.revoke(TOKEN)
    code, _, err = engram(capsys, "connections", "test", "ex")
    assert code == 1 and "rejected" in err
    code, out, _ = engram(capsys, "connections", "list", "--json")
    assert json.loads(out)["connections"][0]["status"] == "reconnect_needed"
    admin.restore()
    assert engram(capsys, "connections", "test", "ex")[0] == 0
    code, out, _ = engram(capsys, "connections", "list", "--json")
    assert json.loads(out)["connections"][0]["status"] == "never_synced"


def test_connections_remove(connected, capsys, home) -> None:
    code, _, _ = engram(capsys, "connections", "remove", "ex", "--yes")
    assert code == 0
    code, _, err = engram(capsys, "connections", "show", "ex")
    assert code == 1 and "no connection named 'ex'" in err
    data = json.loads((home / "secrets" / "secrets.json").read_text())
    assert "ex" not in data["connections"]


def test_sync_reports_counts(connected, capsys) -> None:
    code, out, _ = engram(capsys, "sync", "--connection", "ex", "--json")
    assert code == 0
    [r] = json.loads(out)["results"]
    assert r["records"] == 12 and r["stored"] == 12 and r["status"] == "ok"
    code, out, _ = engram(capsys, "sync", "--all")
    assert code == 0 and "ex: 0 records, 0 new events" in out


def test_sync_full_and_reconcile(connected, admin, capsys) -> None:
    assert engram(capsys, "sync", "-c", "ex")[0] == 0
    admin.op("delete_silently", id="note-0001")
    code, out, _ = engram(capsys, "sync", "-c", "ex", "--reconcile", "--json")
    assert code == 0 and json.loads(out)["results"][0]["tombstones"] == 1
    code, out, _ = engram(capsys, "sync", "-c", "ex", "--full", "--json")
    assert json.loads(out)["results"][0]["duplicates"] == 11


def test_sync_needs_a_target(home, capsys) -> None:
    code, _, err = engram(capsys, "sync")
    assert code == 1 and "--connection" in err


def test_sync_revoked_exits_non_zero_with_one_line(connected, admin, capsys) -> None:
    admin.revoke(TOKEN)
    code, _, err = engram(capsys, "sync", "-c", "ex")
    assert code == 1
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "engram connect example --name ex" in err.replace("\n", " ")


def test_sync_reports_failed_items(connected, admin, capsys) -> None:
    admin.op("break_note", id="note-0000")
    code, out, _ = engram(capsys, "sync", "-c", "ex")
    assert code == 0 and "1 failed" in out and "failed note-0000" in out


def test_worker_once(connected, admin, server, capsys) -> None:
    from engram_sdk import EventStore
    from engram_sdk.connectors import WebhookQueue

    assert engram(capsys, "sync", "-c", "ex")[0] == 0
    admin.op("edit_note", id="note-0000", text="changed")
    with EventStore.open(Settings.load().database_url) as store:
        WebhookQueue(store).enqueue("ex", ["note-0000"])
    code, out, _ = engram(capsys, "worker", "--once", "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and report["done"] == 1 and report["stored"] == 2
    assert report["queue"] == {"pending": 0, "done": 1, "dead": 0}


def test_sync_prints_each_rate_limit_wait_as_it_happens(connected, admin, capsys) -> None:
    admin.fault(status=429, times=2, retry_after=0.2)
    code, out, err = engram(capsys, "sync", "-c", "ex")
    assert code == 0, err
    waits = [ln for ln in err.splitlines() if ln.startswith("retrying 127.0.0.1:")]
    assert len(waits) == 2 and " in 0.2 s (" in waits[0] and "HTTP 429 on GET /api/" in waits[0]
    assert waits[0].endswith(", as Retry-After asks")
    assert TOKEN not in err


def test_sync_stopped_by_a_long_retry_after_says_how_long_and_that_a_rerun_resumes(connected, admin, capsys) -> None:
    admin.fault(status=429, times=1, retry_after=50)  # the connection's retry budget is 2 s
    code, out, err = engram(capsys, "sync", "-c", "ex")
    assert code == 1
    assert "asked to wait 50 s (Retry-After)" in err and "2.0 s retry budget" in err
    assert "a rerun (`engram sync --connection ex`) resumes from the last checkpoint" in err
    code, out, err = engram(capsys, "sync", "-c", "ex", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["results"][0]["status"] == "ok"


def test_secrets_never_reach_logs_output_events_or_rows(connected, admin, server, capsys, caplog, home) -> None:
    caplog.set_level(logging.DEBUG)  # everything: ours, httpx, httpcore, sqlalchemy
    outputs = []
    admin.op("break_note", id="note-0001")
    for args in (("sync", "-c", "ex"), ("connections", "show", "ex", "--json"), ("connections", "list"),
                 ("connections", "test", "ex")):
        outputs.append(engram(capsys, *args))
    admin.revoke(TOKEN)
    outputs.append(engram(capsys, "sync", "-c", "ex"))
    outputs.append(engram(capsys, "connections", "test", "ex"))
    seen = caplog.text + "".join(o + e for _, o, e in outputs)
    assert "HTTP Request" in caplog.text or "retrying" in caplog.text or "item note-0001 failed" in caplog.text
    for secret in (TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")):
        assert secret not in seen
    db = sqlite3.connect(home / "engram.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert TOKEN not in dump and WEBHOOK_SECRET not in dump
    secrets_file = home / "secrets" / "secrets.json"
    assert TOKEN in secrets_file.read_text()  # where it does live: the 0600 file


def test_an_unreachable_platform_is_named_in_each_wait_and_in_the_error(home, capsys, monkeypatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("EXAMPLE_TOKEN", TOKEN)
    code, out, err = engram(capsys, "connect", "example", "--name", "ex", "--team", "acme", "--scope", "all",
                            "--base-url", f"http://127.0.0.1:{port}", "--token-env", "EXAMPLE_TOKEN",
                            "--retry-budget", "1")
    lines = err.splitlines()
    assert code == 1 and lines[0].startswith(f"retrying 127.0.0.1:{port} in ")
    assert lines[0].endswith("ConnectError on GET /api/me")
    error = next(ln for ln in lines if ln.startswith("error: "))
    assert f"cannot reach 127.0.0.1:{port} (ConnectError): nothing answered there: check that the host is up" in error
    assert TOKEN not in out + err
