"""The sandbox speaks Entra ID and Graph the way the recorded fixtures show, limits included."""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta, timezone

import httpx
import msal
import pytest
import requests
from msft_data import APP, DRIVE, GENERAL, SANDBOX_TENANT, SECTION, TEAM, load, serve_asgi
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

CHANNEL = f"/v1.0/teams/{TEAM}/channels/{GENERAL}"


@pytest.fixture
def env(ms):
    session = requests.Session()
    session.verify, session.trust_env = ms.server.ca_bundle, False
    authority = f"{ms.server.url}/{SANDBOX_TENANT}"
    cca = msal.ConfidentialClientApplication(APP["client_id"], client_credential=APP["client_secret"],
                                             authority=authority, http_client=session, instance_discovery=False)
    token = cca.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]
    client = httpx.Client(base_url=ms.server.url, verify=ssl.create_default_context(cafile=ms.server.ca_bundle),
                          headers={"Authorization": f"Bearer {token}"})
    yield ms, client, session
    client.close()


def test_openid_configuration_has_the_recorded_shape(env):
    ms, client, _ = env
    doc = client.get(f"/{SANDBOX_TENANT}/v2.0/.well-known/openid-configuration").json()
    recorded = load("entra_openid_configuration_v2_recorded.json")
    for key in ("token_endpoint", "device_authorization_endpoint", "authorization_endpoint", "issuer", "jwks_uri"):
        assert key in recorded and doc[key].startswith(ms.server.url)


def test_token_error_has_entra_shape(env):
    ms, client, _ = env
    r = client.post(f"/{SANDBOX_TENANT}/oauth2/v2.0/token", data={
        "client_id": APP["client_id"], "client_secret": APP["client_secret"], "grant_type": "client_credentials",
        "scope": "https://foo.microsoft.com/User.Read"})
    assert r.status_code == 400
    assert set(r.json()) == set(load("entra_token_error_invalid_scope_doc.json"))
    assert r.json()["error"] == "invalid_scope" and r.json()["error_codes"] == [70011]


def test_graph_error_has_the_documented_envelope(env):
    _, client, _ = env
    r = client.get("/v1.0/teams/nope/channels")
    assert r.status_code == 404
    assert set(r.json()["error"]) == set(load("graph_error_response_example.json")["error"])
    assert {"request-id", "date"} <= set(r.json()["error"]["innerError"])


def test_injected_429_has_the_throttling_body_and_fractional_retry_after(env):
    ms, client, _ = env
    ms.admin.fault(status=429, times=1, retry_after=2.128, path=CHANNEL)
    r = client.get(f"{CHANNEL}/messages/delta")
    assert r.status_code == 429 and r.headers["retry-after"] == "2.128"
    err = r.json()["error"]
    assert err["code"] == load("graph_throttling_429_body.json")["error"]["code"] == "TooManyRequests"
    assert err["innerError"]["status"] == "429"


def test_channel_message_top_is_capped_at_50(env):
    _, client, _ = env
    assert client.get(f"{CHANNEL}/messages/delta", params={"$top": 51}).status_code == 400
    assert client.get(f"{CHANNEL}/messages/1700000000000/replies", params={"$top": 60}).status_code == 400


def test_onenote_refuses_app_only_tokens_and_top_over_100(env):
    ms, client, session = env
    assert client.get(f"/v1.0/me/onenote/sections/{SECTION}/pages").status_code == 401
    pca = msal.PublicClientApplication(APP["client_id"], authority=f"{ms.server.url}/{SANDBOX_TENANT}",
                                       http_client=session, instance_discovery=False)
    flow = pca.initiate_device_flow(scopes=["Notes.Read"])
    ms.admin.op("approve_device", user_code="*", user="u-ann")
    token = pca.acquire_token_by_device_flow(flow)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/v1.0/me/onenote/sections/{SECTION}/pages", headers=headers).status_code == 200
    assert client.get(f"/v1.0/me/onenote/sections/{SECTION}/pages", params={"$top": 101}, headers=headers).status_code == 400


