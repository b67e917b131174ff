"""The normalizer on the recorded fixtures: block trees, mentions, properties, comments, edits."""

from __future__ import annotations

import copy

from engram_notion._blocks import render_blocks
from engram_notion._normalize import comments_to_threads, page_to_document, tombstone
from engram_sdk import Edit
from engram_notion._text import property_to_text, rich_text

from notion_data import load

WS = "ws-test"

# The recorded recursive fetch of one content-rich page: block id -> its children's fixture.
CHILDREN = {
    "38a9ce7b-60a4-814e-8ca0-ec6d540a617e": "uno_blocks_children_table_rows.json",
    "38a9ce7b-60a4-81d9-88c5-f89be838ca0b": "uno_blocks_children_column_list.json",
    "38a9ce7b-60a4-8128-98da-d232525ecb5b": "uno_blocks_children_column_1.json",
    "38a9ce7b-60a4-815d-8bd9-e4b1e2435f4a": "uno_blocks_children_column_2.json",
    "38a9ce7b-60a4-8105-88ba-c2500a9ca30e": "uno_blocks_children_synced_block_original.json",
    # the synced copy's content is read from its original block (8197...)
    "38a9ce7b-60a4-81d8-ac97-df3798e81f4b": "uno_blocks_children_synced_block_source.json",
}


def _tree(blocks):
    out = []
    for b in blocks:
        b = dict(b)
        if b["id"] in CHILDREN:
            b["children"] = _tree(load(CHILDREN[b["id"]])["results"])
        out.append(b)
    return out


def test_recorded_page_tree_renders_every_block_type():
    text = render_blocks(_tree(load("uno_blocks_children_all_types.json")["results"]))
    for expected in [
        "# Headline 1", "## Headline 2", "### Headline 3", "---",
        "- Item 1", "- Item 2\n  with a new line",
        "- [ ] ToDo1", "- [x] Checked ToDo3",
        "1. First item", "2. Second item\n   with a new line", "3. Third item",
        "> This is a quote\n> with a new line",
        "💡 Callout!",
        "| Cell 1, 1 | Cell 1, 2 |\n| Cell 2, 1 | Cell 2, 2 |\n| Cell 3, 1 | Cell 3, 2 |",
        "$$|x|=\\begin{cases}",
        "```python\n# Python Code\nimport ultimate_notion\n```",
        "[embed: Caption] <https://picsum.photos/300/300>",
        "[file] logo_with_text.svg <https://ultimate-notion.com/latest/assets/images/logo_with_text.svg>",
        "Column 1\nColumn\n",
        "[page: Markdown SubPage Test]",
        "This is the original Paragraph on Page",
        "This is the original Paragraph on SubPage",
        "[unsupported block: button]", "[unsupported block: ai_block]",
    ]:
        assert expected in text, expected


def test_notion_hosted_file_url_loses_its_expiring_signature():
    text = render_blocks(load("uno_blocks_children_all_types.json")["results"])
    image = next(line for line in text.splitlines() if line.startswith("[image]"))
    assert "prod-files-secure" in image and "X-Amz" not in image and "?" not in image


def test_child_page_is_a_reference_not_inlined():
    block = {"type": "child_page", "child_page": {"title": "Sub"}, "children": [
        {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "plain_text": "inside sub"}]}}]}
    assert render_blocks([block]) == "[page: Sub]"


def test_unresolved_synced_copy_is_marked_not_dropped():
    block = {"type": "synced_block", "synced_block": {"synced_from": {"type": "block_id", "block_id": "orig-1"}}}
    assert render_blocks([block]) == "[synced block from orig-1: content not available]"


def test_mentions_of_user_page_database_and_date_keep_their_text():
    text = render_blocks(load("uno_rich_text_mentions.json")["results"])
    assert text == "@Example Person : Markdown Text Test : All Properties DB : 2022-01-01T00:00:00.000+00:00"


