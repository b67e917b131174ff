"""Change notifications end to end: sandbox subscriptions -> real deliveries -> receiver -> queue -> worker."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from msft_data import NAME, DRIVE, GENERAL, RANDOM, TEAM, load, serve_asgi

from engram_microsoft import MicrosoftConnector
from engram_sdk._connections import Connections
from engram_sdk._connector import WebhookRequest
from engram_sdk._webhooks import WebhookQueue, WebhookReceiver, WebhookWorker

RANDOM_ROOT = f"teams/{TEAM}/channels/{RANDOM}/messages/1600000000001"


@pytest.fixture
def receiver(ms):
    """The framework's webhook receiver, served by uvicorn on loopback."""
    app = WebhookReceiver(ms.store, ms.secrets, connector_cls=MicrosoftConnector)
    with serve_asgi(app.app) as url:
        yield f"{url}/webhooks/{NAME}"


def _queued(ms) -> list[tuple[str, str]]:
    items = WebhookQueue(ms.store).claim(limit=100, lease=0.0)
    return [(i.kind, i.entity_id) for i in items]


def _worker(ms) -> WebhookWorker:
    return WebhookWorker(ms.store, ms.runner.keyring, ms.secrets, connector_cls=MicrosoftConnector)


def _subscribe(ms, receiver, **values):
    ms.connect(scope=f"team:{TEAM},drive:{DRIVE}", delegated=False, notification_url=receiver, **values)
    result = ms.sync()
    assert result.ok, result.error
    return Connections(ms.store).get(NAME).meta["subscriptions"]


def test_sync_creates_subscriptions_through_the_validation_handshake(ms, receiver):
    subs = _subscribe(ms, receiver)
    assert sorted(s["resource"] for s in subs.values()) == sorted([
        f"/teams/{TEAM}/channels/{GENERAL}/messages", f"/teams/{TEAM}/channels/{RANDOM}/messages", f"/drives/{DRIVE}/root"])
    live = ms.admin.op("subscriptions")
    assert {s["id"] for s in live} == set(subs)
    assert all(s["lifecycleNotificationUrl"] == receiver for s in live if "/teams/" in s["resource"])


def test_second_sync_neither_recreates_nor_renews_fresh_subscriptions(ms, receiver):
    subs = _subscribe(ms, receiver)
    ms.admin.reset_stats()
    assert ms.sync().ok
    assert "/v1.0/subscriptions" not in ms.admin.stats()["by_path"]
    assert set(Connections(ms.store).get(NAME).meta["subscriptions"]) == set(subs)


def test_new_reply_is_delivered_queued_and_fetched(ms, receiver):
    _subscribe(ms, receiver)
    ms.admin.op("post_message", team=TEAM, channel=RANDOM, reply_to="1600000000001", text="and dessert", user="u-bob")
    (delivery,) = ms.admin.deliveries()
    assert delivery["status"] == 202
    assert json.loads(delivery["body"])["value"][0]["resource"].endswith("/replies('" + json.loads(delivery["body"])["value"][0]["resourceData"]["id"] + "')")
    report = _worker(ms).drain()
    assert report.done == 1 and report.stored >= 1
    thread = ms.latest()[RANDOM_ROOT]
    assert [r.text for r in thread.messages[0].replies] == ["yes", "and dessert"]


def test_drive_change_queues_a_resync(ms, receiver):
    _subscribe(ms, receiver)
    ms.admin.op("put_file", drive=DRIVE, id="T1", content="Launch moved again.")
    (delivery,) = ms.admin.deliveries()
    assert delivery["status"] == 202
    assert _queued(ms) == [("resync", "")]


def test_forged_client_state_is_rejected(ms, receiver):
    _subscribe(ms, receiver)
    body = {"value": [dict(load("change_notification_channel_message_item_no_resource_data.json"),
                           clientState="guessed-state")]}
    r = httpx.post(receiver, json=body)
    assert r.status_code == 401 and r.json()["error"] == "no_match"
    assert _queued(ms) == []


