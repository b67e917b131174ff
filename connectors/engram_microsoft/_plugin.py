"""``engram bench microsoft``, added to the core's CLI through the ``engram.plugins`` entry point."""

from __future__ import annotations

import typer

from engram_sdk.cli import console, emit_json
from engram_sdk.plugins import Plugin


def bench_microsoft(
    items: int = typer.Option(2000, "--items", min=20, help="Records in the generated sandbox workspace."),
    edit_fraction: float = typer.Option(0.01, "--edit-fraction", min=0.0001, max=1.0,
                                        help="Share of items changed before the incremental sync."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Full and incremental Microsoft 365 sync against the sandbox: items/s and requests per item."""
    from .bench import run_bench

    with console.status(f"syncing {items} sandbox items..."):
        results = run_bench(items, edit_fraction)
    if as_json:
        emit_json(results)
        return
    console.print(f"full sync: {results['items']} items in {results['seconds']} s = {results['items_per_s']} items/s; "
                  f"{results['requests_per_item']} requests/item (minimum {results['min_requests_per_item']})")
    console.print(f"incremental after changing {results['changed_items']} items: {results['incremental_requests']} "
                  f"requests = {results['incremental_request_fraction']:.2%} of the full sync")


def _commands(app: typer.Typer, bench: typer.Typer) -> None:
    bench.command("microsoft")(bench_microsoft)


plugin = Plugin(commands=_commands)
