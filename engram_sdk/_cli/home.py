"""``engram init``: create ENGRAM_HOME, its config file and the store."""

from __future__ import annotations

import typer

from . import app
from .._config import exposure_warnings
from ._common import console, emit_json, err_console, open_store, settings

_LAYOUT = """\
{home}/         (0700: only this account may read the teams' content)
  config.toml   settings (database_url, base_model); environment variables win over it
  engram.db     the event store (SQLite, WAL; 0600) unless ENGRAM_DATABASE_URL names another database
  keys/         signing keyring: keyring.json and one <kid>.pem per private key (0600)
  adapters/     team adapters, one directory per team and version (PEFT layout + manifest)"""


@app.command()
def init(as_json: bool = typer.Option(False, "--json", help="Print what was set up as JSON.")) -> None:
    """Create ENGRAM_HOME, its config file and the event store (idempotent)."""
    s = settings()
    created = s.init_home()
    with open_store(s) as store:
        version = store.schema_version()
    warnings = exposure_warnings(s)
    for line in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
    if as_json:
        emit_json({"home": str(s.home), "database": _redacted(s.database_url), "schema": list(version),
                   "created": [str(p) for p in created], "warnings": warnings})
        return
    console.print(f"ENGRAM_HOME is [bold]{s.home}[/bold]; store schema {', '.join(version)}")
    console.print(_LAYOUT.format(home=s.home), highlight=False)
    console.print("Next: [bold]engram keys generate --team TEAM[/bold]")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
