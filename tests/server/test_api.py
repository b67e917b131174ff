"""The /v1 API without a model: ingest, auth, tenant isolation, limits, errors, signing keys."""

from __future__ import annotations

import json

import pytest

from engram_sdk import Keyring
from engram_sdk.server import ServerConfig, create_app
from fastapi.testclient import TestClient
from tests.factories import signed_events


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    return body


def batch(events) -> dict:
    return {"events": [e.to_dict() if hasattr(e, "to_dict") else e for e in events]}


def test_health_and_openapi(server):
    assert server.get("/v1/health").json()["status"] == "ok"
    spec = server.get("/openapi.json").json()
    assert "/v1/teams/{team}/query" in spec["paths"] and "/v1/events" in spec["paths"]


def test_ingest_gives_a_result_per_event_and_stores_the_good_ones(server, deployment):
    acme = deployment.keyrings["acme"]
    good = signed_events(acme, 3)
    forged = good[0].to_dict()
    forged["data"]["text"] = "forged"
    forged["id"] = "f" * 64
    stranger = Keyring(deployment.settings.home / "stranger")
    stranger.generate(["acme"])
    unknown = signed_events(stranger, 1, start=50)[0]
    resp = server.post("/v1/events", json=batch([good[0], forged, good[1], unknown, {"id": 5}, good[2]]),
                       headers=deployment.headers("acme", "ingest"))
    body = resp.json()
    assert resp.status_code == 200
    assert [(r["index"], r["status"], r["reason"]) for r in body["results"]] == [
        (0, "accepted", None), (1, "rejected", "bad_signature"), (2, "accepted", None),
        (3, "rejected", "unknown_key"), (4, "rejected", "forbidden_team"), (5, "accepted", None)]
    assert deployment.store.count("acme") == 3


def test_a_replayed_batch_is_stored_once(server, deployment):
    events = signed_events(deployment.keyrings["acme"], 4)
    h = deployment.headers("acme", "admin")
    assert server.post("/v1/events", json=batch(events), headers=h).json()["accepted"] == 4
    again = server.post("/v1/events", json=batch(events), headers=h).json()
    assert again["duplicates"] == 4 and again["accepted"] == 0 and deployment.store.count("acme") == 4


def test_conflicting_event_is_reported_and_the_stored_one_kept(server, deployment):
    # Same platform revision, other content: the one way two contents share an id.
    kr = deployment.keyrings["acme"]
    (ev,) = signed_events(kr, 1, revision="v7")
    h = deployment.headers("acme", "ingest")
    server.post("/v1/events", json=batch([ev]), headers=h)
    other = ev.to_dict()
    other["data"]["title"] = "same id, new content"
    resp = server.post("/v1/events", json=batch([kr.sign(other)]), headers=h).json()
    result = resp["results"][0]
    assert result["status"] == "conflict" and resp["conflicts"] == 1
    # A client reading only reason/message (as for a rejection) learns what happened.
    assert result["reason"] == "conflict" and "different content" in result["message"]
    assert deployment.store.get("acme", ev.id).envelope["data"]["title"] != "same id, new content"


def test_ingest_recomputes_ids_and_the_genuine_event_is_not_locked_out(server, deployment):
    kr = deployment.keyrings["acme"]
    genuine, other = signed_events(kr, 2)
    moved = genuine.to_dict()
    moved["subject"] = "page-99"  # the old id, a new subject: a second copy of the record
    zeros = other.to_dict()
    zeros["id"] = "0" * 64
    squat = signed_events(kr, 1, start=9)[0].to_dict()
    squat["id"] = genuine.id  # take the genuine event's id before it arrives
    h = deployment.headers("acme", "ingest")
    body = server.post("/v1/events", json=batch([kr.sign(moved), kr.sign(zeros), kr.sign(squat)]), headers=h).json()
    assert [(r["status"], r["reason"]) for r in body["results"]] == [("rejected", "id_mismatch")] * 3
    assert body["accepted"] == 0 and deployment.store.count("acme") == 0
    assert all("hash of [source, type, subject, revision]" in r["message"] or "subject" in r["message"]
               for r in body["results"])
    body = server.post("/v1/events", json=batch([genuine]), headers=h).json()
    assert body["results"][0]["status"] == "accepted"


def _lines_batch(events) -> str:
    """A batch written the way people write one: an event per line."""
    return '{"events": [\n' + ",\n".join(e.to_json() for e in events) + "\n]}"


