"""examples/webhook_receiver on loopback: the Notion sandbox delivers real signed webhooks to it (and
the queued change is refetched and stored by its worker), forged deliveries are refused, and signed
Engram envelopes from another host are stored only when they verify."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest

from engram_microsoft.bench import bench_workspace
from engram_microsoft.sandbox import MicrosoftSandbox
from engram_notion import confirm_webhook_verification, sign_webhook_payload
from engram_notion.sandbox import NotionSandbox
from engram_sdk import Document, Keyring, build_events, load_key_set
from engram_sdk._sandbox import SandboxServer, serve
from engram_sdk.testing import Harness
from examples.webhook_receiver.app import create_app
from tests.factories import T0

from tests.waiting import wait_until

TEAM = "acme"
VERIFICATION_TOKEN = "secret_verification_token_from_notion"
BATCH = "application/cloudevents-batch+json"


@dataclass
class Deployment:
    harness: Harness
    notion: SandboxServer
    receiver: SandboxServer

    @property
    def hook_url(self) -> str:
        return f"{self.receiver.url}/webhooks/acme-notion"

    def documents(self) -> dict[str, str]:
        """entity id -> latest stored text, from the event store."""
        return {r.entity_id: r.text for r in (e.event.record for e in self.harness.store.iter_events(TEAM))
                if r.kind == "document"}


@pytest.fixture
def deployment(tmp_path):
    """A deployment connected to the Notion sandbox and synced once, with the example receiver
    running on loopback and registered as the sandbox's webhook URL (after Notion's handshake)."""
    h = Harness(tmp_path / "home", team=TEAM)  # connectors found by entry point, as in a deployment
    with serve(NotionSandbox(NotionSandbox.default_workspace())) as notion:
        h.connect("notion", "acme-notion", scope="all",
                  config={"token": "secret_sandbox", "base_url": notion.url, "requests_per_second": 100})
        assert h.sync("acme-notion").ok
        with serve(create_app(h.settings, poll_seconds=0.1)) as receiver:
            dep = Deployment(h, notion, receiver)
            notion.admin.set_webhook(dep.hook_url, secret=VERIFICATION_TOKEN)
            notion.admin.op("send_verification")  # Notion's one-time handshake, answered by the receiver
            assert notion.admin.deliveries()[-1]["status"] == 202
            confirm_webhook_verification(h.store, "acme-notion")  # `engram connections verify acme-notion`
            yield dep
    h.close()


def test_a_signed_notion_webhook_is_queued_and_its_change_stored(deployment):
    notion = deployment.notion.admin
    page = next(p["id"] for p in notion.workspace()["pages"] if p["properties"]["title"]["title"][0]["plain_text"]
                == "Team wiki")
    assert "Releases go out on Tuesdays" in deployment.documents()[page]

    notion.op("edit_page", id=page, text="Releases now go out on Thursdays.")
    delivery = notion.deliveries()[-1]
    assert delivery["status"] == 202 and delivery["headers"]["X-Notion-Signature"].startswith("sha256=")
    assert json.loads(delivery["body"])["entity"]["id"] == page

    new_text = "Releases now go out on Thursdays.\n[page: On-call]"  # the body, then its child page
    wait_until(lambda: deployment.documents()[page] == new_text, what="the refetched page")
    edits = [r for r in (e.event.record for e in deployment.harness.store.iter_events(TEAM)) if r.kind == "edit"]
    assert [(e.entity_id, e.after) for e in edits] == [(page, new_text)]
    health = httpx.get(f"{deployment.receiver.url}/healthz").json()
    assert health["status"] == "ok" and health["queue"]["done"] >= 1 and health["queue"]["pending"] == 0


def test_a_webhook_with_a_bad_signature_is_refused_with_a_clear_error(deployment):
    body = json.dumps({"id": "evt-forged", "type": "page.content_updated",
                       "entity": {"id": "5a4b3c2d-0000-4000-8000-0000000000a1", "type": "page"}}).encode()
    before = deployment.harness.event_count()
    r = httpx.post(deployment.hook_url, content=body,
                   headers={"X-Notion-Signature": sign_webhook_payload(body, "secret_guessed_by_an_attacker")})
    assert r.status_code == 401
    assert r.json() == {"error": "no_match", "message": "X-Notion-Signature does not match the body"}
    assert VERIFICATION_TOKEN not in r.text
    unsigned = httpx.post(deployment.hook_url, content=body)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "missing_header"
    assert httpx.get(f"{deployment.receiver.url}/healthz").json()["queue"]["pending"] == 0
    assert deployment.harness.event_count() == before


def test_an_unknown_connection_is_404(deployment):
    r = httpx.post(f"{deployment.receiver.url}/webhooks/nobody", content=b"{}")
    assert r.status_code == 404 and r.json()["error"] == "unknown_connection"


def test_microsoft_graph_notifications_pass_the_handshake_and_are_stored(deployment, tmp_path):
    h = deployment.harness
    hook = f"{deployment.receiver.url}/webhooks/acme-ms"
    with serve(MicrosoftSandbox(bench_workspace(8)), tls=True, tls_dir=tmp_path / "tls") as graph:
        h.connect("microsoft", "acme-ms", scope="team:bench-team", config={
            "tenant": "bench-tenant", "client_id": "bench-app", "client_secret": "bench-secret",
            "authority": f"{graph.url}/bench-tenant", "graph_url": f"{graph.url}/v1.0",
            "ca_bundle": graph.ca_bundle, "notification_url": hook})
        # The sync subscribes to the team's channels; Graph validates each subscription by posting
        # a validationToken to the receiver, which must echo it as text within seconds.
        assert h.sync("acme-ms").ok
        subscriptions = graph.admin.op("subscriptions")
        assert subscriptions and all(s["notificationUrl"] == hook for s in subscriptions)

        channel = "19:bench0@thread.tacv2"
        graph.admin.op("post_message", team="bench-team", channel=channel, text="The offsite moved to Lisbon.")
        (delivery,) = graph.admin.deliveries()
        assert delivery["status"] == 202

        def stored_threads() -> list[str]:
            return [m.text for e in h.store.iter_events(TEAM) if e.event.record.kind == "thread"
                    for m in e.event.record.messages]

        wait_until(lambda: "The offsite moved to Lisbon." in stored_threads(), what="the notified message")

        forged = json.loads(delivery["body"])
        forged["value"][0]["clientState"] = "guessed-client-state"
        r = httpx.post(hook, json=forged)
        assert r.status_code == 401 and r.json()["error"] == "no_match" and "clientState" in r.json()["message"]


# --- signed envelopes from elsewhere -----------------------------------------------------------------


def elsewhere_events(tmp_path, team: str = TEAM, trusted_by=None):
    """Events signed on another connector host, whose public key set ``trusted_by`` trusts."""
    keyring = Keyring(tmp_path / "elsewhere-keys")
    keyring.generate([team])
    if trusted_by is not None:
        trusted_by.trust(load_key_set(keyring.export_public()), origin="elsewhere.json")  # `engram keys trust`
    doc = Document(platform="harvey", workspace_id="org-1", entity_id="matter-7", title="Matter 7",
                   text="The Nimbusfold notice period is 120 days.", updated_at=T0)
    return [keyring.sign(e).to_dict() for e in build_events(doc, team_id=team, connection_id="acme-harvey",
                                                                source="harvey://org/org-1")]


def test_a_signed_envelope_is_accepted_and_stored_once(deployment, tmp_path):
    store = deployment.harness.store
    (event,) = elsewhere_events(tmp_path, trusted_by=store)
    url = f"{deployment.receiver.url}/events"
    r = httpx.post(url, json=event, headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0, "conflicts": 0}
    stored = store.get(TEAM, event["id"])
    assert stored is not None and stored.event.record.text == "The Nimbusfold notice period is 120 days."
    again = httpx.post(url, content=json.dumps([event]), headers={"Content-Type": BATCH})
    assert again.status_code == 202 and again.json()["duplicates"] == 1


def test_a_tampered_envelope_is_rejected_and_nothing_of_its_batch_stored(deployment, tmp_path):
    store = deployment.harness.store
    (event,) = elsewhere_events(tmp_path, trusted_by=store)
    tampered = json.loads(json.dumps(event))
    tampered["data"]["text"] = "The Nimbusfold notice period is 10 days."
    before = deployment.harness.event_count()
    r = httpx.post(f"{deployment.receiver.url}/events", content=json.dumps([event, tampered]),
                   headers={"Content-Type": BATCH})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "rejected" and "nothing was stored" in body["message"]
    assert [(x["index"], x["reason"]) for x in body["rejected"]] == [(1, "bad_signature")]
    assert deployment.harness.event_count() == before and store.get(TEAM, event["id"]) is None


def test_an_envelope_signed_by_an_untrusted_key_is_rejected(deployment, tmp_path):
    (event,) = elsewhere_events(tmp_path)  # its key set was never trusted here
    r = httpx.post(f"{deployment.receiver.url}/events", json=event,
                   headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 422 and r.json()["rejected"][0]["reason"] == "unknown_key"


def test_a_key_trusted_for_another_team_cannot_sign_for_this_one(deployment, tmp_path):
    store = deployment.harness.store
    keyring = Keyring(tmp_path / "globex-keys")
    keyring.generate(["globex"])
    store.trust(load_key_set(keyring.export_public()))
    doc = Document(platform="harvey", workspace_id="org-1", entity_id="m-1", title="M", text="x", updated_at=T0)
    (event,) = [keyring.sign(e).to_dict() for e in build_events(doc, team_id=TEAM, connection_id="c",
                                                                    source="harvey://org/org-1")]
    r = httpx.post(f"{deployment.receiver.url}/events", json=event)
    assert r.status_code == 422 and r.json()["rejected"][0]["reason"] == "untrusted_for_team"


def test_malformed_bodies_are_400(deployment):
    url = f"{deployment.receiver.url}/events"
    assert httpx.post(url, content=b"{not json").json()["error"] == "malformed_json"
    r = httpx.post(url, content=b"{}", headers={"Content-Type": BATCH})
    assert r.status_code == 400 and r.json()["error"] == "schema_error"
