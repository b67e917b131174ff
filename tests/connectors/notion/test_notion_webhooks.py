"""Notion webhooks: verification handshake, X-Notion-Signature, replays, and the refetch worker."""

from __future__ import annotations

import json
import httpx
import pytest
from notion_data import BASE, flat_workspace, iso, pid

from engram_notion import NotionConnector, sign_webhook_payload
from engram_notion._connector import (
    confirm_webhook_verification,
    reset_webhook_verification,
    reveal_verification_token,
)
from engram_sdk._connections import Connections
from engram_sdk._sandbox import serve
from engram_sdk._webhooks import WebhookQueue, WebhookReceiver, WebhookWorker

VERIFY_TOKEN = "secret_verification_token_from_notion"


@pytest.fixture
def hooked(make_env):
    """A synced connection whose webhook receiver runs on loopback, fed by the sandbox."""
    env = make_env(flat_workspace(4))
    env.connect()
    assert env.sync().ok
    receiver = WebhookReceiver(env.store, env.secrets, connector_cls=NotionConnector)
    server = serve(receiver)
    env.hook_url = f"{server.url}/webhooks/acme-notion"
    env.admin.set_webhook(env.hook_url, secret=VERIFY_TOKEN)
    env.admin.op("set_time", time=iso(BASE))
    yield env
    server.stop()


def _verify(env):
    env.admin.op("send_verification")
    return env.admin.deliveries()[-1]


def _handshake(env):
    """Notion's verification request, then the operator's confirmation (`engram connections
    verify`) after pasting the token into Notion."""
    assert _verify(env)["status"] == 202
    confirm_webhook_verification(env.store, "acme-notion")


def _worker(env):
    return WebhookWorker(env.store, env.keyring, env.secrets, connector_cls=NotionConnector)


def test_verification_request_is_accepted_while_awaiting_and_stored_as_a_secret(hooked):
    assert Connections(hooked.store).get("acme-notion").meta["webhook_state"] == "awaiting_verification"
    d = _verify(hooked)
    assert d["status"] == 202
    assert hooked.secrets.get("acme-notion", "webhook_verification_token").get_secret_value() == VERIFY_TOKEN


def test_verification_request_is_refused_once_verified(hooked):
    _verify(hooked)
    assert reveal_verification_token(hooked.secrets, "acme-notion") == VERIFY_TOKEN
    confirm_webhook_verification(hooked.store, "acme-notion")  # `engram connections verify acme-notion`
    hooked.admin.set_webhook(hooked.hook_url, secret="secret_attacker")
    d = _verify(hooked)
    assert d["status"] == 401
    assert hooked.secrets.get("acme-notion", "webhook_verification_token").get_secret_value() == VERIFY_TOKEN


def test_signed_delivery_is_queued_and_the_worker_stores_the_edit(hooked):
    _handshake(hooked)
    hooked.admin.op("edit_page", id=pid(1), text="Webhook-delivered change")
    d = hooked.admin.deliveries()[-1]
    assert d["status"] == 202 and "X-Notion-Signature" in d["headers"]
    report = _worker(hooked).drain()
    assert report.done >= 1 and report.stored >= 2
    edits = hooked.by_kind("edit")
    assert [(e.entity_id, e.after) for e in edits] == [(pid(1), "Webhook-delivered change")]


def test_delivery_with_a_bad_signature_is_refused(hooked):
    _handshake(hooked)
    body = json.dumps({"id": "e1", "type": "page.content_updated", "entity": {"id": pid(1), "type": "page"}}).encode()
    r = httpx.post(hooked.hook_url, content=body,
                   headers={"X-Notion-Signature": sign_webhook_payload(body, "secret_wrong")})
    assert r.status_code == 401 and r.json()["error"] == "no_match"
    assert WebhookQueue(hooked.store).counts("acme-notion")["pending"] == 0


def test_delivery_without_a_signature_is_refused(hooked):
    _handshake(hooked)
    body = json.dumps({"id": "e2", "type": "page.created", "entity": {"id": pid(1), "type": "page"}}).encode()
    r = httpx.post(hooked.hook_url, content=body)
    assert r.status_code == 401 and r.json()["error"] == "missing_header"


def test_delivery_signed_over_a_reserialised_body_is_refused(hooked):
    _handshake(hooked)
    payload = {"id": "e3", "type": "page.created", "entity": {"id": pid(1), "type": "page"}}
    signed_over = json.dumps(payload, separators=(",", ":")).encode()
    r = httpx.post(hooked.hook_url, content=json.dumps(payload, indent=2).encode(),
                   headers={"X-Notion-Signature": sign_webhook_payload(signed_over, VERIFY_TOKEN)})
    assert r.status_code == 401


def test_delivery_before_any_verification_token_is_refused(hooked):
    body = json.dumps({"id": "e4", "type": "page.created", "entity": {"id": pid(1), "type": "page"}}).encode()
    r = httpx.post(hooked.hook_url, content=body,
                   headers={"X-Notion-Signature": sign_webhook_payload(body, VERIFY_TOKEN)})
    assert r.status_code == 401 and r.json()["error"] == "not_accepted"


