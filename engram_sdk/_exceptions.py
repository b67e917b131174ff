"""Every error the SDK raises on purpose.

    EngramError
    ├── ConfigError              ENGRAM_HOME / settings / keyring files unusable
    ├── RecordError              a record failed validation (names the field)
    ├── EventError               an envelope is malformed (names the attribute)
    ├── SignatureError           verification failed (signature, trust, or the id rule);
    │                            ``reason`` is one of SignatureError.REASONS
    ├── KeyringError             no active key, unknown key id, key file unreadable
    ├── StoreError               the event store cannot be opened or written
    │   └── ConflictError        same event id, different content (stored event untouched)
    ├── ConnectorError           a platform call failed, or a connector could not do its work
    │   ├── AuthError            the platform rejected the credentials (401)
    │   │   ├── ReconnectNeeded  the grant is revoked or expired: the operator must run `engram connect`
    │   │   └── AuthorizationPending  an OAuth step is left to the operator (``instructions`` say which)
    │   ├── RateLimited          still throttled when the retry budget ran out; ``retry_after`` seconds
    │   ├── PlatformError        any other non-2xx answer; ``status``, ``code``, ``request_id``
    │   │   ├── PermissionDenied 403: the credential may not read this resource
    │   │   └── NotFound         404 / gone
    │   └── WebhookError         a webhook delivery failed verification; ``reason`` is a stable word
    ├── SchedulerLocked          another scheduler holds this deployment's lock (``owner``)
    ├── MissingExtra             no installed plugin offers what was asked (training, answering, a
    │                            command); ``extra`` names what to install, the message says how
    ├── TrainingError            the trainer could not run
    │   ├── GateFailed           a trained adapter failed its publishing gates (kept, not current)
    │   └── NoPublishedAdapter   a team without a published adapter was asked a question (server side;
    │                            the client sees NoAdapterError)
    └── APIError                 the Engram server answered with an error (SDK client side);
        │                        ``status``, ``code``, ``request_id``, and the server's message.
        │                        One class per error code of the HTTP API (docs/server.md):
        ├── APIConnectionError   the server could not be reached (after retries)
        ├── BadRequest           400 bad_request
        ├── Unauthorized         401 unauthorized: missing, invalid or revoked API key
        ├── Forbidden            403 forbidden: the key may not do this, or not for this team
        ├── APINotFound          404 not_found: no such route, job, version or signing key
        ├── MethodNotAllowed     405 method_not_allowed
        ├── APIConflict          409 conflict: e.g. a rollback the registry refuses
        ├── NoAdapterError       409 no_adapter: the team has no published adapter yet
        ├── PayloadTooLarge      413 payload_too_large
        ├── UnsupportedMediaType 415 unsupported_media_type
        ├── InvalidRequest       422 invalid_request: the message names the field
        ├── APIRateLimited       429 rate_limited after retries; ``retry_after`` seconds
        ├── InternalServerError  500 internal_error (after retries; details in the server log)
        └── ServiceUnavailable   503 unavailable (after retries), e.g. a server without the train extra

Mistakes by the caller (a wrong type, an impossible argument) stay ``ValueError`` /
``TypeError`` so ``except EngramError`` never hides a bug.
"""

from __future__ import annotations

__all__ = [
    "API_ERRORS",
    "APIConflict",
    "APIConnectionError",
    "APIError",
    "APINotFound",
    "APIRateLimited",
    "BadRequest",
    "Forbidden",
    "InternalServerError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NoAdapterError",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "AuthError",
    "AuthorizationPending",
    "ConfigError",
    "ConflictError",
    "ConnectorError",
    "EngramError",
    "EventError",
    "GateFailed",
    "KeyringError",
    "MissingExtra",
    "NoPublishedAdapter",
    "NotFound",
    "PermissionDenied",
    "PlatformError",
    "RateLimited",
    "ReconnectNeeded",
    "RecordError",
    "SchedulerLocked",
    "SignatureError",
    "StoreError",
    "TrainingError",
    "WebhookError",
]


class EngramError(Exception):
    """Base class of every error the SDK raises on purpose."""


class ConfigError(EngramError):
    pass


class RecordError(EngramError):
    pass


class EventError(EngramError):
    pass


