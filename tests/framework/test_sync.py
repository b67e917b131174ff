"""The sync runner with the example connector over loopback: batches with checkpoints, edits,
deletions, reconcile, scope, per-item failure isolation and revoked grants."""

from __future__ import annotations

import pytest

from engram_sdk import verify_event
from engram_sdk._exceptions import ConfigError, ConnectorError, KeyringError
from engram_sdk._sync import SyncRunner
from engram_sdk.connectors import (
    ConnectionInfo,
    ConnectionSecrets,
    ConnectorContext,
    FileSecretStore,
    Scope,
    Tombstone,
)
from engram_sdk.testing import Harness

from .conftest import example_config

DELETED = "ai.engram.entity.deleted"


def test_full_sync_signs_and_stores_every_note(harness) -> None:
    result = harness.sync("ex")
    assert result.ok and result.records == 12 and result.stored == 12 and result.batches >= 3
    trusted = harness.store.trusted_keys("acme")
    for env in harness.events():
        verify_event(env, trusted)  # real Ed25519 signatures by the active key
        assert env["teamid"] == "acme" and env["connectionid"] == "ex"
        assert env["source"] == "example://workspace/ws-example-1"
    assert harness.checkpoint("ex") == {"after": 12}
    conn = harness.connections.get("ex")
    assert conn.status == "ok" and conn.last_sync_at is not None and conn.last_counts["stored"] == 12


def test_checkpoint_is_written_with_each_page(harness) -> None:
    seen: list[tuple[int, dict | None]] = []
    runner = harness.runner(progress=lambda p: seen.append((p.stored, harness.checkpoint("ex"))))
    runner.run("ex")
    # page_size 5: the store moves in steps of 5 notes, each with its checkpoint
    assert [s for s, _ in seen][:3] == [5, 10, 12]
    assert [c for _, c in seen][:3] == [{"after": 5}, {"after": 10}, {"after": 12}]


def test_rerun_without_changes_stores_nothing(harness) -> None:
    harness.sync("ex")
    again = harness.sync("ex")
    assert again.ok and again.records == 0 and again.stored == 0
    full = harness.sync("ex", full=True)
    assert full.records == 12 and full.stored == 0 and full.duplicates == 12


def test_edit_emits_an_edit_before_the_new_document(harness, admin) -> None:
    harness.sync("ex")
    admin.op("edit_note", id="note-0001", text="The review moved to Friday.")
    result = harness.sync("ex")
    assert result.stored == 2
    new = harness.events()[-2:]
    assert [e["type"] for e in new] == ["ai.engram.edit.recorded", "ai.engram.document.upserted"]
    edit = new[0]["data"]
    assert edit["before"].startswith("Fact 1:") and edit["after"] == "The review moved to Friday."


def test_deletion_becomes_a_tombstone(harness, admin) -> None:
    harness.sync("ex")
    admin.op("delete_note", id="note-0002")
    harness.sync("ex")
    assert harness.latest()["note-0002"][0] == DELETED
    assert "note-0002" not in harness.alive()


def test_reconcile_catches_silent_deletions_once(harness, admin) -> None:
    harness.sync("ex")
    admin.op("delete_silently", id="note-0003")
    assert harness.sync("ex").stored == 0  # incremental sync cannot see it
    result = harness.sync("ex", reconcile=True)
    assert result.tombstones == 1 and harness.latest()["note-0003"][0] == DELETED
    tomb = harness.latest()["note-0003"][1]
    assert tomb["reason"] == "deleted" and tomb["workspace_id"] == "ws-example-1"
    assert harness.sync("ex", reconcile=True).tombstones == 0


def test_reconcile_with_a_connector_that_cannot_list(harness) -> None:
    from engram_sdk._example import ExampleConnector

    class NoList(ExampleConnector):
        list_entity_ids = __import__("engram_sdk").connectors.Connector.list_entity_ids

    with pytest.raises(ConfigError, match="does not support --reconcile"):
        harness.runner(connector_cls=NoList).run("ex", reconcile=True)


def test_scope_keeps_other_folders_out(tmp_path, server) -> None:
    h = Harness(tmp_path / "h")
    h.connect("example", "eng-only", scope="folder:eng", config=example_config(server))
    h.sync("eng-only")
    assert {e["data"]["parent_id"] for e in h.events()} == {"eng"}
    assert len(h.events()) == 6
    h.close()


