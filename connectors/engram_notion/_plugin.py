"""``engram bench notion``, added to the core's CLI through the ``engram.plugins`` entry point."""

from __future__ import annotations

from typing import Any

import typer

from engram_sdk.cli import sync_bench
from engram_sdk.plugins import Plugin


def _run(pages: int, edit_fraction: float) -> dict[str, Any]:
    from .bench import run_bench

    return run_bench(pages, edit_fraction)


def _summary(r: dict[str, Any]) -> list[str]:
    return [f"full sync: {r['pages']} pages in {r['seconds']} s = {r['pages_per_s']} pages/s; "
            f"{r['requests_per_page']} requests/page (minimum {r['min_requests_per_page']}); "
            f"at Notion's 3 requests/s: {r['limited_pages_per_s']} pages/s",
            f"incremental after editing {r['edited_pages']} pages: {r['incremental_requests']} "
            f"requests = {r['incremental_request_fraction']:.2%} of the full sync"]


def _commands(app: typer.Typer, bench: typer.Typer) -> None:
    bench.command("notion")(sync_bench(
        unit="page", run=_run, summary=_summary,
        doc="Full and incremental Notion sync against the sandbox: pages/s and requests per page."))


plugin = Plugin(commands=_commands)
