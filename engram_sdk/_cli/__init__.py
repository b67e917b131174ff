"""The ``engram`` command line. Each command group lives in its own module and is added here."""

from __future__ import annotations

import sys

import typer

from ._common import run_app

app = typer.Typer(
    name="engram",
    help="Engram SDK: a team's workspace -> signed training events -> a team adapter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks. With --json each prints one JSON object as its last line.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Command groups register themselves on import: keep this list the one place that names them.
from . import bench, connectors, demo, events, home, keys, schedule, serve, train  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_app(app, argv))
