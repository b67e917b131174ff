from __future__ import annotations

import json
import os
import stat

import pytest
from cloudevents.core.formats.json import JSONFormat

from engram_sdk import KeyringError, Keyring, SignatureError, TrustedKeys, load_key_set, parse_event, verify_event
from tests.factories import signed_events


def trusted(*keyrings: Keyring) -> TrustedKeys:
    return TrustedKeys.of(k for kr in keyrings for k in load_key_set(kr.export_public()))


def reason_of(event, trust) -> str:
    with pytest.raises(SignatureError) as err:
        verify_event(event, trust)
    return err.value.reason


def test_a_signed_event_verifies(keyring):
    (ev,) = signed_events(keyring, 1)
    verify_event(ev, trusted(keyring))
    verify_event(ev.to_dict(), trusted(keyring))  # and as plain JSON values


def test_tampered_data_field_fails(keyring):
    body = signed_events(keyring, 1)[0].to_dict()
    body["data"]["text"] = "The launch is cancelled."
    assert reason_of(body, trusted(keyring)) == "bad_signature"


@pytest.mark.parametrize("attr, value", [("subject", "page-99"), ("time", "2030-01-01T00:00:00Z"),
                                         ("connectionid", "evil-conn"), ("source", "notion://workspace/other")])
def test_tampered_attribute_fails(keyring, attr, value):
    body = signed_events(keyring, 1)[0].to_dict()
    body[attr] = value
    assert reason_of(body, trusted(keyring)) == "bad_signature"


def test_signature_copied_from_another_event_fails(keyring):
    a, b = signed_events(keyring, 2)
    body = a.to_dict()
    body["engramsig"] = b.engramsig
    assert reason_of(body, trusted(keyring)) == "bad_signature"


def test_unknown_key_id_fails(keyring, tmp_path):
    other = Keyring(tmp_path / "other")
    other.generate(["acme"])
    (ev,) = signed_events(other, 1)
    assert reason_of(ev, trusted(keyring)) == "unknown_key"


def test_key_id_swapped_for_a_trusted_one_fails(keyring, tmp_path):
    other = Keyring(tmp_path / "other")
    other.generate(["acme"])
    body = signed_events(other, 1)[0].to_dict()
    body["engramkid"] = keyring.active().kid
    assert reason_of(body, trusted(keyring, other)) == "bad_signature"


def test_revoked_key_fails(keyring):
    (ev,) = signed_events(keyring, 1)
    keyring.revoke(keyring.active().kid)
    assert reason_of(ev, trusted(keyring)) == "revoked_key"


def test_key_trusted_for_another_team_fails(keyring):
    (ev,) = signed_events(keyring, 1, team="globex")  # acme's key signing for globex
    assert reason_of(ev, trusted(keyring)) == "untrusted_for_team"


def test_changing_the_team_of_a_signed_event_fails(keyring, tmp_path):
    multi = Keyring(tmp_path / "multi")
    multi.generate(["acme", "globex"])
    body = signed_events(multi, 1)[0].to_dict()
    body["teamid"] = "globex"
    assert reason_of(body, trusted(multi)) == "bad_signature"


def test_unsigned_event_fails(keyring):
    body = signed_events(keyring, 1)[0].to_dict()
    del body["engramsig"]
    assert reason_of(body, trusted(keyring)) == "missing_signature"


def test_reserialised_by_other_json_libraries_still_verifies(keyring):
    (ev,) = signed_events(keyring, 1, text="Café ☕ launch: “quoted” — tab\there, newline\nthere, emoji 🚀")
    trust = trusted(keyring)
    # The standard library with other choices: ASCII escapes, indentation, another key order.
    body = ev.to_dict()
    reordered = {k: body[k] for k in reversed(list(body))}
    verify_event(parse_event(json.dumps(reordered, ensure_ascii=True, indent=2)), trust)
    # The CloudEvents SDK's own JSON format, read and written again.
    fmt = JSONFormat()
    verify_event(parse_event(fmt.write(fmt.read(None, ev.to_json().encode()))), trust)


def test_rotation_keeps_old_events_verifying_and_signs_with_the_new_key(keyring):
    (old,) = signed_events(keyring, 1)
    new_info = keyring.rotate()
    (new,) = signed_events(keyring, 1, start=1)
    assert new.engramkid == new_info.kid != old.engramkid
    statuses = {k.kid: k.status for k in keyring.keys()}
    assert statuses == {old.engramkid: "verify-only", new_info.kid: "active"}
    trust = trusted(keyring)
    verify_event(old, trust)
    verify_event(new, trust)


def test_generate_refuses_a_second_active_key(keyring):
    with pytest.raises(KeyringError, match="rotate"):
        keyring.generate(["acme"])


def test_private_keys_are_0600_and_absent_from_the_export(keyring):
    kid = keyring.active().kid
    pem = keyring.directory / f"{kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(keyring.directory.stat().st_mode) == 0o700
    exported = json.dumps(keyring.export_public())
    secret_body = "".join(pem.read_text().splitlines()[1:-1])
    assert secret_body not in exported and "PRIVATE" not in exported
    assert set(keyring.export_public()["keys"][0]) == {"kid", "algorithm", "public_key", "status", "teams"}


def test_a_private_key_readable_by_others_is_refused(keyring):
    kid = keyring.active().kid
    os.chmod(keyring.directory / f"{kid}.pem", 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        keyring.signer()


def test_key_set_with_a_mismatched_key_id_is_refused(keyring):
    data = keyring.export_public()
    data["keys"][0]["kid"] = "ed25519-00000000000000000000"
    with pytest.raises(KeyringError, match="does not match"):
        load_key_set(data)


def test_key_set_in_another_format_is_refused():
    with pytest.raises(KeyringError, match="key set"):
        load_key_set({"keys": []})