def test_inline_equation_and_date_mention_fixtures():
    assert "$" in render_blocks([load("block_paragraph_equation.json")])
    date = load("block_paragraph_mention.json")
    assert render_blocks([date]) == date["paragraph"]["rich_text"][0]["plain_text"]


def test_link_target_is_kept_next_to_its_text():
    items = [{"type": "text", "text": {"content": "docs", "link": {"url": "https://example.com/d"}},
              "plain_text": "docs", "href": "https://example.com/d"}]
    assert rich_text(items) == "docs (https://example.com/d)"


def test_unknown_block_type_becomes_a_typed_placeholder_with_its_text():
    blocks = [
        {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "plain_text": "before"}]}},
        {"type": "hologram", "hologram": {"rich_text": [{"type": "text", "plain_text": "beam me"}]}},
        {"type": "warp_field", "warp_field": {}},
        {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "plain_text": "after"}]}},
    ]
    assert render_blocks(blocks) == "before\n[hologram block] beam me\n[warp_field block]\nafter"


def test_bookmark_and_table_with_header():
    blocks = [
        {"type": "bookmark", "bookmark": {"url": "https://e.com", "caption": [{"type": "text", "plain_text": "E"}]}},
        {"type": "table", "table": {"table_width": 2, "has_column_header": True}, "children": [
            {"type": "table_row", "table_row": {"cells": [[{"type": "text", "plain_text": "h1"}],
                                                          [{"type": "text", "plain_text": "h2"}]]}},
            {"type": "table_row", "table_row": {"cells": [[{"type": "text", "plain_text": "a"}], []]}},
        ]},
    ]
    assert render_blocks(blocks) == "[bookmark: E] <https://e.com>\n| h1 | h2 |\n| --- | --- |\n| a |  |"


def test_deep_nesting_renders_without_recursion():
    leaf = {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "plain_text": "bottom"}]}}
    node = leaf
    for _ in range(5000):  # far beyond Python's recursion limit
        node = {"type": "toggle", "toggle": {"rich_text": []}, "children": [node]}
    text = render_blocks([node])
    assert text.rstrip().endswith("bottom")
    assert text.splitlines()[-1].startswith(" " * 2 * 5000)


def test_numbering_restarts_after_an_interruption():
    def item(t):
        return {"type": "numbered_list_item", "numbered_list_item": {"rich_text": [{"type": "text", "plain_text": t}]}}
    para = {"type": "paragraph", "paragraph": {"rich_text": []}}
    assert render_blocks([item("a"), item("b"), para, item("c")]) == "1. a\n2. b\n\n1. c"


def test_every_property_type_of_the_recorded_row_renders():
    page = load("uno_page_all_property_types.json")
    doc = page_to_document(page, workspace_id=WS)
    assert doc.doc_type == "row" and doc.title == "Title"
    assert doc.parent_id == "458a194e-6908-4035-b222-946d546e5610"
    expected = {
        "Select": "Option1", "Phone number": "+1 234 567 890", "Multi-select": "Option1",
        "Email": "email@provider.com", "Number": "42", "Text": "Text", "ID": "ALLCOLS619-3",
        "Date": "2021-01-01", "Files": "My File <https://www.google.de/robots.txt>", "Rollup": "2",
        "People": "Example Person", "URL": "https://ultimate-notion.com/", "Checkbox": "Yes", "Formula": "84",
        "Created by": "Ultimate Notion Tests", "Created time": "2026-06-27T17:11:00.000Z",
    }
    for name, value in expected.items():
        assert doc.properties[name] == value, name
        assert f"{name}: {value}" in doc.text
    assert doc.properties["Relation"].count(",") == 1


def test_query_with_many_property_types_renders_status_formula_button_and_place():
    rows = load("uno_data_source_query_many_prop_types.json")["results"]
    seen: dict[str, set[str]] = {}
    for row in rows:
        for prop in row["properties"].values():
            seen.setdefault(prop["type"], set()).add(property_to_text(prop))
    assert {"status", "formula", "button", "place", "unique_id", "rollup"} <= set(seen)
    assert seen["button"] == {""} and "" in seen["place"]
    assert "Blocked" in seen["status"] or seen["status"]


