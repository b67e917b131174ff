"""Graph change notifications: the handshake, the checks and the rich-notification crypto.

Receiving, in order (see ``../shared/platforms/microsoft.md`` §4):

1. ``validation_token(query)``: Graph's subscription handshake POSTs ``?validationToken=...``;
   answer 200 ``text/plain`` with the token, decoded, within 10 s.
2. ``parse_notifications(body)``: a ``changeNotificationCollection`` -> ``NotificationBatch``.
3. ``client_state_matches(expected, got)``: every item's ``clientState``, compared in constant time.
4. ``verify_validation_tokens(...)``: rich notifications carry one JWT per (app, tenant); the
   signature (keys from a JWKS), ``aud`` (our app id), ``appid`` (Graph's publisher) and expiry
   must check out.
5. ``decrypt_content(encrypted, keys)``: RSA-OAEP(SHA-1) unwrap of ``dataKey``, HMAC-SHA256 of
   the ciphertext against ``dataSignature`` (constant time, before decrypting), then AES-CBC
   with PKCS7 padding and IV = first 16 key bytes; the plaintext is the resource JSON.

Every failed check raises ``NotificationError`` with a stable ``reason``.
``encrypt_content`` and ``new_encryption_certificate`` are the other side, for the sandbox and
for tests (as Stripe ships a signing helper next to its verifier).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from ._errors import NotificationError
from ._normalize import ResourceRef, entity_for_resource, parse_graph_time

__all__ = [
    "GRAPH_NOTIFICATION_APP_ID",
    "ChangeNotification",
    "DecryptionKeys",
    "NotificationBatch",
    "client_state_matches",
    "decrypt_content",
    "encrypt_content",
    "new_encryption_certificate",
    "parse_notifications",
    "validation_token",
    "verify_validation_tokens",
]

# The app id Graph's change-notification publisher signs validation tokens as.
GRAPH_NOTIFICATION_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
_OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


# --- handshake and parsing --------------------------------------------------------------------


# What Graph sends ("Validation: Testing client application reachability for subscription
# Request-Id: <uuid>") and any base64-like opaque token fit; markup, quotes, control characters
# and long bodies do not, so the endpoint cannot be made to serve attacker-chosen content.
_SANE_VALIDATION_TOKEN = re.compile(r"[A-Za-z0-9 :._~+/=-]{1,512}")


def validation_token(query: Mapping[str, str]) -> str | None:
    """The token to echo if this request is a subscription validation, else None.

    Starlette's ``request.query_params`` is already URL-decoded, which is what Graph expects
    back: the plain token as ``text/plain``, status 200. The handshake is unauthenticated and
    echoes what the caller chose, so only a token that looks like Graph's is echoed
    (``NotificationError`` otherwise); the receiver adds ``X-Content-Type-Options: nosniff``.
    """
    token = query.get("validationToken")
    if token is None:
        return None
    if not _SANE_VALIDATION_TOKEN.fullmatch(token):
        raise NotificationError(NotificationError.MALFORMED,
                                "validationToken is not a plain token (letters, digits, spaces and :._~+/=- only, "
                                "at most 512 characters); not echoed")
    return token


@dataclass(frozen=True)
class ChangeNotification:
    subscription_id: str
    client_state: str | None
    change_type: str | None
    resource: str | None
    resource_data: dict[str, Any]
    tenant_id: str | None
    lifecycle_event: str | None
    encrypted_content: dict[str, Any] | None
    subscription_expires_at: datetime | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def ref(self) -> ResourceRef | None:
        """The entity to refetch, or None for lifecycle notifications."""
        target = self.resource or self.resource_data.get("@odata.id")
        return entity_for_resource(target) if target else None


@dataclass(frozen=True)
class NotificationBatch:
    notifications: list[ChangeNotification]
    validation_tokens: list[str]


def parse_notifications(body: bytes | str | Mapping[str, Any]) -> NotificationBatch:
    """Parse a POST body Graph sent to a notification or lifecycle URL."""
    try:
        data = json.loads(body) if isinstance(body, (bytes, str)) else body
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotificationError(NotificationError.MALFORMED, f"notification body is not JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("value"), list):
        raise NotificationError(NotificationError.MALFORMED, "notification body has no 'value' list")
    items = []
    for raw in data["value"]:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("subscriptionId"), str):
            raise NotificationError(NotificationError.MALFORMED, "a notification has no subscriptionId")
        try:
            expires = parse_graph_time(raw.get("subscriptionExpirationDateTime"))
        except ValueError:
            expires = None
        items.append(
            ChangeNotification(
                subscription_id=raw["subscriptionId"],
                client_state=raw.get("clientState"),
                change_type=raw.get("changeType"),
                resource=raw.get("resource"),
                resource_data=dict(raw.get("resourceData") or {}),
                tenant_id=raw.get("tenantId") or raw.get("organizationId"),
                lifecycle_event=raw.get("lifecycleEvent"),
                encrypted_content=dict(raw["encryptedContent"]) if raw.get("encryptedContent") else None,
                subscription_expires_at=expires,
                raw=dict(raw),
            )
        )
    tokens = data.get("validationTokens") or []
    return NotificationBatch(items, [t for t in tokens if isinstance(t, str)])


def client_state_matches(expected: str, got: str | None) -> bool:
    """Constant-time comparison of a notification's ``clientState`` with the subscription's."""
    if got is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), got.encode("utf-8"))


# --- validation tokens (JWT) ----------------------------------------------------------------


def verify_validation_tokens(
    tokens: list[str],
    jwks: Mapping[str, Any],
    *,
    app_id: str,
    tenant_ids: set[str] | None = None,
    publisher_app_id: str = GRAPH_NOTIFICATION_APP_ID,
    leeway: float = 300.0,
    now: datetime | None = None,
) -> None:
    """Check every ``validationTokens`` JWT: RS256 signature against ``jwks`` (a JWKS document),
    not expired, ``aud`` = our ``app_id``, ``appid`` = Graph's publisher, and when
    ``tenant_ids`` is given an issuer ``https://sts.windows.net/{tid}/`` for one of them."""
    import jwt  # PyJWT, a dependency of msal

    if not tokens:
        raise NotificationError(NotificationError.BAD_VALIDATION_TOKEN, "rich notification without validationTokens")
    try:
        keyset = jwt.PyJWKSet.from_dict(dict(jwks))
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, KeyError, TypeError) as exc:
        raise NotificationError(NotificationError.BAD_VALIDATION_TOKEN, f"unusable JWKS: {exc}") from None
    by_kid = {k.key_id: k for k in keyset.keys}
    clock = (now or datetime.now(timezone.utc)).timestamp()
    for token in tokens:
        try:
            header = jwt.get_unverified_header(token)
            key = by_kid.get(header.get("kid")) or (keyset.keys[0] if len(keyset.keys) == 1 else None)
            if key is None:
                raise NotificationError(
                    NotificationError.BAD_VALIDATION_TOKEN, f"no signing key {header.get('kid')!r} in the JWKS"
                )
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=app_id,
                leeway=timedelta(seconds=leeway),
                options={"require": ["exp", "aud", "iss"], "verify_iat": False},
            )
            # PyJWT checks exp against the wall clock; an injected clock is checked here too.
            if claims["exp"] + leeway < clock:
                raise jwt.ExpiredSignatureError("token expired")
        except NotificationError:
            raise
        except jwt.PyJWTError as exc:
            raise NotificationError(NotificationError.BAD_VALIDATION_TOKEN, f"validation token rejected: {exc}") from None
        if claims.get("appid") != publisher_app_id:
            raise NotificationError(
                NotificationError.BAD_VALIDATION_TOKEN, f"validation token appid {claims.get('appid')!r} is not Graph's"
            )
        if tenant_ids is not None and not any(claims["iss"] == f"https://sts.windows.net/{t}/" for t in tenant_ids):
            raise NotificationError(NotificationError.BAD_VALIDATION_TOKEN, f"unexpected issuer {claims['iss']!r}")


