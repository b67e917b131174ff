"""Errors specific to the Microsoft connector, all under the SDK's ``ConnectorError``.

    ConnectorError (engram_sdk)
    ├── ExtractionError      one drive file claims a readable format but cannot be parsed
    └── NotificationError    a change notification failed a check; ``reason`` says which
"""

from __future__ import annotations

from engram_sdk.connectors import ConnectorError

__all__ = ["ExtractionError", "NotificationError"]


class ExtractionError(ConnectorError):
    pass


class NotificationError(ConnectorError):
    """A change notification (or its encrypted content / validation token) did not check out."""

    BAD_CLIENT_STATE = "bad_client_state"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    BAD_DATA_KEY = "bad_data_key"
    BAD_DATA_SIGNATURE = "bad_data_signature"
    BAD_CIPHERTEXT = "bad_ciphertext"
    BAD_VALIDATION_TOKEN = "bad_validation_token"
    MALFORMED = "malformed"
    REASONS = (
        BAD_CLIENT_STATE,
        UNKNOWN_SUBSCRIPTION,
        UNKNOWN_CERTIFICATE,
        BAD_DATA_KEY,
        BAD_DATA_SIGNATURE,
        BAD_CIPHERTEXT,
        BAD_VALIDATION_TOKEN,
        MALFORMED,
    )

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