def test_boolean_formula_renders_yes_no():
    rows = load("uno_search_pages.json")["results"]
    values = {property_to_text(p) for r in rows for p in r["properties"].values()
              if p["type"] == "formula" and p["formula"]["type"] == "boolean"}
    assert values == {"Yes", "No"}


def test_property_value_types_not_in_fixtures():
    assert property_to_text({"type": "verification", "verification": {"state": "verified",
                             "verified_by": {"id": "u1", "name": "Ann"}, "date": {"start": "2026-01-01"}}}) \
        == "verified by Ann (2026-01-01)"
    assert property_to_text({"type": "date", "date": {"start": "2026-01-01", "end": "2026-01-03",
                             "time_zone": "Europe/Paris"}}) == "2026-01-01 → 2026-01-03 (Europe/Paris)"
    assert property_to_text({"type": "rollup", "rollup": {"type": "array", "array": [
        {"type": "title", "title": [{"type": "text", "plain_text": "A"}]},
        {"type": "number", "number": 2.0}]}}) == "A, 2"
    assert property_to_text({"type": "relation", "relation": [{"id": "p1"}], "has_more": True}) == "p1 …"
    assert property_to_text({"type": "teleport", "teleport": {"name": "Mars"}}) == "[teleport] Mars"


def test_people_named_from_the_users_list_when_the_page_omits_names():
    users = {u["id"]: u for u in load("uno_users_list.json")["results"]}
    prop = {"type": "people", "people": [{"object": "user", "id": "00000000-0000-4000-8000-0000000000fa"}]}
    assert property_to_text(prop, users) == "Example Person"


def test_plain_page_has_only_its_title_and_body():
    page = load("page_1.json")
    doc = page_to_document(page, load("blocks_children_1.json")["results"], workspace_id=WS, path=["Root"])
    assert doc.doc_type == "page" and doc.properties == {} and doc.path == ["Root"]
    assert doc.text.startswith(load("blocks_children_1.json")["results"][0]["paragraph"]["rich_text"][0]["plain_text"])


def test_comments_group_into_one_thread_per_discussion():
    comments = load("uno_comments_list_page.json")["results"]
    threads = comments_to_threads(comments, workspace_id=WS, title="Page")
    discussions = {c["discussion_id"] for c in comments}
    assert len(threads) == len(discussions)
    total = sum(1 + len(t.messages[0].replies) for t in threads)
    assert total == len(comments)
    t = threads[0]
    assert t.thread_type == "comments" and t.parent_id == comments[0]["parent"]["page_id"]
    assert t.messages[0].text == "Comment 1"
    assert t.messages[0].author and t.messages[0].author.name == "Ultimate Notion Tests"


def test_block_comments_attach_to_their_block():
    comments = load("uno_comments_list_block.json")["results"]
    threads = comments_to_threads(comments, workspace_id=WS)
    assert {t.parent_id for t in threads} == {c["parent"]["block_id"] for c in comments}


def test_edit_carries_before_and_after():
    page = load("page_1.json")
    old = page_to_document(page, [], workspace_id=WS)
    newer = copy.deepcopy(page)
    blocks = [{"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "plain_text": "new text"}]}}]
    doc = page_to_document(newer, blocks, workspace_id=WS)
    edit = Edit.between(old, doc)
    assert edit is not None and edit.before == "" and edit.after == "new text" and edit.entity_id == page["id"]
    assert Edit.between(doc, doc) is None
    assert Edit.between(None, doc) is None


def test_moved_page_names_its_new_parent():
    page = load("page_moved.json")
    assert page_to_document(page, workspace_id=WS).parent_id == "393abc1e-edcd-8165-8d21-cc32a3d05895"


def test_trashed_page_tombstone_keeps_parent_and_time():
    page = load("uno_page_trashed.json")
    t = tombstone(page, workspace_id=WS, reason="trashed")
    assert t.parent_id == page["parent"]["page_id"] and t.updated_at.year == 2026