def test_replayed_delivery_is_queued_once(hooked):
    _handshake(hooked)
    hooked.admin.op("edit_page", id=pid(2), append="more")
    first = len(hooked.admin.deliveries()) - 1
    queue = WebhookQueue(hooked.store)
    before = queue.counts("acme-notion")["pending"]
    hooked.admin.replay(first)
    hooked.admin.replay(first)
    deliveries = hooked.admin.deliveries()
    assert all(d["status"] == 202 for d in deliveries[first:])
    assert queue.counts("acme-notion")["pending"] == before == 1


def test_aggregated_and_out_of_order_deliveries_give_one_current_version(hooked):
    _handshake(hooked)
    hooked.admin.op("edit_page", id=pid(3), text="v1")
    hooked.admin.op("edit_page", id=pid(3), text="v2")
    hooked.admin.op("edit_page", id=pid(3), text="v3")
    hooked.admin.deliveries()
    _worker(hooked).drain()
    texts = [r.text for r in hooked.records() if r.kind == "document" and r.entity_id == pid(3)]
    assert texts[-1] == "v3" and "v2" not in texts  # the worker refetched the current state once


def test_trashed_page_webhook_yields_a_trashed_tombstone(hooked):
    _handshake(hooked)
    hooked.admin.op("trash_page", id=pid(0))
    hooked.admin.deliveries()
    _worker(hooked).drain()
    assert [(t.entity_id, t.reason) for t in hooked.by_kind("tombstone")] == [(pid(0), "trashed")]


def test_comment_webhook_refetches_the_discussion(hooked):
    _handshake(hooked)
    hooked.admin.op("add_comment", parent_id=pid(2), text="Please double-check the numbers")
    hooked.admin.deliveries()
    _worker(hooked).drain()
    threads = hooked.by_kind("thread")
    assert len(threads) == 1 and threads[0].messages[0].text == "Please double-check the numbers"


def test_verification_token_is_not_shown_without_asking(hooked, capsys):
    _verify(hooked)
    conn = Connections(hooked.store).get("acme-notion")
    assert VERIFY_TOKEN not in repr(conn) and VERIFY_TOKEN not in repr(hooked.secrets.get("acme-notion",
                                                                                            "webhook_verification_token"))


def test_cli_reveals_the_token_only_when_asked_and_verify_closes_the_handshake(hooked, capsys, monkeypatch,
                                                                              tmp_path):
    from engram_sdk._cli import app
    from engram_sdk._cli._common import run_app

    # The CLI finds this environment's store and secrets file where an operator's would be.
    home = tmp_path / "cli-home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "secrets.json").symlink_to(hooked.secrets.path)
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    monkeypatch.setenv("ENGRAM_DATABASE_URL", str(hooked.store.engine.url))
    monkeypatch.setenv("ENGRAM_SECRETS", "file")
    capsys.readouterr()
    assert run_app(app, ["connections", "show", "acme-notion", "--reveal-verification-token"]) == 1
    assert "no verification request" in capsys.readouterr().err
    _verify(hooked)
    assert run_app(app, ["connections", "show", "acme-notion", "--json"]) == 0
    assert VERIFY_TOKEN not in capsys.readouterr().out  # masked in the ordinary view
    assert run_app(app, ["connections", "show", "acme-notion", "--reveal-verification-token"]) == 0
    assert capsys.readouterr().out.strip() == VERIFY_TOKEN
    assert run_app(app, ["connections", "verify", "acme-notion"]) == 0
    assert Connections(hooked.store).get("acme-notion").meta["webhook_state"] == "verified"
    hooked.admin.set_webhook(hooked.hook_url, secret="secret_attacker")
    assert _verify(hooked)["status"] == 401


# --- the verification token cannot be swapped (issue 17) ---------------------------------------------


def _post_token(env, token: str) -> httpx.Response:
    """An unauthenticated verification request, as anyone who knows the URL can send one."""
    return httpx.post(env.hook_url, json={"verification_token": token})


def _signed_delivery(env, token: str, event_id: str = "evt-1") -> httpx.Response:
    body = json.dumps({"id": event_id, "type": "page.content_updated",
                       "entity": {"id": pid(1), "type": "page"}}).encode()
    return httpx.post(env.hook_url, content=body, headers={"X-Notion-Signature": sign_webhook_payload(body, token)})


def _meta(env) -> dict:
    return Connections(env.store).get("acme-notion").meta


def test_a_later_verification_request_is_recorded_and_never_replaces_the_first(hooked):
    assert _verify(hooked)["status"] == 202
    r = _post_token(hooked, "secret_evil2")
    assert r.status_code == 401 and r.json()["error"] == "not_accepted" and "recorded" in r.json()["message"]
    assert "secret_evil2" not in r.text
    assert reveal_verification_token(hooked.secrets, "acme-notion") == VERIFY_TOKEN
    meta = _meta(hooked)
    assert meta["webhook_state"] == "awaiting_confirmation"
    assert meta["webhook_token_received"]["from"] == "127.0.0.1" and meta["webhook_token_received"]["at"]
    (later,) = meta["webhook_later_tokens"]
    assert later["from"] == "127.0.0.1" and later["at"] and later["same_token"] is False
    assert "secret_evil2" not in json.dumps(meta)  # recorded, never stored in clear


