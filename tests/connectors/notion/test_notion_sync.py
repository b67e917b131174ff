"""The connector end to end: sandbox -> notion-client -> connector -> sync runner -> signed events."""

from __future__ import annotations

import copy

from notion_data import BASE, TOKEN, deep_page, flat_workspace, iso, load, page, para, pid

from engram_sdk._connections import Connections

SUB = "00000000-0000-4000-8000-000000000005"
CHILDREN = {
    "38a9ce7b-60a4-814e-8ca0-ec6d540a617e": "uno_blocks_children_table_rows.json",
    "38a9ce7b-60a4-81d9-88c5-f89be838ca0b": "uno_blocks_children_column_list.json",
    "38a9ce7b-60a4-8128-98da-d232525ecb5b": "uno_blocks_children_column_1.json",
    "38a9ce7b-60a4-815d-8bd9-e4b1e2435f4a": "uno_blocks_children_column_2.json",
    "38a9ce7b-60a4-8105-88ba-c2500a9ca30e": "uno_blocks_children_synced_block_original.json",
}


def _recorded_tree(blocks):
    out = []
    for b in copy.deepcopy(blocks):
        if b["id"] in CHILDREN:
            b["children"] = _recorded_tree(load(CHILDREN[b["id"]])["results"])
        if b["type"] == "child_page":  # in the workspace file a child page is its page object
            original = load("uno_block_synced_block_source.json")
            original.pop("request_id")
            original["children"] = load("uno_blocks_children_synced_block_source.json")["results"]
            b = page(5, b["child_page"]["title"], [original], minutes_ago=600)
            b["id"] = SUB
        out.append(b)
    return out


def recorded_workspace():
    tree = _recorded_tree(load("uno_blocks_children_all_types.json")["results"])
    return {"users": load("uno_users_list.json")["results"][:1], "pages": [page(0, "Markdown Text Test", tree)]}


def test_full_sync_of_a_small_workspace(make_env):
    env = make_env(flat_workspace(3))
    account = env.connect()
    assert account.source.startswith("notion://workspace/")
    result = env.sync()
    assert result.ok, result.error
    docs = env.docs()
    assert {d.title for d in docs.values()} == {"Page 0", "Page 1", "Page 2"}
    assert "Body of Page 1: fact 1." in docs[pid(1)].text


def test_recorded_page_syncs_every_block_type_and_reads_synced_blocks_from_the_original(make_env):
    env = make_env(recorded_workspace())
    env.connect()
    assert env.sync().ok
    docs = env.docs()
    main, sub = docs[pid(0)], docs[SUB]
    for expected in ["# Headline 1", "- [x] Checked ToDo3", "2. Second item", "> This is a quote",
                     "💡 Callout!", "| Cell 2, 1 | Cell 2, 2 |", "```python", "Column 1",
                     "[page: Markdown SubPage Test]", "This is the original Paragraph on Page",
                     "This is the original Paragraph on SubPage", "[unsupported block: ai_block]"]:
        assert expected in main.text, expected
    # the child page is its own record, not inlined into its parent
    assert sub.parent_id == pid(0) and "original Paragraph on SubPage" in sub.text
    assert main.text.count("original Paragraph on SubPage") == 1


def test_thousand_block_page_nested_five_levels(make_env):
    env = make_env({"pages": [page(0, "Deep", deep_page(1000, 5))]})
    env.connect()
    env.admin.reset_stats()
    assert env.sync().ok
    text = env.docs()[pid(0)].text
    for n in range(1000):
        assert f"block {n} at depth" in text, n
    assert "block 999 at depth 5" in text
    # one children call per block that has children, plus the page itself; nothing else per block
    stats = env.admin.stats()["by_path"]
    children_calls = sum(v for k, v in stats.items() if k.endswith("/children"))
    # the page, then every block with children: 3 + 15 + 75 at depths 1-3, and the 107 depth-4
    # blocks that hold the 532 leaves
    assert children_calls == 1 + 3 + 15 + 75 + 107


def test_page_with_more_than_100_blocks_follows_the_cursor(make_env):
    env = make_env({"pages": [page(0, "Long", [para(f"line {i}") for i in range(250)])]})
    env.connect()
    assert env.sync().ok
    text = env.docs()[pid(0)].text
    assert text.splitlines() == [f"line {i}" for i in range(250)]


def test_250_pages_of_search_results(make_env):
    env = make_env(flat_workspace(250))
    env.connect()
    env.admin.reset_stats()
    result = env.sync()
    assert result.ok and len(env.docs()) == 250
    assert env.admin.stats()["by_path"]["/v1/search"] == 3 + 1  # 100 + 100 + 50, then the (empty) trash
    assert result.batches >= 3  # a checkpoint after each search batch