def test_drive_delta_token_latest_and_download_redirect(env):
    ms, client, _ = env
    latest = client.get(f"/v1.0/drives/{DRIVE}/root/delta", params={"token": "latest"}).json()
    assert latest["value"] == [] and "@odata.deltaLink" in latest
    r = client.get(f"/v1.0/drives/{DRIVE}/items/T1/content")
    assert r.status_code == 302
    anonymous = httpx.get(r.headers["location"], verify=ssl.create_default_context(cafile=ms.server.ca_bundle))
    assert anonymous.text == "Launch is on May 4."


def test_expired_drive_token_is_410_with_location(env):
    ms, client, _ = env
    link = client.get(f"/v1.0/drives/{DRIVE}/root/delta").json()["@odata.deltaLink"]
    ms.admin.op("expire_delta_tokens")
    r = client.get(link)
    assert r.status_code == 410 and r.json()["error"]["code"] == "resyncChangesApplyDifferences"
    assert r.headers["location"].endswith(f"/drives/{DRIVE}/root/delta")


# --- subscriptions ---------------------------------------------------------------------------


def _expiry(minutes: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


@pytest.fixture
def echo():
    async def ok(request):
        return PlainTextResponse(request.query_params.get("validationToken", ""))

    async def wrong(request):
        return PlainTextResponse("not the token")

    app = Starlette(routes=[Route("/ok", ok, methods=["POST"]), Route("/wrong", wrong, methods=["POST"])])
    with serve_asgi(app) as url:
        yield url


def _subscribe(client, **body):
    return client.post("/v1.0/subscriptions", json=body)


def test_subscription_created_after_handshake(env, echo):
    _, client, _ = env
    r = _subscribe(client, changeType="created", notificationUrl=f"{echo}/ok", resource=f"/teams/{TEAM}/channels/{GENERAL}/messages",
                   expirationDateTime=_expiry(50), clientState="s")
    assert r.status_code == 201
    assert set(load("subscription_create_response_201.json")) <= set(r.json())
    sid = r.json()["id"]
    assert client.patch(f"/v1.0/subscriptions/{sid}", json={"expirationDateTime": _expiry(55)}).status_code == 200
    assert client.delete(f"/v1.0/subscriptions/{sid}").status_code == 204
    assert client.delete(f"/v1.0/subscriptions/{sid}").status_code == 404


def test_subscription_refused_when_the_handshake_echo_is_wrong(env, echo):
    _, client, _ = env
    r = _subscribe(client, changeType="created", notificationUrl=f"{echo}/wrong",
                   resource=f"/teams/{TEAM}/channels/{GENERAL}/messages", expirationDateTime=_expiry(50))
    assert r.status_code == 400 and "validation" in r.json()["error"]["message"].lower()


def test_subscription_lifetime_capped_per_resource(env, echo):
    _, client, _ = env
    r = _subscribe(client, changeType="created", notificationUrl=f"{echo}/ok", lifecycleNotificationUrl=f"{echo}/ok",
                   resource=f"/teams/{TEAM}/channels/{GENERAL}/messages", expirationDateTime=_expiry(4321))
    assert r.status_code == 400 and "4320 minutes" in r.json()["error"]["message"]
    ok = _subscribe(client, changeType="updated", notificationUrl=f"{echo}/ok", resource=f"/drives/{DRIVE}/root",
                    expirationDateTime=_expiry(42000))
    assert ok.status_code == 201


def test_teams_subscription_over_an_hour_needs_lifecycle_url(env, echo):
    _, client, _ = env
    r = _subscribe(client, changeType="created", notificationUrl=f"{echo}/ok",
                   resource=f"/teams/{TEAM}/channels/{GENERAL}/messages", expirationDateTime=_expiry(120))
    assert r.status_code == 400 and "lifecycleNotificationUrl" in r.json()["error"]["message"]


def test_drive_subscription_accepts_only_updated(env, echo):
    _, client, _ = env
    r = _subscribe(client, changeType="created", notificationUrl=f"{echo}/ok", resource=f"/drives/{DRIVE}/root",
                   expirationDateTime=_expiry(60))
    assert r.status_code == 400


def test_rich_subscription_needs_a_certificate(env, echo):
    _, client, _ = env
    r = _subscribe(client, changeType="created", notificationUrl=f"{echo}/ok", includeResourceData=True,
                   resource=f"/teams/{TEAM}/channels/{GENERAL}/messages", expirationDateTime=_expiry(50))
    assert r.status_code == 400 and "encryptionCertificate" in r.json()["error"]["message"]