def test_validation_handshake_echoes_the_token_as_text(ms, receiver):
    ms.connect(delegated=False, scope=f"team:{TEAM}")
    r = httpx.post(receiver, params={"validationToken": "Validation: Testing client application reachability"})
    assert r.status_code == 200 and r.text == "Validation: Testing client application reachability"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("token", [
    "<script>alert(1)</script>",
    "<html><body>Sign in again</body></html>",
    "line one\r\nSet-Cookie: a=b",
    "x" * 513,
    "",
    "quote\"s and 'single' ones",
])
def test_validation_handshake_refuses_to_echo_anything_but_a_plain_token(ms, receiver, token):
    ms.connect(delegated=False, scope=f"team:{TEAM}")
    r = httpx.post(receiver, params={"validationToken": token})
    assert r.status_code == 401 and r.json()["error"] == "not_accepted"
    assert token not in r.text or not token  # never echoed
    assert r.headers["x-content-type-options"] == "nosniff"
    assert _queued(ms) == []


def test_rich_notification_is_verified_and_decrypted(ms, receiver):
    jwks = f"{ms.server.url}/common/discovery/v2.0/keys"
    _subscribe(ms, receiver, rich_notifications=True, jwks_url=jwks)
    sub = next(s for s in ms.admin.op("subscriptions") if RANDOM in s["resource"])
    assert sub["includeResourceData"] is True
    ms.admin.op("post_message", team=TEAM, channel=RANDOM, reply_to="1600000000001", text="secret sauce", user="u-bob")
    (delivery,) = ms.admin.deliveries()
    body = json.loads(delivery["body"])
    assert "encryptedContent" in body["value"][0] and body["validationTokens"]
    assert delivery["status"] == 202
    assert _queued(ms) == [("entity", RANDOM_ROOT)]
    # the decryption the receiver did, done again here with the connection's key
    connector = ms.connector()
    try:
        from engram_microsoft import DecryptionKeys, decrypt_content

        keys = DecryptionKeys()
        keys.add_pem(f"engram-{NAME}", connector._notification_certificate()[1])
        assert decrypt_content(body["value"][0]["encryptedContent"], keys)["body"]["content"] == "secret sauce"
    finally:
        connector.close()


def test_rich_notification_with_tampered_content_is_rejected(ms, receiver):
    _subscribe(ms, receiver, rich_notifications=True, jwks_url=f"{ms.server.url}/common/discovery/v2.0/keys")
    ms.admin.op("post_message", team=TEAM, channel=RANDOM, reply_to="1600000000001", text="x", user="u-bob")
    (delivery,) = ms.admin.deliveries()
    body = json.loads(delivery["body"])
    _queued(ms)  # consume the genuine one
    body["value"][0]["encryptedContent"]["dataSignature"] = "AAAA" + body["value"][0]["encryptedContent"]["dataSignature"][4:]
    r = httpx.post(receiver, json=body)
    assert r.status_code == 401 and r.json()["error"] == "not_accepted"


def test_rich_notification_with_forged_validation_token_is_rejected(ms, receiver):
    _subscribe(ms, receiver, rich_notifications=True, jwks_url=f"{ms.server.url}/common/discovery/v2.0/keys")
    ms.admin.op("post_message", team=TEAM, channel=RANDOM, reply_to="1600000000001", text="x", user="u-bob")
    body = json.loads(ms.admin.deliveries()[0]["body"])
    head, claims, sig = body["validationTokens"][0].split(".")
    body["validationTokens"] = [f"{head}.{claims}.{sig[::-1]}"]
    assert httpx.post(receiver, json=body).status_code == 401


