"""Every message, page, site page, drive item and delta fixture normalises into valid records."""

from __future__ import annotations

import copy

import pytest
from msft_data import FIXTURES, OBSERVED, TENANT, load

from engram_microsoft import (
    Origin,
    channel_thread,
    drive_item_record,
    entity_for_resource,
    html_to_text,
    message_edits,
    onenote_page_document,
    site_page_document,
)
from engram_sdk._events import EVENT_TYPES
from engram_sdk._records import Document, Edit, Thread, Tombstone, parse_record

TEAM = "fbe2bf47-16c8-47cf-b4a5-4b9b187c508b"
CHANNEL = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"


def roundtrip(record):
    """Every record must survive the JSON round trip the event store does."""
    assert parse_record(record.model_dump(mode="json")) == record
    assert record.kind in EVENT_TYPES
    return record


# --- Teams ----------------------------------------------------------------------------------


def test_channel_messages_list_mentions_and_system_message_skipped(origin):
    page = load("teams_channel_messages_list.json")
    records = [channel_thread(m, origin) for m in page["value"]]
    assert records[2] is None  # messageType unknownFutureValue, body <systemEventMessage/>
    mention = roundtrip(records[0])
    assert isinstance(mention, Thread)
    assert mention.entity_id == f"teams/{TEAM}/channels/{CHANNEL}/messages/1616965872395"
    assert mention.parent_id == f"teams/{TEAM}/channels/{CHANNEL}"
    assert mention.messages[0].text == "Hello World @Jane Smith"
    assert mention.messages[0].author.name == "Robin Kline"
    assert mention.workspace_id == TENANT
    images_only = roundtrip(records[1])
    assert images_only.messages[0].text == ""  # two inline images without alt text


def test_expand_replies_thread_keeps_replies_in_order(origin):
    page = load("teams_channel_messages_expand_replies.json")
    thread = roundtrip(channel_thread(page["value"][0], origin))
    assert [r.text for r in thread.messages[0].replies] == ["Reply1", "Reply2", "Reply3"]
    assert thread.updated_at.isoformat() == "2021-03-29T03:49:13.153000+00:00"


def test_replies_list_fixture_joins_its_root(origin):
    replies = load("teams_channel_message_replies_list.json")["value"]
    root = load("teams_channel_messages_delta_incremental_deltalink.json")["value"][0]
    assert root["id"] == "1616989510408" == replies[0]["replyToId"]
    thread = roundtrip(channel_thread(root, origin, replies=replies))
    assert thread.messages[0].text == "Hello World 28th March 2021"
    assert [r.id for r in thread.messages[0].replies] == ["1616989747416", "1616989750004", "1616989753153"]


@pytest.mark.parametrize(
    "fixture", ["teams_channel_messages_delta_page1_nextlink.json", "teams_channel_messages_delta_incremental_deltalink.json"]
)
def test_delta_pages_normalise(fixture, origin):
    page = load(fixture)
    threads = [roundtrip(channel_thread(m, origin)) for m in page["value"]]
    assert all(isinstance(t, Thread) for t in threads)
    assert ("@odata.nextLink" in page) != ("@odata.deltaLink" in page)


def test_deleted_root_becomes_tombstone(origin):
    msg = copy.deepcopy(load("teams_channel_messages_delta_page1_nextlink.json")["value"][0])
    msg["deletedDateTime"] = "2021-04-01T10:00:00Z"
    msg["body"] = {"contentType": "html", "content": ""}
    tomb = roundtrip(channel_thread(msg, origin))
    assert isinstance(tomb, Tombstone)
    assert tomb.entity_id.endswith("/messages/1606515483514")
    assert tomb.updated_at.isoformat() == "2021-04-01T10:00:00+00:00"


def test_deleted_reply_left_out_of_thread(origin):
    root = copy.deepcopy(load("teams_channel_messages_expand_replies.json")["value"][0])
    root["replies"][0]["deletedDateTime"] = "2021-04-01T10:00:00Z"
    thread = channel_thread(root, origin)
    assert [r.text for r in thread.messages[0].replies] == ["Reply1", "Reply2"]


def test_reply_is_not_a_thread_root(origin):
    reply = load("teams_channel_message_replies_list.json")["value"][0]
    with pytest.raises(ValueError, match="reply"):
        channel_thread(reply, origin)


