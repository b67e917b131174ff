"""Engram SDK: a team's workspace -> signed training events -> a per-team adapter.

The public names are re-exported here from private modules; import from ``engram_sdk``. Plugins
(the trainer in ``engram_training``, connectors) use only these names and the public submodules
(``engram_sdk.connectors``, ``engram_sdk.scheduler``, ``engram_sdk.client``, ``engram_sdk.testing``).
"""

from __future__ import annotations

from ._config import Settings, ensure_private_dir
from ._events import EVENT_TYPES, TrainingEvent, build_events, content_digest, event_id, parse_event
from ._exceptions import (
    APIConflict,
    APIConnectionError,
    APIError,
    APINotFound,
    APIRateLimited,
    BadRequest,
    ConfigError,
    ConflictError,
    ConnectorError,
    EngramError,
    EventError,
    Forbidden,
    GateFailed,
    InternalServerError,
    InvalidRequest,
    KeyringError,
    MethodNotAllowed,
    MissingExtra,
    NoAdapterError,
    NoPublishedAdapter,
    PayloadTooLarge,
    RecordError,
    ServiceUnavailable,
    SignatureError,
    StoreError,
    TrainingError,
    Unauthorized,
    UnsupportedMediaType,
)
from ._ingest import FileReport, Rejection, check_envelope, import_file, verify_file
from ._records import LIMITS, Document, Edit, Message, Part, Person, Thread, Tombstone, parse_record, split_record
from ._signing import KeyInfo, Keyring, TrustedKey, TrustedKeys, load_key_set, sign_event, verify_event
from ._store import AppendResult, EventPage, EventStore, StoredAdapter, StoredEvent

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPES",
    "LIMITS",
    "APIConflict",
    "APIConnectionError",
    "APIError",
    "APINotFound",
    "APIRateLimited",
    "AppendResult",
    "BadRequest",
    "ConfigError",
    "ConflictError",
    "ConnectorError",
    "Document",
    "Edit",
    "EngramError",
    "EventError",
    "EventPage",
    "EventStore",
    "FileReport",
    "Forbidden",
    "GateFailed",
    "InternalServerError",
    "InvalidRequest",
    "KeyInfo",
    "Keyring",
    "KeyringError",
    "Message",
    "MethodNotAllowed",
    "MissingExtra",
    "NoAdapterError",
    "NoPublishedAdapter",
    "Part",
    "PayloadTooLarge",
    "Person",
    "RecordError",
    "Rejection",
    "ServiceUnavailable",
    "Settings",
    "SignatureError",
    "StoreError",
    "StoredAdapter",
    "StoredEvent",
    "Thread",
    "Tombstone",
    "TrainingError",
    "TrainingEvent",
    "TrustedKey",
    "TrustedKeys",
    "Unauthorized",
    "UnsupportedMediaType",
    "build_events",
    "check_envelope",
    "content_digest",
    "ensure_private_dir",
    "event_id",
    "import_file",
    "load_key_set",
    "parse_event",
    "parse_record",
    "sign_event",
    "split_record",
    "verify_event",
    "verify_file",
]

# Tracebacks and reprs say engram_sdk.Document, never the private module path.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
