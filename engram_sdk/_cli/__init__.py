"""The ``engram`` command line. Each command group lives in its own module and is added here; the
commands of the layers above the core (training, the connectors' benchmarks) come from their
plugins (``engram_sdk.plugins``), imported only when a command line needs them (``_plugins``)."""

from __future__ import annotations

import signal
import sys

import typer

from ._common import run_app
from ._plugins import PluginGroup

app = typer.Typer(
    name="engram",
    cls=PluginGroup,
    help="Engram SDK: a team's workspace -> signed training events -> a team adapter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks. With --json each prints one JSON object as its last line.",
                        no_args_is_help=True, cls=PluginGroup)
app.add_typer(bench_app, name="bench")


def _version() -> str:
    # The installed distribution's version, as pip reports it; a source tree never installed
    # falls back on the package's own constant.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("engram-sdk")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"engram-sdk {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                      help="Print the installed engram-sdk version and exit."),
) -> None:
    """Engram SDK: a team's workspace -> signed training events -> a team adapter."""

# Command groups register themselves on import: keep this list the one place that names them.
from . import bench, connectors, demo, events, home, keys, schedule, serve, status  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    # SIGTERM (kill, systemd, a CI timeout) unwinds like Ctrl-C instead of ending the process where
    # it stands: cleanups run, so `engram demo` stops the server process it started and saves the
    # sandboxes' workspaces. Commands that handle signals themselves (serve, schedule run) still do.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    sys.exit(run_app(app, argv))
