"""Webhooks: Standard Webhooks verification (one test per failure reason), the receiver, the
durable queue (replays, coalescing), and the worker (retries, dead letters, reconnect)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import httpx
import pytest
from standardwebhooks import Webhook

from engram_sdk.connectors import StandardWebhook, WebhookError, serve, sign_hmac_sha256, verify_hmac_sha256
from engram_sdk.testing import Harness

from .conftest import SECRET, example_config

BODY = b'{"type": "note.updated", "id": "note-0001"}'


# --- signature checks ------------------------------------------------------------------------------


def signed(body: bytes = BODY, *, msg_id: str = "msg_1", ts: int | None = None, secret: str = SECRET):
    return StandardWebhook(secret).sign(body, msg_id=msg_id, timestamp=ts)


def test_standard_webhook_verifies() -> None:
    assert StandardWebhook(SECRET).verify(signed(), BODY) == "msg_1"


def test_missing_header() -> None:
    headers = signed()
    del headers["webhook-signature"]
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(headers, BODY)
    assert info.value.reason == WebhookError.MISSING_HEADER


def test_malformed_timestamp() -> None:
    headers = {**signed(), "webhook-timestamp": "yesterday"}
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(headers, BODY)
    assert info.value.reason == WebhookError.MALFORMED_HEADER


def test_no_v1_signature() -> None:
    headers = {**signed(), "webhook-signature": "v1a,abc"}
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(headers, BODY)
    assert info.value.reason == WebhookError.MALFORMED_HEADER


def test_tampered_body() -> None:
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(signed(), BODY.replace(b"0001", b"0002"))
    assert info.value.reason == WebhookError.NO_MATCH


def test_wrong_secret() -> None:
    with pytest.raises(WebhookError) as info:
        StandardWebhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").verify(signed(), BODY)
    assert info.value.reason == WebhookError.NO_MATCH


def test_too_old() -> None:
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(signed(ts=int(time.time()) - 301), BODY)
    assert info.value.reason == WebhookError.TOO_OLD


def test_too_new() -> None:
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(signed(ts=int(time.time()) + 301), BODY)
    assert info.value.reason == WebhookError.TOO_NEW


def test_rotation_any_listed_signature_matches() -> None:
    old = signed(secret="whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZA==")
    new = signed()
    headers = {**new, "webhook-signature": old["webhook-signature"] + " " + new["webhook-signature"]}
    assert StandardWebhook(SECRET).verify(headers, BODY) == "msg_1"


def test_replay_protection_cannot_be_switched_off() -> None:
    with pytest.raises(ValueError):
        StandardWebhook(SECRET, tolerance=0)


def test_interoperates_with_the_standardwebhooks_package() -> None:
    Webhook(SECRET).verify(BODY, signed(), json_parse=False)  # ours verify with the reference library
    now = int(time.time())
    theirs = {"webhook-id": "msg_9", "webhook-timestamp": str(now),
              "webhook-signature": Webhook(SECRET).sign("msg_9", datetime.fromtimestamp(now, timezone.utc), BODY)}
    assert StandardWebhook(SECRET).verify(theirs, BODY) == "msg_9"


def test_forged_stale_delivery_is_no_match_not_too_old() -> None:
    # Documented difference from standardwebhooks.Webhook.verify: the signature is checked first,
    # so a forger learns nothing about the time window.
    headers = {**signed(ts=int(time.time()) - 3600), "webhook-signature": "v1,Zm9yZ2Vk"}
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(headers, BODY)
    assert info.value.reason == WebhookError.NO_MATCH


def test_tolerance_and_now_are_ours() -> None:
    ts = 1_700_000_000
    assert StandardWebhook(SECRET, tolerance=3600).verify(signed(ts=ts), BODY, now=ts + 3000) == "msg_1"
    with pytest.raises(WebhookError) as info:
        StandardWebhook(SECRET).verify(signed(ts=ts), BODY, now=ts + 301)
    assert info.value.reason == WebhookError.TOO_OLD


def test_secret_that_is_not_base64_is_used_as_bytes() -> None:
    import base64
    import hashlib
    import hmac

    headers = StandardWebhook("not base64!").sign(BODY, msg_id="m", timestamp=1)
    mac = hmac.new(b"not base64!", b"m.1." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_hmac_hex_helper() -> None:
    import hashlib
    import hmac

    sig = "sha256=" + hmac.new(b"token", BODY, hashlib.sha256).hexdigest()
    verify_hmac_sha256("token", BODY, sig, prefix="sha256=")
    for bad, reason in ((None, "missing_header"), ("md5=abc", "malformed_header"), ("sha256=00", "no_match")):
        with pytest.raises(WebhookError) as info:
            verify_hmac_sha256("token", BODY, bad, prefix="sha256=")
        assert info.value.reason == reason


def test_hmac_sign_helper_and_case_of_hex() -> None:
    import hashlib
    import hmac

    sig = sign_hmac_sha256("token", BODY, prefix="sha256=")
    assert sig == "sha256=" + hmac.new(b"token", BODY, hashlib.sha256).hexdigest()
    verify_hmac_sha256("token", BODY, "sha256=" + sig.removeprefix("sha256=").upper(), prefix="sha256=")
    b64 = sign_hmac_sha256(b"token", BODY, encoding="base64")
    verify_hmac_sha256(b"token", BODY, b64, encoding="base64")
    with pytest.raises(WebhookError, match="X-Example-Signature"):
        verify_hmac_sha256("token", BODY, None, header="X-Example-Signature")


# --- receiver, queue, worker -----------------------------------------------------------------------


@pytest.fixture
def hooked(tmp_path, server, admin, clock):
    """A harness whose connection takes webhooks, the receiver served, the sandbox delivering to it."""
    h = Harness(tmp_path / "home", clock=clock)
    h.connect("example", "ex", scope="all", config=example_config(server, webhook_secret=SECRET))
    with serve(h.receiver()) as receiver:
        admin.set_webhook(f"{receiver.url}/webhooks/ex", SECRET)
        yield h, receiver
    h.close()


def test_delivery_is_verified_queued_and_answered_202(hooked, admin) -> None:
    h, _ = hooked
    admin.op("edit_note", id="note-0001", text="new")
    [d] = admin.deliveries()
    assert d["status"] == 202
    assert h.queue().counts("ex") == {"pending": 1, "done": 0, "dead": 0}
    assert h.event_count() == 0  # the receiver never calls the platform itself


def test_bad_signature_is_refused_with_401(hooked) -> None:
    h, receiver = hooked
    headers = {**signed(secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")}
    r = httpx.post(f"{receiver.url}/webhooks/ex", content=BODY, headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "no_match"
    assert h.queue().counts("ex")["pending"] == 0


def test_unknown_connection_is_404(hooked) -> None:
    _, receiver = hooked
    r = httpx.post(f"{receiver.url}/webhooks/nobody", content=BODY, headers=signed())
    assert r.status_code == 404


def test_worker_refetches_and_stores(hooked, admin) -> None:
    h, _ = hooked
    h.sync("ex")
    admin.op("edit_note", id="note-0001", text="new text")
    admin.deliveries()
    report = h.worker().drain()
    assert report.done == 1 and report.stored == 2  # the Edit and the new Document
    assert h.latest()["note-0001"][1]["text"] == "new text"
    assert h.queue().counts("ex") == {"pending": 0, "done": 1, "dead": 0}


def test_replayed_delivery_is_dropped(hooked, admin) -> None:
    h, _ = hooked
    admin.op("edit_note", id="note-0001", text="x")
    admin.deliveries()
    admin.replay(0)
    admin.replay(0)
    admin.deliveries()
    assert h.queue().counts("ex")["pending"] == 1


def test_burst_for_one_entity_coalesces(hooked, admin) -> None:
    h, _ = hooked
    for i in range(5):
        admin.op("edit_note", id="note-0001", text=f"v{i}")
    assert len(admin.deliveries()) == 5
    assert h.queue().counts("ex")["pending"] == 1
    h.worker().drain()
    assert h.latest()["note-0001"][1]["text"] == "v4"


def test_out_of_order_and_repeated_deliveries_give_the_same_events(hooked, admin, tmp_path) -> None:
    h, receiver = hooked
    h.sync("ex")
    admin.op("edit_note", id="note-0001", text="first")
    admin.op("delete_note", id="note-0002")
    admin.op("edit_note", id="note-0001", text="second")
    deliveries = admin.deliveries()
    h.worker().drain()
    after = h.event_ids()
    # the same deliveries again, newest first, re-signed as fresh attempts with new ids
    for d in reversed(deliveries):
        body = d["body"].encode()
        httpx.post(f"{receiver.url}/webhooks/ex", content=body, headers=signed(body, msg_id=f"again-{d['index']}"))
    h.worker().drain()
    assert h.event_ids() == after
    assert h.latest()["note-0001"][1]["text"] == "second"
    assert h.latest()["note-0002"][0] == "ai.engram.entity.deleted"
    assert h.sync("ex").stored == 0  # and the poll that follows agrees


def test_failing_entity_is_retried_then_dead_lettered(hooked, admin) -> None:
    h, _ = hooked
    admin.op("edit_note", id="note-0004", text="x")
    admin.op("break_note", id="note-0004")
    admin.deliveries()
    now = [1000.0]
    worker = h.worker(max_attempts=3, backoff_base=10)
    worker.queue.clock = lambda: now[0]
    r1 = worker.run_once()
    assert (r1.retried, r1.dead) == (0, 0) and r1.claimed == 0  # the row was queued at real time
    now[0] = time.time()
    r1 = worker.run_once()
    assert r1.retried == 1
    assert worker.run_once().claimed == 0  # backing off
    now[0] += 20
    assert worker.run_once().retried == 1
    now[0] += 40
    r3 = worker.run_once()
    assert r3.dead == 1
    [dead] = h.queue().dead("ex")
    assert dead["entity_id"] == "note-0004" and dead["attempts"] == 3 and "HTTP 500" in dead["last_error"]


def test_a_rate_limited_refetch_waits_as_asked_and_is_never_dead_lettered(hooked, admin) -> None:
    h, _ = hooked
    admin.op("edit_note", id="note-0001", text="after the storm")
    admin.deliveries()
    admin.fault(status=429, times=1000, retry_after=1000, path="/api/notes/note-0001")
    now = [time.time()]
    worker = h.worker(max_attempts=2, backoff_base=10)
    worker.queue.clock = lambda: now[0]
    for _ in range(4):  # twice as many storms as attempts allowed: throttling is not a failure
        r = worker.run_once()
        assert (r.retried, r.dead) == (1, 0)
        now[0] += 999
        assert worker.run_once().claimed == 0  # waits the 1000 s the platform asked for
        now[0] += 2
    admin.clear_faults()
    r = worker.run_once()
    assert r.done == 1 and h.queue().counts("ex") == {"pending": 0, "done": 1, "dead": 0}
    assert h.latest()["note-0001"][1]["text"] == "after the storm"


def test_revoked_grant_parks_the_work(hooked, admin) -> None:
    h, _ = hooked
    admin.op("edit_note", id="note-0001", text="x")
    admin.deliveries()
    admin.revoke("tok-example-1")
    report = h.worker().drain()
    assert report.dead == 0 and report.retried == 1
    assert h.connections.get("ex").status == "reconnect_needed"
    assert h.queue().counts("ex") == {"pending": 1, "done": 0, "dead": 0}


def test_work_for_a_removed_connection_is_dead_lettered(hooked, admin) -> None:
    h, _ = hooked
    admin.op("edit_note", id="note-0001", text="x")
    admin.deliveries()
    h.queue().enqueue("gone", ["x"])
    report = h.worker(max_attempts=1).drain()
    assert report.dead == 1 and report.done == 1


def test_resync_request_runs_an_incremental_sync(hooked) -> None:
    h, _ = hooked
    h.queue().enqueue("ex", [], resync=True)
    report = h.worker().drain()
    assert report.done == 1 and report.stored == 12


def test_delivery_body_must_be_json_only_after_verification(hooked) -> None:
    _, receiver = hooked
    r = httpx.post(f"{receiver.url}/webhooks/ex", content=b"not json", headers=signed(b"other"))
    assert r.status_code == 401  # the signature is checked before the body is parsed
    json.dumps({})


@pytest.mark.parametrize("body", [b'{"type": "note.updated"}', b"[1, 2]", b"not json", b'{"id": ""}'])
def test_a_signed_delivery_the_connector_cannot_read_is_refused_not_a_server_error(hooked, body) -> None:
    h, receiver = hooked
    r = httpx.post(f"{receiver.url}/webhooks/ex", content=body, headers=signed(body, msg_id=f"m-{len(body)}"))
    assert r.status_code == 401 and r.json()["error"] == "not_accepted"
    assert h.queue().counts("ex")["pending"] == 0


def test_meta_a_connector_sets_while_refetching_is_saved(tmp_path, server, clock) -> None:
    """A Graph subscription renewed during a refetch must be remembered on the connection."""
    from engram_sdk._example.connector import ExampleConnector

    class RenewingConnector(ExampleConnector):
        def fetch(self, entity_ids):
            self.ctx.set_meta(subscription_expires="2026-12-01T00:00:00Z")
            yield from super().fetch(entity_ids)

    h = Harness(tmp_path / "home", clock=clock, connector_cls=RenewingConnector)
    h.connect("example", "ex", scope="all", config=example_config(server, webhook_secret=SECRET))
    h.queue().enqueue("ex", ["note-0001"], delivery_id="d1")
    report = h.worker().drain()
    assert report.done == 1
    assert h.connections.get("ex").meta["subscription_expires"] == "2026-12-01T00:00:00Z"
    h.close()


def test_a_malformed_record_by_webhook_is_counted_and_skipped_and_the_worker_keeps_running(tmp_path, server, clock):
    """A connector that yields one record the event builder rejects (here: no time, built without
    validation, as a buggy third-party normaliser might) and one that is no record at all: the
    good item of the same batch is stored, the bad ones go the way of any failed item (retried,
    then dead-lettered, with the reason), and a worker thread running forever survives a
    connector that raises."""
    import threading

    from engram_sdk import Document
    from engram_sdk._example.connector import ExampleConnector

    class BuggyConnector(ExampleConnector):
        def fetch(self, entity_ids):
            for item in super().fetch(entity_ids):
                if item.entity_id == "note-0002":
                    yield Document.model_construct(**{**dict(item), "updated_at": None})
                elif item.entity_id == "note-0003":
                    yield {"entity_id": "note-0003", "text": "a dict is not a record"}
                elif item.entity_id == "note-0005":
                    raise RuntimeError("the normaliser fell over")
                else:
                    yield item

    h = Harness(tmp_path / "home", clock=clock, connector_cls=BuggyConnector)
    h.connect("example", "ex", scope="all", config=example_config(server, webhook_secret=SECRET))
    h.queue().enqueue("ex", ["note-0001", "note-0002", "note-0003"], delivery_id="d1")
    worker = h.worker(max_attempts=1)
    report = worker.drain()
    assert report.done == 1 and report.dead == 2 and report.stored >= 1
    assert "note-0001" in h.latest() and "note-0002" not in h.latest() and "note-0003" not in h.latest()
    dead = {d["entity_id"]: d["last_error"] for d in h.queue().dead("ex")}
    assert "EventError" in dead["note-0002"] and "not a record" in dead["note-0003"]

    # A connector that raises mid-fetch: the work is failed like any other, the thread lives on.
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, kwargs={"interval": 0.05, "stop": stop}, daemon=True)
    thread.start()
    try:
        h.queue().enqueue("ex", ["note-0005"], delivery_id="d2")
        deadline = time.monotonic() + 30
        while "note-0005" not in {d["entity_id"] for d in h.queue().dead("ex")} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "RuntimeError" in {d["entity_id"]: d["last_error"] for d in h.queue().dead("ex")}["note-0005"]
        h.queue().enqueue("ex", ["note-0004"], delivery_id="d3")
        while "note-0004" not in h.latest() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread.is_alive() and "note-0004" in h.latest()
    finally:
        stop.set()
        thread.join(timeout=10)
    h.close()
