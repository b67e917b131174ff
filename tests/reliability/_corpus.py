"""Tampered events of every kind, each with the reason a verifier must give.

Three machines' keys are in play: ``acme`` (trusted for team acme; the producer), ``globex``
(trusted for team globex only) and ``retired`` (trusted for acme, then revoked). A kind that needs
a valid signature on bad content is signed with the producer's private key, as a trusted signer
gone wrong (or a stolen key) would; the rest change bytes after signing, as anyone on the path could.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from engram_sdk import Keyring, TrustedKey, load_key_set
from engram_sdk._canonical import canonical_json
from engram_sdk._events import content_digest
from engram_sdk._signing import _b64u
from tests.factories import signed_events


@dataclass(frozen=True)
class Tampered:
    kind: str
    line: str  # one JSON Lines line (no newline)
    reasons: frozenset[str]  # what a file check may answer (HTTP may differ: see http_reasons)
    http_reasons: frozenset[str]
    envelope: dict[str, Any] | None  # None when the line is not a JSON object

    def digest(self) -> str | None:
        try:
            return content_digest(self.envelope) if self.envelope else None
        except Exception:  # noqa: BLE001 - a malformed envelope has no digest; nothing to compare
            return None


@dataclass
class Corpus:
    good: list[dict[str, Any]]  # signed genuine events (lines of the file, in order)
    stored_first: dict[str, Any]  # a genuine event the receiving store holds already (for conflicts)
    tampered: list[Tampered]
    trust: list[TrustedKey]  # what the receiving side trusts
    revoked: str  # the kid the receiving side must revoke

    def lines(self) -> list[tuple[str, Tampered | None]]:
        """Good and tampered lines interleaved, so a verifier's line numbers are exercised."""
        out: list[tuple[str, Tampered | None]] = []
        good = [json.dumps(g) for g in self.good]
        for i, t in enumerate(self.tampered):
            if i < len(good):
                out.append((good[i], None))
            out.append((t.line, t))
        out += [(g, None) for g in good[len(self.tampered):]]
        return out


def raw_sign(keyring: Keyring, body: dict[str, Any]) -> dict[str, Any]:
    """Sign any body, without the schema check ``Keyring.sign`` makes first."""
    kid, key = keyring.signer()
    body = {k: v for k, v in body.items() if k != "engramsig"}
    body["engramkid"] = kid
    body["engramsig"] = _b64u(key.sign(canonical_json(body)))
    return body


