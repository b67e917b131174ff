"""The Microsoft connector through the real sync runner, msal and httpx, against the TLS sandbox."""

from __future__ import annotations

import pytest
from msft_data import NAME, BIG_REPLIES, BIG_THREAD, DRIVE, GENERAL, GENERAL_MESSAGES, NOTEBOOK, RANDOM, SITE, TEAM

from engram_microsoft import MicrosoftCheckpoint
from engram_sdk._connections import Connections
from engram_sdk._exceptions import AuthorizationPending, ConfigError, ReconnectNeeded

THREAD = f"teams/{TEAM}/channels/{GENERAL}/messages/"
DELTA = f"/v1.0/teams/{TEAM}/channels/{GENERAL}/messages/delta"


def _threads(ms):
    return {r.entity_id: r for r in ms.by_kind("thread")}


def _checkpoint(ms) -> MicrosoftCheckpoint:
    return MicrosoftCheckpoint.model_validate(ms.store.checkpoint(NAME))


# --- connect ---------------------------------------------------------------------------------


def test_check_names_the_tenant_with_app_only_credentials(ms):
    account = ms.connect(delegated=False, scope=f"team:{TEAM},drive:{DRIVE},site:{SITE}")
    assert account.source == "msgraph://tenant/tenant-1"
    assert account.details == {"delegated": False, "app_only": True}


def test_device_code_login_pending_until_approved(ms):
    ms.save(delegated=True)
    with pytest.raises(AuthorizationPending) as first:
        ms.check()
    assert "enter the code" in first.value.instructions
    with pytest.raises(AuthorizationPending):
        ms.check()  # polled once, still not approved
    code = first.value.instructions.rsplit("enter the code ", 1)[1].split()[0]
    ms.admin.op("approve_device", user_code=code, user="u-ann")
    assert ms.check().details["delegated"] is True
    assert "msal_token_cache" in ms.secrets.names(NAME) and "device_flow" not in ms.secrets.names(NAME)


def test_declined_device_code_needs_reconnect(ms):
    ms.save(delegated=True)
    with pytest.raises(AuthorizationPending) as first:
        ms.check()
    code = first.value.instructions.rsplit("enter the code ", 1)[1].split()[0]
    ms.admin.op("decline_device", user_code=code, user="u-ann")
    with pytest.raises(ReconnectNeeded, match="authorization_declined"):
        ms.check()


def test_wrong_client_secret_is_reconnect_needed(ms):
    ms.save(delegated=False, client_secret="wrong", scope=f"team:{TEAM}")
    with pytest.raises(ReconnectNeeded, match="invalid_client"):
        ms.check()


# --- full sync -------------------------------------------------------------------------------


def test_full_sync_reads_every_resource_in_scope(ms):
    ms.connect()
    result = ms.sync()
    assert result.ok, result.error
    threads = _threads(ms)
    general = [t for t in threads if t.startswith(THREAD)]
    assert len(general) == GENERAL_MESSAGES - 1  # one system message skipped
    assert f"teams/{TEAM}/channels/{RANDOM}/messages/1600000000001" in threads
    assert not any("team-2" in t for t in threads)  # outside the scope
    mention = threads[THREAD + "1700000000001"].messages[0]
    assert mention.text == "Ask @Bob Stone about the Q3 plan"
    assert threads[THREAD + "1700000000001"].path == ["Contoso", "General"]
    docs = {d.entity_id: d for d in ms.by_kind("document")}
    assert docs[f"drives/{DRIVE}/items/D1"].text == "Budget 2026\nTravel capped at 3 trips"
    assert "hiring freeze" in docs[f"drives/{DRIVE}/items/P1"].text
    assert docs[f"drives/{DRIVE}/items/H1"].text == "Office moves to Pier 9"
    assert docs[f"drives/{DRIVE}/items/T1"].path == ["Plans"]
    assert docs[f"drives/{DRIVE}/items/X1"].properties["content"] == "metadata_only"
    assert docs[f"sites/{SITE}/pages/f45354cb-d634-45df-8b88-2b4e96a1dc45"].text.startswith("sample content")
    assert "Neil Armstrong | Commander" in docs["onenote/pages/pg-1"].text
    assert docs["onenote/pages/pg-1"].path == ["Team notes", "Meetings"]
    assert [f.entity_id for f in result.failures] == [f"drives/{DRIVE}/items/BAD"]


