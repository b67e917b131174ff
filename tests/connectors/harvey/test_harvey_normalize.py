"""The normalizer on Harvey's documented shapes: query history, Vault projects and files, review rows."""

from __future__ import annotations

from datetime import datetime, timezone

from harvey_data import cell, query_event, row, workspace

from engram_harvey._normalize import (
    CellMemory,
    chain_id,
    file_document,
    file_tombstone,
    parse_time,
    project_document,
    query_digest,
    query_thread,
    review_row_edits,
    v1_to_v2,
)
from engram_sdk._events import build_events
from engram_sdk._records import Edit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
ORG = "org-acme"


def test_v2_query_becomes_thread_with_answer_and_feedback_as_replies():
    event = query_event(
        "u-1", NOW, cm_id="cm-1", feedback_comments="Too long", feedback_sentiments="negative", query="What is X?"
    )
    thread = query_thread(event, org_id=ORG)
    assert thread is not None
    assert thread.entity_id == "u-1" and thread.thread_type == "query"
    assert thread.parent_id == "thread-u-1"
    assert thread.updated_at == NOW
    (root,) = thread.messages
    assert root.text == "What is X?" and root.author.email == "alice@firm.example"
    answer, feedback = root.replies
    assert answer.text == "Answer u-1." and answer.author.id == "harvey"
    assert feedback.text == "Feedback (negative): Too long"
    assert feedback.author.email == "alice@firm.example"
    assert thread.url == "https://app.harvey.ai/assistant/u-1"


def test_query_without_feedback_has_only_the_answer():
    thread = query_thread(query_event("u-2", NOW), org_id=ORG)
    assert [m.id for m in thread.messages[0].replies] == ["u-2:response"]


def test_feedback_given_as_lists_is_joined():
    event = query_event("u-3", NOW, feedback_comments=["a", "b"], feedback_sentiments=["positive"])
    reply = query_thread(event, org_id=ORG).messages[0].replies[-1]
    assert reply.text == "Feedback (positive): a\nb"


def test_usage_event_without_query_text_is_not_a_thread():
    assert query_thread(query_event("u-4", NOW, query=None, response=None), org_id=ORG) is None


def test_feedback_added_later_changes_the_digest_and_the_event_id():
    before = query_event("u-5", NOW)
    after = query_event("u-5", NOW, feedback_sentiments="positive")
    assert query_digest(before) != query_digest(after)
    ids = [
        build_events(query_thread(e, org_id=ORG), team_id="t", connection_id="c", source="harvey://org/x")[0].id
        for e in (before, after)
    ]
    assert ids[0] != ids[1]


def test_v1_item_falls_back_to_the_same_thread_shape():
    item = {
        "event_id": 17,
        "message_ID": "m-17",
        "Time": "2026-03-01 12:00:00",
        "User": "dan@firm.example",
        "Task": "Assist",
        "Client Matter #": "M-2024-0035",
        "Source": "Files",
        "Number of documents": 1,
        "Feedback Comments": "",
        "Feedback Sentiment": "",
        "Link": "https://app.harvey.ai/x",
        "Query": "Summarise the SPA",
        "Response": "The SPA ...",
        "Documents": ["SPA.pdf"],
    }
    event = v1_to_v2(item)
    assert event["unique_usage_id"] == "m-17" and event["client_matter_name"] == "M-2024-0035"
    thread = query_thread(event, org_id=ORG)
    assert thread.entity_id == "m-17" and thread.updated_at == NOW
    assert thread.path == ["M-2024-0035"]
    assert [m.text for m in thread.messages[0].replies] == ["The SPA ..."]


def test_parse_time_accepts_harvey_layouts():
    assert parse_time("2026-03-01 12:00:00") == NOW
    assert parse_time("2026-03-01T12:00:00Z") == NOW
    assert parse_time("Sun, 01 Mar 2026 12:00:00 GMT") == NOW
    assert parse_time(int(NOW.timestamp())) == NOW
    assert parse_time("") is None and parse_time("garbage") is None


def test_project_becomes_metadata_document():
    project = workspace(NOW)["projects"][0]
    doc = project_document(project, org_id=ORG, now=NOW)
    assert doc.entity_id == "p-1" and doc.doc_type == "vault_project" and doc.title == "Nightingale DD"
    assert doc.visible_to == ["alice@firm.example", "bob@firm.example"] and not doc.restricted
    assert "Nightingale DD" in doc.text


def test_private_mode_restricts_projects_files_and_queries_as_harvey_does():
    project = workspace(NOW)["projects"][0]
    assert project_document(project, org_id=ORG, now=NOW, private=True).restricted
    f = file_document(project["files"][0], project=project, org_id=ORG, now=NOW, private=True)
    assert f.restricted and f.visible_to == ["alice@firm.example", "bob@firm.example"]
    shared = dict(project, sharing={"user_shares": [], "workspace_shares": ["ws"]})
    assert not project_document(shared, org_id=ORG, now=NOW, private=True).restricted
    thread = query_thread(query_event("u-p", NOW), org_id=ORG, private=True)
    assert thread.restricted and thread.visible_to == ["alice@firm.example"]
    assert not query_thread(query_event("u-p", NOW), org_id=ORG).restricted


