"""The HTTP API's request and response bodies: one definition, used by the server to validate and
document (``/openapi.json``) and by the SDK client to parse what comes back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERROR_CODES",
    "MAX_BATCH_EVENTS",
    "AdapterInfo",
    "AdapterList",
    "ErrorBody",
    "ErrorDetail",
    "EventList",
    "EventResult",
    "Health",
    "IngestRequest",
    "IngestResponse",
    "QueryRequest",
    "QueryResponse",
    "Role",
    "SigningKeyIn",
    "SigningKeyOut",
    "Source",
    "TrainJob",
    "TrainRequest",
    "Usage",
]

MAX_BATCH_EVENTS = 1000
# The error code the server sends for each status when a handler names none; the client classes an
# answer without a code it knows (a proxy's own error page) by the same table.
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "rate_limited", 500: "internal_error", 503: "unavailable"}
Role = Literal["ingest", "query", "admin"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable word, e.g. 'forbidden', 'rate_limited'")
    message: str
    request_id: str | None = None


class ErrorBody(BaseModel):
    """Every error, from every endpoint, has this shape."""

    error: ErrorDetail


class IngestRequest(_Body):
    events: list[dict[str, Any]] = Field(
        max_length=MAX_BATCH_EVENTS, description="signed CloudEvents envelopes (structured JSON)"
    )


class EventResult(BaseModel):
    index: int = Field(description="position in the request's batch")
    id: str | None
    status: Literal["accepted", "duplicate", "conflict", "rejected"]
    reason: str | None = Field(default=None, description="why it was rejected or conflicts, a stable word "
                                                          "(docs/events.md); null when accepted or a duplicate")
    message: str | None = Field(default=None, description="the same for a person; never holds content or secrets")


class IngestResponse(BaseModel):
    results: list[EventResult]
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int


class EventList(BaseModel):
    """One page of a team's stored events, oldest first."""

    team: str
    events: list[dict[str, Any]] = Field(description="signed CloudEvents envelopes, exactly as stored "
                                                     "(verifiable with the team's public keys)")
    cursor: str | None = Field(description="pass as `after` for the next page; also where to resume "
                                           "later to see only newer events")
    has_more: bool = Field(description="whether a next page exists now")


class SigningKeyIn(_Body):
    kid: str = Field(min_length=1, max_length=100)
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(min_length=1, max_length=100, description="base64url raw public key")


class SigningKeyOut(BaseModel):
    kid: str
    team: str
    algorithm: str
    public_key: str
    status: Literal["trusted", "revoked"]


class QueryRequest(_Body):
    question: str = Field(min_length=1, max_length=4000)
    max_tokens: int = Field(default=128, ge=1, le=512)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    stop: list[str] = Field(default_factory=list, max_length=4)
    stream: bool = False


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class Source(BaseModel):
    entity_id: str
    title: str
    url: str | None = None


class QueryResponse(BaseModel):
    answer: str
    adapter_version: int | None = Field(description="the team adapter version that answered")
    usage: Usage
    abstained: bool = Field(
        default=False, description="the adapter was less sure of its answer than its calibrated threshold and "
        "answered that it doesn't know (only versions trained with abstain_by_confidence)")
    retrieval_prompt_tokens: int | None = Field(
        default=None, description="prompt tokens a BM25 top-k retrieval prompt would need for the same question "
        "(the trainer's retrieval baseline over the team's pages); null when it could not be estimated")
    sources: list[Source] = Field(
        default_factory=list, description="the team's pages the answer most likely rests on, best first: found "
        "after answering by BM25 over the answer text, so they cost no prompt tokens")


class AdapterInfo(BaseModel):
    version: int
    status: str
    current: bool
    created_at: datetime | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class AdapterList(BaseModel):
    team: str
    current: int | None
    adapters: list[AdapterInfo]


class TrainRequest(_Body):
    from_scratch: bool = False


class TrainJob(BaseModel):
    id: str
    team: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    from_scratch: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    version: int | None = None
    cancel_requested: bool = False
    step: int | None = Field(None, description="the training step reached; null until the run's first step")
    total_steps: int | None = Field(None, description="the steps the run takes in all (known once its data is built)")
    progress_at: datetime | None = Field(None, description="when step was last written (every ~10 s while training)")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: str
    workers: bool
    # Where the base model is: loaded on the first query that has an adapter, or at start with
    # `engram serve --warm`. `/v1/health?ready=true` answers 503 until it is "loaded".
    model: Literal["not_loaded", "loading", "loaded", "failed"] = "not_loaded"
    model_error: str | None = None
