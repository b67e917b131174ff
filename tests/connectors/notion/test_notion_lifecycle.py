"""Deletions, reconcile and OAuth against the sandbox."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from notion_data import BASE, flat_workspace, iso, pid

from engram_sdk._connections import Connections
from engram_sdk._exceptions import AuthorizationPending, ReconnectNeeded

CLIENT = {"client_id": "cid-123", "client_secret": "csecret-456", "redirect_uris": ["https://partner.example/cb"]}


def test_trashed_page_is_tombstoned_by_the_next_incremental_sync(make_env):
    env = make_env(flat_workspace(4))
    env.connect()
    assert env.sync().ok
    env.admin.op("set_time", time=iso(BASE))
    env.admin.op("trash_page", id=pid(1))
    env.admin.reset_stats()
    assert env.sync().ok
    assert [(t.entity_id, t.reason) for t in env.by_kind("tombstone")] == [(pid(1), "trashed")]
    assert env.admin.stats()["by_path"]["/v1/search"] == 2  # the live pass and the trash pass
    again = env.sync(reconcile=True)  # once only
    assert again.ok and again.stored == 0 and again.tombstones == 0


def test_page_trashed_long_ago_is_tombstoned_by_reconcile(make_env):
    env = make_env(flat_workspace(4))
    env.connect()
    assert env.sync().ok
    env.admin.op("trash_page", id=pid(1), at=iso(BASE - timedelta(days=30)))  # outside the overlap window
    assert env.sync().ok and env.by_kind("tombstone") == []
    result = env.sync(reconcile=True)
    assert result.ok and result.tombstones == 1
    assert [t.entity_id for t in env.by_kind("tombstone")] == [pid(1)]


def test_page_deleted_for_good_is_tombstoned_by_reconcile(make_env):
    env = make_env(flat_workspace(4))
    env.connect()
    assert env.sync().ok
    env.admin.op("delete_page", id=pid(2))
    result = env.sync(reconcile=True)
    assert result.ok and [t.entity_id for t in env.by_kind("tombstone")] == [pid(2)]


def test_fetch_of_a_page_gone_for_good_yields_deleted(make_env):
    env = make_env(flat_workspace(2))
    env.connect()
    assert env.sync().ok
    env.admin.op("delete_page", id=pid(0))
    connector = env.connector()
    try:
        (tomb,) = list(connector.fetch([f"page:{pid(0)}"]))
    finally:
        connector.close()
    assert tomb.kind == "tombstone" and tomb.reason == "deleted"
    # deterministic: the same deletion seen twice is the same record
    connector = env.connector()
    try:
        (again,) = list(connector.fetch([pid(0)]))
    finally:
        connector.close()
    assert again == tomb


def test_fetch_of_a_trashed_page_yields_trashed(make_env):
    env = make_env(flat_workspace(2))
    env.connect()
    assert env.sync().ok
    env.admin.op("trash_page", id=pid(1))
    connector = env.connector()
    try:
        (tomb,) = list(connector.fetch([pid(1)]))
    finally:
        connector.close()
    assert tomb.reason == "trashed"


def test_restored_page_comes_back(make_env):
    env = make_env(flat_workspace(2))
    env.connect()
    assert env.sync().ok
    env.admin.op("set_time", time=iso(BASE))
    env.admin.op("trash_page", id=pid(1))
    assert env.sync().ok and env.records()[-1].kind == "tombstone"
    env.admin.op("restore_page", id=pid(1))
    assert env.sync().ok
    assert env.records()[-1].kind == "document" and env.records()[-1].entity_id == pid(1)


def _oauth_env(make_env):
    ws = flat_workspace(3)
    ws["oauth_clients"] = [CLIENT]
    ws["tokens"] = []  # only OAuth-issued tokens work
    return make_env(ws)


def _oauth(env, **kw):
    return env.connect(oauth_client_id=CLIENT["client_id"], oauth_client_secret=CLIENT["client_secret"],
                       redirect_uri=CLIENT["redirect_uris"][0], **kw)


def _consent(env) -> str:
    with pytest.raises(AuthorizationPending) as info:
        _oauth(env)
    url = info.value.instructions.splitlines()[-1]
    assert url.startswith(env.url + "/v1/oauth/authorize?") and "client_id=cid-123" in url
    assert Connections(env.store).get("acme-notion").status == "awaiting_authorization"
    r = httpx.get(url, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].startswith(CLIENT["redirect_uris"][0])
    return httpx.URL(r.headers["location"]).params["code"]


def test_oauth_code_exchange_stores_tokens(make_env):
    env = _oauth_env(make_env)
    code = _consent(env)
    account = _oauth(env, oauth_code=code)
    assert account.source.startswith("notion://workspace/")
    names = env.secrets.names("acme-notion")
    assert {"access_token", "refresh_token", "oauth_client_secret"} <= set(names) and "oauth_code" not in names
    assert env.sync().ok and len(env.docs()) == 3


def test_oauth_code_is_single_use(make_env):
    env = _oauth_env(make_env)
    code = _consent(env)
    _oauth(env, oauth_code=code)
    env.secrets.delete("acme-notion", "access_token")
    with pytest.raises(ReconnectNeeded) as info:
        _oauth(env, oauth_code=code)
    assert "invalid_grant" in str(info.value) and "reconnect" in str(info.value)


def test_revoked_access_token_is_refreshed_and_the_new_tokens_stored(make_env):
    env = _oauth_env(make_env)
    _oauth(env, oauth_code=_consent(env))
    old = env.secrets.get("acme-notion", "access_token").get_secret_value()
    env.admin.revoke(old)
    result = env.sync()
    assert result.ok, result.error
    new = env.secrets.get("acme-notion", "access_token").get_secret_value()
    assert new != old


def test_invalid_refresh_token_means_reconnect(make_env):
    env = _oauth_env(make_env)
    _oauth(env, oauth_code=_consent(env))
    env.admin.revoke(env.secrets.get("acme-notion", "access_token").get_secret_value())
    env.secrets.set("acme-notion", "refresh_token", "nrt_forged")
    result = env.sync()
    assert result.status == "reconnect_needed" and "invalid_grant" in result.error
    assert Connections(env.store).get("acme-notion").status == "reconnect_needed"


def test_resolved_discussion_is_tombstoned_by_reconcile(make_env):
    env = make_env(flat_workspace(2))
    env.admin.op("add_comment", parent_id=pid(0), text="Open question", at=iso(BASE))
    env.connect()
    assert env.sync().ok
    (thread,) = env.by_kind("thread")
    env.admin.op("resolve_comment", discussion_id=thread.entity_id)
    result = env.sync(reconcile=True)
    assert result.ok and [t.entity_id for t in env.by_kind("tombstone")] == [thread.entity_id]


def test_page_nested_in_a_block_of_a_scoped_root_is_in_scope(make_env):
    from notion_data import page as make_page

    toggle = {"type": "toggle", "toggle": {"rich_text": [{"text": {"content": "More"}}]},
              "children": [make_page(1, "Tucked away")]}
    env = make_env({"pages": [make_page(0, "Root", [toggle]), make_page(2, "Not ours")]})
    env.connect(scope=f"page:{pid(0)}")
    assert env.sync().ok
    assert set(env.docs()) == {pid(0), pid(1)}


def test_without_the_read_comments_capability_pages_still_sync(make_env):
    ws = flat_workspace(3)
    ws["capabilities"] = {"read_comments": False}
    env = make_env(ws)
    env.admin.op("add_comment", parent_id=pid(0), text="hidden from this integration")
    env.connect()
    env.admin.reset_stats()
    result = env.sync()
    assert result.ok and not result.failures and len(env.docs()) == 3
    assert env.by_kind("thread") == []
    assert env.admin.stats()["by_path"]["/v1/comments"] == 1  # asked once, then left alone


def test_without_user_information_people_are_named_by_id(make_env):
    ws = flat_workspace(2)
    ws["capabilities"] = {"read_user_information": False}
    env = make_env(ws)
    env.connect()
    result = env.sync()
    assert result.ok and not result.failures
    doc = env.docs()[pid(0)]
    assert doc.authors and doc.authors[0].name is None and doc.authors[0].id


def _block_comment_env(make_env):
    from notion_data import page as make_page
    from notion_data import para

    block = para("A claim worth questioning", id=pid(7, "b"))
    env = make_env({"pages": [make_page(0, "P", [block])]})
    env.admin.op("add_comment", parent_id=pid(7, "b"), text="Source?", at=iso(BASE))
    return env


def test_block_comments_are_read_when_asked(make_env):
    env = _block_comment_env(make_env)
    env.connect(block_comments=True)
    assert env.sync().ok
    (thread,) = env.by_kind("thread")
    assert thread.parent_id == pid(7, "b") and thread.messages[0].text == "Source?"


def test_block_comments_are_not_read_by_default(make_env):
    env = _block_comment_env(make_env)
    env.connect()
    assert env.sync().ok and env.by_kind("thread") == []


def test_reconcile_keeps_block_discussions_when_they_are_synced(make_env):
    env = _block_comment_env(make_env)
    env.connect(block_comments=True)
    assert env.sync().ok
    result = env.sync(reconcile=True)
    assert result.ok and result.tombstones == 0