def test_moved_out_of_scope_becomes_a_tombstone(tmp_path, server, admin) -> None:
    h = Harness(tmp_path / "h")
    h.connect("example", "eng-only", scope="folder:eng", config=example_config(server))
    h.sync("eng-only")
    admin.op("edit_note", id="note-0000", folder="sales")
    h.sync("eng-only")
    kind, data = h.latest()["note-0000"]
    assert kind == DELETED and data["reason"] == "out_of_scope"
    h.close()


def test_one_failing_item_does_not_stop_the_sync(harness, admin) -> None:
    admin.op("break_note", id="note-0004")
    result = harness.sync("ex")
    assert result.ok and result.records == 11 and [f.entity_id for f in result.failures] == ["note-0004"]
    assert "HTTP 500" in result.failures[0].reason
    assert harness.checkpoint("ex") == {"after": 12}
    assert [f["entity_id"] for f in harness.connections.failures("ex")] == ["note-0004"]


def test_failed_item_is_retried_on_the_next_run(harness, admin) -> None:
    admin.op("break_note", id="note-0004")
    harness.sync("ex")
    still = harness.sync("ex")  # still broken: reported again, attempts counted
    assert [f.entity_id for f in still.failures] == ["note-0004"]
    assert harness.connections.failures("ex")[0]["attempts"] == 2
    admin.op("fix_note", id="note-0004")
    fixed = harness.sync("ex")
    assert fixed.retried == 1 and fixed.stored == 1 and harness.connections.failures("ex") == []
    assert "note-0004" in harness.alive()


def test_revoked_grant_means_reconnect_needed_with_checkpoint_intact(harness, admin) -> None:
    harness.sync("ex")
    checkpoint = harness.checkpoint("ex")
    admin.op("edit_note", id="note-0001", text="changed")
    admin.revoke("tok-example-1")
    result = harness.sync("ex")
    assert not result.ok and result.status == "reconnect_needed"
    assert "engram connect example --name ex" in result.error
    assert harness.checkpoint("ex") == checkpoint
    conn = harness.connections.get("ex")
    assert conn.status == "reconnect_needed" and "rejected the token" in conn.last_error
    admin.restore()
    assert harness.sync("ex").ok and harness.connections.get("ex").status == "ok"


def test_platform_outage_sets_status_error(harness, admin) -> None:
    admin.fault(status=503, times=100, path="/api/changes")
    result = harness.sync("ex")
    assert not result.ok and result.status == "error" and "HTTP 503" in result.error
    assert harness.connections.get("ex").status == "error"
    assert harness.checkpoint("ex") is None


def test_sustained_throttling_on_the_shared_clock(harness, admin, clock) -> None:
    admin.set_budget(2, window=60)
    result = harness.sync("ex")
    assert result.ok and result.stored == 12
    assert admin.stats()["throttled"] >= 5
    assert clock.slept >= 5 * 59  # the client waited out the windows, in fake time


def test_the_signing_key_must_sign_for_the_team(tmp_path, server) -> None:
    h = Harness(tmp_path / "h", team="other")
    h.connect("example", "ex", scope="all", config=example_config(server))
    h.connections.update("ex", meta={})
    with h.store.engine.begin() as conn:  # the connection now belongs to a team the key cannot sign for
        conn.exec_driver_sql("UPDATE connections SET team_id = 'acme' WHERE name = 'ex'")
    with pytest.raises(KeyringError, match="does not sign for team 'acme'"):
        h.sync("ex")
    h.close()


def test_connection_without_account_is_refused(harness) -> None:
    with harness.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE connections SET source = NULL")
    with pytest.raises(ConfigError, match="connections test"):
        harness.sync("ex")


def test_bad_stored_checkpoint_asks_for_full(harness) -> None:
    harness.store.save_checkpoint("ex", {"after": "not a number"})
    result = harness.sync("ex")
    assert result.status == "error" and "--full" in result.error
    assert harness.sync("ex", full=True).ok


def test_batch_size_must_be_positive(harness) -> None:
    with pytest.raises(ValueError):
        SyncRunner(harness.store, harness.keyring, FileSecretStore(harness.home / "s.json"), batch_size=0)


