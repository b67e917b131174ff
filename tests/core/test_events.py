from __future__ import annotations

import json

import pytest
from cloudevents.core.formats.json import JSONFormat

from engram_sdk import Edit, EventError, build_events, parse_event
from engram_sdk._records import Limits
from tests.factories import T0, make_doc

SRC = "notion://workspace/ws-1"


def one(record, team="acme", conn="acme-notion", source=SRC):
    (ev,) = build_events(record, team_id=team, connection_id=conn, source=source)
    return ev


def test_envelope_has_exactly_the_contract_attributes():
    body = one(make_doc(1)).to_dict()
    assert set(body) == {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data",
                         "teamid", "connectionid"}
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"
    assert body["type"] == "ai.engram.document.upserted"
    assert body["subject"] == "page-1" and body["time"] == "2026-03-01T09:01:00Z"


def test_each_record_kind_has_its_event_type():
    edit = Edit(platform="notion", workspace_id="ws-1", entity_id="page-1", updated_at=T0, before="a", after="b")
    assert one(edit).type == "ai.engram.edit.recorded"


def test_envelope_is_a_valid_cloudevent_for_the_reference_sdk():
    ev = one(make_doc(1))
    ce = JSONFormat().read(None, ev.to_json().encode())  # validates required and extension attributes
    assert ce.get_id() == ev.id and ce.get_subject() == "page-1"
    assert ce.get_extension("teamid") == "acme" and ce.get_extension("connectionid") == "acme-notion"
    assert json.loads(JSONFormat().write(ce))["data"]["entity_id"] == "page-1"


def test_unchanged_resync_gives_the_same_id():
    assert one(make_doc(1)).id == one(make_doc(1)).id


def test_reconnecting_under_another_connection_keeps_the_id():
    assert one(make_doc(1), conn="acme-notion-2").id == one(make_doc(1)).id


def test_changed_content_gives_a_new_id():
    assert one(make_doc(1)).id != one(make_doc(1, text="something else")).id


def test_two_different_edits_never_share_an_id():
    a = Edit(platform="notion", workspace_id="ws-1", entity_id="p", updated_at=T0, before="x", after="y")
    b = a.model_copy(update={"after": "z"})
    c = a.model_copy(update={"before": "y", "after": "x"})
    assert len({one(a).id, one(b).id, one(c).id}) == 3


def test_platform_revision_is_the_id_input_when_present():
    a = make_doc(1, revision="etag-7")
    b = make_doc(1, revision="etag-7", title="retitled but same platform version")
    c = make_doc(1, revision="etag-8")
    assert one(a).id == one(b).id != one(c).id


def test_source_must_name_a_platform_account():
    with pytest.raises(EventError, match="source"):
        build_events(make_doc(1), team_id="acme", connection_id="c", source="acme-notion")


def test_oversize_record_becomes_several_events_with_distinct_ids():
    from engram_sdk import _records

    doc = make_doc(1, text="z " * (_records.LIMITS.max_text_chars))
    events = build_events(doc, team_id="acme", connection_id="c", source=SRC)
    assert len(events) == 2 and len({e.id for e in events}) == 2
    assert "".join(e.record.text for e in events) == doc.text
    assert Limits().max_text_chars == _records.LIMITS.max_text_chars


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda b: b.pop("source"), "source"),
        (lambda b: b.update(specversion="0.3"), "specversion"),
        (lambda b: b.update(time="2026-03-01T09:00:00"), "time"),
        (lambda b: b.update(id="not-a-hash"), "id"),
        (lambda b: b.update(type="ai.engram.thread.upserted"), "does not match"),
        (lambda b: b["data"].pop("entity_id"), "entity_id"),
        (lambda b: b.update(extra="x"), "extra"),
    ],
)
def test_malformed_envelope_names_what_is_wrong(mutate, field):
    body = one(make_doc(1)).to_dict()
    mutate(body)
    with pytest.raises(EventError, match=field):
        parse_event(body)


def test_parse_keeps_the_json_values_as_received():
    body = one(make_doc(1)).to_dict()
    body["time"] = "2026-03-01T09:01:00.000+00:00"  # another producer's spelling of the same instant
    assert parse_event(json.dumps(body)).to_dict()["time"] == "2026-03-01T09:01:00.000+00:00"
