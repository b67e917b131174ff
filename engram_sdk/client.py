"""The SDK client (sync and async) for a partner's backend. See ``engram_sdk._client``."""

from ._api import AdapterInfo, AdapterList, Health, IngestResponse, QueryResponse, SigningKeyOut, TrainJob, Usage
from ._client import AsyncEngramClient, EngramClient
from ._exceptions import APIConnectionError, APIError, APIRateLimited, Forbidden, Unauthorized

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIRateLimited",
    "AdapterInfo",
    "AdapterList",
    "AsyncEngramClient",
    "EngramClient",
    "Forbidden",
    "Health",
    "IngestResponse",
    "QueryResponse",
    "SigningKeyOut",
    "TrainJob",
    "Unauthorized",
    "Usage",
]
