"""The SDK client (sync and async) for a partner's backend. See ``engram_sdk._client``.

Every error the server can answer is its own class here (one per error code of the HTTP API,
docs/server.md), all subclasses of ``APIError``: ``except APIError`` still catches them all.
"""

from ._api import (
    AdapterInfo,
    AdapterList,
    EventList,
    Health,
    IngestResponse,
    QueryResponse,
    SigningKeyOut,
    Source,
    TrainJob,
    Usage,
)
from ._client import AsyncEngramClient, EngramClient
from ._exceptions import (
    APIConflict,
    APIConnectionError,
    APIError,
    APINotFound,
    APIRateLimited,
    BadRequest,
    Forbidden,
    InternalServerError,
    InvalidRequest,
    MethodNotAllowed,
    NoAdapterError,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = [
    "APIConflict",
    "APIConnectionError",
    "APIError",
    "APINotFound",
    "APIRateLimited",
    "AdapterInfo",
    "AdapterList",
    "AsyncEngramClient",
    "BadRequest",
    "EngramClient",
    "EventList",
    "Forbidden",
    "Health",
    "IngestResponse",
    "InternalServerError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NoAdapterError",
    "PayloadTooLarge",
    "QueryResponse",
    "ServiceUnavailable",
    "SigningKeyOut",
    "Source",
    "TrainJob",
    "Unauthorized",
    "UnsupportedMediaType",
    "Usage",
]