def test_unchanged_workspace_resync_stores_nothing_new(make_env):
    env = make_env(flat_workspace(20))
    env.connect()
    assert env.sync().stored > 0
    again = env.sync()
    assert again.ok and again.stored == 0


def test_incremental_sync_after_an_edit_yields_edit_and_new_document(make_env):
    env = make_env(flat_workspace(50))
    env.connect()
    assert env.sync().ok
    env.admin.op("set_time", time=iso(BASE))
    env.admin.op("edit_page", id=pid(7), text="The launch moved to Friday.")
    env.admin.reset_stats()
    result = env.sync()
    assert result.ok
    edits = env.by_kind("edit")
    assert len(edits) == 1 and edits[0].entity_id == pid(7)
    assert edits[0].before == "Body of Page 7: fact 7." and edits[0].after == "The launch moved to Friday."
    assert env.docs()[pid(7)].text == "The launch moved to Friday."
    # only the edited page was read again, plus the page whose last_edited_time is the previous
    # run's watermark minute (it could have been edited again within that minute)
    by_path = env.admin.stats()["by_path"]
    assert {k for k in by_path if k.endswith("/children")} == {f"/v1/blocks/{pid(7)}/children",
                                                               f"/v1/blocks/{pid(0)}/children"}


def test_same_minute_edit_after_a_sync_is_not_missed(make_env):
    env = make_env(flat_workspace(5))
    env.admin.op("set_time", time=iso(BASE))
    env.admin.op("edit_page", id=pid(2), text="first version")
    env.connect()
    assert env.sync().ok
    env.admin.op("edit_page", id=pid(2), text="second version")  # same minute: same last_edited_time
    assert env.sync().ok
    assert env.docs()[pid(2)].text == "second version"


def test_page_edited_during_a_sync_is_caught(make_env):
    edits = []

    def progress(p):
        if p.phase == "sync" and p.batches == 1 and not edits:
            edits.append(1)
            env.admin.op("set_time", time=iso(BASE))
            env.admin.op("edit_page", id=pid(3), text="edited while syncing (already synced)")
            env.admin.op("edit_page", id=pid(180), text="edited while syncing (not yet synced)")

    env = make_env(flat_workspace(250), progress=progress)
    env.connect()
    assert env.sync().ok and edits
    assert env.sync().ok
    docs = env.docs()
    assert docs[pid(3)].text == "edited while syncing (already synced)"
    assert docs[pid(180)].text == "edited while syncing (not yet synced)"
    assert len(docs) == 250


def test_moved_page_gets_its_new_parent(make_env):
    ws = flat_workspace(3)
    env = make_env(ws)
    env.connect()
    assert env.sync().ok
    env.admin.op("set_time", time=iso(BASE))
    env.admin.op("move_page", id=pid(2), parent_id=pid(0))
    assert env.sync().ok
    assert env.docs()[pid(2)].parent_id == pid(0)


def test_page_moved_out_of_scope_becomes_a_tombstone(make_env):
    ws = {"pages": [page(0, "Team root", [page(1, "Inside")]), page(2, "Elsewhere")]}
    env = make_env(ws)
    env.connect(scope=f"page:{pid(0)}")
    assert env.sync().ok
    assert set(env.docs()) == {pid(0), pid(1)}  # the page outside the scope is not synced
    env.admin.op("set_time", time=iso(BASE))
    env.admin.op("move_page", id=pid(1), parent_id=pid(2))
    assert env.sync().ok
    tombs = env.by_kind("tombstone")
    assert [(t.entity_id, t.reason) for t in tombs] == [(pid(1), "out_of_scope")]


def test_comments_become_threads_attached_to_their_page(make_env):
    env = make_env(flat_workspace(2))
    env.admin.op("add_comment", parent_id=pid(1), text="Is this still true?", at=iso(BASE))
    env.connect()
    assert env.sync().ok
    threads = env.by_kind("thread")
    assert len(threads) == 1 and threads[0].parent_id == pid(1)
    assert threads[0].messages[0].text == "Is this still true?"