def test_three_pages_of_channel_messages(ms):
    ms.connect()
    assert ms.sync().ok
    assert ms.admin.stats()["by_path"][DELTA] == 3  # 120 roots, $top=50: 50 + 50 + 20
    assert _checkpoint(ms).channels[f"{TEAM}/{GENERAL}"].split("?")[0].endswith("/messages/delta")


def test_thread_with_more_than_1000_replies_is_complete(ms):
    ms.connect()
    assert ms.sync().ok
    thread = _threads(ms)[THREAD + BIG_THREAD]
    replies = thread.messages[0].replies
    assert len(replies) == BIG_REPLIES
    assert [r.text for r in replies[:2]] == ["reply 0", "reply 1"] and replies[-1].text == f"reply {BIG_REPLIES - 1}"
    stats = ms.admin.stats()["by_path"]
    assert stats[f"/v1.0/teams/{TEAM}/channels/{GENERAL}/messages/{BIG_THREAD}/replies"] == 1  # 1,000 inline + 50


def test_second_sync_with_nothing_new_stores_nothing(ms):
    ms.connect()
    first = ms.sync()
    ms.admin.reset_stats()
    second = ms.sync()
    assert second.ok and second.stored == 0
    by_path = ms.admin.stats()["by_path"]
    assert by_path[DELTA] == 1  # the stored deltaLink answers with no changes
    # only the file that failed last time is downloaded again (the runner retries failures)
    assert [p for p in by_path if p.endswith("/content")] == [f"/v1.0/drives/{DRIVE}/items/BAD/content"]
    assert first.stored > 100


# --- incremental: edits and deletions ---------------------------------------------------------


def test_delta_round_with_edit_deletion_and_new_reply(ms):
    ms.connect()
    assert ms.sync().ok
    ms.admin.op("edit_message", team=TEAM, channel=GENERAL, id="1700000000005", text="general message 5 (fixed)")
    ms.admin.op("delete_message", team=TEAM, channel=GENERAL, id="1700000000006")
    ms.admin.op("post_message", team=TEAM, channel=RANDOM, reply_to="1600000000003", text="with milk", user="u-bob")
    ms.admin.reset_stats()
    result = ms.sync()
    assert result.ok, result.error
    assert ms.admin.stats()["by_path"][DELTA] == 1
    (edit,) = ms.by_kind("edit")
    assert (edit.before, edit.after, edit.before_known) == ("general message 5", "general message 5 (fixed)", True)
    latest = ms.latest()
    assert latest[THREAD + "1700000000006"].kind == "tombstone"
    coffee = latest[f"teams/{TEAM}/channels/{RANDOM}/messages/1600000000003"]
    assert [r.text for r in coffee.messages[0].replies] == ["with milk"]


def test_edited_reply_gives_an_edit_of_the_reply(ms):
    ms.connect()
    assert ms.sync().ok
    ms.admin.op("edit_message", team=TEAM, channel=RANDOM, root="1600000000001", id="1600000000002", text="yes, at 12")
    assert ms.sync().ok
    (edit,) = ms.by_kind("edit")
    assert edit.entity_id.endswith("/messages/1600000000001/replies/1600000000002")
    assert (edit.before, edit.after) == ("yes", "yes, at 12")


