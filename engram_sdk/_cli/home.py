"""``engram init``: create ENGRAM_HOME, its config file and the store."""

from __future__ import annotations

import typer

from . import app
from ._common import console, emit_json, open_store, settings

_LAYOUT = """\
{home}/
  config.toml   settings (database_url, base_model); environment variables win over it
  engram.db     the event store (SQLite, WAL) unless ENGRAM_DATABASE_URL names another database
  keys/         signing keyring: keyring.json and one <kid>.pem per private key (0600)
  adapters/     team adapters, one directory per team and version (PEFT layout + manifest)"""


@app.command()
def init(as_json: bool = typer.Option(False, "--json", help="Print what was set up as JSON.")) -> None:
    """Create ENGRAM_HOME, its config file and the event store (idempotent)."""
    s = settings()
    created = s.init_home()
    with open_store(s) as store:
        version = store.schema_version()
    if as_json:
        emit_json({"home": str(s.home), "database": _redacted(s.database_url), "schema": list(version),
                   "created": [str(p) for p in created]})
        return
    console.print(f"ENGRAM_HOME is [bold]{s.home}[/bold]; store schema {', '.join(version)}")
    console.print(_LAYOUT.format(home=s.home), highlight=False)
    console.print("Next: [bold]engram keys generate --team TEAM[/bold]")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