class SignatureError(EngramError):
    """An event does not verify: its signature, its key's trust, or its id (which must be the one
    its content derives, even under a good signature); ``reason`` says why, in a stable word."""

    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    UNTRUSTED_FOR_TEAM = "untrusted_for_team"
    REVOKED_KEY = "revoked_key"
    MISSING_SIGNATURE = "missing_signature"
    ID_MISMATCH = "id_mismatch"
    REASONS = (BAD_SIGNATURE, UNKNOWN_KEY, UNTRUSTED_FOR_TEAM, REVOKED_KEY, MISSING_SIGNATURE, ID_MISMATCH)

    def __init__(self, reason: str, message: str, *, event_id: str | None = None, kid: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.event_id = event_id
        self.kid = kid


class KeyringError(EngramError):
    pass


class StoreError(EngramError):
    pass


class ConflictError(StoreError):
    """The store already holds this event id with different content."""

    def __init__(self, event_id: str, team_id: str):
        super().__init__(f"event {event_id} of team {team_id} is already stored with different content")
        self.event_id = event_id
        self.team_id = team_id


class ConnectorError(EngramError):
    """A platform call failed or a connector could not do its work. Messages never hold secrets."""


class AuthError(ConnectorError):
    """The platform rejected the credentials."""


class ReconnectNeeded(AuthError):
    """The grant is revoked or expired; nothing but ``engram connect`` again can fix it.

    The sync runner turns it into the connection status ``reconnect_needed`` and keeps the
    checkpoint of the last stored batch.
    """


class AuthorizationPending(AuthError):
    """``engram connect`` cannot finish yet: the operator must do something first (open an
    authorization URL, enter a device code). ``instructions`` is printed as is; never a secret."""

    def __init__(self, instructions: str):
        super().__init__(instructions)
        self.instructions = instructions


class RateLimited(ConnectorError):
    """Still throttled after the retry budget ran out; ``retry_after`` is the server's last hint."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PlatformError(ConnectorError):
    """A non-2xx answer that retries could not fix (or that is never retried)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class PermissionDenied(PlatformError):
    """403: the credential may not read this resource (other resources may still work)."""


class NotFound(PlatformError):
    """404 or 410: the entity is gone, or was never visible to this credential."""


class WebhookError(ConnectorError):
    """A webhook delivery failed verification; ``reason`` is one of ``WebhookError.REASONS``."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    NO_MATCH = "no_match"
    TOO_OLD = "too_old"
    TOO_NEW = "too_new"
    UNKNOWN_CONNECTION = "unknown_connection"
    NOT_ACCEPTED = "not_accepted"
    REASONS = (MISSING_HEADER, MALFORMED_HEADER, NO_MATCH, TOO_OLD, TOO_NEW, UNKNOWN_CONNECTION, NOT_ACCEPTED)

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SchedulerLocked(EngramError):
    """Another scheduler holds this deployment's lock and its lease has not expired."""

    def __init__(self, message: str, owner: str | None = None):
        super().__init__(message)
        self.owner = owner


class TrainingError(EngramError):
    pass


class MissingExtra(EngramError):
    """What was asked needs an extra that is not installed here: the plugin that provides it (see
    ``engram_sdk.plugins``) is absent or cannot be imported. One line: what, the pip command, and
    why, when known (``missing``: the module that failed to import)."""

    def __init__(self, what: str, extra: str, missing: str | None = None):
        super().__init__(f"{what} needs the {extra} extra: pip install 'engram-sdk[{extra}]'"
                         + (f" ({missing})" if missing else ""))
        self.what, self.extra, self.missing = what, extra, missing


class NoPublishedAdapter(TrainingError):
    """The team has no published adapter yet: train one first."""


class GateFailed(TrainingError):
    """A trained adapter version failed its gates: it is kept as rejected and the previous version
    stays current. The message says which gate and by how much."""


class APIError(EngramError):
    """An error answer from the Engram server, as the SDK client sees it."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        head = f"{self.status} {self.code}: " if self.status else ""
        return f"{head}{self.message}"


class APIConnectionError(APIError):
    """The server could not be reached (after retries); ``status`` is None."""


class BadRequest(APIError):
    """400 ``bad_request``."""


class Unauthorized(APIError):
    """401 ``unauthorized``: the API key is missing, unknown or revoked."""


class Forbidden(APIError):
    """403 ``forbidden``: this key may not do that, or not for that team (the same answer for both)."""


class APINotFound(APIError):
    """404 ``not_found``: no such job, adapter version, signing key or route."""


class MethodNotAllowed(APIError):
    """405 ``method_not_allowed``."""


class APIConflict(APIError):
    """409 ``conflict``: the request contradicts the server's state (e.g. a rollback it refuses)."""


class NoAdapterError(APIError):
    """409 ``no_adapter``: the team has no published adapter yet; train one (``client.training.start``),
    then ask again. Not retried: asking again changes nothing until a version is published."""


class PayloadTooLarge(APIError):
    """413 ``payload_too_large``: send smaller batches."""


class UnsupportedMediaType(APIError):
    """415 ``unsupported_media_type``: POST bodies must be ``application/json``."""


class InvalidRequest(APIError):
    """422 ``invalid_request``: the message names the field (or where a body stops being JSON)."""


class APIRateLimited(APIError):
    """429 ``rate_limited`` after retries; ``retry_after`` is the server's last hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class InternalServerError(APIError):
    """500 ``internal_error`` after retries; the server log has the details (``request_id``)."""


class ServiceUnavailable(APIError):
    """503 ``unavailable`` after retries, e.g. a server installed without what answering needs."""


# The error code of the HTTP API (``{"error": {"code": ...}}``) -> the class the client raises.
# The client falls back on the status when an answer carries no known code (a proxy's own page).
API_ERRORS: dict[str, type[APIError]] = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": APINotFound,
    "method_not_allowed": MethodNotAllowed,
    "conflict": APIConflict,
    "no_adapter": NoAdapterError,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "invalid_request": InvalidRequest,
    "rate_limited": APIRateLimited,
    "internal_error": InternalServerError,
    "unavailable": ServiceUnavailable,
}
