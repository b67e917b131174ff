"""Microsoft 365 connector: Teams channel messages, OneNote pages, SharePoint site pages and
OneDrive / SharePoint drive items, through msal and httpx against Microsoft Graph v1.0.

The normalizer (``_normalize``) is pure: Graph JSON in, Engram records out. Change
notifications (``_notifications``) cover the validation handshake, clientState checks and
rich-notification decryption. The sandbox (``engram_microsoft.sandbox``) speaks Graph and
Entra ID on loopback for tests and the demo.
"""

from __future__ import annotations

from ._connector import MicrosoftCheckpoint, MicrosoftConfig, MicrosoftConnector
from ._errors import ExtractionError, NotificationError
from ._extract import extract_text, extractable
from ._html import html_to_text
from ._normalize import (
    PLATFORM,
    Origin,
    ResourceRef,
    channel_thread,
    drive_item_record,
    entity_for_resource,
    message_edits,
    onenote_page_document,
    site_page_document,
)
from ._notifications import (
    ChangeNotification,
    DecryptionKeys,
    NotificationBatch,
    client_state_matches,
    decrypt_content,
    encrypt_content,
    new_encryption_certificate,
    parse_notifications,
    validation_token,
    verify_validation_tokens,
)

__all__ = [
    "PLATFORM",
    "ChangeNotification",
    "DecryptionKeys",
    "ExtractionError",
    "MicrosoftCheckpoint",
    "MicrosoftConfig",
    "MicrosoftConnector",
    "NotificationBatch",
    "NotificationError",
    "Origin",
    "ResourceRef",
    "channel_thread",
    "client_state_matches",
    "decrypt_content",
    "drive_item_record",
    "encrypt_content",
    "entity_for_resource",
    "extract_text",
    "extractable",
    "html_to_text",
    "message_edits",
    "new_encryption_certificate",
    "onenote_page_document",
    "parse_notifications",
    "site_page_document",
    "validation_token",
    "verify_validation_tokens",
]
