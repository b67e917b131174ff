"""What every CLI command shares: settings, the store, --json output and one-line failures.

Conventions (DESIGN.md, "Contracts"): ``--help`` everywhere, ``--json`` on list and show commands,
a non-zero exit with a one-line reason on failure, progress bars on long work, and ``bench``
commands with ``--json`` print one JSON object as the last line of output.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._config import Settings
from .._exceptions import EngramError
from .._signing import Keyring
from .._store import EventStore

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of a table.")


class CommandFailed(Exception):
    """Raised by commands to exit non-zero with a one-line reason (and an exit code)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CommandFailed(message, code)


def settings() -> Settings:
    return Settings.load()


@contextmanager
def open_store(s: Settings | None = None) -> Iterator[EventStore]:
    s = s or settings()
    store = EventStore.open(s.database_url)
    try:
        yield store
    finally:
        store.close()


def keyring(s: Settings | None = None) -> Keyring:
    return Keyring((s or settings()).keys_dir)


def emit_json(obj: Any) -> None:
    """Print one JSON object on one line (machine-readable output, last line of the command)."""
    sys.stdout.write(json.dumps(obj, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def progress(transient: bool = True) -> Progress:
    """A progress bar on a terminal; silent when stdout is not one (CI, pipes, --json)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


class _WaitPrinter(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]{record.getMessage()}[/yellow]", highlight=False, soft_wrap=True)


@contextmanager
def show_waits() -> Iterator[None]:
    """Print the HTTP toolkit's retry waits on stderr as they start (a long rate-limit storm or an
    unreachable host then reads as waiting, not as a hang). Only wait and give-up lines, which name
    method, host and path: never bodies, headers or query strings. ``run_app`` wraps every command
    in it; nesting adds no second printer."""
    logger = logging.getLogger("engram.http")
    if any(isinstance(h, _WaitPrinter) for h in logger.handlers):
        yield
        return
    handler = _WaitPrinter(level=logging.INFO)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run the typer app; EngramError and CommandFailed become 'error: <reason>' and exit 1."""
    try:
        # Without standalone mode click hands back a command's exit code instead of exiting.
        with show_waits():
            code = app(args=argv, standalone_mode=False)
        return code if isinstance(code, int) else 0
    # The reason is printed as it is, not as markup: "pip install 'engram-sdk[train]'" keeps its extra.
    except CommandFailed as exc:
        err_console.print(f"[red]error:[/red] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
        return exc.code
    except EngramError as exc:
        err_console.print(f"[red]error:[/red] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as exc:  # usage errors come through here in non-standalone mode
        if _is_click_exception(exc):
            exc.show()  # type: ignore[attr-defined]
            return int(getattr(exc, "exit_code", 2))
        raise


def _is_click_exception(exc: BaseException) -> bool:
    # Newer typer ships its own copy of click (typer._click); older ones use click itself.
    classes = []
    try:
        from typer._click.exceptions import ClickException as TyperClickException  # type: ignore

        classes.append(TyperClickException)
    except ImportError:
        pass
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:
        pass
    return isinstance(exc, tuple(classes))