def test_drive_delta_edit_and_deleted_facet(ms):
    ms.connect()
    assert ms.sync().ok
    ms.admin.op("put_file", drive=DRIVE, id="T1", content="Launch moved to May 11.")
    ms.admin.op("delete_item", drive=DRIVE, id="M1")
    assert ms.sync().ok
    (edit,) = ms.by_kind("edit")
    assert (edit.before, edit.after) == ("Launch is on May 4.", "Launch moved to May 11.")
    assert ms.latest()[f"drives/{DRIVE}/items/M1"].kind == "tombstone"


def test_onenote_and_site_pages_are_polled_for_changes(ms):
    ms.connect()
    assert ms.sync().ok
    ms.admin.op("edit_page", id="pg-2", html="<html><body><p>Standup moved to 10:00</p></body></html>")
    ms.admin.op("delete_page", id="pg-3")
    ms.admin.op("edit_site_page", site=SITE, id="da0f67be-977e-4d09-88ac-506a1002e678", html="<p>New intranet text</p>")
    ms.admin.reset_stats()
    assert ms.sync().ok
    by_path = ms.admin.stats()["by_path"]
    assert "/v1.0/me/onenote/pages/pg-1/content" not in by_path  # unchanged page not fetched
    latest = ms.latest()
    assert latest["onenote/pages/pg-2"].text == "Standup moved to 10:00"
    assert latest["onenote/pages/pg-3"].kind == "tombstone"
    assert latest[f"sites/{SITE}/pages/da0f67be-977e-4d09-88ac-506a1002e678"].text.endswith("\n\nNew intranet text")


# --- failures --------------------------------------------------------------------------------


def test_expired_drive_delta_token_410_resyncs_the_drive(ms):
    ms.connect()
    assert ms.sync().ok
    ms.admin.op("expire_delta_tokens")
    ms.admin.op("put_file", drive=DRIVE, id="T1", content="Launch moved to June.")
    ms.admin.reset_stats()
    result = ms.sync()
    assert result.ok, result.error
    assert ms.admin.stats()["by_path"][f"/v1.0/drives/{DRIVE}/root/delta"] == 2  # 410, then a fresh round
    assert ms.latest()[f"drives/{DRIVE}/items/T1"].text == "Launch moved to June."
    assert result.stored == 2  # the changed file and its Edit; the unchanged rest are duplicates


def test_token_expiring_mid_sync_is_refreshed_without_duplicates(ms):
    ms.connect()
    baseline = ms.sandbox.idp.token_requests
    ms.admin.op("expire_tokens_after", requests=3)  # in the middle of the General channel's delta
    result = ms.sync()
    assert result.ok, result.error
    assert ms.sandbox.idp.token_requests > baseline  # a new access token was issued
    events = ms.events()
    assert len({e.event.id for e in events}) == len(events)
    assert len([e for e in events if e.event.subject.startswith(THREAD)]) == GENERAL_MESSAGES - 1


def test_throttling_storm_is_ridden_out_honouring_retry_after(ms):
    ms.connect()
    ms.admin.set_budget(requests=4, window=1.0, per="token")  # every bearer token: 4 requests/s
    result = ms.sync()
    assert result.ok, result.error
    assert ms.clock.slept > 5  # fake seconds waited on Retry-After, not real ones
    assert len([t for t in _threads(ms) if t.startswith(THREAD)]) == GENERAL_MESSAGES - 1


def test_onenote_429_without_retry_after_backs_off(ms):
    ms.connect()
    ms.admin.fault(status=429, times=3, path="/v1.0/me/onenote/sections")  # OneNote sends no Retry-After
    result = ms.sync()
    assert result.ok, result.error
    assert len(ms.clock.sleeps) >= 3
    assert "onenote/pages/pg-1" in ms.latest()


