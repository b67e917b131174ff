"""``engram demo``: the README's main command, end to end (the example ``examples/kestrel_demo``).

Three platform sandboxes with the Kestrel team's workspace -> real connections and syncs -> signed
events -> the team adapter -> the server and the SDK client -> a live Notion edit through the
webhook and a continual update. A rerun in the same ``--home`` reuses what is done.

The demo is an example, not part of the package: it is found in the clone this ``engram_sdk`` runs
from (or ``ENGRAM_EXAMPLES``) and loaded by path, so the core names neither the connectors nor the
trainer it drives. From an installed wheel the command says it needs a clone.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import typer

from .._examples import load_example
from .._exceptions import ConfigError
from . import app
from ._common import console, emit_json, fail, progress


def kestrel_demo() -> ModuleType:
    """The demo's package (``examples/kestrel_demo``), or a one-line failure saying it needs a clone."""
    try:
        return load_example("kestrel_demo")
    except ConfigError as exc:
        fail(f"the demo needs a clone of the repository: {exc}")


def run_demo(home: Path, *, team: str = "kestrel", quiet: bool = False, live_edit: bool = True,
             training: dict | None = None) -> dict:
    """Run the demo and return its report as a dict (what ``engram bench demo`` times)."""
    example = kestrel_demo()
    try:
        example.check_installed()
    except example.DemoError as exc:
        fail(str(exc))
    say = (lambda m: None) if quiet else (lambda m: console.print(m, highlight=False))
    with progress() as bar:
        demo = example.Demo(home, team=team, say=say, progress=bar, live_edit=live_edit, training=training)
        try:
            report = demo.run()
        except example.DemoError as exc:
            fail(f"demo stopped: {exc} (what was done is kept in {home}; a rerun goes on from there)")
    return report.to_dict()


@app.command()
def demo(
    home: Path = typer.Option(Path(".engram-demo"), "--home",
                              help="Where the demo keeps its state (reused by a rerun)."),
    team: str = typer.Option("kestrel", "--team", help="The team the sample workspace belongs to."),
    no_edit: bool = typer.Option(False, "--no-edit", help="Stop after the questions (no live edit)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's report as JSON on the last line."),
) -> None:
    """Sandboxes -> connectors -> signed events -> team adapter -> server -> questions -> a live edit."""
    report = run_demo(home, team=team, quiet=as_json, live_edit=not no_edit)
    if as_json:
        emit_json(report)
        return
    n, total = report["answers_correct"], report["answers_total"]
    edit = report.get("edit") or {}
    edited = (edit.get("answer") or {}).get("correct")
    console.print(f"[bold]done in {report['seconds']:.0f} s[/bold]: {n}/{total} answers correct"
                  + (f"; the edited fact: {'correct' if edited else 'not yet correct'}" if edit.get("answer") else ""))
    if report["gate_failures"]:
        console.print("[bold red]the quality gates failed[/bold red] for: " + "; ".join(report["gate_failures"]))
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in report["timings"].items())
    synced = ", ".join(f"{k} {v}" for k, v in report["synced"].items())
    console.print(f"[dim]{timings}; new events this run: {synced}. State kept in {home}: a rerun reuses it.[/dim]",
                  highlight=False)
