"""What a plugin's commands use to behave like the core's own (``engram_sdk.plugins``, ``commands``):
the same consoles, ``--json`` option and JSON line, one-line failures (``fail``: ``error: <reason>``
and a non-zero exit, as an ``EngramError`` raised from a command also gives), progress bars that
stay silent off a terminal, and the deployment's settings and store; ``sync_bench`` makes a
connector's ``engram bench <platform>`` command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from ._cli._common import (
    CommandFailed,
    JsonOption,
    console,
    emit_json,
    err_console,
    fail,
    open_store,
    progress,
    settings,
)

__all__ = [
    "CommandFailed",
    "JsonOption",
    "console",
    "emit_json",
    "err_console",
    "fail",
    "open_store",
    "progress",
    "settings",
    "sync_bench",
]


def sync_bench(*, unit: str, run: Callable[[int, float], dict[str, Any]],
               summary: Callable[[dict[str, Any]], list[str]], doc: str, minimum: int = 10) -> Callable[..., None]:
    """A connector's sync benchmark as a command: ``--<unit>s N`` records in a generated sandbox
    workspace, ``--edit-fraction`` of them changed before the incremental sync, ``--json``.
    ``run(count, edit_fraction)`` measures and returns the figures; ``summary`` turns them into the
    lines printed without ``--json``."""

    def command(
        count: int = typer.Option(2000, f"--{unit}s", min=minimum, help=f"{unit.capitalize()}s in the generated "
                                                                         "sandbox workspace."),
        edit_fraction: float = typer.Option(0.01, "--edit-fraction", min=0.0001, max=1.0,
                                            help=f"Share of {unit}s changed before the incremental sync."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    ) -> None:
        with console.status(f"syncing {count} sandbox {unit}s..."):
            results = run(count, edit_fraction)
        if as_json:
            emit_json(results)
            return
        for line in summary(results):
            console.print(line)

    command.__doc__ = doc
    return command