def test_data_source_and_its_rows(make_env):
    row_props = {"Name": {"type": "title", "title": [{"text": {"content": "Acme deal"}}]},
                 "Stage": {"type": "select", "select": {"name": "Won"}},
                 "Amount": {"type": "number", "number": 1200}}
    ws = {"pages": [page(0, "Root")],
          "databases": [{"title": [{"text": {"content": "Deals"}}], "parent": {"type": "page_id", "page_id": pid(0)},
                         "data_sources": [{"id": pid(1, "d"), "title": [{"text": {"content": "Deals"}}],
                                           "properties": {"Name": {"type": "title", "title": {}},
                                                          "Stage": {"type": "select", "select": {}},
                                                          "Amount": {"type": "number", "number": {}}},
                                           "rows": [{"id": pid(2), "properties": row_props,
                                                     "last_edited_time": iso(BASE), "children": [para("notes")]}]}]}]}
    env = make_env(ws)
    env.connect()
    assert env.sync().ok
    docs = env.docs()
    row = docs[pid(2)]
    assert row.doc_type == "row" and row.parent_id == pid(1, "d")
    assert row.properties == {"Stage": "Won", "Amount": "1200"}
    assert row.text == "Stage: Won\nAmount: 1200\n\nnotes"
    assert docs[pid(1, "d")].doc_type == "data_source"


def test_one_failing_page_is_reported_and_the_rest_synced(make_env):
    env = make_env(flat_workspace(5))
    env.connect()
    env.admin.fault(status=500, times=100, path=f"/v1/blocks/{pid(2)}/children")
    result = env.sync()
    assert result.ok
    assert [f.entity_id for f in result.failures] == [pid(2)]
    assert set(env.docs()) == {pid(i) for i in (0, 1, 3, 4)}
    env.admin.clear_faults()
    retry = env.sync()  # the runner retries earlier failures through fetch
    assert retry.ok and retry.retried == 1 and pid(2) in env.docs()


def test_504_halves_page_size(make_env):
    env = make_env({"pages": [page(0, "Long", [para(f"line {i}") for i in range(120)])]})
    env.connect()
    env.admin.op("set_timeout", page_size_above=30)
    result = env.sync()
    assert result.ok, result.error
    assert env.docs()[pid(0)].text.count("line ") == 120


def test_429_storm_is_ridden_out_with_retry_after(make_env):
    env = make_env(flat_workspace(30))
    env.connect()
    env.admin.set_budget(5, window=10.0)  # far below what the sync needs
    env.admin.reset_stats()
    result = env.sync()
    assert result.ok, result.error
    assert len(env.docs()) == 30
    # it waited out the sandbox's 10 s windows as Retry-After told it, on the injected clock (the
    # 3 requests/s limiter alone never sleeps more than a fraction of a second at a time)
    retry_after_waits = [s for s in env.clock.sleeps if s > 1.0]
    assert len(retry_after_waits) >= 5 and env.clock.slept >= 60


def test_more_than_seven_consecutive_429s_do_not_fail_the_sync(make_env):
    env = make_env(flat_workspace(10))
    env.connect()
    env.admin.fault(status=429, times=25, retry_after=2)  # one request refused 25 times running
    result = env.sync()
    assert result.ok, result.error
    assert len(env.docs()) == 10
    assert env.clock.sleeps.count(2.0) >= 25  # each refusal waited out as Retry-After asked


def test_a_retry_after_beyond_the_budget_stops_the_sync_with_a_message_and_a_rerun_resumes(make_env):
    env = make_env(flat_workspace(30))
    env.connect()
    env.admin.set_budget(25, window=400.0)  # then "come back in about 400 s": past the 300 s budget
    first = env.sync()
    assert not first.ok and first.status == "error"
    assert "asked to wait 39" in first.error and "(Retry-After)" in first.error  # 400 s less what passed
    assert "300 s retry budget" in first.error and "resumes from the last checkpoint" in first.error
    kept = len(env.docs())
    assert 0 < kept < 30  # what was read before the stop is stored, not thrown away
    assert max(env.clock.sleeps, default=0) < 300  # it did not sleep on the long Retry-After
    env.admin.clear_budget()
    second = env.sync()
    assert second.ok, second.error
    assert len(env.docs()) == 30
    ids = [e.event_id for e in env.store.iter_events("team-a")]  # conftest's TEAM
    assert len(ids) == len(set(ids)) == 30  # one event per page: the rerun stored only what was missing


def test_client_side_limiter_keeps_to_three_requests_per_second(make_env):
    env = make_env(flat_workspace(30))
    env.connect()
    start = env.clock.monotonic()
    env.admin.reset_stats()
    assert env.sync().ok
    sent = env.requests()
    elapsed = env.clock.monotonic() - start
    assert sent / elapsed <= 3.0 + 3.0 / elapsed  # the average, plus the initial burst of 3