def test_deliveries_are_refused_until_the_operator_confirms_the_token(hooked):
    _verify(hooked)
    r = _signed_delivery(hooked, VERIFY_TOKEN)
    assert r.status_code == 401 and r.json()["error"] == "not_accepted"
    assert "engram connections verify acme-notion" in r.json()["message"]
    assert WebhookQueue(hooked.store).counts("acme-notion")["pending"] == 0
    confirm_webhook_verification(hooked.store, "acme-notion")
    assert _signed_delivery(hooked, VERIFY_TOKEN).status_code == 202
    assert WebhookQueue(hooked.store).counts("acme-notion")["pending"] == 1


def test_an_attackers_token_sent_first_is_never_used_and_a_reset_recovers(hooked):
    assert _post_token(hooked, "secret_evil1").status_code == 202  # the attacker is quicker than Notion
    assert _verify(hooked)["status"] == 401  # Notion's own request: recorded, not used
    assert _signed_delivery(hooked, "secret_evil1").status_code == 401  # unconfirmed: nothing gets in
    assert WebhookQueue(hooked.store).counts("acme-notion")["pending"] == 0
    assert _meta(hooked)["webhook_later_tokens"][0]["same_token"] is False
    # The operator pastes the held token into Notion; Notion refuses it. So: reset, "Resend token".
    reset_webhook_verification(hooked.store, "acme-notion", hooked.secrets)
    assert reveal_verification_token(hooked.secrets, "acme-notion") is None
    assert _verify(hooked)["status"] == 202
    assert reveal_verification_token(hooked.secrets, "acme-notion") == VERIFY_TOKEN
    confirm_webhook_verification(hooked.store, "acme-notion")
    assert _signed_delivery(hooked, "secret_evil1", "evt-2").json()["error"] == "no_match"
    assert _signed_delivery(hooked, VERIFY_TOKEN, "evt-3").status_code == 202


def test_racing_verification_requests_keep_exactly_one_token(hooked):
    from concurrent.futures import ThreadPoolExecutor

    tokens = [f"secret_racer_{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda tok: _post_token(hooked, tok).status_code, tokens))
    assert sorted(answers) == [202] + [401] * 7
    winner = tokens[answers.index(202)]
    assert reveal_verification_token(hooked.secrets, "acme-notion") == winner
    assert _meta(hooked)["webhook_later_tokens_total"] == 7


def test_a_flood_of_verification_requests_keeps_a_bounded_record(hooked):
    _verify(hooked)
    for i in range(25):
        _post_token(hooked, f"secret_flood_{i}")
    meta = _meta(hooked)
    assert len(meta["webhook_later_tokens"]) == 20 and meta["webhook_later_tokens_total"] == 25
    assert reveal_verification_token(hooked.secrets, "acme-notion") == VERIFY_TOKEN


def test_confirming_before_any_token_arrived_is_refused(hooked):
    from engram_sdk import ConfigError

    with pytest.raises(ConfigError, match="no verification request"):
        confirm_webhook_verification(hooked.store, "acme-notion", hooked.secrets)
    assert _meta(hooked)["webhook_state"] == "awaiting_verification"


def test_cli_verify_warns_about_later_requests_and_reset_reopens_the_window(hooked, capsys, monkeypatch,
                                                                           tmp_path):
    from engram_sdk._cli import app
    from engram_sdk._cli._common import run_app
    from engram_sdk._secrets import FileSecretStore

    home = tmp_path / "cli-home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "secrets.json").symlink_to(hooked.secrets.path)
    cli_secrets = FileSecretStore(home / "secrets" / "secrets.json")  # what the CLI reads and writes
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    monkeypatch.setenv("ENGRAM_DATABASE_URL", str(hooked.store.engine.url))
    monkeypatch.setenv("ENGRAM_SECRETS", "file")
    _verify(hooked)
    _post_token(hooked, "secret_evil2")
    capsys.readouterr()
    assert run_app(app, ["connections", "show", "acme-notion", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["meta"]
    assert shown["webhook_state"] == "awaiting_confirmation" and shown["webhook_later_tokens"][0]["from"] == "127.0.0.1"
    assert run_app(app, ["connections", "verify", "acme-notion", "--reset"]) == 0
    assert "Resend token" in capsys.readouterr().out
    assert reveal_verification_token(cli_secrets, "acme-notion") is None
    assert _meta(hooked)["webhook_state"] == "awaiting_verification"
    assert _verify(hooked)["status"] == 202
    _post_token(hooked, "secret_evil3")
    assert run_app(app, ["connections", "verify", "acme-notion"]) == 0
    out = capsys.readouterr()
    assert "verified" in out.out
    assert "1 later verification request(s)" in out.err and "1 with a different token" in out.err
    assert "secret_evil3" not in out.out + out.err and VERIFY_TOKEN not in out.out + out.err