def test_file_becomes_metadata_document_in_its_project():
    project = workspace(NOW)["projects"][0]
    doc = file_document(project["files"][0], project=project, org_id=ORG, now=NOW)
    assert doc.entity_id == "f-1" and doc.parent_id == "p-1" and doc.path == ["Nightingale DD"]
    assert doc.mime_type == "application/pdf" and doc.properties["file_id"] == "f-1"
    assert "replaces_file_id" not in doc.properties


def test_replacement_file_upserts_its_chain_and_links_the_replaced_file():
    project = workspace(NOW)["projects"][0]
    v2 = dict(project["files"][0], id="f-1b", root_file_id="f-1")
    assert chain_id(v2) == "f-1"
    doc = file_document(v2, project=project, org_id=ORG, now=NOW)
    assert doc.entity_id == "f-1"
    assert doc.properties["file_id"] == "f-1b" and doc.properties["replaces_file_id"] == "f-1"
    v3 = dict(v2, id="f-1c")
    doc3 = file_document(v3, project=project, org_id=ORG, now=NOW, replaces="f-1b")
    assert doc3.entity_id == "f-1" and doc3.properties["replaces_file_id"] == "f-1b"


def test_deleted_file_becomes_tombstone_at_its_deletion_time():
    t = file_tombstone(
        {"file_id": "f-1", "deleted_at": "2026-02-01T00:00:00Z"}, entity_id="f-1", project_id="p-1", org_id=ORG, now=NOW
    )
    assert t.kind == "tombstone" and t.entity_id == "f-1" and t.updated_at.month == 2


def test_not_found_file_becomes_tombstone_now():
    t = file_tombstone({"file_id": "f-1", "error": "not_found"}, entity_id="f-1", project_id="p-1", org_id=ORG, now=NOW)
    assert t.updated_at == NOW


def test_live_file_is_no_tombstone():
    detail = {"file_id": "f-1", "file_name": "SPA.pdf", "deleted_at": None}
    assert file_tombstone(detail, entity_id="f-1", project_id="p-1", org_id=ORG, now=NOW) is None


TABLE = {"id": "rt-1", "title": "Key terms"}


def _edits(cells, memory, at=NOW):
    return review_row_edits(row("f-1", cells, at), table=TABLE, memory=memory, org_id=ORG, now=NOW)


def test_first_sighting_of_an_unedited_cell_is_no_edit():
    memory = CellMemory()
    assert _edits([cell("Law", "New York")], memory) == []
    assert memory.cells["rt-1/f-1/Law"] == ["New York", False, False]


def test_changed_cell_is_an_edit_from_the_last_seen_value():
    memory = CellMemory()
    _edits([cell("Law", "New York")], memory)
    (edit,) = _edits([cell("Law", "Delaware", is_edited=True)], memory)
    assert isinstance(edit, Edit)
    assert (edit.before, edit.after, edit.before_known) == ("New York", "Delaware", True)
    assert edit.field == "cell:Law" and edit.entity_id == "rt-1/f-1" and edit.title == "What is the Law?"
    assert edit.author.email == "bob@firm.example"


def test_first_sighting_already_edited_has_unknown_before():
    (edit,) = _edits([cell("Cap", "$10M", is_edited=True)], CellMemory())
    assert edit.before is None and edit.before_known is False and edit.after == "$10M"


def test_edit_to_empty_string_is_kept():
    memory = CellMemory()
    _edits([cell("Cap", "$10M")], memory)
    (edit,) = _edits([cell("Cap", "", is_edited=True)], memory)
    assert edit.before == "$10M" and edit.after == ""


def test_newly_verified_cell_is_an_edit_confirming_the_value():
    memory = CellMemory()
    _edits([cell("Law", "New York")], memory)
    at = "2026-03-01T13:00:00Z"
    (edit,) = _edits([cell("Law", "New York", is_verified=True, verified_user="eve@firm.example", verified_timestamp=at)], memory)
    assert edit.before == edit.after == "New York" and edit.before_known
    assert edit.author.email == "eve@firm.example" and edit.updated_at == parse_time(at)


def test_unchanged_cell_seen_again_is_no_edit():
    memory = CellMemory()
    _edits([cell("Cap", "$10M", is_edited=True)], memory)
    assert _edits([cell("Cap", "$10M", is_edited=True)], memory) == []


def test_edits_of_one_cell_get_distinct_event_ids():
    memory = CellMemory()
    _edits([cell("Law", "A")], memory)
    e1 = _edits([cell("Law", "B", is_edited=True)], memory)[0]
    e2 = _edits([cell("Law", "C", is_edited=True)], memory)[0]
    ids = {build_events(e, team_id="t", connection_id="c", source="harvey://org/x")[0].id for e in (e1, e2)}
    assert len(ids) == 2
