"""What the core needs from the layers above it, and how it finds them: ``from engram_sdk.plugins import ...``.

The core (store, jobs, scheduler, server, status, CLI) never imports the trainer or a connector
package by name: dependencies point one way, down. A package above it offers its parts as one
``Plugin`` object under the entry-point group ``engram.plugins``, named by convention after the
extra that installs it::

    [project.entry-points."engram.plugins"]
    train = "engram_training.plugin:plugin"

A plugin raises ``MissingExtra`` itself when its own dependencies are missing at the call (torch for
training or answering). Every field of ``Plugin`` is optional; the core asks the installed plugins, in entry-point name
order, for the first that offers what it needs:

- ``trainer`` (``Trainer``): train a team's adapter from its events (training jobs, ``engram
  worker``, the scheduler's nightly run) and parse ``--set NAME=VALUE`` training settings.
- ``adapters(store, settings)`` -> ``AdapterIndex``: a team's adapter versions, the current one,
  rollback and the HTML report (``engram status``, the server's adapter routes).
- ``answerer(store, settings, capacity, overrides)`` -> ``Answerer``: the base model with the
  teams' current adapters, answering or streaming (the server's query route).
- ``commands(app, bench)``: adds Typer commands to ``engram`` and ``engram bench``
  (``engram_sdk.cli`` holds the helpers the core's own commands use).

When no plugin offers a part, ``MissingExtra`` names the extra to install (``pip install
'engram-sdk[train]'``). Importing a plugin must stay cheap: heavy dependencies (torch) are imported
by the plugin's functions when called, so ``engram --help`` and a core install stay light.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from ._config import Settings
from ._exceptions import ConfigError, MissingExtra, NoPublishedAdapter
from ._store import EventStore

if TYPE_CHECKING:
    import typer

__all__ = [
    "ENTRY_POINT_GROUP",
    "AdapterIndex",
    "AdapterVersion",
    "Answer",
    "AnswerContext",
    "Answerer",
    "InstalledPlugin",
    "MissingExtra",
    "NoPublishedAdapter",
    "Plugin",
    "Source",
    "TrainedVersion",
    "Trainer",
    "adapter_index",
    "answerer",
    "installed_plugins",
    "missing",
    "trainer",
]

ENTRY_POINT_GROUP = "engram.plugins"


# --- training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedVersion:
    """The outcome of one training run: the version it registered, and whether its gates passed."""

    version: int
    published: bool
    reasons: list[str]  # why the gates refused it (empty when published)


class Trainer(Protocol):
    def check(self) -> None:
        """Raise ``MissingExtra`` when what training needs (torch, ...) is not installed."""

    def parse_overrides(self, pairs: Sequence[str]) -> dict[str, Any]:
        """``["lr=5e-4", "epochs=2"]`` -> typed training settings; ``ValueError`` names a bad one."""

    def train(self, team_id: str, *, store: EventStore, settings: Settings,
              overrides: Mapping[str, Any] | None = None, from_scratch: bool = False,
              on_progress: Callable[[Any], None] | None = None) -> TrainedVersion:
        """Train, evaluate and register one version of the team's adapter. ``on_progress`` is called
        at every step; an exception raised from it stops the run (its checkpoint is kept)."""


# --- the adapter index -----------------------------------------------------------------------------


class AdapterVersion(Protocol):
    """One registered adapter version, as status and the server read it."""

    @property
    def version(self) -> int: ...
    @property
    def status(self) -> str: ...  # "published" or "rejected"
    @property
    def current(self) -> bool: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def manifest(self) -> dict[str, Any]: ...  # "metrics", "gates", "watermark", ...
    @property
    def reason(self) -> str | None: ...  # why it was rejected


class AdapterIndex(Protocol):
    def teams(self) -> list[str]:
        """Every team with at least one adapter version."""

    def versions(self, team_id: str) -> Sequence[AdapterVersion]:
        """The team's versions, oldest first."""

    def current_version(self, team_id: str) -> int | None:
        """The version answering for the team; None before its first publish."""

    def rollback(self, team_id: str, to: int | None = None) -> AdapterVersion:
        """Make an earlier published version current; ``TrainingError`` says why not."""

    def report(self, team_id: str) -> str:
        """The team's adapter report, one self-contained HTML page; ``TrainingError`` for an unknown team."""


# --- answering ------------------------------------------------------------------------------------


