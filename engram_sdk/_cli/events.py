"""``engram events``: list, export, verify and import signed training events."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from .._ingest import FileReport, import_file, verify_file
from . import app
from ._common import JsonOption, console, emit_json, open_store, progress

events_app = typer.Typer(help="Signed training events: list, export, verify, import.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("list")
def list_events(
    team: str = typer.Option(..., "--team", "-t"),
    after: Optional[str] = typer.Option(None, "--after", help="Cursor from a previous page."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """One team's events in the order they were stored; names the next page while there is one."""
    with open_store() as store:
        page = store.read(team, after=after, limit=limit)
    rows = [
        {"seq": e.seq, "id": e.event_id, "type": e.envelope["type"], "subject": e.envelope["subject"],
         "time": e.envelope["time"], "connectionid": e.envelope["connectionid"], "kid": e.envelope.get("engramkid")}
        for e in page.events
    ]
    if as_json:
        emit_json({"team": team, "events": rows, "cursor": page.cursor, "has_more": page.has_more})
        return
    from rich.table import Table

    table = Table(title=f"events of team {team}")
    for col in ("seq", "id", "type", "subject", "time"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["seq"]), r["id"][:12], r["type"].removeprefix("ai.engram."), r["subject"], r["time"])
    console.print(table)
    if page.has_more:
        console.print(f"next page: --after {page.cursor}")
    elif page.cursor:  # the end for now; the same cursor later shows only newer events
        console.print(f"end of the events; newer ones later: --after {page.cursor}", highlight=False)


@events_app.command("export")
def export(
    team: str = typer.Option(..., "--team", "-t"),
    output: Path = typer.Option(..., "--output", "-o", help="JSON Lines file to write."),
    after: Optional[str] = typer.Option(None, "--after", help="Only events after this cursor."),
) -> None:
    """Write one signed envelope per line, exactly as stored (verifiable with the public keys)."""
    tmp = output.with_name(output.name + ".partial")
    count = 0
    with open_store() as store, open(tmp, "w", encoding="utf-8") as f, progress() as bar:
        task = bar.add_task("exporting", total=store.count(team))
        for ev in store.iter_events(team, after=after):
            f.write(json.dumps(ev.envelope, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
            bar.advance(task)
    os.replace(tmp, output)  # a crash leaves no half-written file under the real name
    console.print(f"exported {count} events of team {team} to {output}")


def _print_report(report: FileReport, verb: str) -> None:
    for r in report.rejected[:50]:
        console.print(f"[red]{report.path}:{r.line if r.line is not None else '-'}[/red] {r.reason}: {r.message}",
                      highlight=False, soft_wrap=True)
    if len(report.rejected) > 50:
        console.print(f"... and {len(report.rejected) - 50} more rejected lines")
    console.print(f"{report.lines} lines, {report.valid} valid, {len(report.rejected)} rejected{verb}",
                  soft_wrap=True)


@events_app.command("verify")
def verify(file: Path = typer.Argument(..., exists=True, dir_okay=False), as_json: bool = JsonOption) -> None:
    """Check every line: JSON, envelope, record, and a signature by a key trusted for its team."""
    with open_store() as store, progress() as bar:
        task = bar.add_task("verifying", total=None)
        report = verify_file(file, store.trusted_keys(), store=store, on_line=lambda: bar.advance(task))
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report, "")
    if not report.ok:
        raise typer.Exit(1)


@events_app.command("import")
def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
    partial: bool = typer.Option(False, "--partial", help="Store the good lines even if some are bad."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Events per transaction at most."),
    as_json: bool = JsonOption,
) -> None:
    """Verify every line, then store (nothing, by default, if any line is bad)."""
    with open_store() as store, progress() as bar:
        task = bar.add_task("checking", total=None)
        report = import_file(file, store, partial=partial, batch_size=batch_size,
                             on_line=lambda: bar.advance(task))
    stored = report.stored
    if as_json:
        emit_json(report.to_dict())
    else:
        if report.rejected and not partial and not stored.accepted and not stored.duplicates:
            _print_report(report, "; nothing stored (use --partial to store the good lines)")
        else:
            _print_report(report, f"; stored {len(stored.accepted)} new, {len(stored.duplicates)} already present")
    if not report.ok:
        raise typer.Exit(1)