# --- rich notifications: decrypt ------------------------------------------------------------


class DecryptionKeys:
    """Private keys by ``encryptionCertificateId`` (what the subscription was created with)."""

    def __init__(self) -> None:
        self._keys: dict[str, rsa.RSAPrivateKey] = {}

    def add(self, certificate_id: str, private_key: rsa.RSAPrivateKey) -> None:
        self._keys[certificate_id] = private_key

    def add_pem(self, certificate_id: str, pem: bytes, password: bytes | None = None) -> None:
        key = serialization.load_pem_private_key(pem, password)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("rich notifications need an RSA key")
        self.add(certificate_id, key)

    def add_pkcs12(self, certificate_id: str, data: bytes, password: bytes | None) -> None:
        key, _cert, _extra = pkcs12.load_key_and_certificates(data, password)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("rich notifications need an RSA key")
        self.add(certificate_id, key)

    def get(self, certificate_id: str) -> rsa.RSAPrivateKey | None:
        return self._keys.get(certificate_id)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise NotificationError(NotificationError.MALFORMED, f"encryptedContent.{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NotificationError(NotificationError.MALFORMED, f"encryptedContent.{what} is not base64") from None


def decrypt_content(encrypted: Mapping[str, Any], keys: DecryptionKeys) -> dict[str, Any]:
    """Decrypt a rich notification's ``encryptedContent`` into the resource it carries."""
    cert_id = encrypted.get("encryptionCertificateId")
    key = keys.get(cert_id) if isinstance(cert_id, str) else None
    if key is None:
        raise NotificationError(NotificationError.UNKNOWN_CERTIFICATE, f"no private key for certificate {cert_id!r}")
    data = _b64(encrypted.get("data"), "data")
    signature = _b64(encrypted.get("dataSignature"), "dataSignature")
    wrapped = _b64(encrypted.get("dataKey"), "dataKey")
    try:
        sym_key = key.decrypt(wrapped, _OAEP_SHA1)
    except ValueError:
        raise NotificationError(NotificationError.BAD_DATA_KEY, "dataKey does not unwrap with this certificate's key") from None
    expected = hmac.new(sym_key, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise NotificationError(NotificationError.BAD_DATA_SIGNATURE, "dataSignature does not match the data")
    try:
        decryptor = Cipher(algorithms.AES(sym_key), modes.CBC(sym_key[:16])).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        return json.loads(plain)
    except ValueError as exc:
        raise NotificationError(NotificationError.BAD_CIPHERTEXT, f"encrypted content does not decrypt: {exc}") from None


# --- rich notifications: encrypt (sandbox and tests) ----------------------------------------


def encrypt_content(resource: Mapping[str, Any], certificate_b64: str, certificate_id: str) -> dict[str, Any]:
    """What Graph does: encrypt ``resource`` for the subscription's ``encryptionCertificate``
    (base64 DER X.509, as sent when subscribing)."""
    cert = x509.load_der_x509_certificate(base64.b64decode(certificate_b64))
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("encryptionCertificate must hold an RSA key")
    sym_key = os.urandom(32)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(resource).encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(sym_key), modes.CBC(sym_key[:16])).encryptor()
    data = encryptor.update(padded) + encryptor.finalize()
    return {
        "data": base64.b64encode(data).decode(),
        "dataSignature": base64.b64encode(hmac.new(sym_key, data, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(public.encrypt(sym_key, _OAEP_SHA1)).decode(),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
    }


def new_encryption_certificate(
    common_name: str = "engram-notifications", *, days: int = 365, key_size: int = 2048
) -> tuple[str, bytes]:
    """A self-signed RSA certificate for ``encryptionCertificate``: (base64 DER cert, PEM key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(), pem