def test_delta_link_is_stored_only_after_the_whole_round(ms):
    ms.connect(scope=f"team:{TEAM}")
    ms.admin.op("break_paging", team=TEAM, channel=GENERAL)  # page 1 answers, later pages 503
    result = ms.sync()
    assert not result.ok and result.status == "error"
    stored = len(ms.events())
    assert stored >= 49  # page 1 was stored...
    cp = ms.store.checkpoint(NAME)
    assert cp is None or f"{TEAM}/{GENERAL}" not in cp["channels"]  # ...but not its deltaLink
    ms.admin.op("fix_paging")
    result = ms.sync()
    assert result.ok, result.error
    assert f"{TEAM}/{GENERAL}" in _checkpoint(ms).channels
    events = ms.events()
    assert len({e.event.id for e in events}) == len(events)
    assert len([e for e in events if e.event.subject.startswith(THREAD)]) == GENERAL_MESSAGES - 1


def test_revoked_delegated_grant_stops_sync_as_reconnect_needed(ms):
    ms.connect()
    assert ms.sync().ok
    ms.admin.op("revoke_grant", user="u-ann")
    ms.admin.op("expire_tokens")
    ms.admin.op("edit_page", id="pg-2", html="<p>changed</p>")
    result = ms.sync()
    assert not result.ok and result.status == "reconnect_needed"
    assert "engram connect" in result.error
    assert Connections(ms.store).get(NAME).status == "reconnect_needed"


def test_rotated_client_secret_stops_sync_as_reconnect_needed(ms):
    ms.connect(delegated=False, scope=f"team:{TEAM}")
    ms.admin.op("set_app_secret", client_id="app-1", client_secret="rotated")
    ms.admin.op("expire_tokens")
    result = ms.sync()
    assert result.status == "reconnect_needed"


# --- fetch and reconcile ---------------------------------------------------------------------


def test_fetch_refetches_a_thread_and_tombstones_out_of_scope(ms):
    ms.connect()
    assert ms.sync().ok
    connector = ms.connector()
    try:
        (thread,) = list(connector.fetch([f"teams/{TEAM}/channels/{RANDOM}/messages/1600000000001"]))
        assert thread.kind == "thread" and thread.messages[0].replies[0].text == "yes"
        assert list(connector.fetch(["teams/team-2/channels/19:other@thread.tacv2/messages/1500000000001"])) == []
        (failed,) = list(connector.fetch(["nonsense"]))
        assert failed.reason.startswith("not an entity id")
    finally:
        connector.close()


def test_reconcile_tombstones_what_left_the_drive(ms):
    ms.connect(scope=f"drive:{DRIVE}")
    assert ms.sync().ok
    ms.admin.op("expire_delta_tokens")
    ms.admin.op("delete_item", drive=DRIVE, id="H1")
    result = ms.sync(reconcile=True)
    assert result.ok and result.tombstones == 1
    assert ms.latest()[f"drives/{DRIVE}/items/H1"].kind == "tombstone"


def test_notebook_scope_without_delegated_sign_in_is_refused_at_connect(ms):
    ms.save(delegated=False, scope=f"notebook:{NOTEBOOK}")
    with pytest.raises(ConfigError, match="--delegated"):
        ms.check()


def test_channel_scope_needs_its_team(ms):
    ms.save(delegated=False, scope=f"channel:{GENERAL}")
    with pytest.raises(ConfigError, match="TEAM_ID/CHANNEL_ID"):
        ms.check()


# --- certificate credentials -----------------------------------------------------------------


def _pem_pair(tmp_path, name):
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = tmp_path / f"{name}.pem"
    path.write_bytes(key_pem + cert_pem)
    return path, cert_pem.decode()


def _register_certificate(ms, cert_pem):
    ws = ms.admin.workspace()
    ws["apps"].append({"client_id": "app-cert", "certificate": cert_pem})
    ms.admin.put_workspace(ws)


def test_certificate_credential_gets_app_only_tokens(ms, tmp_path):
    path, cert_pem = _pem_pair(tmp_path, "engram-app")
    _register_certificate(ms, cert_pem)
    ms.save(delegated=False, client_secret=None, certificate=str(path), client_id="app-cert", scope=f"team:{TEAM}")
    assert ms.check().details["app_only"] is True
    assert ms.sync().ok and len(_threads(ms)) == GENERAL_MESSAGES - 1 + 2


