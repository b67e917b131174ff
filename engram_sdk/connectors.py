"""Everything a connector author needs, in one import: ``from engram_sdk.connectors import ...``.

- The contract: ``Connector`` (subclass it), ``Account``, ``Container``, ``ItemFailed``,
  ``ConnectorContext`` (``ctx.secrets``, ``ctx.clock``, ``ctx.previous(entity_id)``,
  ``ctx.edit(doc)``, ``ctx.tombstone(entity_id, reason)``), ``Scope``, ``WebhookRequest`` /
  ``WebhookResult``; records ``Document``, ``Thread`` (``thread.walk()``: every message, replies
  of replies too), ``Message``, ``Edit`` (``Edit.between(previous, doc)``), ``Tombstone``,
  ``Person``.
- The HTTP toolkit: ``build_client``, ``Rate``, ``RateLimiter``, ``RetryPolicy``, ``FakeClock``,
  ``raise_for_status``, ``platform_errors``, ``client_stats``, ``parse_retry_after``; for a
  platform library that hides httpx's answers, ``network_error``, ``rate_limited`` and
  ``RetryStop`` translate its errors the same way.
- Errors: ``AuthError``, ``ReconnectNeeded``, ``AuthorizationPending``, ``RateLimited``,
  ``PlatformError``, ``PermissionDenied``, ``NotFound``, ``WebhookError``, ``ConfigError``.
- Webhook signatures: ``verify_hmac_sha256`` / ``sign_hmac_sha256``, ``StandardWebhook``.
- The sandbox base: ``Sandbox``, ``serve``, ``SandboxServer``, ``SandboxAdmin``.
- Running things: ``SyncRunner``, ``WebhookReceiver``, ``WebhookQueue``, ``WebhookWorker``,
  ``Connections``, secrets stores, ``register_connector`` / ``load_connector``.

See docs/writing-a-connector.md for a walk-through, and ``engram_sdk.testing`` for the test kit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._connections import Connections
from ._connector import (
    ENTRY_POINT_GROUP,
    Account,
    Connection,
    ConnectionInfo,
    Connector,
    ConnectorContext,
    Container,
    ItemFailed,
    Record,
    Scope,
    ScopeItem,
    WebhookRequest,
    WebhookResult,
    available_connectors,
    load_connector,
    register_connector,
    secret_fields,
)
from ._exceptions import (
    AuthError,
    AuthorizationPending,
    ConfigError,
    ConnectorError,
    NotFound,
    PermissionDenied,
    PlatformError,
    RateLimited,
    ReconnectNeeded,
    WebhookError,
)
from ._http import (
    Clock,
    FakeClock,
    Rate,
    RateLimiter,
    RequestStats,
    RetryPolicy,
    RetryStop,
    SystemClock,
    build_client,
    client_stats,
    network_error,
    parse_retry_after,
    platform_errors,
    raise_for_status,
    rate_limited,
)
from ._records import Document, Edit, Message, Person, Thread, Tombstone
from ._secrets import ConnectionSecrets, DatabaseSecretStore, FileSecretStore, SecretStore, open_secret_store
from ._sync import SyncRunner
from ._webhooks import (
    StandardWebhook,
    WebhookQueue,
    WebhookReceiver,
    WebhookWorker,
    sign_hmac_sha256,
    verify_hmac_sha256,
)

if TYPE_CHECKING:
    from ._sandbox import Sandbox, SandboxAdmin, SandboxServer, serve

# The sandbox base needs starlette and uvicorn (the "server" extra): imported on first use.
_SANDBOX_NAMES = ("Sandbox", "SandboxAdmin", "SandboxServer", "serve")


def __getattr__(name: str) -> object:
    if name in _SANDBOX_NAMES:
        from . import _sandbox

        return getattr(_sandbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "Account",
    "AuthError",
    "AuthorizationPending",
    "Clock",
    "ConfigError",
    "Connection",
    "ConnectionInfo",
    "ConnectionSecrets",
    "Connections",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "Container",
    "DatabaseSecretStore",
    "Document",
    "Edit",
    "FakeClock",
    "FileSecretStore",
    "ItemFailed",
    "Message",
    "NotFound",
    "PermissionDenied",
    "Person",
    "PlatformError",
    "Rate",
    "RateLimited",
    "RateLimiter",
    "ReconnectNeeded",
    "Record",
    "RequestStats",
    "RetryPolicy",
    "RetryStop",
    "Sandbox",
    "SandboxAdmin",
    "SandboxServer",
    "Scope",
    "ScopeItem",
    "SecretStore",
    "StandardWebhook",
    "SyncRunner",
    "SystemClock",
    "Thread",
    "Tombstone",
    "WebhookError",
    "WebhookQueue",
    "WebhookReceiver",
    "WebhookRequest",
    "WebhookResult",
    "WebhookWorker",
    "available_connectors",
    "build_client",
    "client_stats",
    "load_connector",
    "network_error",
    "open_secret_store",
    "parse_retry_after",
    "platform_errors",
    "raise_for_status",
    "rate_limited",
    "register_connector",
    "secret_fields",
    "serve",
    "sign_hmac_sha256",
    "verify_hmac_sha256",
]
