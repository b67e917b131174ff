"""The Harvey connector through the real sync runner, against the sandbox over loopback."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from harvey_data import SECRET_QUERY

from engram_harvey import HarveyCheckpoint
from engram_sdk._connections import Connections

DAY = 86_400


def _threads(env):
    return {r.entity_id: r for r in env.by_kind("thread")}


def test_connect_names_the_org_and_probes_every_stream(harvey):
    conn = harvey.connect()
    assert conn.source == "harvey://org/org-acme" and conn.account_name == "Acme LLP"
    assert conn.meta["streams"] == {"history": "ok", "vault": "ok", "audit": "ok", "client_matters": "ok"}
    assert conn.meta["service_user"] == "svc@firm.example"


def test_check_lists_the_assumptions_it_works_under(harvey):
    harvey.connect()
    connector = harvey.connector()
    try:
        account = connector.check()
    finally:
        connector.close()
    assert "file_download" in account.details["assumptions"] and "webhooks" in account.details["assumptions"]


def test_connect_reports_the_one_forbidden_stream(harvey, caplog):
    conn = harvey.connect(token="tok-no-audit")
    assert conn.meta["streams"]["audit"] == "forbidden"
    assert {k for k, v in conn.meta["streams"].items() if v == "ok"} == {"history", "vault", "client_matters"}
    assert "may not read the audit stream" in caplog.text


def test_connect_with_a_bad_token_fails_and_saves_nothing(harvey):
    from engram_sdk._exceptions import AuthError

    with pytest.raises(AuthError):
        harvey.connect(token="nope")
    assert Connections(harvey.store).find("acme-harvey") is None


def test_full_sync_turns_history_vault_and_review_tables_into_records(harvey):
    harvey.connect()
    result = harvey.sync()
    assert result.ok, result.error
    threads = _threads(harvey)
    assert set(threads) == {"q-secret", "q-vault", "q-other", "q-old"}
    root = threads["q-secret"].messages[0]
    assert root.text == SECRET_QUERY and [m.id for m in root.replies] == ["q-secret:response", "q-secret:feedback"]
    docs = {(d.doc_type, d.entity_id) for d in harvey.by_kind("document")}
    assert docs == {("vault_project", "p-1"), ("vault_project", "p-2"), ("file", "f-1"), ("file", "f-2"),
                    ("file", "f-9")}
    (edit,) = harvey.by_kind("edit")
    assert (edit.field, edit.after, edit.before, edit.before_known) == ("cell:Cap", "$10M", None, False)
    assert all(r.platform == "harvey" and r.workspace_id == "org-acme" for r in harvey.records())


def test_audit_logs_are_kept_for_the_operator_and_never_become_records(harvey):
    harvey.connect()
    harvey.sync()
    lines = (harvey.tmp / "audit" / "acme-harvey.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"][-1] for line in lines] == ["1", "2", "3", "4", "5"]
    stored = json.dumps([e.envelope for e in harvey.store.iter_events("team-a")])
    assert "00000000-0000-0000-0000-000000000001" not in stored and "auth:login" not in stored
    harvey.admin.op("add_audit_log", id="a-6")
    harvey.sync()
    lines = (harvey.tmp / "audit" / "acme-harvey.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["id"] == "a-6"


@pytest.mark.parametrize(
    ("scope", "threads", "docs"),
    [
        ("matter:cm-1", {"q-secret", "q-old"}, set()),
        ("matter:M-2024-0035", {"q-secret", "q-old"}, set()),
        ("project:p-1", {"q-vault"}, {"p-1", "f-1", "f-2"}),
        ("user:carol@firm.example", {"q-other"}, set()),
    ],
)
def test_scope_limits_the_org_wide_history_to_the_teams_work(harvey, scope, threads, docs):
    harvey.connect(scope=scope)
    assert harvey.sync().ok
    assert set(_threads(harvey)) == threads
    assert {d.entity_id for d in harvey.by_kind("document")} == docs


def test_a_second_sync_with_nothing_new_stores_nothing(harvey):
    harvey.connect()
    first = harvey.sync()
    second = harvey.sync()
    assert first.stored > 0 and second.ok and second.stored == 0
    assert second.conflicts == 0


def test_incremental_sync_picks_up_new_queries_and_late_feedback(harvey):
    harvey.connect()
    harvey.sync()
    harvey.admin.op("add_query", unique_usage_id="q-new", user="alice@firm.example", cm_id="cm-1",
                    query="New question?", response="New answer.")
    harvey.admin.op("add_feedback", unique_usage_id="q-old", comments="Wrong clause", sentiment="negative")
    result = harvey.sync()
    assert result.ok
    threads = harvey.by_kind("thread")
    assert [t.entity_id for t in threads].count("q-new") == 1
    # q-old is 20 days back, outside the one-day overlap: its feedback arrives only on a full sync
    full = harvey.sync(full=True)
    assert full.ok
    old = [t for t in harvey.by_kind("thread") if t.entity_id == "q-old"]
    assert len(old) == 2 and old[-1].messages[0].replies[-1].text == "Feedback (negative): Wrong clause"


def test_feedback_within_the_overlap_is_seen_by_an_incremental_sync(harvey):
    harvey.connect()
    harvey.sync()
    harvey.admin.op("add_query", unique_usage_id="q-recent", query="Recent?", response="Yes.")
    harvey.sync()
    harvey.admin.op("add_feedback", unique_usage_id="q-recent", comments="Great", sentiment="positive")
    harvey.sync()
    versions = [t for t in harvey.by_kind("thread") if t.entity_id == "q-recent"]
    assert len(versions) == 2 and versions[-1].messages[0].replies[-1].text == "Feedback (positive): Great"


def test_a_query_on_the_edge_of_two_overlapping_windows_is_stored_once(harvey):
    harvey.connect()
    harvey.sync()
    cp = HarveyCheckpoint.model_validate(harvey.store.checkpoint("acme-harvey"))
    edge = cp.history_until  # the next sync's windows are [edge - 1 day, edge] and [edge, now]
    stamp = datetime.fromtimestamp(edge, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    harvey.admin.op("add_query", unique_usage_id="q-edge", utc_time=stamp, query="Edge?", response="Both.")
    time.sleep(1.1)  # so the second window is not empty
    harvey.admin.reset_stats()
    assert harvey.sync().ok
    assert harvey.admin.stats()["by_path"]["/api/v2/history/query"] == 2
    assert [t.entity_id for t in harvey.by_kind("thread")].count("q-edge") == 1


def test_review_table_edits_carry_the_last_seen_value(harvey):
    harvey.connect()
    harvey.sync()
    harvey.admin.op("edit_cell", review_table_id="rt-1", file_id="f-1", column_name="Governing law",
                    summary="Delaware")
    harvey.admin.op("verify_cell", review_table_id="rt-1", file_id="f-1", column_name="Cap", user="eve@firm.example")
    assert harvey.sync().ok
    edits = {e.field: e for e in harvey.by_kind("edit")}
    law = edits["cell:Governing law"]
    assert (law.before, law.after, law.before_known) == ("New York", "Delaware", True)
    cap = [e for e in harvey.by_kind("edit") if e.field == "cell:Cap"]
    assert len(cap) == 2 and cap[-1].author.email == "eve@firm.example" and cap[-1].before == "$10M"


def test_replaced_file_upserts_its_chain_without_a_tombstone(harvey):
    harvey.connect()
    harvey.sync()
    harvey.admin.op("replace_file", file_id="f-1", new_id="f-1b")
    assert harvey.sync().ok
    f1 = [d for d in harvey.by_kind("document") if d.entity_id == "f-1"]
    assert f1[-1].properties["file_id"] == "f-1b" and f1[-1].properties["replaces_file_id"] == "f-1"
    assert not harvey.by_kind("tombstone")
    harvey.admin.op("replace_file", file_id="f-1b", new_id="f-1c")
    harvey.sync()
    versions = [d for d in harvey.by_kind("document") if d.entity_id == "f-1"]
    assert versions[-1].properties["file_id"] == "f-1c" and versions[-1].properties["replaces_file_id"] == "f-1b"
    assert not harvey.by_kind("tombstone")
    assert harvey.sync().stored == 0  # a re-sync of the chain repeats the same record
    assert len([d for d in harvey.by_kind("document") if d.entity_id == "f-1"]) == len(versions)


def test_deleted_and_purged_files_and_deleted_projects_become_tombstones(harvey):
    harvey.connect()
    harvey.sync()
    harvey.admin.op("delete_file", file_id="f-2")
    harvey.admin.op("delete_project", project_id="p-2")
    assert harvey.sync().ok
    assert sorted(t.entity_id for t in harvey.by_kind("tombstone")) == ["f-2", "f-9", "p-2"]
    harvey.admin.op("delete_file", file_id="f-1", purge=True)  # get_files now says not_found
    harvey.sync()
    assert sorted(t.entity_id for t in harvey.by_kind("tombstone")) == ["f-1", "f-2", "f-9", "p-2"]
    harvey.sync()  # no second tombstone for anything
    assert len(harvey.by_kind("tombstone")) == 4


def test_a_forbidden_stream_does_not_fail_the_others(harvey, caplog):
    harvey.connect(token="tok-no-audit")
    result = harvey.sync()
    assert result.ok, result.error
    assert _threads(harvey) and harvey.by_kind("document")
    assert Connections(harvey.store).get("acme-harvey").meta["streams"]["audit"] == "forbidden"
    assert not (harvey.tmp / "audit" / "acme-harvey.jsonl").exists()
    assert "may not read the audit stream" in caplog.text


def test_forbidden_history_still_syncs_vault(harvey):
    harvey.connect()
    harvey.admin.op("set_permissions", token="tok-full",
                    permissions=["View workspace projects", "View audit logs", "View client matters"])
    result = harvey.sync()
    assert result.ok and not harvey.by_kind("thread") and harvey.by_kind("document")


def test_a_failing_stream_fails_the_sync_after_the_others_ran(harvey):
    harvey.connect()
    harvey.admin.fault(status=500, times=50, path="/api/v2/history")
    result = harvey.sync()
    assert not result.ok and result.status == "error" and "HTTP 500" in result.error
    assert harvey.by_kind("document")  # vault ran before, audit after
    assert (harvey.tmp / "audit" / "acme-harvey.jsonl").exists()


def test_revoked_token_asks_for_reconnect(harvey):
    harvey.connect()
    harvey.admin.revoke("tok-full")
    result = harvey.sync()
    assert result.status == "reconnect_needed" and "tok-full" not in result.error


def test_sync_waits_on_the_injected_clock_and_stays_under_harveys_limits(harvey):
    harvey.connect()
    harvey.clock.sleeps.clear()
    harvey.admin.reset_stats()
    assert harvey.sync().ok
    assert harvey.admin.op("throttled") == {}
    paths = harvey.admin.stats()["by_path"]
    vault = sum(n for p, n in paths.items() if "/vault/" in p)
    history = paths["/api/v2/history/query"]
    assert vault == 7 and history == 30  # projects, 2 x files, 2 x metadata, review table, row
    # Vault 10/min and History 60/min: requests spaced 6 s and 1 s apart, on the fake clock
    assert harvey.clock.slept >= (vault - 1) * 6.0 + (history - 1) * 1.0 - 1e-6


def test_a_429_from_harvey_waits_for_the_window_and_the_sync_completes(harvey):
    ws = harvey.admin.workspace()
    harvey.admin.put_workspace({**ws, "rate_limits": {"vault": 3}})  # stricter than the client's buckets
    harvey.connect()
    harvey.clock.sleeps.clear()
    result = harvey.sync()
    assert result.ok, result.error
    assert harvey.admin.op("throttled")["vault"] >= 1
    assert 60.0 in harvey.clock.sleeps


def test_history_falls_back_to_v1_where_v2_is_not_available(harvey):
    ws = harvey.admin.workspace()
    harvey.admin.put_workspace({**ws, "history_v2": False})
    harvey.connect(scope="matter:cm-1")
    assert harvey.sync().ok
    threads = _threads(harvey)
    assert set(threads) == {"q-secret", "q-old"}  # matched through v1's "Client Matter #" name
    assert threads["q-secret"].messages[0].text == SECRET_QUERY


def test_containers_name_projects_and_matters_for_the_scope(harvey):
    harvey.connect()
    connector = harvey.connector()
    try:
        found = {(c.kind, c.id, c.title) for c in connector.containers()}
    finally:
        connector.close()
    assert found == {("project", "p-1", "Nightingale DD"), ("project", "p-2", "Other matter"),
                     ("matter", "cm-1", "M-2024-0035"), ("matter", "cm-2", "M-2024-0099")}


def test_audit_file_is_private_to_the_operator(harvey):
    harvey.connect()
    harvey.sync()
    path = harvey.tmp / "audit" / "acme-harvey.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600


def test_narrowing_the_scope_tombstones_what_left_it(harvey):
    harvey.connect()
    harvey.sync()
    harvey.connect(scope="project:p-1")  # reconnect: same account, narrower scope
    assert harvey.sync().ok
    gone = {t.entity_id: t.reason for t in harvey.by_kind("tombstone")}
    assert gone == {"p-2": "out_of_scope", "f-9": "out_of_scope"}


def test_private_mode_marks_records_as_harvey_restricts_them(harvey):
    harvey.connect(private=True)
    assert harvey.sync().ok
    by_id = {r.entity_id: r for r in harvey.records()}
    assert by_id["q-secret"].restricted and by_id["q-secret"].visible_to == ["alice@firm.example"]
    assert by_id["p-1"].restricted and by_id["f-1"].restricted
    assert by_id["rt-1/f-1"].restricted and by_id["rt-1/f-1"].visible_to == ["alice@firm.example", "bob@firm.example"]


def test_by_default_the_scope_is_the_access_boundary(harvey):
    harvey.connect()
    assert harvey.sync().ok
    assert not any(r.restricted for r in harvey.records())
