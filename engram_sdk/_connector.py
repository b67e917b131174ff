"""The connector contract: what a platform package implements, and how the SDK finds it.

A connector is one class with two pydantic models and two required methods::

    class ExampleConnector(Connector[ExampleConfig, ExampleCheckpoint]):
        platform = "example"                    # engram connect example ...
        Config = ExampleConfig                  # its fields become `engram connect` flags
        Checkpoint = ExampleCheckpoint          # the one typed checkpoint of a connection
        scope_kinds = ("folder",)               # --scope folder:ID,...; bare IDs mean the first kind

        def check(self) -> Account: ...         # validate the credentials; name the account
        def sync(self, checkpoint): ...         # yield records, checkpoints and ItemFailed

        # optional
        def containers(self): ...               # what a scope may name (`engram connections show`)
        def fetch(self, entity_ids): ...        # refetch by id: webhooks, retried failures
        def list_entity_ids(self): ...          # everything in scope now: `engram sync --reconcile`
        def handle_webhook(self, request): ...  # verify a delivery; say which ids to refetch

**Rules the runner relies on**

- ``__init__`` does no I/O: the webhook receiver builds a connector for every delivery.
- ``sync(checkpoint)`` gets the last committed ``Checkpoint`` (None on the first or a ``--full``
  sync) and yields ``Document``/``Thread``/``Edit``/``Tombstone`` records, ``Checkpoint`` instances
  and ``ItemFailed``. Yielding a checkpoint means "everything yielded before this is done": the
  runner signs and stores the records before it and the checkpoint in one transaction. Only yield
  one at a point where resuming from it loses nothing (after a page, after a delta round).
- Records must be deterministic for unchanged content (same text, same ``updated_at``), so a
  resumed or repeated sync produces the same event ids and stores nothing twice.
- Scope: only content inside ``ctx.connection.scope`` may be yielded; ``fetch`` of an id that is
  gone or now outside the scope yields ``ctx.tombstone(id, "deleted" / "out_of_scope")``.
- Deletions follow one rule, ``ctx.tombstone``: a ``Tombstone`` only for an entity with a stored,
  not-yet-deleted record, its revision derived from that record's event; for anything else the
  connector yields nothing (an id it was asked to fetch then counts as done).
- One bad item never aborts a sync: catch its error, ``yield ItemFailed(entity_id, reason)``,
  go on. The runner records it and passes the id to ``fetch`` on the next run.
- A revoked or expired grant raises ``ReconnectNeeded``; rate limits and 5xx are retried by the
  HTTP toolkit (``build_client``); what still fails raises a ``ConnectorError`` subclass.
- Secrets (tokens, refresh tokens, caches) live in ``ctx.secrets``; never log them or put them in
  an exception message, a record or the checkpoint. Config fields typed ``SecretStr`` are stored
  there automatically by ``engram connect``.
- To emit an ``Edit``, yield ``ctx.edit(doc)`` (the change from the stored version, or None)
  before the new ``Document`` of the same entity.

Discovery: an installed package lists its connector class in the ``engram.connectors`` entry-point
group (``[project.entry-points."engram.connectors"] example = "pkg.module:ExampleConnector"``).
During development, ``ENGRAM_CONNECTORS="example=pkg.module:ExampleConnector,..."`` or
``register_connector(cls)`` does the same without installing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from importlib.metadata import entry_points, packages_distributions
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, Union

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr

from . import _schema as t
from ._exceptions import ConfigError
from ._http import Clock, SystemClock
from ._records import Document, Edit, Person, Thread, Tombstone, parse_record

if TYPE_CHECKING:
    from ._secrets import ConnectionSecrets
    from ._store import EventStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "Account",
    "Connection",
    "ConnectionInfo",
    "Connector",
    "ConnectorContext",
    "Container",
    "InstalledConnector",
    "ItemFailed",
    "Record",
    "Scope",
    "ScopeItem",
    "WebhookRequest",
    "WebhookResult",
    "available_connectors",
    "installed_connectors",
    "load_connector",
    "register_connector",
    "secret_fields",
]

ENTRY_POINT_GROUP = "engram.connectors"

# A library logs; the application decides where to. Without this, Python's last-resort handler
# would print the framework's warnings on stderr next to the CLI's own one-line errors.
logging.getLogger("engram").addHandler(logging.NullHandler())

Record = Union[Document, Thread, Edit, Tombstone]
TombstoneReason = Literal["deleted", "trashed", "unshared", "out_of_scope"]
ConfigT = TypeVar("ConfigT", bound=BaseModel)
CheckpointT = TypeVar("CheckpointT", bound=BaseModel)

_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


# --- scopes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ScopeItem:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Scope:
    """Which platform containers belong to a connection's team: ``all`` or ``kind:ID,kind:ID,...``.

    ``all`` means everything the credential can read, and must be written out explicitly.
    """

    items: tuple[ScopeItem, ...] = ()
    all: bool = False

    @classmethod
    def parse(cls, text: str, *, kinds: Sequence[str] = (), default_kind: str | None = None) -> Scope:
        """Parse ``--scope``. ``kinds`` (if given) are the only kinds allowed; an entry without a
        ``kind:`` prefix gets ``default_kind`` (the connector's first kind)."""
        text = (text or "").strip()
        if not text:
            raise ValueError("a scope is required: 'all', or kind:ID,kind:ID,...")
        if text == "all":
            return cls(all=True)
        items = []
        for raw in text.split(","):
            raw = raw.strip()
            if not raw:
                continue
            kind, sep, ident = raw.partition(":")
            if not sep or not _KIND_RE.match(kind):
                if default_kind is None:
                    raise ValueError(f"scope entry {raw!r} must be written kind:ID")
                kind, ident = default_kind, raw
            ident = ident.strip()
            if not ident:
                raise ValueError(f"scope entry {raw!r} has no id")
            if kinds and kind not in kinds:
                raise ValueError(f"scope entry {raw!r}: kind {kind!r} is not one of {', '.join(kinds)}")
            items.append(ScopeItem(kind, ident))
        if not items:
            raise ValueError("a scope is required: 'all', or kind:ID,kind:ID,...")
        return cls(items=tuple(dict.fromkeys(items)))

    def ids(self, kind: str) -> list[str]:
        return [i.id for i in self.items if i.kind == kind]

    def contains(self, kind: str, ident: str) -> bool:
        return self.all or ScopeItem(kind, ident) in self.items

    def __str__(self) -> str:
        return "all" if self.all else ",".join(str(i) for i in self.items)


# --- what connectors return ------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What ``check`` found: ``source`` is the CloudEvents source of every event of this account
    (``notion://workspace/<id>``, ``msgraph://tenant/<id>``, ``harvey://org/<id>``); reconnecting
    the same account must give the same source."""

    source: str
    name: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Container:
    """A platform container a scope can name (``kind:id``)."""

    kind: str
    id: str
    title: str = ""
    parent: str | None = None


@dataclass(frozen=True)
class ItemFailed:
    """One item could not be read or normalized; the sync goes on. ``reason`` is shown to the
    operator: name the error, never quote content or secrets."""

    entity_id: str
    reason: str

    @classmethod
    def of(cls, entity_id: str, exc: BaseException) -> ItemFailed:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return cls(entity_id, f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


@dataclass(frozen=True)
class WebhookRequest:
    """One inbound delivery, as the receiver got it (headers lower-cased, body as raw bytes)."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    # The sender's address as the server saw it (behind a proxy, what the proxy passes on), for
    # the operator's record of unauthenticated requests; never a basis for trust.
    client: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class WebhookResult:
    """What to queue and what to answer. ``delivery_id`` (when the platform sends one) makes an
    exact replay a no-op; ``resync`` queues an incremental sync of the whole connection (e.g. a
    Graph ``missed`` lifecycle event). The answer defaults to an empty 202; a handshake sets
    ``status``/``body``/``media_type`` (e.g. echo a validation token as text/plain)."""

    entity_ids: Sequence[str] = ()
    delivery_id: str | None = None
    resync: bool = False
    status: int = 202
    body: bytes | str = b""
    media_type: str = "text/plain"


# --- connections and the context a connector runs in --------------------------------------------


@dataclass(frozen=True)
class ConnectionInfo:
    """What a connector may know about the connection it serves."""

    name: str
    platform: str
    team_id: str
    scope: Scope
    source: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Connection:
    """A stored connection (``engram connections show``); secrets are not part of it."""

    name: str
    platform: str
    team_id: str
    scope: str
    config: dict[str, Any]
    status: str
    source: str | None = None
    account_name: str | None = None
    last_sync_at: Any = None
    last_error: str | None = None
    last_counts: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: Any = None
    updated_at: Any = None


class ConnectorContext:
    """Everything a connector gets from the framework: the connection, its secrets, a clock,
    a logger, and read access to what was stored before (for ``Edit`` records)."""

    def __init__(
        self,
        connection: ConnectionInfo,
        secrets: ConnectionSecrets,
        *,
        store: EventStore | None = None,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
        http: Mapping[str, Any] | None = None,
    ):
        self.connection = connection
        self.secrets = secrets
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.log = logger or logging.getLogger(f"engram.connectors.{connection.platform}")
        # Extra keyword arguments for build_client (e.g. {"verify": ca_bundle} against a TLS sandbox)
        self.http: dict[str, Any] = dict(http or {})
        self._meta_updates: dict[str, Any] = {}

    def previous(self, entity_id: str) -> Document | Thread | None:
        """The last stored document or thread of ``entity_id`` for this team and account, with a
        split record's parts joined back; None if never stored (or last stored as deleted)."""
        latest = self._latest(entity_id)
        return latest[0] if latest is not None else None

    def edit(self, doc: Document, *, author: Person | None = None) -> Edit | None:
        """The ``Edit`` from the stored version of ``doc``'s entity to ``doc`` (``Edit.between``);
        None when nothing was stored or the text is unchanged. Yield it before ``doc``."""
        return Edit.between(self.previous(doc.entity_id), doc, author=author)

    def tombstone(self, gone: str | Tombstone, reason: TombstoneReason = "deleted", *,
                  at: datetime | None = None) -> list[Tombstone]:
        """The one rule for deletions: a ``Tombstone`` only for an entity that has a stored,
        not-yet-deleted record for this team and account; nothing for one never stored or
        already deleted. A list of one or none, so a connector's generator can ``yield from`` it.
        Its revision is ``deleted-after:<event id of that record>``, so the same deletion
        noticed twice (a sync, a webhook refetch, a retry, ``--reconcile``) is one event.

        ``gone`` is the entity id, or a ``Tombstone`` a normaliser built from the platform's own
        answer (a trashed page, a deleted message), which is kept as built. From an id, the
        tombstone copies platform, workspace, parent, url and path from the stored record; ``at``
        is when the platform says the entity went, by default the stored version's time (a rerun
        then builds the identical record)."""
        entity_id = gone.entity_id if isinstance(gone, Tombstone) else gone
        latest = self._latest(entity_id)
        if latest is None:
            return []
        last, event_id = latest
        if isinstance(gone, Tombstone):
            return [gone.model_copy(update={"revision": deletion_revision(event_id)})]
        return [tombstone_after(last, event_id, reason, at=at)]

    def _latest(self, entity_id: str) -> tuple[Document | Thread, str] | None:
        """``previous`` with the id of the event it was read from."""
        if self.store is None or self.connection.source is None:
            return None
        ev = t.events
        types = ["ai.engram.document.upserted", "ai.engram.thread.upserted", "ai.engram.entity.deleted"]

        def matching(subject: Any) -> Any:
            return sa.select(ev.c.seq, ev.c.type, ev.c.event_id).where(
                ev.c.team_id == self.connection.team_id, ev.c.source == self.connection.source, subject,
                ev.c.type.in_(types))

        # The entity, and its parts ("<id>#part-i-of-n"): two index ranges on (team_id, subject).
        # No ORDER BY: sorting in SQL would make the planner walk the team's whole history.
        q = sa.union_all(
            matching(ev.c.subject == entity_id),
            matching(sa.and_(ev.c.subject >= entity_id + "#part-", ev.c.subject < entity_id + "#part.")),
        )
        with self.store.engine.connect() as conn:
            rows = sorted(conn.execute(q).all(), key=lambda r: r.seq, reverse=True)
        if not rows or rows[0].type == "ai.engram.entity.deleted":
            return None

        def record(event_id: str) -> Any:
            stored = self.store.get(self.connection.team_id, event_id)  # type: ignore[union-attr]
            return parse_record(stored.envelope["data"]) if stored else None

        first = record(rows[0].event_id)
        if first is None or first.part is None:
            return (first, rows[0].event_id) if isinstance(first, (Document, Thread)) else None
        parts: dict[int, Any] = {}
        for r in rows:
            if r.type == "ai.engram.entity.deleted":
                break
            rec = record(r.event_id)
            if rec is not None and rec.part is not None and rec.part.count == first.part.count:
                parts.setdefault(rec.part.index, rec)
            if len(parts) == first.part.count:
                break
        ordered = [parts[i] for i in sorted(parts)]
        if isinstance(first, Document):
            whole: Document | Thread = first.model_copy(update={"text": "".join(p.text for p in ordered), "part": None})
        else:
            whole = first.model_copy(update={"messages": [m for p in ordered for m in p.messages], "part": None})
        return whole, rows[0].event_id

    def set_meta(self, **values: Any) -> None:
        """Remember small non-secret facts on the connection (e.g. a webhook's verification state);
        saved by the runner or receiver when the connector's work is done."""
        self._meta_updates.update(values)

    def change_meta(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """Read-modify-write the connection's meta now, atomically: ``change`` gets the meta as
        stored and returns the keys to set (None: nothing). Unlike ``set_meta`` this decides on
        the stored value, so of two requests racing (two webhook deliveries at once) exactly one
        sees the other's write; ``change`` must be quick and must not touch the store itself.
        Returns what was set (empty when nothing)."""
        if self.store is None:  # a connector run without a store: its own copy is the truth
            current = {**self.connection.meta, **self._meta_updates}
            updates = change(current) or {}
            self._meta_updates.update(updates)
            return updates
        from ._connections import Connections

        return Connections(self.store).change_meta(self.connection.name, change)


def deletion_revision(event_id: str) -> str:
    """The revision of a deletion: named after the last stored event of the entity, so every path
    that notices the same deletion derives the same event id."""
    return f"deleted-after:{event_id}"


def tombstone_after(last: Any, event_id: str, reason: TombstoneReason = "deleted", *,
                    at: datetime | None = None) -> Tombstone:
    """The Tombstone of an entity whose last stored record is ``last`` (event ``event_id``)."""
    return Tombstone(platform=last.platform, workspace_id=last.workspace_id, entity_id=last.entity_id,
                     parent_id=last.parent_id, url=last.url, path=list(last.path),
                     updated_at=at or last.updated_at, reason=reason, revision=deletion_revision(event_id))


# --- the contract ----------------------------------------------------------------------------------


class Connector(Generic[ConfigT, CheckpointT]):
    """Base class of every connector; see the module docstring for the rules."""

    platform: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    Checkpoint: ClassVar[type[BaseModel]]
    scope_kinds: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    # "module:Class" of the platform's Sandbox subclass (imported only by `engram sandbox`)
    sandbox: ClassVar[str | None] = None

    def __init__(self, config: ConfigT, ctx: ConnectorContext):
        self.config = config
        self.ctx = ctx

    def check(self) -> Account:
        """Validate the credentials against the platform and name the account (``engram connect``,
        ``engram connections test``). Raise ``AuthError``/``ReconnectNeeded`` when they fail, or
        ``AuthorizationPending`` when the operator must finish an OAuth step first."""
        raise NotImplementedError

    def sync(self, checkpoint: CheckpointT | None) -> Iterator[Record | CheckpointT | ItemFailed]:
        """Yield records, checkpoints and ``ItemFailed`` from ``checkpoint`` on (None: from the start)."""
        raise NotImplementedError

    def containers(self) -> Iterator[Container]:
        """The containers the credential can see, for choosing a scope."""
        raise NotImplementedError(f"the {self.platform} connector cannot list containers")

    def fetch(self, entity_ids: Sequence[str]) -> Iterator[Record | ItemFailed]:
        """Refetch entities by id: the current record, a ``Tombstone`` if gone or out of scope,
        or ``ItemFailed``. Used by the webhook worker and to retry earlier failures."""
        raise NotImplementedError(f"the {self.platform} connector cannot fetch single entities")

    def list_entity_ids(self) -> Iterator[str]:
        """Every entity id (the records' ``entity_id``) in scope now, for ``--reconcile``."""
        raise NotImplementedError(f"the {self.platform} connector does not support --reconcile")

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Verify a delivery (raise ``WebhookError`` on failure) and say what to refetch."""
        raise NotImplementedError(f"the {self.platform} connector receives no webhooks")

    def close(self) -> None:
        """Release clients; called by the framework when it is done with the connector."""

    @classmethod
    def supports(cls, method: str) -> bool:
        """Whether the connector overrides an optional method (``fetch``, ``list_entity_ids``, ...)."""
        return getattr(cls, method) is not getattr(Connector, method)


def secret_fields(model: type[BaseModel]) -> list[str]:
    """Config fields typed ``SecretStr`` (or ``SecretStr | None``): kept in the secrets store."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        args = getattr(ann, "__args__", ()) or ()
        if ann is SecretStr or SecretStr in args:
            out.append(name)
    return out


# --- discovery -------------------------------------------------------------------------------------

_REGISTERED: dict[str, type[Connector[Any, Any]]] = {}


def register_connector(cls: type[Connector[Any, Any]]) -> type[Connector[Any, Any]]:
    """Make a connector class available in this process without an entry point."""
    _check_class(cls, cls.__name__)
    _REGISTERED[cls.platform] = cls
    return cls


def _env_specs() -> dict[str, str]:
    out = {}
    for part in os.environ.get("ENGRAM_CONNECTORS", "").split(","):
        if "=" in part:
            name, target = part.split("=", 1)
            out[name.strip()] = target.strip()
    return out


def available_connectors() -> dict[str, str]:
    """Platform name -> where its class comes from ("module:Class"), without importing anything."""
    out = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    out.update(_env_specs())
    out.update({p: f"{c.__module__}:{c.__qualname__}" for p, c in _REGISTERED.items()})
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class InstalledConnector:
    """Where a connector comes from, found without importing it (``engram connectors list``)."""

    platform: str
    target: str  # "module:Class"
    origin: str  # "entry point", "ENGRAM_CONNECTORS" or "registered" (register_connector)
    package: str | None  # the distribution that ships it; None for a module on the path but not installed
    version: str | None

    @property
    def builtin(self) -> bool:
        return self.package == "engram-sdk"

    def as_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "target": self.target, "origin": self.origin, "package": self.package,
                "version": self.version, "builtin": self.builtin}


def installed_connectors() -> list[InstalledConnector]:
    """Every connector this process can load, as ``available_connectors`` finds them (a later
    source overrides an earlier one for the same platform), with the distribution that ships it."""
    found: dict[str, InstalledConnector] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        found[ep.name] = InstalledConnector(ep.name, ep.value, "entry point", dist.name if dist else None,
                                            dist.version if dist else None)
    others = [(p, t, "ENGRAM_CONNECTORS") for p, t in _env_specs().items()]
    others += [(p, f"{c.__module__}:{c.__qualname__}", "registered") for p, c in _REGISTERED.items()]
    if others:
        owners = packages_distributions()  # top-level module -> distributions; reads every installed one
        from importlib.metadata import version as dist_version

        for platform, target, origin in others:
            names = owners.get(target.split(".", 1)[0].split(":", 1)[0], [])
            package = names[0] if names else None
            found[platform] = InstalledConnector(platform, target, origin, package,
                                                 dist_version(package) if package else None)
    return [found[p] for p in sorted(found)]


def load_connector(platform: str) -> type[Connector[Any, Any]]:
    """The connector class for ``platform``; ``ConfigError`` names the installed ones if absent."""
    if platform in _REGISTERED:
        return _REGISTERED[platform]
    target = _env_specs().get(platform)
    if target is None:
        eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == platform]
        if not eps:
            known = ", ".join(available_connectors()) or "none"
            raise ConfigError(f"no connector for platform {platform!r} (installed: {known})")
        target = eps[0].value
    module, _, attr = target.partition(":")
    try:
        obj: Any = import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ConfigError(f"the {platform} connector cannot be imported ({exc}); "
                          f"install its extra: pip install 'engram-sdk[{platform}]'") from None
    except AttributeError:
        raise ConfigError(f"the {platform} connector entry point {target!r} names nothing") from None
    _check_class(obj, target)
    return obj


def _check_class(obj: Any, where: str) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Connector)):
        raise ConfigError(f"{where} is not a Connector subclass")
    for attr in ("platform", "Config", "Checkpoint"):
        if not hasattr(obj, attr):
            raise ConfigError(f"connector {where} does not set {attr}")