def test_edit_with_known_before(origin):
    root = copy.deepcopy(load("teams_channel_messages_expand_replies.json")["value"][0])
    reply = root["replies"][1]
    reply["body"]["content"] = "Reply2 (fixed)"
    reply["lastEditedDateTime"] = "2021-03-30T08:00:00Z"
    edits = message_edits(root, origin, previous={"1616989750004": "Reply2"})
    assert len(edits) == 1
    edit = roundtrip(edits[0])
    assert isinstance(edit, Edit)
    assert (edit.before, edit.after, edit.before_known) == ("Reply2", "Reply2 (fixed)", True)
    assert edit.entity_id.endswith("/messages/1616963377068/replies/1616989750004")
    assert edit.author.name == "Robin Kline"


def test_edit_first_sighting_has_unknown_before(origin):
    root = copy.deepcopy(load("teams_channel_messages_list.json")["value"][0])
    root["lastEditedDateTime"] = "2021-03-29T08:00:00Z"
    (edit,) = message_edits(root, origin, previous={})
    assert edit.before is None and edit.before_known is False
    assert edit.after == "Hello World @Jane Smith"


def test_edit_already_recorded_is_not_repeated(origin):
    root = copy.deepcopy(load("teams_channel_messages_list.json")["value"][0])
    root["lastEditedDateTime"] = "2021-03-29T08:00:00Z"
    assert message_edits(root, origin, previous={root["id"]: "Hello World @Jane Smith"}) == []


def test_encrypted_sample_plaintext_is_a_reply_of_its_thread(origin):
    reply = load("encrypted_content_real_sample_decrypted.json")
    ref = entity_for_resource(
        "teams('79852646-8963-4d32-95f1-e0c5237d37fa')/channels('19:etTE40ziboDEfQ1v0B96_nCVjGUsZ77LQa5KRb0cukQ1@thread.tacv2')"
        "/messages('1625067617497')/replies('1625126194597')"
    )
    from engram_microsoft._normalize import thread_entity_id

    assert thread_entity_id(reply) == ref.entity_id


def test_chat_message_resource_normalises(origin):
    msg = load("change_notification_chat_message_decrypted_resource.json")
    thread = roundtrip(channel_thread(msg, origin))
    assert thread.entity_id.startswith("chats/19:8ea0e38b")
    assert thread.messages[0].text == "test"


# --- OneNote ---------------------------------------------------------------------------------


def test_onenote_page_with_output_html(origin):
    page = load("onenote_pages_list.json")["value"][0]
    html = load("onenote_page_content_output.html")
    doc = roundtrip(onenote_page_document(page, origin, html=html))
    assert isinstance(doc, Document) and doc.doc_type == "note"
    assert doc.title == "title-value"
    assert doc.text.startswith("American History 101: Moon Landing\n\nFirst moon landing - July 20, 1969")
    assert "Neil Armstrong | Commander" in doc.text
    assert "[image: Apollo 11 commemorative stamp.]" in doc.text
    assert "Sample Study Notes" not in doc.text  # <head><title> is not body text
    assert doc.url == "href-value"


def test_onenote_list_item_alone_uses_inline_content(origin):
    page = load("onenote_pages_list.json")["value"][0]
    doc = roundtrip(onenote_page_document(page, origin))
    assert doc.text == "content-value"
    assert doc.entity_id == "onenote/pages/contentUrl-value"
    assert doc.updated_at.isoformat() == "2016-10-19T10:37:00+00:00"


def test_onenote_title_from_html_when_listing_has_none(origin):
    page = {"id": "1-abc!2", "lastModifiedDateTime": "2024-01-01T00:00:00Z", "parentSection": {"id": "s1", "displayName": "Sec"}}
    doc = onenote_page_document(page, origin, html=load("onenote_page_content_output.html"))
    assert doc.title == "Sample Study Notes"
    assert doc.parent_id == "onenote/sections/s1" and doc.path == ["Sec"]


# --- SharePoint site pages ------------------------------------------------------------------


def test_site_page_canvas_layout_text(origin):
    page = load("sharepoint_site_page_expand_canvaslayout.json")
    doc = roundtrip(site_page_document(page, origin))
    assert doc.entity_id == "sites/45bb2a3b-0a4e-46f4-8c68-749c3fea75d3/pages/f45354cb-d634-45df-8b88-2b4e96a1dc45"
    assert doc.text == "sample content\n\nsample content\n\nsample content"
    assert doc.title == "autotest Electronic Convertible"
    assert doc.authors[0].email == "rahmit@contoso.com"
    assert doc.properties["publishing_state"] == "draft"


