from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engram_sdk import LIMITS, Document, Edit, Message, Person, RecordError, Thread, Tombstone, parse_record, split_record
from engram_sdk._records import Limits
from tests.factories import T0, make_doc


def _doc_dict(**over):
    d = make_doc(1).model_dump(mode="json")
    d.update(over)
    return d


def test_missing_entity_id_is_rejected_naming_the_field():
    d = _doc_dict()
    del d["entity_id"]
    with pytest.raises(RecordError, match="entity_id"):
        parse_record(d)


def test_empty_entity_id_is_rejected():
    with pytest.raises(RecordError, match="entity_id"):
        parse_record(_doc_dict(entity_id=""))


def test_naive_datetime_is_rejected_naming_the_field():
    with pytest.raises(RecordError, match="updated_at"):
        parse_record(_doc_dict(updated_at="2026-03-01T09:00:00"))


def test_malformed_field_type_is_rejected():
    with pytest.raises(RecordError, match="authors"):
        parse_record(_doc_dict(authors="ada"))


def test_unknown_field_is_rejected():
    with pytest.raises(RecordError, match="colour"):
        parse_record(_doc_dict(colour="red"))


def test_unknown_kind_is_rejected():
    with pytest.raises(RecordError, match="kind"):
        parse_record(_doc_dict(kind="spreadsheet"))


def test_round_trip_through_json_keeps_every_field():
    doc = make_doc(3, url="https://notion.so/p3", path=["Wiki", "Launch"], visible_to=["group-eng"], restricted=True)
    assert parse_record(doc.model_dump_json()) == doc


def test_a_thousand_block_page_fits_in_one_record():
    text = "\n".join(f"Block {i}: " + "lorem ipsum dolor sit amet " * 8 for i in range(1000))
    doc = make_doc(1, text=text)
    assert len(text) < LIMITS.max_text_chars
    assert split_record(doc) == [doc]


def test_an_oversize_document_is_split_without_losing_a_character():
    text = "".join(f"Paragraph {i}. " + "x" * (i % 97) + ("\n\n" if i % 5 == 0 else " ") for i in range(40_000))
    doc = make_doc(1, text=text)
    limits = Limits(max_text_chars=100_000)
    parts = split_record(doc, limits)
    assert len(parts) > 1
    assert "".join(p.text for p in parts) == text
    assert all(len(p.text) <= limits.max_text_chars for p in parts)
    assert [p.part.index for p in parts] == list(range(1, len(parts) + 1))
    assert len({p.subject for p in parts}) == len(parts)


def test_default_limits_split_a_multi_megabyte_document():
    text = "word " * 500_000  # 2.5 M characters
    parts = split_record(make_doc(1, text=text))
    assert len(parts) == 3 and "".join(p.text for p in parts) == text


def _thread(n_replies: int, root_text: str = "Who owns the renewal?") -> Thread:
    replies = [Message(id=f"r{i}", created_at=T0 + timedelta(seconds=i), text=f"reply {i}") for i in range(n_replies)]
    return Thread(platform="microsoft", workspace_id="tenant-1", entity_id="thread-1", updated_at=T0,
                  messages=[Message(id="root", created_at=T0, text=root_text, replies=replies)])


def test_a_thread_with_thousands_of_replies_fits_the_default_limits():
    th = _thread(3000)
    assert split_record(th) == [th]


def test_an_oversize_thread_is_split_keeping_every_reply_under_its_root():
    th = _thread(12_000)
    limits = Limits(max_thread_messages=1000)
    parts = split_record(th, limits)
    assert len(parts) == 13
    replies = [r.id for p in parts for m in p.messages for r in m.replies]
    assert replies == [f"r{i}" for i in range(12_000)]
    for p in parts:
        assert all(m.id == "root" for m in p.messages)
        assert sum(1 + len(m.replies) for m in p.messages) <= 1000
    assert parts[0].messages[0].text == "Who owns the renewal?"


def test_a_thread_over_the_character_limit_is_split_losslessly():
    th = _thread(50, root_text="q" * 30)
    th = th.model_copy(update={"messages": [th.messages[0].model_copy(update={
        "replies": [r.model_copy(update={"text": "y" * 900}) for r in th.messages[0].replies]})]})
    parts = split_record(th, Limits(max_thread_chars=10_000))
    assert len(parts) > 1
    assert sum(len(r.text) for p in parts for m in p.messages for r in m.replies) == 50 * 900


def test_an_oversize_edit_is_split_in_step():
    before, after = "a" * 250_000, "b" * 260_000
    edit = Edit(platform="harvey", workspace_id="org", entity_id="row-1", updated_at=T0, before=before, after=after)
    parts = split_record(edit, Limits(max_text_chars=100_000))
    assert len(parts) == 3
    assert "".join(p.after for p in parts) == after and "".join(p.before for p in parts) == before


def test_tombstone_and_edit_defaults():
    tomb = Tombstone(platform="notion", workspace_id="ws", entity_id="p", updated_at=T0, reason="trashed")
    assert split_record(tomb) == [tomb]
    edit = Edit(platform="harvey", workspace_id="org", entity_id="c", updated_at=T0, after="new", before=None,
                before_known=False)
    assert edit.kind == "edit" and not edit.before_known


def test_timezone_is_kept_not_normalised_away():
    d = parse_record(_doc_dict(updated_at="2026-03-01T10:00:00+01:00"))
    assert d.updated_at == datetime.fromisoformat("2026-03-01T09:00:00+00:00")


def test_thread_walk_reaches_replies_of_replies_in_reading_order():
    def msg(i: str, *replies: Message) -> Message:
        return Message(id=i, created_at=T0, text=f"text {i}", replies=list(replies))

    thread = Thread(platform="notion", workspace_id="ws-1", entity_id="d-1", updated_at=T0,
                    messages=[msg("a", msg("a1", msg("a1x")), msg("a2")), msg("b")])
    assert [(m.id, p.id if p else None) for m, p in thread.walk()] == [
        ("a", None), ("a1", "a"), ("a1x", "a1"), ("a2", "a"), ("b", None)]
    deep = msg("0")
    for i in range(1, 3000):  # a reply chain deeper than the recursion limit
        deep = msg(str(i), deep)
    assert sum(1 for _ in deep.walk()) == 3000


def test_edit_between_the_stored_version_and_the_new_one():
    ann, bob = Person(id="u-ann"), Person(id="u-bob")
    old, new = make_doc(1, text="before"), make_doc(1, text="after", authors=[ann, bob])
    edit = Edit.between(old, new)
    assert edit is not None and (edit.before, edit.after, edit.entity_id) == ("before", "after", new.entity_id)
    assert edit.author == bob and edit.updated_at == new.updated_at  # the last author, unless told
    assert Edit.between(old, new, author=ann).author == ann
    assert Edit.between(new, new) is None  # unchanged text
    assert Edit.between(None, new) is None  # a first sighting is a Document, not an Edit
