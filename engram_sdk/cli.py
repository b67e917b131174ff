"""What a plugin's commands use to behave like the core's own (``engram_sdk.plugins``, ``commands``):
the same consoles, ``--json`` option and JSON line, one-line failures (``fail``: ``error: <reason>``
and a non-zero exit, as an ``EngramError`` raised from a command also gives), progress bars that
stay silent off a terminal, and the deployment's settings and store.
"""

from __future__ import annotations

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
]
