"""The commands plugins add to ``engram`` and ``engram bench``, and stand-ins for the ones whose
plugin is not installed.

A plugin's ``commands(app, bench)`` is called the first time a command line names a command the
core lacks, or asks for a list of them (``--help``): ``engram keys list`` imports no plugin, so a
connector's client library or the trainer costs nothing there. The commands DESIGN.md promises are
listed whatever is installed; without their plugin, using one stops with the extra to install.
"""

from __future__ import annotations

import functools
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from .. import plugins

# The commands a plugin of this project provides, with the extra that installs it.
PLUGIN_COMMANDS = {"train": "train", "eval": "train", "query": "train", "adapters": "train", "model": "train",
                   "teams": "train"}
PLUGIN_BENCHES = {"train": "train", "continual": "train", "forgetting": "train", "serve": "train", "kl": "train",
                  "notion": "notion", "microsoft": "microsoft"}


class PluginGroup(TyperGroup):
    """A command group that completes itself from the plugins when asked for a command it lacks."""

    def _complete(self) -> None:
        full = _contributed()
        source = full if self.name == full.name else full.commands.get(self.name or "")
        if isinstance(source, TyperGroup):
            for name, command in source.commands.items():
                self.commands.setdefault(name, command)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            self._complete()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        self._complete()
        return super().list_commands(ctx)


@functools.cache
def _contributed() -> TyperGroup:
    """The whole ``engram`` group: the core's commands, every plugin's, and stand-ins (once per process)."""
    from . import app, bench_app

    for p in plugins.installed_plugins():
        if p.plugin is not None and p.plugin.commands is not None:
            p.plugin.commands(app, bench_app)
    have = _names(app)
    for name, extra in PLUGIN_COMMANDS.items():
        if name not in have:
            _stand_in(app, name, name, extra)
    have = _names(bench_app)
    for name, extra in PLUGIN_BENCHES.items():
        if name not in have:
            _stand_in(bench_app, name, f"bench {name}", extra)
    return typer.main.get_group(app)


def _names(t: typer.Typer) -> set[str]:
    return ({c.name or (c.callback.__name__ if c.callback else "") for c in t.registered_commands}
            | {g.name for g in t.registered_groups if isinstance(g.name, str)})


def _stand_in(t: typer.Typer, name: str, path: str, extra: str) -> None:
    def stand_in(ctx: typer.Context) -> Any:
        raise plugins.missing(f"`engram {path}`", extra)

    # Escaped: help text is rich markup, where [train] would be read as a style and vanish.
    t.command(name, help=escape(f"Needs the {extra} extra: pip install 'engram-sdk[{extra}]'."),
              context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(stand_in)
