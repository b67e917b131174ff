"""Forged and replayed webhooks against the receiver on loopback: Notion (its unauthenticated
verification request and X-Notion-Signature), Standard Webhooks (the example connector: timestamps
and replays), and Microsoft Graph (the validation handshake and clientState). Held: refused with
nothing queued, the held verification token unchanged; a replay queued once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from engram_microsoft import MicrosoftConnector
from engram_notion import (
    NotionConnector,
    confirm_webhook_verification,
    reset_webhook_verification,
    reveal_verification_token,
    sign_webhook_payload,
)
from engram_notion.sandbox import NotionSandbox
from engram_sdk._connector import Connection
from engram_sdk._connections import Connections
from engram_sdk._example import ExampleConnector
from engram_sdk._example.sandbox import ExampleSandbox, sample_workspace
from engram_sdk._sandbox import serve
from engram_sdk._webhooks import StandardWebhook
from engram_sdk.testing import Harness

from .conftest import scale

NOTION_TOKEN = "secret_notion_verification_token_genuine"
EXAMPLE_SECRET = "whsec_" + "cmVsaWFiaWxpdHktd2ViaG9vay1zZWNyZXQtMDE="


def pending(h: Harness, name: str) -> int:
    return h.queue().counts(name)["pending"]


@pytest.fixture
def notion(tmp_path) -> Iterator[tuple[Harness, object, str]]:
    h = Harness(tmp_path / "home", connector_cls=NotionConnector)
    with serve(NotionSandbox(NotionSandbox.default_workspace())) as sandbox:
        h.connect("notion", "acme-notion", scope="all",
                  config={"token": "secret_sandbox", "base_url": sandbox.url, "requests_per_second": 1000})
        assert h.sync("acme-notion").ok
        with serve(h.receiver()) as receiver:
            url = f"{receiver.url}/webhooks/acme-notion"
            sandbox.admin.set_webhook(url, NOTION_TOKEN)
            yield h, sandbox.admin, url
    h.close()


def _notion_delivery(event_id: str) -> bytes:
    return json.dumps({"id": event_id, "type": "page.content_updated",
                       "entity": {"id": "5a4b3c2d-0000-4000-8000-0000000000a1", "type": "page"}}).encode()


def test_notion_verification_token_cannot_be_swapped_or_used_unconfirmed(notion, tally):
    h, admin, url = notion
    row = tally.row("Notion: forged verification requests (token swap)")
    attackers = scale(5, 50)
    # an attacker is quicker than Notion: its token is held, but deliveries stay refused
    assert httpx.post(url, json={"verification_token": "secret_evil_first"}).status_code == 202
    admin.op("send_verification")
    admin.deliveries()  # waits for the sandbox's delivery to be answered
    row.check(admin.deliveries()[-1]["status"] == 401, "Notion's own request after the attacker's was not refused")
    for i in range(attackers):
        r = httpx.post(url, json={"verification_token": f"secret_evil_{i}"})
        row.check(r.status_code == 401 and reveal_verification_token(h.secrets, "acme-notion") == "secret_evil_first",
                  f"a later verification request replaced the held token ({r.status_code})")
    row = tally.row("Notion: deliveries before the operator confirmed a token")
    for token in ("secret_evil_first", NOTION_TOKEN):
        body = _notion_delivery(f"evt-early-{token}")
        r = httpx.post(url, content=body, headers={"X-Notion-Signature": sign_webhook_payload(body, token)})
        row.check(r.status_code == 401 and pending(h, "acme-notion") == 0,
                  f"a delivery signed with {token[:12]}... was accepted before confirmation")
    recorded = Connections(h.store).get("acme-notion").meta["webhook_later_tokens_total"]
    assert recorded == attackers + 1  # Notion's own request is among them, for the operator to see
    # the operator finds Notion refuses the held token: reset, "Resend token", confirm
    reset_webhook_verification(h.store, "acme-notion", h.secrets)
    admin.op("send_verification")
    admin.deliveries()
    assert reveal_verification_token(h.secrets, "acme-notion") == NOTION_TOKEN
    confirm_webhook_verification(h.store, "acme-notion", h.secrets)
    row = tally.row("Notion: forged verification requests (token swap)")
    for i in range(attackers):
        r = httpx.post(url, json={"verification_token": f"secret_evil_late_{i}"})
        row.check(r.status_code == 401 and reveal_verification_token(h.secrets, "acme-notion") == NOTION_TOKEN,
                  "a verification request after confirmation changed the token")


def test_notion_forged_and_replayed_deliveries(notion, tally):
    h, admin, url = notion
    admin.op("send_verification")
    admin.deliveries()
    confirm_webhook_verification(h.store, "acme-notion", h.secrets)
    row = tally.row("Notion: forged deliveries (X-Notion-Signature)")
    body = _notion_delivery("evt-forged")
    forgeries = {
        "no signature": (body, {}),
        "signed with a guessed token": (body, {"X-Notion-Signature": sign_webhook_payload(body, "secret_guess")}),
        "signature over other bytes": (body + b" ", {"X-Notion-Signature": sign_webhook_payload(body, NOTION_TOKEN)}),
        "signature without its scheme": (body, {"X-Notion-Signature":
                                                sign_webhook_payload(body, NOTION_TOKEN).removeprefix("sha256=")}),
        "signature of another delivery": (body, {"X-Notion-Signature":
                                                 sign_webhook_payload(_notion_delivery("evt-x"), NOTION_TOKEN)}),
        "body re-serialised after signing": (json.dumps(json.loads(body), indent=2).encode(),
                                             {"X-Notion-Signature": sign_webhook_payload(body, NOTION_TOKEN)}),
        "not JSON": (b"\x00\xff not json", {"X-Notion-Signature": sign_webhook_payload(b"\x00\xff not json",
                                                                                         "secret_guess")}),
    }
    for what, (payload, headers) in forgeries.items():
        r = httpx.post(url, content=payload, headers=headers)
        row.check(r.status_code == 401 and pending(h, "acme-notion") == 0, f"{what}: HTTP {r.status_code}")
    row = tally.row("Notion: replayed deliveries")
    admin.op("edit_page", id="5a4b3c2d-0000-4000-8000-0000000000a1", text="Releases go out on Thursdays.")
    first = admin.deliveries()[-1]
    assert first["status"] == 202 and pending(h, "acme-notion") == 1
    for _ in range(scale(5, 50)):
        admin.replay(first["index"])
        row.check(admin.deliveries()[-1]["status"] == 202 and pending(h, "acme-notion") == 1,
                  "a replayed delivery was queued again")


@pytest.fixture
def example(tmp_path) -> Iterator[tuple[Harness, object, str]]:
    h = Harness(tmp_path / "home", connector_cls=ExampleConnector)
    with serve(ExampleSandbox(sample_workspace(6), clock=h.clock)) as sandbox:
        h.connect("example", "ex", scope="all", config={"base_url": sandbox.url, "token": "tok-example-1",
                                                        "webhook_secret": EXAMPLE_SECRET})
        with serve(h.receiver()) as receiver:
            url = f"{receiver.url}/webhooks/ex"
            sandbox.admin.set_webhook(url, EXAMPLE_SECRET)
            yield h, sandbox.admin, url
    h.close()


def test_standard_webhooks_forged_stale_and_replayed(example, tally):
    h, admin, url = example
    body = json.dumps({"type": "note.updated", "id": "note-0001"}).encode()
    good = StandardWebhook(EXAMPLE_SECRET)
    now = int(time.time())
    row = tally.row("Standard Webhooks: forged and stale deliveries")
    wrong = StandardWebhook("whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
    forgeries = {
        "wrong secret": (body, wrong.sign(body, msg_id="m1")),
        "body changed after signing": (body.replace(b"0001", b"0002"), good.sign(body, msg_id="m2")),
        "timestamp ten minutes old": (body, good.sign(body, msg_id="m3", timestamp=now - 600)),
        "timestamp ten minutes ahead": (body, good.sign(body, msg_id="m4", timestamp=now + 600)),
        "timestamp changed after signing": (body, {**good.sign(body, msg_id="m5", timestamp=now - 600),
                                                   "webhook-timestamp": str(now)}),
        "id changed after signing": (body, {**good.sign(body, msg_id="m6"), "webhook-id": "m6-replay"}),
        "no v1 signature": (body, {**good.sign(body, msg_id="m7"), "webhook-signature": "v0,abc"}),
        "no headers": (body, {}),
    }
    for what, (payload, headers) in forgeries.items():
        r = httpx.post(url, content=payload, headers=headers)
        row.check(r.status_code == 401 and pending(h, "ex") == 0, f"{what}: HTTP {r.status_code}")
    row = tally.row("Standard Webhooks: replayed deliveries")
    headers = good.sign(body, msg_id="m-genuine")
    assert httpx.post(url, content=body, headers=headers).status_code == 202 and pending(h, "ex") == 1
    before = h.queue().counts("ex")
    for _ in range(scale(5, 50)):
        r = httpx.post(url, content=body, headers=headers)
        row.check(r.status_code == 202 and h.queue().counts("ex") == before, "a replay was queued again")


@pytest.fixture
def graph(tmp_path) -> Iterator[tuple[Harness, str]]:
    h = Harness(tmp_path / "home", team="acme", connector_cls=MicrosoftConnector)
    Connections(h.store).save(Connection(name="acme-ms", platform="microsoft", team_id="acme", scope="team:t-1",
                                         config={"tenant": "tenant-1", "client_id": "client-1"},
                                         status="never_synced"))
    h.secrets.set("acme-ms", "client_secret", "sandbox-client-secret")
    h.secrets.set("acme-ms", "client_state", "the-connections-own-client-state")
    with serve(h.receiver()) as receiver:
        yield h, f"{receiver.url}/webhooks/acme-ms"
    h.close()


def test_graph_handshake_and_client_state(graph, tally):
    h, url = graph
    row = tally.row("Microsoft Graph: validation handshake abuse")
    for token in ("<script>alert(1)</script>", "<html><body>Sign in</body></html>", "a\r\nSet-Cookie: s=1",
                  "x" * 600, "javascript:alert(1)//\"'", "\x00\x01"):
        r = httpx.post(url, params={"validationToken": token})
        row.check(r.status_code == 401 and token not in r.text and r.headers.get("x-content-type-options") == "nosniff",
                  f"{token[:20]!r}: HTTP {r.status_code}")
    genuine = "Validation: Testing client application reachability for subscription Request-Id: 1f2e"
    r = httpx.post(url, params={"validationToken": genuine})
    assert r.status_code == 200 and r.text == genuine and r.headers["x-content-type-options"] == "nosniff"
    row = tally.row("Microsoft Graph: forged change notifications (clientState)")
    item = {"subscriptionId": "sub-1", "changeType": "created", "tenantId": "tenant-1",
            "resource": "teams('t-1')/channels('c-1')/messages('1')", "resourceData": {"id": "1"},
            "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z"}
    for what, state in (("guessed clientState", "guessed"), ("no clientState", None),
                        ("clientState of another connection", "another-connections-state")):
        body = {"value": [{**item, **({"clientState": state} if state else {})}]}
        r = httpx.post(url, json=body)
        row.check(r.status_code == 401 and pending(h, "acme-ms") == 0, f"{what}: HTTP {r.status_code}")
