"""Change notifications: the real encrypted sample, each failed check, the handshake, tokens."""

from __future__ import annotations

import base64
import copy
import time

import jwt
import pytest
from msft_data import load
from cryptography.hazmat.primitives.asymmetric import rsa

from engram_microsoft import (
    DecryptionKeys,
    NotificationError,
    client_state_matches,
    decrypt_content,
    encrypt_content,
    new_encryption_certificate,
    parse_notifications,
    validation_token,
    verify_validation_tokens,
)
from engram_microsoft._notifications import GRAPH_NOTIFICATION_APP_ID


@pytest.fixture(scope="module")
def sample_keys() -> DecryptionKeys:
    keys = DecryptionKeys()
    p12 = base64.b64decode(load("encrypted_content_test_cert.p12.b64"))
    keys.add_pkcs12("custom-id-for-testing", p12, b"rich")
    return keys


def test_real_encrypted_sample_decrypts_to_documented_resource(sample_keys):
    resource = decrypt_content(load("encrypted_content_real_sample.json"), sample_keys)
    assert resource == load("encrypted_content_real_sample_decrypted.json")
    assert resource["etag"] == "1625126194597"


def test_tampered_ciphertext_fails_signature_check(sample_keys):
    enc = copy.deepcopy(load("encrypted_content_real_sample.json"))
    data = bytearray(base64.b64decode(enc["data"]))
    data[5] ^= 1
    enc["data"] = base64.b64encode(bytes(data)).decode()
    with pytest.raises(NotificationError) as err:
        decrypt_content(enc, sample_keys)
    assert err.value.reason == NotificationError.BAD_DATA_SIGNATURE


def test_forged_data_signature_rejected(sample_keys):
    enc = dict(load("encrypted_content_real_sample.json"), dataSignature=base64.b64encode(b"\0" * 32).decode())
    with pytest.raises(NotificationError) as err:
        decrypt_content(enc, sample_keys)
    assert err.value.reason == NotificationError.BAD_DATA_SIGNATURE


def test_unknown_certificate_id_rejected(sample_keys):
    enc = dict(load("encrypted_content_real_sample.json"), encryptionCertificateId="other")
    with pytest.raises(NotificationError) as err:
        decrypt_content(enc, sample_keys)
    assert err.value.reason == NotificationError.UNKNOWN_CERTIFICATE


def test_data_key_for_another_certificate_rejected():
    keys = DecryptionKeys()
    keys.add("custom-id-for-testing", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(NotificationError) as err:
        decrypt_content(load("encrypted_content_real_sample.json"), keys)
    assert err.value.reason == NotificationError.BAD_DATA_KEY


def test_non_base64_field_is_malformed(sample_keys):
    enc = dict(load("encrypted_content_real_sample.json"), data="not base64!!")
    with pytest.raises(NotificationError) as err:
        decrypt_content(enc, sample_keys)
    assert err.value.reason == NotificationError.MALFORMED


def test_encrypt_then_decrypt_round_trip():
    cert_b64, pem = new_encryption_certificate(key_size=2048)
    keys = DecryptionKeys()
    keys.add_pem("mine", pem)
    resource = load("change_notification_chat_message_decrypted_resource.json")
    assert decrypt_content(encrypt_content(resource, cert_b64, "mine"), keys) == resource


# --- parsing, clientState, handshake ---------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        "change_notification_basic_mail_post_body.json",
        "change_notification_channel_reply_encrypted_doc_example.json",
        "change_notification_chat_message_rich_post_body.json",
        "lifecycle_notification_missed.json",
        "lifecycle_notification_reauthorization_required.json",
        "lifecycle_notification_subscription_removed.json",
    ],
)
def test_notification_bodies_parse(fixture):
    body = load(fixture)
    batch = parse_notifications(body)
    assert len(batch.notifications) == len(body["value"])
    n = batch.notifications[0]
    if "lifecycleEvent" in body["value"][0]:
        assert n.lifecycle_event in {"missed", "reauthorizationRequired", "subscriptionRemoved"}
        assert n.ref is None
    else:
        assert n.ref is not None and n.change_type == "created"
    assert batch.validation_tokens == body.get("validationTokens", [])