def test_a_truncated_batch_is_reported_by_line_and_event_not_byte_offset(server, deployment):
    events = signed_events(deployment.keyrings["acme"], 4)
    body = _lines_batch(events)
    third = body.index(events[2].id)  # cut in the middle of line 4, the third event
    resp = server.post("/v1/events", content=body[:third + 10], headers={
        **deployment.headers("acme", "ingest"), "content-type": "application/json"})
    message = assert_error(resp, 422, "invalid_request")["error"]["message"]
    assert message.startswith("body is not valid JSON: ") and "at line 4, column" in message
    assert message.endswith("in events[2]") and str(third) not in message
    assert deployment.store.count("acme") == 0


def test_a_missing_comma_between_events_names_the_event_after_it(server, deployment):
    events = signed_events(deployment.keyrings["acme"], 3)
    body = _lines_batch(events).replace(",\n", "\n", 1)  # no comma after the first event
    resp = server.post("/v1/events", content=body, headers={
        **deployment.headers("acme", "ingest"), "content-type": "application/json"})
    message = assert_error(resp, 422, "invalid_request")["error"]["message"]
    assert "Expecting ',' delimiter at line 3, column 1, in events[1]" in message


def test_a_team_key_cannot_ingest_for_another_team(server, deployment):
    globex_events = signed_events(deployment.keyrings["globex"], 2, team="globex")
    resp = server.post("/v1/events", json=batch(globex_events), headers=deployment.headers("acme", "admin")).json()
    assert {r["reason"] for r in resp["results"]} == {"forbidden_team"}
    assert deployment.store.count("globex") == 0


def test_a_signing_key_trusted_only_for_another_team_is_rejected(server, deployment):
    # globex's connector key signing an event that claims team acme
    events = signed_events(deployment.keyrings["globex"], 1, team="acme")
    resp = server.post("/v1/events", json=batch(events), headers=deployment.headers("acme", "ingest")).json()
    assert resp["results"][0]["reason"] == "untrusted_for_team"


@pytest.mark.parametrize("method, path, body", [
    ("post", "/v1/teams/globex/query", {"question": "What is the launch date?"}),
    ("post", "/v1/teams/globex/train", {}),
    ("get", "/v1/teams/globex/adapters", None),
    ("post", "/v1/teams/globex/adapters/1/rollback", None),
    ("get", "/v1/teams/globex/signing-keys", None),
    ("post", "/v1/teams/globex/signing-keys", {"kid": "ed25519-x", "public_key": "AAAA"}),
    ("delete", "/v1/teams/globex/signing-keys/ed25519-x", None),
])
def test_an_admin_key_of_team_a_is_refused_everything_of_team_b(server, deployment, method, path, body):
    kw = {"json": body} if body is not None else {}
    resp = getattr(server, method)(path, headers=deployment.headers("acme", "admin"), **kw)
    assert_error(resp, 403, "forbidden")


@pytest.mark.parametrize("role, method, path, body", [
    ("ingest", "post", "/v1/teams/acme/query", {"question": "q"}),
    ("ingest", "get", "/v1/teams/acme/adapters", None),
    ("query", "post", "/v1/events", {"events": []}),
    ("query", "post", "/v1/teams/acme/train", {}),
    ("query", "get", "/v1/teams/acme/signing-keys", None),
])
def test_roles_limit_what_a_key_may_do(server, deployment, role, method, path, body):
    kw = {"json": body} if body is not None else {}
    resp = getattr(server, method)(path, headers=deployment.headers("acme", role), **kw)
    assert_error(resp, 403, "forbidden")


def test_missing_invalid_and_revoked_keys_are_401(server, deployment):
    from engram_sdk._apikeys import ApiKeys

    assert_error(server.get("/v1/teams/acme/adapters"), 401, "unauthorized")
    assert_error(server.get("/v1/teams/acme/adapters", headers={"Authorization": "Bearer egk_0000000000000000_"
                                                                                 "x" * 40}), 401, "unauthorized")
    token = deployment.tokens[("acme", "query")]
    ApiKeys(deployment.store).revoke(token)
    assert_error(server.get("/v1/teams/acme/adapters", headers={"Authorization": f"Bearer {token}"}),
                 401, "unauthorized")


def test_api_keys_are_stored_hashed(deployment):
    import sqlalchemy as sa

    token = deployment.tokens[("acme", "admin")]
    with deployment.store.engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM api_keys"))])
    assert token.split("_", 2)[2] not in dump  # the secret part (it may itself contain "_")


def test_malformed_json_is_a_json_error(server, deployment):
    resp = server.post("/v1/events", content=b'{"events": [', headers={
        **deployment.headers("acme", "ingest"), "Content-Type": "application/json"})
    assert_error(resp, 422, "invalid_request")


def test_wrong_content_type_is_415(server, deployment):
    resp = server.post("/v1/events", content=b"events=1", headers={
        **deployment.headers("acme", "ingest"), "Content-Type": "application/x-www-form-urlencoded"})
    assert_error(resp, 415, "unsupported_media_type")


