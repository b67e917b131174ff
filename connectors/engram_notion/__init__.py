"""Engram connector for Notion: normalizer, sandbox and connector over ``notion-client``."""

from ._blocks import render_blocks
from ._connector import (
    NotionCheckpoint,
    NotionConfig,
    NotionConnector,
    confirm_webhook_verification,
    reset_webhook_verification,
    reveal_verification_token,
)
from ._normalize import (
    comments_to_threads,
    data_source_to_document,
    database_to_document,
    page_to_document,
    tombstone,
)
from ._text import property_to_text, rich_text
from ._webhook import parse_delivery, sign_webhook_payload, verify_signature

__all__ = [
    "NotionCheckpoint",
    "NotionConfig",
    "NotionConnector",
    "comments_to_threads",
    "confirm_webhook_verification",
    "data_source_to_document",
    "database_to_document",
    "page_to_document",
    "parse_delivery",
    "property_to_text",
    "render_blocks",
    "reset_webhook_verification",
    "reveal_verification_token",
    "rich_text",
    "sign_webhook_payload",
    "tombstone",
    "verify_signature",
]