def test_certificate_not_registered_is_reconnect_needed(ms, tmp_path):
    _path, cert_pem = _pem_pair(tmp_path, "registered")
    other, _ = _pem_pair(tmp_path, "other")
    _register_certificate(ms, cert_pem)
    ms.save(delegated=False, client_secret=None, certificate=str(other), client_id="app-cert", scope=f"team:{TEAM}")
    with pytest.raises(ReconnectNeeded, match="invalid_client"):
        ms.check()


def test_scope_all_reads_every_team_drive_and_site(ms):
    ms.connect(scope="all")
    result = ms.sync()
    assert result.ok, result.error
    threads = _threads(ms)
    assert any("team-2" in t for t in threads) and any(t.startswith(THREAD) for t in threads)
    assert "onenote/pages/pg-1" in ms.latest() and f"sites/{SITE}/pages/f45354cb-d634-45df-8b88-2b4e96a1dc45" in ms.latest()


def test_containers_name_what_a_scope_can_hold(ms):
    ms.connect()
    connector = ms.connector()
    try:
        kinds = {(c.kind, c.id) for c in connector.containers()}
    finally:
        connector.close()
    assert {("team", TEAM), ("channel", f"{TEAM}/{GENERAL}"), ("drive", DRIVE), ("site", SITE), ("notebook", NOTEBOOK)} <= kinds


def test_503_with_retry_after_is_retried(ms):
    ms.connect(delegated=False, scope=f"drive:{DRIVE}")
    ms.admin.fault(status=503, times=2, retry_after=1.5, path=f"/v1.0/drives/{DRIVE}/root/delta")
    result = ms.sync()
    assert result.ok, result.error
    assert ms.clock.sleeps.count(1.5) == 2


# --- authorization code (browser) sign-in ----------------------------------------------------


def _browser(ms, instructions: str) -> str:
    """The browser: open the authorization URL as the signed-in user, return where it was sent."""
    import ssl

    import httpx

    url = instructions.split("\n")[1]
    r = httpx.get(url, verify=ssl.create_default_context(cafile=ms.server.ca_bundle), follow_redirects=False)
    assert r.status_code == 302
    return r.headers["location"]


def test_authorization_code_login_then_onenote_sync(ms):
    ms.save(scope=f"notebook:{NOTEBOOK}", delegated=True, redirect_uri="https://partner.example/callback")
    with pytest.raises(AuthorizationPending) as pending:
        ms.check()
    ms.admin.op("sign_in_browser", user="u-bob")
    back = _browser(ms, pending.value.instructions)
    assert back.startswith("https://partner.example/callback?code=")
    ms.save(scope=f"notebook:{NOTEBOOK}", delegated=True, redirect_uri="https://partner.example/callback",
            auth_response=back)
    assert ms.check().details["delegated"] is True
    assert "auth_response" not in ms.secrets.names(NAME)  # one use
    ms.admin.op("expire_tokens")  # the next sync refreshes the grant with the app's secret
    assert ms.sync().ok
    assert ms.latest()["onenote/pages/pg-2"].text == "Standup moved to 9:30"


def test_authorization_response_of_another_login_is_refused(ms):
    ms.save(scope=f"notebook:{NOTEBOOK}", delegated=True, redirect_uri="https://partner.example/callback")
    with pytest.raises(AuthorizationPending) as pending:
        ms.check()
    ms.admin.op("sign_in_browser", user="u-bob")
    back = _browser(ms, pending.value.instructions).replace("state=", "state=forged")
    ms.save(scope=f"notebook:{NOTEBOOK}", delegated=True, redirect_uri="https://partner.example/callback",
            auth_response=back)
    with pytest.raises(ReconnectNeeded, match="does not belong to this login"):
        ms.check()
