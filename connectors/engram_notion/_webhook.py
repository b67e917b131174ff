"""Notion webhook deliveries: the signature check and "which entities to refetch".

Notion signs each delivery with ``X-Notion-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw
request body keyed with the subscription's verification token. Payloads carry ids only; the
worker refetches the entities named by ``refetch_targets``.

The one-time verification request (``{"verification_token": "..."}``) carries no entity and is
told apart by ``is_verification_request``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engram_sdk.connectors import WebhookError, sign_hmac_sha256, verify_hmac_sha256

from ._normalize import parse_time

__all__ = [
    "SIGNATURE_HEADER",
    "Delivery",
    "is_verification_request",
    "parse_delivery",
    "refetch_targets",
    "sign_webhook_payload",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Notion-Signature"
_SCHEME = "sha256="


def sign_webhook_payload(body: bytes, verification_token: str) -> str:
    """The ``X-Notion-Signature`` value Notion sends for ``body`` (for the sandbox and tests)."""
    return sign_hmac_sha256(verification_token, body, prefix=_SCHEME)


def verify_signature(body: bytes, header: str | None, verification_token: str) -> None:
    """Raise ``WebhookError`` unless ``header`` is Notion's signature of ``body`` (constant-time).

    Reasons: ``missing_header``, ``malformed_header`` (not ``sha256=<64 hex>``), ``no_match``."""
    value = (header or "").strip().lower()
    if value and (not value.startswith(_SCHEME) or len(value) != len(_SCHEME) + 64):
        raise WebhookError(WebhookError.MALFORMED_HEADER, f"{SIGNATURE_HEADER} is not sha256=<hex>")
    verify_hmac_sha256(verification_token, body, value, prefix=_SCHEME, header=SIGNATURE_HEADER)


def is_verification_request(payload: Mapping[str, Any]) -> bool:
    return set(payload) == {"verification_token"} and isinstance(payload.get("verification_token"), str)


@dataclass(frozen=True)
class Delivery:
    """One event delivery, reduced to what the connector acts on."""

    id: str
    type: str
    timestamp: datetime | None
    workspace_id: str | None
    entity_type: str
    entity_id: str
    attempt: int = 1
    targets: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def parse_delivery(body: bytes | str | Mapping[str, Any]) -> Delivery:
    """Parse an event delivery (not the verification request); ``ValueError`` names what is missing."""
    payload: Any = json.loads(body) if isinstance(body, (bytes, str)) else body
    if not isinstance(payload, Mapping):
        raise ValueError("a Notion webhook delivery is a JSON object")
    entity = payload.get("entity")
    for key in ("id", "type"):
        if not payload.get(key):
            raise ValueError(f"Notion webhook delivery without {key!r}")
    if not isinstance(entity, Mapping) or not entity.get("id") or not entity.get("type"):
        raise ValueError("Notion webhook delivery without entity.id / entity.type")
    return Delivery(
        id=str(payload["id"]),
        type=str(payload["type"]),
        timestamp=parse_time(payload.get("timestamp")),
        workspace_id=payload.get("workspace_id"),
        entity_type=str(entity["type"]),
        entity_id=str(entity["id"]),
        attempt=int(payload.get("attempt_number") or 1),
        targets=tuple(refetch_targets(payload)),
    )


def refetch_targets(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What to fetch again, as (kind, id): ``page``, ``database``, ``data_source``, ``block`` or
    ``comments`` (the comments on a page or block). Unknown event types refetch their entity."""
    entity = payload.get("entity") or {}
    kind, eid = str(entity.get("type") or ""), str(entity.get("id") or "")
    data = payload.get("data") or {}
    event = str(payload.get("type") or "")
    if kind == "comment" or event.startswith("comment."):
        parent = data.get("parent") or {}
        targets = []
        if parent.get("id"):
            targets.append(("comments", str(parent["id"])))
        if data.get("page_id") and data["page_id"] != parent.get("id"):
            targets.append(("comments", str(data["page_id"])))
        return targets or [("comment", eid)]
    out = [(kind, eid)]
    # A data source whose rows changed, or a page whose parent is a data source: the data source too.
    parent = data.get("parent") or {}
    if event in ("page.created", "page.moved", "page.deleted", "page.undeleted") and parent.get("data_source_id"):
        out.append(("data_source", str(parent["data_source_id"])))
    return out
