"""``engram keys``: the signing keyring of this machine and the keys it trusts, per team."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .._exceptions import KeyringError
from .._signing import TrustedKey, _unb64u, load_key_set
from . import app
from ._common import JsonOption, console, emit_json, fail, keyring, open_store, settings

keys_app = typer.Typer(help="Signing keys: generate, rotate, revoke, export and trust.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _trust_own(kid: str) -> None:
    """A deployment that signs also verifies its own events: trust its key for its teams."""
    s = settings()
    info = keyring(s).get(kid)
    raw = _unb64u(info.public_key)
    with open_store(s) as store:
        store.trust([TrustedKey(kid=kid, team_id=t, public_key=raw, status="trusted") for t in info.teams],
                    origin="local-keyring")


@keys_app.command("generate")
def generate(
    team: list[str] = typer.Option(..., "--team", "-t", help="A team this key may sign for (repeatable)."),
    as_json: bool = JsonOption,
) -> None:
    """Create the active signing key (Ed25519). The private key never leaves ENGRAM_HOME/keys."""
    s = settings()
    s.init_home()
    info = keyring(s).generate(team)
    _trust_own(info.kid)
    if as_json:
        emit_json(info.public())
    else:
        console.print(f"generated {info.kid} (active) for teams: {', '.join(info.teams)}")


@keys_app.command("rotate")
def rotate(
    team: Optional[list[str]] = typer.Option(None, "--team", "-t", help="Teams for the new key (default: same)."),
    as_json: bool = JsonOption,
) -> None:
    """Make a new active key; the previous one stays valid for verification only."""
    info = keyring().rotate(team)
    _trust_own(info.kid)
    if as_json:
        emit_json(info.public())
    else:
        console.print(f"rotated: {info.kid} is now active; older keys verify only")


@keys_app.command("revoke")
def revoke(kid: str, team: Optional[str] = typer.Option(None, "--team", help="Revoke for one team only.")) -> None:
    """Revoke a key: events signed with it stop verifying (here, and wherever the new key set is trusted)."""
    found = False
    if team is None:
        try:
            keyring().revoke(kid)
            found = True
        except KeyringError:
            pass  # not one of ours: it may still be a trusted key from elsewhere
    with open_store() as store:
        found = store.revoke_key(kid, team) > 0 or found
    if not found:
        fail(f"no key {kid} in the keyring or among trusted keys")
    console.print(f"revoked {kid}" + (f" for team {team}" if team else ""))


@keys_app.command("list")
def list_keys(as_json: bool = JsonOption) -> None:
    """This machine's signing keys and the keys it trusts, per team."""
    own = [k.public() for k in keyring().keys()]
    with open_store() as store:
        trusted = [
            {"kid": k.kid, "team": k.team_id, "status": k.status}
            for teams in store.trusted_keys().by_kid.values()
            for k in teams.values()
        ]
    if as_json:
        emit_json({"signing_keys": own, "trusted_keys": trusted})
        return
    from rich.table import Table

    table = Table(title="signing keys (this machine)")
    for col in ("kid", "status", "teams", "created"):
        table.add_column(col)
    for k in keyring().keys():
        table.add_row(k.kid, k.status, ", ".join(k.teams), k.created_at)
    console.print(table)
    table = Table(title="trusted keys")
    for col in ("kid", "team", "status"):
        table.add_column(col)
    for t in trusted:
        table.add_row(t["kid"], t["team"], t["status"])
    console.print(table)


@keys_app.command("export-public")
def export_public(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Write the public key set (key id, algorithm, public key, status, teams) for another machine to trust."""
    data = keyring().export_public()
    if not data["keys"]:
        fail("the keyring is empty: run `engram keys generate --team TEAM` first")
    text = json.dumps(data, indent=2)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n")
        console.print(f"wrote {len(data['keys'])} public key(s) to {output}")


@keys_app.command("trust")
def trust(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A key set from `keys export-public`."),
    team: Optional[list[str]] = typer.Option(None, "--team", "-t", help="Trust only for these of its teams."),
) -> None:
    """Trust another machine's public keys for the teams they may sign for."""
    try:
        data = json.loads(file.read_text())
    except ValueError as exc:
        fail(f"{file}: not JSON ({exc})")
    if not isinstance(data, dict):
        fail(f"{file}: not an Engram key set")
    keys = load_key_set(data)
    if team:
        keys = [k for k in keys if k.team_id in team]
        if not keys:
            fail(f"{file}: none of its keys may sign for {', '.join(team)}")
    with open_store() as store:
        store.trust(keys, origin=f"file:{file.name}")
        # What the store holds now, not what the file says: revocation sticks, so a key set
        # exported before a revocation does not bring the key back, and the operator is told.
        now = store.trusted_keys().by_kid
    for kid, t in sorted({(k.kid, k.team_id) for k in keys}):
        held = now.get(kid, {}).get(t)
        revoked = held is not None and held.status == "revoked"
        console.print(f"trusted {kid} for team {t}" + (" (revoked)" if revoked else ""), highlight=False)


api_app = typer.Typer(help="API keys for the HTTP server: one team and one role each.", no_args_is_help=True)
keys_app.add_typer(api_app, name="api")


@api_app.command("create")
def api_create(
    team: str = typer.Option(..., "--team", "-t"),
    role: str = typer.Option(..., "--role", "-r", help="ingest, query or admin."),
    name: str = typer.Option("", "--name", help="A label, e.g. the partner backend using it."),
    as_json: bool = JsonOption,
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    from .._apikeys import ROLES, ApiKeys

    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}")
    with open_store() as store:
        key, token = ApiKeys(store).create(team, role, name)
    if as_json:
        emit_json({"key_id": key.key_id, "team": team, "role": role, "api_key": token})
    else:
        console.print(f"API key {key.key_id} for team {team} ({role}); store it now, it is not shown again:")
        print(token)


@api_app.command("list")
def api_list(team: Optional[str] = typer.Option(None, "--team", "-t"), as_json: bool = JsonOption) -> None:
    """API keys (ids, teams, roles; never the keys themselves)."""
    from .._apikeys import ApiKeys

    with open_store() as store:
        keys = ApiKeys(store).list(team)
    rows = [{"key_id": k.key_id, "team": k.team_id, "role": k.role, "name": k.name,
             "created_at": k.created_at.isoformat(), "revoked": k.revoked_at is not None} for k in keys]
    if as_json:
        emit_json({"api_keys": rows})
        return
    from rich.table import Table

    table = Table(title="API keys")
    for col in ("key_id", "team", "role", "name", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["key_id"], r["team"], r["role"], r["name"], "yes" if r["revoked"] else "")
    console.print(table)


@api_app.command("revoke")
def api_revoke(key_id: str) -> None:
    """Revoke an API key at once (by its id, or the key itself)."""
    from .._apikeys import ApiKeys

    with open_store() as store:
        if not ApiKeys(store).revoke(key_id):
            fail(f"no active API key {key_id.split('_')[1] if key_id.startswith('egk_') else key_id}")
    console.print("revoked")