def test_synced_block_cycle_stops_and_the_page_still_syncs(make_env):
    a, b = pid(10, "c"), pid(11, "c")
    ws = {"pages": [
        page(0, "A", [{"id": a, "type": "synced_block", "synced_block": {"synced_from": None}, "children": [
            para("in A"), {"type": "synced_block", "synced_block": {"synced_from": {"type": "block_id", "block_id": b}}}]}]),
        page(1, "B", [{"id": b, "type": "synced_block", "synced_block": {"synced_from": None}, "children": [
            para("in B"), {"type": "synced_block", "synced_block": {"synced_from": {"type": "block_id", "block_id": a}}}]}]),
    ]}
    env = make_env(ws)
    env.connect()
    assert env.sync().ok
    text = env.docs()[pid(0)].text
    assert text.count("in A") == 1 and text.count("in B") == 1
    assert f"[synced block from {a}: content not available]" in text


def test_relation_with_more_than_25_pages_is_read_in_full(make_env):
    related = [{"id": pid(100 + i, "e")} for i in range(30)]
    props = {"Name": {"type": "title", "title": [{"text": {"content": "Hub"}}]},
             "Links": {"id": "o_yF", "type": "relation", "relation": related}}
    ws = {"databases": [{"title": [{"text": {"content": "DB"}}], "data_sources": [
        {"id": pid(1, "d"), "rows": [{"id": pid(2), "properties": props, "children": []}]}]}]}
    env = make_env(ws)
    env.connect()
    assert env.sync().ok
    row = env.docs()[pid(2)]
    assert row.properties["Links"].count(",") == 29 and pid(129, "e") in row.text


def test_token_revoked_mid_sync_needs_reconnect_and_keeps_the_checkpoint(make_env):
    revoked = []

    def progress(p):
        if p.phase == "sync" and p.batches == 1 and not revoked:
            revoked.append(1)
            env.admin.revoke(TOKEN)

    env = make_env(flat_workspace(250), progress=progress)
    env.connect()
    result = env.sync()
    assert not result.ok and result.status == "reconnect_needed"
    assert "reconnect" in result.error
    assert Connections(env.store).get("acme-notion").status == "reconnect_needed"
    cp = env.store.checkpoint("acme-notion")
    assert cp is not None and cp["cursor"]  # the first batch's checkpoint is intact
    stored = len(env.docs())
    assert 100 <= stored < 250
    env.admin.restore(TOKEN)
    again = env.sync()
    assert again.ok and len(env.docs()) == 250
    events = [e.event_id for e in env.store.iter_events("team-a")]
    assert len(events) == len(set(events))


class _Crash(Exception):
    pass


def test_crash_after_a_batch_resumes_from_its_checkpoint(make_env):
    crashed = []

    def progress(p):
        if p.phase == "sync" and p.batches == 1 and not crashed:
            crashed.append(1)
            raise _Crash("kill -9 stand-in")

    env = make_env(flat_workspace(250), progress=progress)
    env.connect()
    try:
        env.sync()
    except _Crash:
        pass
    assert crashed and env.store.checkpoint("acme-notion")["cursor"]
    first = len(env.docs())
    env.admin.reset_stats()
    assert env.sync().ok
    by_path = env.admin.stats()["by_path"]
    assert by_path["/v1/search"] == 2 + 1  # resumed at the second search page, not from the top; the trash
    assert len(env.docs()) == 250 and first >= 100
    ids = [e.event_id for e in env.store.iter_events("team-a")]
    assert len(ids) == len(set(ids)) == 250


def test_new_page_created_in_the_sandbox_is_picked_up(make_env):
    env = make_env(flat_workspace(3))
    env.connect()
    assert env.sync().ok
    env.admin.op("set_time", time=iso(BASE))
    new = env.admin.op("create_page", parent_id=pid(1), title="Fresh", text="Brand new page")["id"]
    assert env.sync().ok
    doc = env.docs()[new]
    assert doc.parent_id == pid(1) and doc.text == "Brand new page"


def test_workspace_file_loads_in_the_issue_format(tmp_path):
    import json

    from notion_client import Client

    from engram_notion.sandbox import NotionSandbox
    from engram_sdk._sandbox import serve

    path = tmp_path / "ws.json"
    path.write_text(json.dumps(flat_workspace(2)))
    with serve(NotionSandbox.from_file(path)) as server, Client(auth=TOKEN, base_url=server.url, retry=False) as c:
        assert len(c.search()["results"]) == 2


def test_block_vanishing_mid_read_does_not_tombstone_its_page(make_env):
    toggle = {"id": pid(9, "f"), "type": "toggle", "toggle": {"rich_text": [{"text": {"content": "T"}}]},
              "children": [para("inside")]}
    env = make_env({"pages": [page(0, "P", [para("top"), toggle])]})
    env.connect()
    env.admin.fault(status=404, times=1, path=f"/v1/blocks/{pid(9, 'f')}/children")
    result = env.sync()
    assert result.ok and not result.failures
    assert env.by_kind("tombstone") == [] and "top" in env.docs()[pid(0)].text