def test_one_sync_per_connection_at_a_time(harness, admin) -> None:
    import subprocess
    import time

    admin.op("generate", count=100, folder="eng")
    admin.set_latency(0.02)
    proc = subprocess.Popen(harness.cli_args("sync", "--connection", "ex"), env=harness.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while harness.event_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ConnectorError, match="already running"):
            harness.sync("ex")
    finally:
        proc.kill()
        proc.wait()
    admin.set_latency(0)
    assert harness.sync("ex").ok  # the lock died with the process holding it


def test_previous_joins_the_parts_of_a_split_record(harness) -> None:
    from datetime import datetime, timezone

    from engram_sdk import LIMITS, Document, build_events
    from engram_sdk._connector import ConnectionInfo, ConnectorContext, Scope
    from engram_sdk._secrets import ConnectionSecrets
    from engram_sdk._sync import Signer

    conn = harness.connections.get("ex")
    text = ("A long paragraph about the launch review. " * 40 + "\n\n") * (LIMITS.max_text_chars // 1600 + 200)
    big = Document(platform="example", workspace_id="ws-example-1", entity_id="big", text=text,
                   updated_at=datetime(2026, 3, 1, tzinfo=timezone.utc))
    events = build_events(big, team_id="acme", connection_id="ex", source=conn.source)
    assert len(events) >= 2
    sign = Signer(harness.keyring, "acme")
    harness.store.append([sign(e) for e in events])
    ctx = ConnectorContext(ConnectionInfo("ex", "example", "acme", Scope(all=True), source=conn.source),
                           ConnectionSecrets(harness.secrets, "ex"), store=harness.store)
    prev = ctx.previous("big")
    assert prev is not None and prev.part is None and prev.text == text
    assert ctx.previous("bi") is None and ctx.previous("big#") is None


def _context(harness: Harness, name: str = "ex") -> ConnectorContext:
    conn = harness.connections.get(name)
    info = ConnectionInfo(conn.name, conn.platform, conn.team_id, Scope(all=True), source=conn.source)
    return ConnectorContext(info, ConnectionSecrets(harness.secrets, name), store=harness.store)


def test_a_tombstone_only_for_what_was_stored_alive(harness, admin) -> None:
    """The one deletion rule: nothing for an id never stored or already deleted; otherwise one
    tombstone, named after the last stored event, whichever path noticed the deletion."""
    harness.sync("ex")
    ctx = _context(harness)
    assert ctx.tombstone("note-never-seen") == []
    [tomb] = ctx.tombstone("note-0003", "out_of_scope")
    stored = ctx.previous("note-0003")
    assert tomb.reason == "out_of_scope" and tomb.updated_at == stored.updated_at
    assert (tomb.workspace_id, tomb.parent_id) == (stored.workspace_id, stored.parent_id)
    assert tomb.revision.startswith("deleted-after:")
    # what a normaliser built from the platform's answer keeps its fields and gets the same revision
    [kept] = ctx.tombstone(Tombstone(platform="example", workspace_id="ws-example-1", entity_id="note-0003",
                                     updated_at=stored.updated_at, reason="trashed"))
    assert kept.reason == "trashed" and kept.revision == tomb.revision
    assert ctx.tombstone(Tombstone(platform="example", workspace_id="ws-example-1", entity_id="note-never-seen",
                                   updated_at=stored.updated_at)) == []

    admin.op("delete_silently", id="note-0003")
    assert harness.sync("ex", reconcile=True).tombstones == 1
    assert harness.latest()["note-0003"][1]["revision"] == tomb.revision  # reconcile: the same rule
    assert ctx.tombstone("note-0003") == []  # deleted already


def test_edit_from_the_stored_version(harness, admin) -> None:
    harness.sync("ex")
    ctx = _context(harness)
    stored = ctx.previous("note-0001")
    assert ctx.edit(stored) is None
    edit = ctx.edit(stored.model_copy(update={"text": "changed"}))
    assert edit is not None and (edit.before, edit.after) == (stored.text, "changed")


def test_a_failure_gone_for_good_before_it_was_ever_stored_clears(harness, admin) -> None:
    admin.op("break_note", id="note-0004")
    assert [f.entity_id for f in harness.sync("ex").failures] == ["note-0004"]
    admin.op("delete_note", id="note-0004")
    admin.op("fix_note", id="note-0004")
    result = harness.sync("ex")  # the retry finds it gone: nothing to delete, nothing left to retry
    assert result.ok and result.retried == 1 and harness.connections.failures("ex") == []
    assert "note-0004" not in harness.latest()