class Answer(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def adapter_version(self) -> int | None: ...


class Source(TypedDict):
    entity_id: str
    title: str
    url: str | None


class AnswerContext(TypedDict):
    """What an answer carries besides itself: the prompt tokens a retrieval prompt would need for
    the question, and the pages the answer most likely rests on."""

    retrieval_prompt_tokens: int | None
    sources: list[Source]


class Answerer(Protocol):
    """The base model and the teams' current adapters. A request names a team, never an adapter;
    a team without a published adapter raises ``NoPublishedAdapter`` (from ``stream``: before the
    first piece)."""

    @property
    def hits(self) -> int: ...  # answers whose adapter was already loaded (a cache metric)
    @property
    def loaded(self) -> list[str]: ...  # the adapters in memory

    def complete(self, team_id: str, question: str, *, max_tokens: int, temperature: float,
                 stop: list[str] | None) -> Answer: ...

    def stream(self, team_id: str, question: str, *, max_tokens: int, temperature: float,
               stop: list[str] | None) -> Iterator[str | Answer]:
        """Text pieces (``str``) as they are decoded, then one ``Answer`` with the whole of it."""

    def context(self, team_id: str, question: str, answer: Answer) -> AnswerContext: ...


# --- plugins --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    """What one package above the core offers (see the module docstring); every field is optional."""

    trainer: Trainer | None = None
    adapters: Callable[[EventStore, Settings], AdapterIndex] | None = None
    # (store, settings, capacity: adapters kept loaded, overrides: training settings of this deployment)
    answerer: Callable[[EventStore, Settings, int, Mapping[str, Any]], Answerer] | None = None
    commands: Callable[[typer.Typer, typer.Typer], None] | None = None


@dataclass(frozen=True)
class InstalledPlugin:
    name: str  # the entry point's name; for this project's own plugins, the extra that installs them
    target: str  # "module:attribute"
    plugin: Plugin | None  # None: it could not be imported
    problem: str | None  # why not, in one line


@functools.cache
def installed_plugins() -> tuple[InstalledPlugin, ...]:
    """Every plugin of the entry-point group, imported once per process. One that cannot be
    imported (its extra is missing) is kept with the reason; one that is not a ``Plugin`` is a
    packaging bug and raises ``ConfigError``."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
        except ImportError as exc:
            lines = str(exc).strip().splitlines()
            found.append(InstalledPlugin(ep.name, ep.value, None,
                                         f"{ep.module} cannot be imported: {lines[0] if lines else exc.name}"))
            continue
        if not isinstance(obj, Plugin):
            raise ConfigError(f"the plugin entry point {ep.name} = {ep.value!r} is not an engram_sdk.plugins.Plugin")
        found.append(InstalledPlugin(ep.name, ep.value, obj, None))
    return tuple(found)


# What each part is called in a message, and the extra that installs this project's provider of it.
_PARTS = {"trainer": ("training", "train"), "adapters": ("the adapter registry", "train"),
          "answerer": ("answering queries", "train")}


def missing(what: str, extra: str) -> MissingExtra:
    """The error for ``what`` when no installed plugin offers it: the extra to install, and why
    that extra's plugin did not load when it is installed but broken."""
    problem = next((p.problem for p in installed_plugins() if p.name == extra and p.problem), None)
    return MissingExtra(what, extra, problem)


def _offered(part: str) -> Any:
    for p in installed_plugins():
        if p.plugin is not None and getattr(p.plugin, part) is not None:
            return getattr(p.plugin, part)
    raise missing(*_PARTS[part])


def trainer() -> Trainer:
    """The installed trainer; ``MissingExtra`` without one."""
    return _offered("trainer")  # type: ignore[no-any-return]


def adapter_index(store: EventStore, settings: Settings) -> AdapterIndex:
    """The deployment's adapter index; ``MissingExtra`` without a plugin that keeps one."""
    return _offered("adapters")(store, settings)  # type: ignore[no-any-return]


def answerer(store: EventStore, settings: Settings, *, capacity: int,
             overrides: Mapping[str, Any] | None = None) -> Answerer:
    """Load the base model and answer with the teams' adapters; ``MissingExtra`` without a plugin
    that can, or when the plugin's own dependencies (torch) are missing."""
    return _offered("answerer")(store, settings, capacity, dict(overrides or {}))  # type: ignore[no-any-return]
