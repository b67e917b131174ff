"""Ed25519 signatures over RFC 8785 canonical JSON, a local keyring, and the trust check.

Sign: ``engramsig`` = base64url(Ed25519(canonical JSON of the envelope without ``engramsig``)),
with ``engramkid`` naming the key (so the key id is itself covered by the signature).

Verify: an event passes only if its key is trusted *for the event's team*, is not revoked, the
signature matches, and its ``id`` is the one its content derives (``id_problem``): a signature
vouches for who wrote the envelope, the id check for the envelope keeping the id rule, so a
trusted signer still cannot take another event's id in advance or store one record twice. Every
failure raises ``SignatureError`` with a stable ``reason``.

Keyring layout under ``<ENGRAM_HOME>/keys/`` (directory 0700)::

    keyring.json        key ids, status (active | verify-only | revoked), teams, public keys
    <kid>.pem           PKCS#8 private key, mode 0600, never printed or logged
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ._canonical import canonical_json
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._config import ensure_private_dir
from ._events import TrainingEvent, id_problem, parse_event
from ._exceptions import KeyringError, SignatureError

__all__ = [
    "KeyInfo",
    "Keyring",
    "TrustedKey",
    "TrustedKeys",
    "key_id_for",
    "load_key_set",
    "sign_event",
    "verify_event",
]

KeyStatus = Literal["active", "verify-only", "revoked"]
TrustStatus = Literal["trusted", "revoked"]
ALGORITHM = "Ed25519"
KEY_SET_FORMAT = "engram-key-set/1"


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(public_key: bytes) -> str:
    """A key id derived from the public key, so two machines never mint the same id for two keys."""
    return "ed25519-" + hashlib.sha256(public_key).hexdigest()[:20]


# --- signing and verifying -------------------------------------------------------------------------


def sign_event(event: TrainingEvent | Mapping[str, Any], private_key: Ed25519PrivateKey, kid: str) -> TrainingEvent:
    """Return the event with ``engramkid`` set and ``engramsig`` over its canonical JSON."""
    if not isinstance(event, TrainingEvent):
        event = parse_event(dict(event))
    body = event._top()
    body.pop("engramsig", None)
    body["engramkid"] = kid
    payload = canonical_json(body)
    body["engramsig"] = _b64u(private_key.sign(payload))
    # The envelope was validated when it was built or parsed; only the two extensions change.
    signed = event.model_copy(update={"engramkid": kid, "engramsig": body["engramsig"]})
    signed._raw = body
    signed._payload = payload
    return signed


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    team_id: str
    public_key: bytes
    status: TrustStatus
    algorithm: str = ALGORITHM


@dataclass
class TrustedKeys:
    """A snapshot of which key may sign for which team (read from the store, or built in tests)."""

    by_kid: dict[str, dict[str, TrustedKey]] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Iterable[TrustedKey]) -> TrustedKeys:
        out = cls()
        for k in keys:
            out.by_kid.setdefault(k.kid, {})[k.team_id] = k
        return out

    def verify(self, event: TrainingEvent | Mapping[str, Any]) -> None:
        """``verify_event`` against these keys: signature, trust for the team, and the id rule."""
        verify_event(event, self)


def verify_event(event: TrainingEvent | Mapping[str, Any], trusted: TrustedKeys) -> None:
    """Raise ``SignatureError`` unless the event is signed by a key trusted for its team and its
    id is the one its content derives (reason ``id_mismatch``)."""
    body = event._top() if isinstance(event, TrainingEvent) else dict(event)
    event_id = body.get("id") if isinstance(body.get("id"), str) else None
    kid, sig, team = body.get("engramkid"), body.pop("engramsig", None), body.get("teamid")
    payload = event.signing_payload() if isinstance(event, TrainingEvent) else None
    if not isinstance(kid, str) or not isinstance(sig, str) or not kid or not sig:
        raise SignatureError(SignatureError.MISSING_SIGNATURE, "event is not signed", event_id=event_id)
    teams = trusted.by_kid.get(kid)
    if not teams:
        raise SignatureError(SignatureError.UNKNOWN_KEY, f"unknown signing key {kid}", event_id=event_id, kid=kid)
    key = teams.get(team) if isinstance(team, str) else None
    if key is None:
        raise SignatureError(
            SignatureError.UNTRUSTED_FOR_TEAM,
            f"key {kid} is not trusted for team {team}",
            event_id=event_id,
            kid=kid,
        )
    if key.status == "revoked":
        raise SignatureError(SignatureError.REVOKED_KEY, f"key {kid} is revoked", event_id=event_id, kid=kid)
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(_unb64u(sig), payload or canonical_json(body))
    except (InvalidSignature, ValueError):
        raise SignatureError(
            SignatureError.BAD_SIGNATURE, "signature does not match the event", event_id=event_id, kid=kid
        ) from None
    # After the signature: a forged envelope is reported as forged, not as a bad id.
    problem = id_problem(body)
    if problem is not None:
        raise SignatureError(SignatureError.ID_MISMATCH, problem, event_id=event_id, kid=kid)


# --- the local keyring ------------------------------------------------------------------------------


@dataclass
class KeyInfo:
    kid: str
    status: KeyStatus
    teams: list[str]
    public_key: str  # base64url raw
    created_at: str
    algorithm: str = ALGORITHM

    def public(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "algorithm": self.algorithm,
            "public_key": self.public_key,
            "status": self.status,
            "teams": list(self.teams),
        }


class Keyring:
    """The signing keys of one deployment: one active, older ones verify-only, revoked ones dead."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._index = self.directory / "keyring.json"

    # persistence ---------------------------------------------------------------------------------

    def _load(self) -> list[KeyInfo]:
        if not self._index.exists():
            return []
        try:
            raw = json.loads(self._index.read_text())
            return [KeyInfo(**k) for k in raw["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{self._index} is unreadable: {exc}") from None

    def _save(self, keys: list[KeyInfo]) -> None:
        ensure_private_dir(self.directory)
        tmp = self._index.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": [k.__dict__ for k in keys]}, indent=2))
        os.replace(tmp, self._index)  # atomic: a crash leaves the old or the new keyring, never half

    def keys(self) -> list[KeyInfo]:
        return self._load()

    def get(self, kid: str) -> KeyInfo:
        for k in self._load():
            if k.kid == kid:
                return k
        raise KeyringError(f"no key {kid} in {self._index}")

    def active(self) -> KeyInfo:
        for k in self._load():
            if k.status == "active":
                return k
        raise KeyringError("no active signing key: run `engram keys generate --team TEAM`")

    # operations ----------------------------------------------------------------------------------

    def generate(self, teams: list[str]) -> KeyInfo:
        if not teams:
            raise ValueError("a signing key must name at least one team it may sign for")
        keys = self._load()
        if any(k.status == "active" for k in keys):
            raise KeyringError("an active key exists already: use `engram keys rotate` to replace it")
        info = self._new_key(teams)
        self._save(keys + [info])
        return info

    def rotate(self, teams: list[str] | None = None) -> KeyInfo:
        keys = self._load()
        current = next((k for k in keys if k.status == "active"), None)
        if current is None:
            raise KeyringError("no active key to rotate: run `engram keys generate --team TEAM`")
        current.status = "verify-only"
        info = self._new_key(teams or current.teams)
        self._save(keys + [info])
        return info

    def revoke(self, kid: str) -> KeyInfo:
        keys = self._load()
        for k in keys:
            if k.kid == kid:
                k.status = "revoked"
                self._save(keys)
                return k
        raise KeyringError(f"no key {kid} in {self._index}")

    def private_key(self, kid: str) -> Ed25519PrivateKey:
        path = self.directory / f"{kid}.pem"
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise KeyringError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise KeyringError(f"private key file for {kid} is missing") from None
        except ValueError:
            raise KeyringError(f"private key file for {kid} is not a valid PEM key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyringError(f"private key file for {kid} does not hold an Ed25519 key")
        return key

    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        info = self.active()
        return info.kid, self.private_key(info.kid)

    def sign(self, event: TrainingEvent | Mapping[str, Any]) -> TrainingEvent:
        kid, key = self.signer()
        return sign_event(event, key, kid)

    @staticmethod
    def sign_with(event: TrainingEvent | Mapping[str, Any], kid: str, key: Ed25519PrivateKey) -> TrainingEvent:
        """Sign with a key already loaded by ``signer()`` (batch signing reads the PEM once)."""
        return sign_event(event, key, kid)

    def export_public(self) -> dict[str, Any]:
        return {"format": KEY_SET_FORMAT, "keys": [k.public() for k in self._load()]}

    def _new_key(self, teams: list[str]) -> KeyInfo:
        private = Ed25519PrivateKey.generate()
        public_raw = _raw_public(private.public_key())
        kid = key_id_for(public_raw)
        ensure_private_dir(self.directory)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(self.directory / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return KeyInfo(
            kid=kid,
            status="active",
            teams=sorted(set(teams)),
            public_key=_b64u(public_raw),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )


def load_key_set(data: Mapping[str, Any]) -> list[TrustedKey]:
    """Parse an exported key set into one ``TrustedKey`` per (key, team); raises ``KeyringError``."""
    if data.get("format") != KEY_SET_FORMAT or not isinstance(data.get("keys"), list):
        raise KeyringError(f"not an Engram key set (expected format {KEY_SET_FORMAT!r})")
    out = []
    for i, k in enumerate(data["keys"]):
        try:
            if k["algorithm"] != ALGORITHM:
                raise KeyringError(f"key {i}: unsupported algorithm {k['algorithm']!r}")
            raw = _unb64u(k["public_key"])
            Ed25519PublicKey.from_public_bytes(raw)
            if key_id_for(raw) != k["kid"]:
                raise KeyringError(f"key {i}: key id {k['kid']} does not match its public key")
            if k["status"] not in ("active", "verify-only", "revoked"):
                raise KeyringError(f"key {i}: unknown status {k['status']!r}")
            teams = k["teams"]
            if not isinstance(teams, list) or not teams or not all(isinstance(t, str) and t for t in teams):
                raise KeyringError(f"key {i}: 'teams' must be a non-empty list of team ids")
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyringError(f"key {i}: malformed entry ({exc})") from None
        for team in teams:
            status: TrustStatus = "revoked" if k["status"] == "revoked" else "trusted"
            out.append(TrustedKey(kid=k["kid"], team_id=team, public_key=raw, status=status))
    return out
