"""The Kestrel sample records as each sandbox's native workspace (one source for all three)."""

from __future__ import annotations

import json

from engram_notion._workspace import build_index, title_of
from engram_sdk._records import Document, Edit, Thread
from examples.kestrel_demo.harvey_workspace import kestrel_edits as harvey_edits
from examples.kestrel_demo.harvey_workspace import kestrel_workspace as harvey_workspace
from examples.kestrel_demo.microsoft_workspace import kestrel_scope as microsoft_scope
from examples.kestrel_demo.microsoft_workspace import kestrel_workspace as microsoft_workspace
from examples.kestrel_demo.notion_workspace import kestrel_edits as notion_edits
from examples.kestrel_demo.notion_workspace import kestrel_scope_root, with_generated_pages
from examples.kestrel_demo.notion_workspace import kestrel_workspace as notion_workspace
from examples.kestrel_demo.records import load_records, text_blocks

RECORDS = load_records()


def _of(platform: str, kind: type) -> list:
    return [r for r in RECORDS if r.platform == platform and isinstance(r, kind)]


def test_text_blocks_split_bullets_and_join_wrapped_lines():
    assert text_blocks("Intro line\nwrapped.\n\n- Key: value\n- Other: x\n\nTail") == [
        ("paragraph", "Intro line wrapped."), ("bullet", "Key: value"), ("bullet", "Other: x"), ("paragraph", "Tail")]


def test_notion_workspace_holds_every_page_and_keeps_the_restricted_one_out_of_scope():
    ws = notion_workspace()
    index = build_index(json.loads(json.dumps(ws)))
    scope = kestrel_scope_root()

    def under_scope(page_id: str) -> bool:
        ent = index.get(page_id)
        while ent is not None:
            if ent.obj["id"] == scope:
                return True
            ent = index.get(ent.parent_id) if ent.parent_id else None
        return False

    titles = {title_of(p): p["id"] for p in index.pages()}
    for doc in _of("notion", Document):
        assert doc.title in titles
        assert under_scope(titles[doc.title]) is (not doc.restricted)
    thread = _of("notion", Thread)[0]
    assert len(ws["comments"]) == 2 and len({c["discussion_id"] for c in ws["comments"]}) == 1
    assert "Hotfix approver: Zuzana Pelletier" in json.dumps(ws["comments"])
    assert thread.parent_id == "np-release"


def test_notion_edits_target_existing_blocks():
    ws = notion_workspace()
    index = build_index(json.loads(json.dumps(ws)))
    edits = notion_edits()
    assert {(e.field, e.after) for e in edits} == {(e.field, e.after) for e in _of("notion", Edit)}
    for e in edits:
        block = index.get(e.body["id"], "block")
        assert block is not None and e.before in block.obj[block.obj["type"]]["rich_text"][0]["plain_text"]
        assert f"{e.field}: {e.after}" in e.body["text"]


def test_notion_generated_pages_make_the_workspace_bigger():
    ws = with_generated_pages(notion_workspace(), 50)
    assert sum(1 for p in build_index(ws).pages() if title_of(p).startswith("Checkout service")) == 50


def test_microsoft_workspace_has_notes_site_pages_and_channel_threads():
    ws = microsoft_workspace()
    notes = [p for nb in ws["notebooks"] for s in nb["sections"] for p in s["pages"]]
    docs = _of("microsoft", Document)
    assert len(notes) == sum(d.doc_type == "note" for d in docs)
    assert len([p for s in ws["sites"] for p in s["pages"]]) == sum(d.doc_type == "site_page" for d in docs)
    messages = [m for t in ws["teams"] for c in t["channels"] for m in c["messages"]]
    assert len(messages) == len(_of("microsoft", Thread))
    assert all(m["replies"] and m["replies"][0]["replyToId"] == m["id"] for m in messages)
    assert "<li>Secrets vault: Keymoss</li>" in json.dumps(notes)
    assert microsoft_scope().count("team:") == 1 and "notebook:" in microsoft_scope()


def test_harvey_workspace_has_verified_cells_a_query_and_the_cell_edit():
    ws = harvey_workspace()
    (project,) = ws["projects"]
    rows = project["review_tables"][0]["rows"]
    assert len(rows) == len(project["files"]) == len([d for d in _of("harvey", Document) if d.doc_type == "row"])
    cells = [c for r in rows for c in r["response"]["cells"]]
    assert all(c["is_verified"] for c in cells) and {"Notice period", "Warranty"} <= {c["column_name"] for c in cells}
    assert len(ws["history"]) == 1 and "clause 14.2" in ws["history"][0]["response"]
    assert ws["rate_limits"]["vault"] > 10  # demo-sized, not Harvey's 10/min
    (edit,) = harvey_edits()
    assert edit["column_name"] == "Notice period" and edit["summary"] == "120 days"
    assert any(r["file_id"] == edit["file_id"] for r in rows)


def test_harvey_rate_limits_setting_replaces_the_documented_budgets(tmp_path):
    from engram_harvey import HarveyConfig, HarveyConnector
    from engram_sdk._connector import ConnectionInfo, ConnectorContext, Scope
    from engram_sdk._secrets import ConnectionSecrets, FileSecretStore

    def limiter(**extra):
        config = HarveyConfig(token="t", base_url="http://127.0.0.1:9", **extra)
        info = ConnectionInfo(name="h", platform="harvey", team_id="t", scope=Scope.parse("all"))
        ctx = ConnectorContext(info, ConnectionSecrets(FileSecretStore(tmp_path / "s.json"), "h"))
        connector = HarveyConnector(config, ctx)
        try:
            return connector.client.limiter
        finally:
            connector.close()

    assert limiter().rate_for("vault").requests == 10  # Harvey's documented 10/min
    assert limiter(rate_limits={"vault": 600}).rate_for("vault").requests == 600
    assert limiter(rate_limits={"vault": 600}).rate_for("history").requests == 60  # others keep theirs