def test_oversize_body_is_413_with_or_without_content_length(server, deployment):
    big = json.dumps({"events": [{"pad": "x" * (2 * 1024 * 1024)}]}).encode()
    h = {**deployment.headers("acme", "ingest"), "Content-Type": "application/json"}
    assert_error(server.post("/v1/events", content=big, headers=h), 413, "payload_too_large")

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    assert_error(server.post("/v1/events", content=chunks(), headers=h), 413, "payload_too_large")


def test_too_many_events_in_one_batch_is_refused(server, deployment):
    resp = server.post("/v1/events", json={"events": [{}] * 1001}, headers=deployment.headers("acme", "ingest"))
    assert_error(resp, 422, "invalid_request")


def test_signing_keys_are_managed_per_team_over_the_api(server, deployment):
    new = Keyring(deployment.settings.home / "new-connector")
    info = new.generate(["acme"])
    h = deployment.headers("acme", "admin")
    (event,) = signed_events(new, 1)
    assert server.post("/v1/events", json=batch([event]), headers=h).json()["results"][0]["reason"] == "unknown_key"
    resp = server.post("/v1/teams/acme/signing-keys", json={"kid": info.kid, "public_key": info.public_key}, headers=h)
    assert resp.status_code == 201 and resp.json()["status"] == "trusted"
    assert info.kid in {k["kid"] for k in server.get("/v1/teams/acme/signing-keys", headers=h).json()}
    assert server.post("/v1/events", json=batch([event]), headers=h).json()["accepted"] == 1
    assert server.delete(f"/v1/teams/acme/signing-keys/{info.kid}", headers=h).json()["status"] == "revoked"
    (later,) = signed_events(new, 1, start=1)
    assert server.post("/v1/events", json=batch([later]), headers=h).json()["results"][0]["reason"] == "revoked_key"


def test_a_key_whose_id_does_not_match_is_refused(server, deployment):
    info = deployment.keyrings["acme"].active()
    resp = server.post("/v1/teams/acme/signing-keys", json={"kid": "ed25519-00000000000000000000",
                                                             "public_key": info.public_key},
                       headers=deployment.headers("acme", "admin"))
    assert_error(resp, 422, "invalid_request")


def test_query_without_an_adapter_is_a_clear_409(deployment, tiny_model):
    deployment.settings = type(deployment.settings)(deployment.settings.home, deployment.settings.database_url,
                                                    str(tiny_model))
    app = create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False))
    with TestClient(app) as client:
        resp = client.post("/v1/teams/acme/query", json={"question": "Who runs payroll?"},
                           headers=deployment.headers("acme", "query"))
    assert_error(resp, 409, "no_adapter")


def test_queries_are_rate_limited_per_key(deployment, tiny_model):
    deployment.settings = type(deployment.settings)(deployment.settings.home, deployment.settings.database_url,
                                                    str(tiny_model))
    app = create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False, query_rate="2/min"))
    with TestClient(app) as client:
        codes = [client.post("/v1/teams/acme/query", json={"question": "q"},
                             headers=deployment.headers("acme", "query")).status_code for _ in range(3)]
        other_key = client.post("/v1/teams/acme/query", json={"question": "q"},
                                headers=deployment.headers("acme", "admin"))
        limited = client.post("/v1/teams/acme/query", json={"question": "q"},
                              headers=deployment.headers("acme", "query"))
    assert codes == [409, 409, 429] and other_key.status_code == 409
    assert float(limited.headers["retry-after"]) > 0


def test_training_jobs_can_be_queued_polled_and_cancelled(server, deployment):
    h = deployment.headers("acme", "admin")
    job = server.post("/v1/teams/acme/train", json={"from_scratch": True}, headers=h).json()
    assert job["status"] == "queued" and job["from_scratch"] is True
    assert job["step"] is None and job["total_steps"] is None  # no progress before it runs
    assert server.post("/v1/teams/acme/train", json={}, headers=h).json()["id"] == job["id"]  # one at a time
    assert server.get(f"/v1/teams/acme/train/{job['id']}", headers=h).json()["status"] == "queued"
    assert server.post(f"/v1/teams/acme/train/{job['id']}/cancel", headers=h).json()["status"] == "cancelled"
    assert_error(server.get(f"/v1/teams/globex/train/{job['id']}", headers=deployment.headers("globex", "admin")),
                 404, "not_found")