def build(acme: Keyring, globex: Keyring, retired: Keyring, *, good: int = 20, huge: bool = False) -> Corpus:
    partner = Keyring(acme.directory.parent / "partner-keys")
    partner.generate(["acme"])
    events = [e.to_dict() for e in signed_events(acme, good + 4)]
    genuine, spare = events[:good], events[good:]
    (stored_first,) = [e.to_dict() for e in signed_events(acme, 1, start=500, revision="v7")]

    def after_signing(name: str, attr: str, value: Any, reason: str = "bad_signature") -> Tampered:
        body = copy.deepcopy(spare[0])
        if attr.startswith("data."):
            body["data"][attr[5:]] = value
        else:
            body[attr] = value
        return Tampered(name, json.dumps(body), frozenset({reason}), frozenset({reason}), body)

    def resigned(name: str, body: dict[str, Any], reasons: set[str], http: set[str] | None = None,
                 key: Keyring = acme) -> Tampered:
        signed = raw_sign(key, body)
        return Tampered(name, json.dumps(signed), frozenset(reasons), frozenset(http or reasons), signed)

    out: list[Tampered] = [
        after_signing("data field changed after signing", "data.text", "The launch is cancelled."),
        after_signing("subject changed after signing", "subject", "page-999"),
        after_signing("time changed after signing", "time", "2030-01-01T00:00:00Z"),
        after_signing("source changed after signing", "source", "notion://workspace/other"),
        after_signing("connectionid changed after signing", "connectionid", "evil-connection"),
        after_signing("id changed after signing", "id", "0" * 64),
    ]
    other_sig = copy.deepcopy(spare[0])
    other_sig["engramsig"] = spare[1]["engramsig"]
    out.append(Tampered("signature of another event", json.dumps(other_sig), frozenset({"bad_signature"}),
                        frozenset({"bad_signature"}), other_sig))
    kid_swap = copy.deepcopy(spare[0])
    kid_swap["engramkid"] = partner.active().kid  # also trusted for acme: only the signature can tell
    out.append(Tampered("key id swapped for another key trusted for the team", json.dumps(kid_swap),
                        frozenset({"bad_signature"}), frozenset({"bad_signature"}), kid_swap))
    unsigned = {k: v for k, v in spare[0].items() if k not in ("engramsig", "engramkid")}
    out.append(Tampered("signature removed", json.dumps(unsigned), frozenset({"missing_signature"}),
                        frozenset({"missing_signature"}), unsigned))

    stranger = Keyring(acme.directory.parent / "stranger-keys")
    stranger.generate(["acme"])
    out.append(resigned("signed by an unknown key", copy.deepcopy(spare[2]), {"unknown_key"}, key=stranger))
    out.append(resigned("signed by a key trusted for another team", copy.deepcopy(spare[2]),
                        {"untrusted_for_team"}, key=globex))
    out.append(resigned("signed by a revoked key", copy.deepcopy(spare[2]), {"revoked_key"}, key=retired))
    to_globex = copy.deepcopy(spare[3])
    to_globex["teamid"] = "globex"
    out.append(resigned("teamid moved to another team, re-signed", to_globex, {"untrusted_for_team"},
                        {"forbidden_team"}))

    zeros = copy.deepcopy(spare[3])
    zeros["id"] = "0" * 64
    out.append(resigned("id of zeros, validly signed", zeros, {"id_mismatch"}))
    moved = copy.deepcopy(spare[3])
    moved["subject"] = "page-999"
    out.append(resigned("subject moved under the old id, validly signed", moved, {"id_mismatch"}))
    squat = copy.deepcopy(spare[3])
    squat["id"] = genuine[-1]["id"]  # the last good line comes after it: taken in advance
    out.append(resigned("a later event's id taken in advance, validly signed", squat, {"id_mismatch"}))
    new_text = copy.deepcopy(spare[3])
    new_text["data"]["text"] = "A copy with other content under the old id."
    out.append(resigned("content changed under the old id, validly signed", new_text, {"id_mismatch"}))
    wrong_type = copy.deepcopy(spare[3])
    wrong_type["type"] = "ai.engram.entity.deleted"
    out.append(resigned("type not the record's, validly signed", wrong_type, {"schema_error"}))
    broken = copy.deepcopy(spare[3])
    del broken["data"]["updated_at"]
    out.append(resigned("record invalid, validly signed", broken, {"schema_error"}))
    extra = copy.deepcopy(spare[3])
    extra["engramextra"] = "smuggled"
    out.append(resigned("unknown attribute, validly signed", extra, {"schema_error"}))
    conflict = copy.deepcopy(stored_first)
    conflict["data"]["title"] = "same platform version, other content"
    out.append(resigned("same id as a stored event, other content", conflict, {"conflict"}, {"conflict"}))

    text = json.dumps(spare[1])
    out.append(Tampered("truncated line", text[: len(text) // 2], frozenset({"malformed_json"}),
                        frozenset({"malformed_json"}), None))
    out.append(Tampered("not JSON at all", "this is not an event", frozenset({"malformed_json"}),
                        frozenset({"malformed_json"}), None))
    out.append(Tampered("a JSON array instead of an envelope", "[1, 2, 3]", frozenset({"schema_error"}),
                        frozenset({"schema_error"}), None))
    if huge:
        big = copy.deepcopy(spare[1])
        big["data"]["text"] = "x" * (9 * 1024 * 1024)
        out.append(Tampered("a line over 8 MiB", json.dumps(big), frozenset({"line_too_large"}),
                            frozenset({"payload_too_large"}), None))

    trust = [*load_key_set(acme.export_public()), *load_key_set(globex.export_public()),
             *load_key_set(retired.export_public()), *load_key_set(partner.export_public())]
    return Corpus(genuine, stored_first, out, trust, retired.active().kid)
