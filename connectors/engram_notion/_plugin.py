"""``engram bench notion``, added to the core's CLI through the ``engram.plugins`` entry point."""

from __future__ import annotations

import typer

from engram_sdk.cli import console, emit_json
from engram_sdk.plugins import Plugin


def bench_notion(
    pages: int = typer.Option(2000, "--pages", min=10, help="Pages in the generated sandbox workspace."),
    edit_fraction: float = typer.Option(0.01, "--edit-fraction", min=0.0001, max=1.0,
                                        help="Share of pages edited before the incremental sync."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Full and incremental Notion sync against the sandbox: pages/s and requests per page."""
    from .bench import run_bench

    with console.status(f"syncing {pages} sandbox pages..."):
        results = run_bench(pages, edit_fraction)
    if as_json:
        emit_json(results)
        return
    console.print(f"full sync: {results['pages']} pages in {results['seconds']} s = {results['pages_per_s']} pages/s; "
                  f"{results['requests_per_page']} requests/page (minimum {results['min_requests_per_page']}); "
                  f"at Notion's 3 requests/s: {results['limited_pages_per_s']} pages/s")
    console.print(f"incremental after editing {results['edited_pages']} pages: {results['incremental_requests']} "
                  f"requests = {results['incremental_request_fraction']:.2%} of the full sync")


def _commands(app: typer.Typer, bench: typer.Typer) -> None:
    bench.command("notion")(bench_notion)


plugin = Plugin(commands=_commands)