def test_single_item_fixture_parses_when_wrapped():
    item = load("change_notification_channel_message_item_no_resource_data.json")
    (n,) = parse_notifications({"value": [item]}).notifications
    assert n.ref.entity_id.endswith("/messages/1612293113399")
    assert n.client_state == "<<--SpecifiedClientState-->>"


def test_reply_notification_refetches_its_thread():
    body = load("change_notification_channel_reply_encrypted_doc_example.json")
    (n,) = parse_notifications(body).notifications
    assert n.ref.kind == "channel_message" and n.ref.ids["reply"] == "1565047490246"
    assert n.ref.entity_id.endswith("/messages/1565045424600")


def test_malformed_bodies_rejected():
    for body in (b"{not json", b'{"value": 3}', b'{"value": [{"changeType": "created"}]}'):
        with pytest.raises(NotificationError) as err:
            parse_notifications(body)
        assert err.value.reason == NotificationError.MALFORMED


def test_client_state_constant_time_check():
    assert client_state_matches("secretClientValue", "secretClientValue")
    assert not client_state_matches("secretClientValue", "secretClientValuf")
    assert not client_state_matches("secretClientValue", None)
    assert not client_state_matches("secretClientValue", "")


def test_validation_handshake_echoes_decoded_token():
    assert validation_token({"validationToken": "Validation: Testing client application reachability for subscription Request-Id: 1"}) == (
        "Validation: Testing client application reachability for subscription Request-Id: 1"
    )
    assert validation_token({}) is None


# --- validationTokens JWTs -------------------------------------------------------------------

APP_ID = "8e460676-ae3f-4b1e-8790-ee0fb5d6148f"
TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"


@pytest.fixture(scope="module")
def signing():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="k1", use="sig", alg="RS256")
    return key, {"keys": [jwk]}


def _token(key, **overrides):
    claims = dict(load("validation_token_jwt_claims_doc_example.json"))
    now = int(time.time())
    claims.update(iat=now, nbf=now, exp=now + 3600)
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_validation_token_accepted(signing):
    key, jwks = signing
    verify_validation_tokens([_token(key)], jwks, app_id=APP_ID, tenant_ids={TENANT})


def test_validation_token_wrong_audience(signing):
    key, jwks = signing
    with pytest.raises(NotificationError, match="[Aa]udience"):
        verify_validation_tokens([_token(key, aud="someone-else")], jwks, app_id=APP_ID)


def test_validation_token_wrong_appid(signing):
    key, jwks = signing
    with pytest.raises(NotificationError, match="appid"):
        verify_validation_tokens([_token(key, appid="not-graph")], jwks, app_id=APP_ID)
    assert GRAPH_NOTIFICATION_APP_ID != "not-graph"


def test_validation_token_expired(signing):
    key, jwks = signing
    with pytest.raises(NotificationError, match="expired"):
        verify_validation_tokens([_token(key, exp=int(time.time()) - 4000)], jwks, app_id=APP_ID)


def test_validation_token_signed_by_other_key(signing):
    _key, jwks = signing
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(NotificationError, match="[Ss]ignature"):
        verify_validation_tokens([_token(other)], jwks, app_id=APP_ID)


def test_validation_token_wrong_tenant(signing):
    key, jwks = signing
    with pytest.raises(NotificationError, match="issuer"):
        verify_validation_tokens([_token(key)], jwks, app_id=APP_ID, tenant_ids={"another-tenant"})


def test_rich_notification_without_tokens_rejected(signing):
    _key, jwks = signing
    with pytest.raises(NotificationError) as err:
        verify_validation_tokens([], jwks, app_id=APP_ID)
    assert err.value.reason == NotificationError.BAD_VALIDATION_TOKEN