def test_metrics_are_prometheus_text(server, deployment):
    server.get("/v1/health")
    server.post("/v1/events", json={"events": []}, headers=deployment.headers("acme", "ingest"))
    text = server.get("/metrics").text
    assert 'engram_http_requests_total{method="GET",route="/v1/health",status="200"}' in text
    assert "engram_queue_depth" in text and "engram_http_request_seconds_bucket" in text


def test_cors_is_off_unless_configured(deployment):
    pre = {"Origin": "https://partner.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(deployment.settings, store=deployment.store, config=ServerConfig(workers=False))) as c:
        assert "access-control-allow-origin" not in c.options("/v1/health", headers=pre).headers
    cfg = ServerConfig(workers=False, cors_origins=["https://partner.example"])
    with TestClient(create_app(deployment.settings, store=deployment.store, config=cfg)) as c:
        assert c.options("/v1/health", headers=pre).headers["access-control-allow-origin"] == "https://partner.example"


def test_webhooks_are_routed_to_the_connection_receiver(server):
    resp = server.post("/v1/webhooks/no-such-connection", content=b"{}",
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_connection"
    assert 'engram_queue_depth{queue="webhooks"} 0.0' in server.get("/metrics").text


def test_a_queued_training_job_is_run_by_engram_worker(deployment, tiny_model, monkeypatch, capsys):
    """`engram serve --no-workers` leaves jobs in the database; `engram worker` on any host runs them."""
    from engram_sdk._cli import app
    from engram_sdk._cli._common import run_app
    from engram_sdk._jobs import Jobs

    deployment.store.append(signed_events(deployment.keyrings["acme"], 3))
    job = Jobs(deployment.store).submit("acme")
    monkeypatch.setenv("ENGRAM_HOME", str(deployment.settings.home))
    monkeypatch.setenv("ENGRAM_DATABASE_URL", deployment.settings.database_url)
    monkeypatch.setenv("ENGRAM_SECRETS", "file")
    monkeypatch.setenv("ENGRAM_BASE_MODEL", str(tiny_model))
    (deployment.settings.home / "config.toml").write_text("")
    # The gates need a real model; the random tiny one fails them, which is itself an outcome to check.
    assert run_app(app, ["worker", "--once", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["training_jobs"] == 1
    done = Jobs(deployment.store).get(job.id)
    assert done.status == "succeeded" and done.version == 1 and done.message.startswith(("published", "gate failed"))
    assert done.total_steps and done.step == done.total_steps  # its progress was written, the last step too
    assert done.started_at <= done.progress_at <= done.finished_at


def test_openapi_declares_the_bearer_key_and_every_protected_operation_needs_it(server, deployment):
    spec = server.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"]["type"] == "http" and schemes["ApiKey"]["scheme"] == "bearer"
    operations = {(method.upper(), path): op for path, item in spec["paths"].items() for method, op in item.items()}
    protected = {k for k, op in operations.items() if op.get("security") == [{"ApiKey": []}]}
    assert protected == set(operations) - {("GET", "/v1/health")}
    # and what the document says is what the server does: each of them refuses a request without a key
    for method, path in protected:
        resp = server.request(method, path.replace("{team}", "acme").replace("{kid}", "k").replace(
            "{version}", "1").replace("{job_id}", "j"), json={} if method == "POST" else None)
        assert_error(resp, 401, "unauthorized")
    assert "/openapi.json" in server.get("/docs").text  # Swagger UI draws its Authorize button from the scheme


def test_events_are_paged_by_cursor_and_the_last_page_says_so(server, deployment):
    events = signed_events(deployment.keyrings["acme"], 12)
    deployment.store.append(events)
    h = deployment.headers("acme", "admin")
    first = server.get("/v1/teams/acme/events", params={"limit": 5}, headers=h).json()
    assert [e["id"] for e in first["events"]] == [e.id for e in events[:5]] and first["has_more"] is True
    assert first["events"][0] == events[0].to_dict()  # the signed envelope exactly as stored
    second = server.get("/v1/teams/acme/events", params={"after": first["cursor"], "limit": 7}, headers=h).json()
    assert [e["id"] for e in second["events"]] == [e.id for e in events[5:]] and second["has_more"] is False
    assert_error(server.get("/v1/teams/acme/events", params={"after": "bogus"}, headers=h), 422, "invalid_request")
    assert_error(server.get("/v1/teams/acme/events", params={"limit": 0}, headers=h), 422, "invalid_request")


@pytest.mark.parametrize("team, role", [("globex", "admin"), ("acme", "query"), ("acme", "ingest")])
def test_only_the_teams_admin_key_reads_its_events(server, deployment, team, role):
    deployment.store.append(signed_events(deployment.keyrings["acme"], 2))
    resp = server.get("/v1/teams/acme/events", headers=deployment.headers(team, role))
    assert_error(resp, 403, "forbidden")