def test_site_pages_list_items_normalise(origin):
    docs = [roundtrip(site_page_document(p, origin)) for p in load("sharepoint_site_pages_list.json")["value"]]
    assert docs[0].text.startswith("Placeat porro")  # listing without canvasLayout: the description
    assert docs[1].text == "generating ADP"  # titleArea.textAboveTitle
    assert docs[1].title == "Lesotho Account Metal Analyst du"


def test_site_page_standard_webpart_searchable_text(origin):
    page = copy.deepcopy(load("sharepoint_site_page_expand_canvaslayout.json"))
    page["canvasLayout"]["verticalSection"] = {
        "webparts": [
            {
                "@odata.type": "#microsoft.graph.standardWebPart",
                "data": {"title": "Hero", "serverProcessedContent": {"searchablePlainTexts": [{"key": "t", "value": "Quarterly goals"}]}},
            }
        ]
    }
    assert site_page_document(page, origin).text.endswith("Hero\nQuarterly goals")


# --- drive items -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", ["drive_root_delta_page1_nextlink.json", "drive_root_delta_last_page_deltalink.json", "drive_root_delta_token_latest.json"]
)
def test_drive_delta_pages_normalise(fixture, origin):
    page = load(fixture)
    records = [drive_item_record(i, origin, drive_id="me") for i in page["value"]]
    for item, rec in zip(page["value"], records):
        if "deleted" in item:
            assert isinstance(roundtrip(rec), Tombstone)
            assert rec.updated_at == OBSERVED  # deleted items carry no timestamp
        elif "folder" in item:
            assert rec is None
        else:
            doc = roundtrip(rec)
            assert doc.doc_type == "file" and doc.title == item["name"]
            assert doc.properties["content"] == "metadata_only"


def test_drive_file_with_extracted_text_and_path(origin):
    item = {
        "id": "01ABC",
        "name": "notes.md",
        "file": {"mimeType": "text/markdown"},
        "size": 12,
        "lastModifiedDateTime": "2024-02-01T09:00:00Z",
        "parentReference": {"driveId": "b!xyz", "id": "01PARENT", "path": "/drive/root:/Team%20Docs/Plans"},
        "lastModifiedBy": {"user": {"id": "u1", "displayName": "Ann"}},
    }
    doc = roundtrip(drive_item_record(item, origin, text="# Plan\nship it"))
    assert doc.entity_id == "drives/b!xyz/items/01ABC"
    assert doc.parent_id == "drives/b!xyz/items/01PARENT"
    assert doc.path == ["Team Docs", "Plans"]
    assert doc.text == "# Plan\nship it" and doc.properties["content"] == "extracted"


def test_drive_item_without_drive_id_is_a_caller_error(origin):
    with pytest.raises(ValueError, match="drive id"):
        drive_item_record({"id": "x", "file": {}}, origin)


# --- resources and html ----------------------------------------------------------------------


def test_notification_resources_map_to_entities():
    item = load("change_notification_channel_message_item_no_resource_data.json")
    ref = entity_for_resource(item["resource"])
    assert ref.kind == "channel_message"
    assert ref.entity_id == f"teams/{TEAM}/channels/{CHANNEL}/messages/1612293113399"
    assert entity_for_resource("/drives/b!x/items/01A").entity_id == "drives/b!x/items/01A"
    assert entity_for_resource("drives/b!x/root").kind == "drive"
    assert entity_for_resource("users/u@t/messages/abc").kind == "other"


def test_html_to_text_blocks_lists_links_entities():
    html = "<div><p>One&nbsp;&amp; two</p><ul><li>a</li><li>b</li></ul><p><a href='https://x.test/'>site</a></p><script>x()</script></div>"
    assert html_to_text(html) == "One & two\n\n- a\n- b\n\nsite (https://x.test/)"


def test_fixture_directory_is_present():
    assert (FIXTURES / "README.md").is_file()


def test_origin_path_used_for_threads():
    o = Origin(tenant_id=TENANT, observed_at=OBSERVED, path=("Contoso", "General"))
    thread = channel_thread(load("teams_channel_messages_list.json")["value"][0], o)
    assert thread.path == ["Contoso", "General"]
