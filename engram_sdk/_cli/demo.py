"""``engram demo``: the README's main job, end to end on what exists today.

Two machines in two ENGRAM_HOMEs: the *connector host* signs the sample team's records and stores
them; it exports the events and its public key set; the *server* trusts that key set for the team,
imports the file, and verifies every event; a tampered copy of the file is refused line by line.
A rerun reuses both homes: nothing is stored twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from .._config import Settings
from .._events import build_events
from .._ingest import import_file, verify_file
from .._records import parse_record
from .._signing import Keyring, load_key_set
from .._store import EventStore
from . import app
from ._common import console, emit_json, fail, progress

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def sample_records() -> list:
    """Every record in the shipped sample workspace (JSON Lines files under engram_sdk/samples)."""
    records = []
    for path in sorted(SAMPLES.rglob("*.jsonl")):
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lines or '"kind"' not in lines[0] or '"entity_id"' not in lines[0]:
            continue  # probe or QA files live beside the records
        records.extend(parse_record(ln) for ln in lines)
    return records


@app.command()
def demo(
    home: Path = typer.Option(Path(".engram-demo"), "--home", help="Where the demo keeps its two machines."),
    team: str = typer.Option("kestrel", "--team", help="The team the sample workspace belongs to."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Sign the sample team's records, store, verify, export, and import them on a second machine."""
    started = time.perf_counter()
    records = sample_records()
    if not records:
        fail(f"no sample records under {SAMPLES}")
    host = Settings.load(home / "connector-host")
    server = Settings.load(home / "server")
    for s in (host, server):
        s.init_home()

    # 1. The connector host: a signing key for the team, then sign and store every record.
    keyring = Keyring(host.keys_dir)
    if not any(k.status == "active" for k in keyring.keys()):
        keyring.generate([team])
    kid, key = keyring.signer()
    with EventStore.open(host.database_url) as store:
        store.trust(load_key_set(keyring.export_public()), origin="local-keyring")
        with progress() as bar:
            task = bar.add_task("signing and storing", total=len(records))
            accepted = duplicates = 0
            for rec in records:
                events = [Keyring.sign_with(ev, kid, key) for ev in build_events(
                    rec, team_id=team, connection_id=f"{team}-{rec.platform}",
                    source=f"{rec.platform}://workspace/{rec.workspace_id}")]
                result = store.append(events)
                accepted += len(result.accepted)
                duplicates += len(result.duplicates)
                bar.advance(task)
        export = home / "events.jsonl"
        with open(export, "w", encoding="utf-8") as f:
            for ev in store.iter_events(team):
                f.write(json.dumps(ev.envelope, ensure_ascii=False) + "\n")
        stored = store.count(team)
    keyset = home / "connector-host.keys.json"
    keyset.write_text(json.dumps(keyring.export_public(), indent=2))

    # 2. The server: trust the host's public keys for this team only, import, verify.
    with EventStore.open(server.database_url) as store:
        store.trust([k for k in load_key_set(json.loads(keyset.read_text())) if k.team_id == team],
                    origin=f"file:{keyset.name}")
        report = import_file(export, store)
        if not report.ok:
            fail(f"import refused: {report.rejected[0]}")
        verified = sum(1 for ev in store.iter_events(team) if store.trusted_keys(team).verify(ev.envelope) is None)

        # 3. Someone edits a fact in transit: the signature no longer matches, and the line says so.
        lines = export.read_text(encoding="utf-8").splitlines()
        tampered_path = home / "events.tampered.jsonl"
        env = json.loads(lines[0])
        env["data"]["text" if "text" in env["data"] else "title"] = "The launch moved to never."
        lines[0] = json.dumps(env)
        tampered_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tampered = verify_file(tampered_path, store.trusted_keys(), store=store)

    summary = {
        "team": team,
        "records": len(records),
        "events_stored": stored,
        "new_this_run": accepted,
        "already_stored": duplicates,
        "signing_key": kid,
        "server_imported": len(report.stored.accepted) + len(report.stored.duplicates),
        "server_verified": verified,
        "tampered_rejected": [f"line {r.line}: {r.reason}" for r in tampered.rejected],
        "seconds": round(time.perf_counter() - started, 2),
    }
    if as_json:
        emit_json(summary)
        return
    console.print(f"[bold]connector host[/bold] ({host.home}): signed {len(records)} records of team "
                  f"{team} with {kid}; {accepted} new events, {duplicates} already stored, {stored} in total")
    console.print(f"exported {stored} signed events to {export} and the public keys to {keyset}")
    console.print(f"[bold]server[/bold] ({server.home}): trusted the key for team {team}, imported "
                  f"{summary['server_imported']} events, {verified} verify")
    for r in tampered.rejected:
        console.print(f"tampered copy refused: {tampered_path}:{r.line} {r.reason}", highlight=False)
    console.print(f"done in {summary['seconds']} s. Next: `engram events list --team {team}` with "
                  f"ENGRAM_HOME={server.home}")
