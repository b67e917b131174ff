"""``engram bench microsoft``, added to the core's CLI through the ``engram.plugins`` entry point."""

from __future__ import annotations

from typing import Any

import typer

from engram_sdk.cli import sync_bench
from engram_sdk.plugins import Plugin


def _run(items: int, edit_fraction: float) -> dict[str, Any]:
    from .bench import run_bench

    return run_bench(items, edit_fraction)


def _summary(r: dict[str, Any]) -> list[str]:
    return [f"full sync: {r['items']} items in {r['seconds']} s = {r['items_per_s']} items/s; "
            f"{r['requests_per_item']} requests/item (minimum {r['min_requests_per_item']})",
            f"incremental after changing {r['changed_items']} items: {r['incremental_requests']} "
            f"requests = {r['incremental_request_fraction']:.2%} of the full sync"]


def _commands(app: typer.Typer, bench: typer.Typer) -> None:
    bench.command("microsoft")(sync_bench(
        unit="item", run=_run, summary=_summary, minimum=20,
        doc="Full and incremental Microsoft 365 sync against the sandbox: items/s and requests per item."))


plugin = Plugin(commands=_commands)