def test_reauthorization_required_renews_the_subscription(ms, receiver):
    subs = _subscribe(ms, receiver)
    sid = next(k for k, v in subs.items() if RANDOM in v["resource"])
    ms.admin.op("lifecycle", subscription_id=sid, event="reauthorizationRequired")
    (delivery,) = ms.admin.deliveries()
    assert delivery["status"] == 202
    ms.admin.reset_stats()
    report = _worker(ms).drain()
    assert report.done == 1
    graph = {p: n for p, n in ms.admin.stats()["by_path"].items() if p.startswith("/v1.0/")}
    assert graph == {f"/v1.0/subscriptions/{sid}": 1}  # one PATCH, the cached token reused


def test_subscription_removed_recreates_it(ms, receiver):
    subs = _subscribe(ms, receiver)
    sid = next(k for k, v in subs.items() if RANDOM in v["resource"])
    ms.admin.op("lifecycle", subscription_id=sid, event="subscriptionRemoved")
    assert ms.admin.deliveries()[0]["status"] == 202
    assert _worker(ms).drain().done == 1
    live = {s["resource"]: s["id"] for s in ms.admin.op("subscriptions")}
    assert f"/teams/{TEAM}/channels/{RANDOM}/messages" in live and sid not in live.values()


def test_missed_lifecycle_event_queues_a_resync(ms, receiver):
    subs = _subscribe(ms, receiver)
    sid = next(k for k, v in subs.items() if GENERAL in v["resource"])
    ms.admin.op("lifecycle", subscription_id=sid, event="missed")
    ms.admin.deliveries()
    assert _queued(ms) == [("resync", "")]


def test_handle_webhook_maps_a_reply_notification_to_its_thread(ms):
    ms.connect(delegated=False, scope=f"team:{TEAM}")
    connector = ms.connector()
    try:
        state = connector._client_state()
        item = load("change_notification_channel_reply_encrypted_doc_example.json")["value"][0]
        item = {k: v for k, v in item.items() if k != "encryptedContent"} | {"clientState": state}
        req = WebhookRequest("POST", "/webhooks/acme-ms", {}, {}, json.dumps({"value": [item]}).encode())
        result = connector.handle_webhook(req)
        assert result.status == 202
        assert result.entity_ids == ["teams/d29828b8-c04d-4e2a-b2f6-07da6982f0f0/channels/"
                                     "19:f127a8c55ad949d1a238464d22f0f99e@thread.skype/messages/1565045424600"]
    finally:
        connector.close()


def test_sync_renews_a_subscription_past_half_its_lifetime(ms, receiver):
    subs = _subscribe(ms, receiver)
    sid = next(k for k, v in subs.items() if RANDOM in v["resource"])
    soon = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    subs[sid]["expires"] = soon
    Connections(ms.store).update(NAME, meta={"subscriptions": subs})
    ms.admin.reset_stats()
    assert ms.sync().ok
    assert ms.admin.stats()["by_path"].get(f"/v1.0/subscriptions/{sid}") == 1  # PATCH
    renewed = Connections(ms.store).get(NAME).meta["subscriptions"][sid]["expires"]
    assert renewed > soon


def test_delete_subscriptions_removes_them_from_graph(ms, receiver):
    _subscribe(ms, receiver)
    connector = ms.connector()
    try:
        assert connector.delete_subscriptions() == 0
    finally:
        connector.close()
    assert ms.admin.op("subscriptions") == []


def test_engram_public_url_names_the_servers_webhook_route(ms, monkeypatch):
    """Without an explicit notification_url, subscriptions point at `engram serve`'s route."""
    app = WebhookReceiver(ms.store, ms.secrets, connector_cls=MicrosoftConnector, prefix="/v1/webhooks")
    with serve_asgi(app.app) as url:
        monkeypatch.setenv("ENGRAM_PUBLIC_URL", url + "/")
        ms.connect(scope=f"team:{TEAM},drive:{DRIVE}", delegated=False)
        assert ms.sync().ok
        live = ms.admin.op("subscriptions")
    assert len(live) == 3 and {s["notificationUrl"] for s in live} == {f"{url}/v1/webhooks/{NAME}"}
