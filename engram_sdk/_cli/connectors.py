"""``engram connect``, ``engram connections``, ``engram connectors``, ``engram sync``, ``engram worker``,
``engram sandbox``.

``engram connect <platform>`` has one subcommand per installed connector (entry-point group
``engram.connectors``), built lazily from the connector's pydantic ``Config``: a field ``base_url``
becomes ``--base-url``; a ``SecretStr`` field ``token`` becomes ``--token`` and ``--token-env VAR``
(read the value from an environment variable, keeping it out of shell history); a bool becomes
``--flag/--no-flag``; a list takes comma-separated values.
"""

from __future__ import annotations

import inspect
import json
import os
import typing
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel, SecretStr
from typer.core import TyperGroup

from .. import plugins
from .._connections import Connections, connect, open_connector
from .._connector import Connector, available_connectors, installed_connectors, load_connector, secret_fields
from .._exceptions import AuthError, AuthorizationPending, ConfigError, EngramError, MissingExtra
from .._secrets import mask, open_secret_store
from .._sync import SyncProgress, SyncResult, SyncRunner
from .._webhooks import WebhookQueue, WebhookWorker
from . import app
from ._common import (
    JsonOption,
    console,
    emit_json,
    err_console,
    fail,
    keyring,
    open_store,
    progress,
    settings,
    show_waits,
)

# --- engram connect <platform> ---------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_bool(ann: Any) -> bool:
    return ann is bool or (typing.get_origin(ann) in (typing.Union, getattr(__import__("types"), "UnionType", None))
                           and bool in typing.get_args(ann))


def _is_list(ann: Any) -> bool:
    if typing.get_origin(ann) in (list, tuple, set):
        return True
    return any(typing.get_origin(a) in (list, tuple, set) for a in typing.get_args(ann))


def _single(platform: str, fn: Any, **settings: Any) -> Any:
    sub = typer.Typer(add_completion=False)
    sub.command(platform, **settings)(fn)
    cmd = typer.main.get_command(sub)
    cmd.name = platform
    return cmd


def _connect_command(platform: str) -> Any:
    try:
        cls = load_connector(platform)
    except ConfigError as exc:
        reason = str(exc)

        def unavailable(ctx: typer.Context) -> None:
            fail(reason)

        unavailable.__doc__ = f"(unavailable: {reason})"
        return _single(platform, unavailable,
                       context_settings={"ignore_unknown_options": True, "allow_extra_args": True})

    model: type[BaseModel] = cls.Config
    secrets = set(secret_fields(model))
    params = [
        inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option(..., "--name", help="The connection's name, e.g. acme-notion.")),
        inspect.Parameter("team", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--team", help="The team whose events this connection "
                                                                    "produces (required for a new connection).")),
        inspect.Parameter("scope", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--scope", help="'all', or kind:ID,kind:ID,... (kinds: "
                                               + (", ".join(cls.scope_kinds) or "any") + ")")),
        inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=JsonOption),
    ]
    for fname, field in model.model_fields.items():
        help_text = field.description or fname
        ann = field.annotation
        if fname in secrets:
            params.append(inspect.Parameter(f"cfg__{fname}", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                                            default=typer.Option(None, _flag(fname), help=f"{help_text} (secret)")))
            params.append(inspect.Parameter(f"env__{fname}", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                                            default=typer.Option(None, _flag(fname) + "-env", metavar="VAR",
                                                                 help=f"Read {_flag(fname)} from this "
                                                                      "environment variable.")))
        elif _is_bool(ann):
            params.append(inspect.Parameter(f"cfg__{fname}", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[bool],
                                            default=typer.Option(None, f"{_flag(fname)}/--no-{_flag(fname)[2:]}",
                                                                 help=help_text)))
        else:
            params.append(inspect.Parameter(f"cfg__{fname}", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                                            default=typer.Option(None, _flag(fname), help=help_text
                                                                 + (" (comma-separated)" if _is_list(ann) else ""))))

    def command(**kwargs: Any) -> None:
        values: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key.startswith("cfg__") and value is not None:
                fname = key[5:]
                values[fname] = [v.strip() for v in value.split(",") if v.strip()] \
                    if _is_list(model.model_fields[fname].annotation) else value
            elif key.startswith("env__") and value is not None:
                fname = key[5:]
                if value not in os.environ:
                    fail(f"{_flag(fname)}-env: environment variable {value} is not set")
                values[fname] = SecretStr(os.environ[value])
        _do_connect(cls, kwargs["name"], kwargs["team"], kwargs["scope"], values, kwargs["as_json"])

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (f"Connect a {platform} account to a team. " + (cls.description or "")).strip()
    return _single(platform, command)


def _do_connect(cls: type[Connector[Any, Any]], name: str, team: str | None, scope: str | None,
                values: dict[str, Any], as_json: bool) -> None:
    s = settings()
    s.init_home()
    with open_store(s) as store:
        secrets = open_secret_store(s, store.engine)
        existing = Connections(store).find(name)
        if existing is None and (not team or not scope):
            fail("a new connection needs --team and --scope")
        try:
            conn = connect(store, secrets, platform=cls.platform, name=name,
                           team_id=team or (existing.team_id if existing else ""),
                           scope=scope or (existing.scope if existing else ""), config=values)
        except AuthorizationPending as exc:
            console.print(exc.instructions, highlight=False)
            console.print(f"connection {name} saved, awaiting authorization")
            return
    if as_json:
        emit_json(_conn_dict(conn))
    else:
        console.print(f"connected {name}: {conn.account_name} ({conn.source}) -> team {conn.team_id}, "
                      f"scope {conn.scope}")


class _ConnectGroup(TyperGroup):
    """One subcommand per installed connector, built only when asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(available_connectors())

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        # an unknown platform gets a command that fails naming the installed ones
        return _connect_command(cmd_name)


connect_app = typer.Typer(cls=_ConnectGroup, no_args_is_help=True,
                          help="Connect a platform account to a team: engram connect <platform> --help.")
app.add_typer(connect_app, name="connect")


# --- engram connectors -----------------------------------------------------------------------------

connectors_app = typer.Typer(help="The connectors installed here (built-in and third-party).", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")


@connectors_app.command("list")
def list_connectors(as_json: bool = JsonOption) -> None:
    """Each installed connector: platform, the package that ships it and its version, and whether it
    loads (a built-in one whose extra is not installed does not)."""
    rows = []
    for c in installed_connectors():
        try:
            cls = load_connector(c.platform)
            problem, description = None, cls.description
        except ConfigError as exc:
            problem, description = str(exc), ""
        rows.append({**c.as_dict(), "loads": problem is None, "problem": problem, "description": description})
    if as_json:
        emit_json({"connectors": rows})
        return
    if not rows:
        console.print("no connectors installed (pip install 'engram-sdk[notion]', or a third-party package)",
                      markup=False)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("platform", "package", "version", "kind", "status")
    table.columns[0].no_wrap = True
    for r in rows:
        kind = "built-in" if r["builtin"] else ("third-party" if r["origin"] == "entry point" else r["origin"])
        table.add_row(r["platform"], r["package"] or "-", r["version"] or "-", kind,
                      "ok" if r["loads"] else escape(f"unavailable: {r['problem']}"))
    console.print(table)


# --- engram connections ----------------------------------------------------------------------------

connections_app = typer.Typer(help="Connections: list, show, test, remove.", no_args_is_help=True)
app.add_typer(connections_app, name="connections")


def _conn_dict(c: Any) -> dict[str, Any]:
    return {
        "name": c.name, "platform": c.platform, "team": c.team_id, "scope": c.scope, "status": c.status,
        "account": c.account_name, "source": c.source,
        "last_sync_at": c.last_sync_at.isoformat() if c.last_sync_at else None,
        "last_error": c.last_error, "last_counts": c.last_counts,
    }


@connections_app.command("list")
def list_connections(as_json: bool = JsonOption) -> None:
    """Every connection with its status (ok, error, reconnect_needed, ...)."""
    with open_store() as store:
        conns = Connections(store).list()
    if as_json:
        emit_json({"connections": [_conn_dict(c) for c in conns]})
        return
    if not conns:
        console.print("no connections: add one with `engram connect <platform> ...`")
        return
    from rich.table import Table

    table = Table("name", "platform", "team", "scope", "status", "last sync", "last error")
    for c in conns:
        table.add_row(c.name, c.platform, c.team_id, c.scope, c.status,
                      c.last_sync_at.isoformat(timespec="seconds") if c.last_sync_at else "-",
                      (c.last_error or "")[:80])
    console.print(table)


def _platform_hook(platform: str, hook: str) -> Any:
    """A function a connector package offers for a platform-specific step (None if it has none)."""
    import importlib

    package = importlib.import_module(load_connector(platform).__module__.split(".")[0])
    return getattr(package, hook, None)


@connections_app.command("show")
def show(name: str = typer.Argument(..., help="The connection's name."),
         containers: bool = typer.Option(False, "--containers", help="Also list what the scope may name "
                                                                     "(asks the platform)."),
         reveal_verification_token: bool = typer.Option(
             False, "--reveal-verification-token",
             help="Print only the webhook verification token the platform sent (Notion), to paste into its UI."),
         as_json: bool = JsonOption) -> None:
    """One connection: config (secrets masked), status, checkpoint, failures, webhook queue."""
    s = settings()
    with open_store(s) as store:
        repo = Connections(store)
        c = repo.get(name)
        secrets = open_secret_store(s, store.engine)
        if reveal_verification_token:
            reveal = _platform_hook(c.platform, "reveal_verification_token")
            if reveal is None:
                fail(f"{c.platform} connections have no webhook verification token")
            token = reveal(secrets, name)
            if token is None:
                fail(f"no verification request has reached connection {name} yet: create the webhook "
                     f"subscription in {c.platform} pointing at <ENGRAM_PUBLIC_URL>/v1/webhooks/{name}")
            print(token)  # on its own, so it can be piped; shown only because it was asked for
            return
        out = _conn_dict(c)
        out["config"] = c.config
        out["secrets"] = {n: mask("x") for n in secrets.names(name)}
        out["meta"] = c.meta
        out["checkpoint"] = store.checkpoint(name)
        out["failures"] = [{**f, "last_at": f["last_at"].isoformat()} for f in repo.failures(name)]
        out["webhook_queue"] = WebhookQueue(store).counts(name)
        if containers:
            connector = open_connector(c, secrets, store=store)
            try:
                out["containers"] = [{"kind": x.kind, "id": x.id, "title": x.title} for x in connector.containers()]
            except NotImplementedError as exc:
                fail(str(exc))
            finally:
                connector.close()
    if as_json:
        emit_json(out)
        return
    for key, value in out.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        console.print(f"[bold]{key}[/bold]: {value}", highlight=False)


@connections_app.command("verify")
def verify(name: str = typer.Argument(..., help="The connection's name."),
           reset: bool = typer.Option(False, "--reset", help="Forget the held verification token and keep the "
                                                             "next one that arrives instead (Notion).")) -> None:
    """Confirm the webhook verification token was pasted into the platform and accepted there;
    deliveries are refused until then, and verification requests after it (Notion)."""
    s = settings()
    with open_store(s) as store:
        c = Connections(store).get(name)
        secrets = open_secret_store(s, store.engine)
        if reset:
            reset_hook = _platform_hook(c.platform, "reset_webhook_verification")
            if reset_hook is None:
                fail(f"{c.platform} connections have no webhook verification step")
            reset_hook(store, name, secrets)
            console.print(f"webhook verification of {name} reset: the next verification request is kept. "
                          f"Press \"Resend token\" in {c.platform.capitalize()}, then run `engram connections show {name} "
                          f"--reveal-verification-token`", highlight=False, soft_wrap=True)
            return
        confirm = _platform_hook(c.platform, "confirm_webhook_verification")
        if confirm is None:
            fail(f"{c.platform} connections have no webhook verification step")
        later = confirm(store, name, secrets)
    console.print(f"webhooks of {name} verified: signed deliveries are accepted, further verification requests "
                  "refused", highlight=False, soft_wrap=True)
    if later:
        last = later[-1]
        differ = sum(1 for x in later if not x.get("same_token"))
        err_console.print(
            f"[yellow]warning:[/yellow] {len(later)} later verification request(s) were recorded and not used "
            f"({differ} with a different token; the latest at {last.get('at')} from {last.get('from')}). If "
            f"{c.platform.capitalize()} accepted the token you pasted, they did not come from it: see `engram connections "
            f"show {name}`.", highlight=False, soft_wrap=True)


@connections_app.command("test")
def test(name: str = typer.Argument(...), as_json: bool = JsonOption) -> None:
    """Check the stored credentials against the platform."""
    s = settings()
    with open_store(s) as store:
        repo = Connections(store)
        c = repo.get(name)
        connector = open_connector(c, open_secret_store(s, store.engine), store=store)
        try:
            account = connector.check()
        except AuthError as exc:
            repo.update(name, status="reconnect_needed", last_error=str(exc))
            raise
        finally:
            connector.close()
        if c.source and account.source != c.source:
            fail(f"these credentials now open {account.source}, not {c.source}")
        if not c.source:  # an OAuth step finished since `engram connect`: the account is known now
            repo.update(name, source=account.source, account_name=account.name)
        if c.status in ("reconnect_needed", "awaiting_authorization"):
            repo.update(name, status="ok" if c.last_sync_at else "never_synced", last_error=None)
    if as_json:
        emit_json({"name": name, "ok": True, "account": account.name, "source": account.source})
    else:
        console.print(f"{name}: ok ({account.name}, {account.source})")


@connections_app.command("remove")
def remove(name: str = typer.Argument(...),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Forget a connection, its checkpoint, queued work and secrets (stored events stay)."""
    s = settings()
    with open_store(s) as store:
        repo = Connections(store)
        repo.get(name)
        if not yes and not typer.confirm(f"remove connection {name} and its secrets?"):
            raise typer.Abort()
        repo.remove(name, open_secret_store(s, store.engine))
    console.print(f"removed {name}")


# --- engram sync -----------------------------------------------------------------------------------


@app.command("sync")
def sync(
    connection: Optional[list[str]] = typer.Option(None, "--connection", "-c", help="A connection (repeatable)."),
    all_: bool = typer.Option(False, "--all", help="Every connection."),
    full: bool = typer.Option(False, "--full", help="Ignore the checkpoint and read everything again."),
    reconcile: bool = typer.Option(False, "--reconcile", help="Also list everything in scope and emit "
                                                              "deletions for what is stored but gone."),
    batch_size: int = typer.Option(200, "--batch-size", min=1, help="Events per transaction at most."),
    as_json: bool = JsonOption,
) -> None:
    """Run connectors: sign and store their records, checkpoint after each batch."""
    if not connection and not all_:
        fail("name a connection with --connection C, or use --all")
    s = settings()
    with open_store(s) as store:
        names = [c.name for c in Connections(store).list()] if all_ else list(connection or [])
        if all_ and not names:
            fail("there are no connections")
        results = []
        with progress() as bar, show_waits():
            tasks: dict[str, Any] = {}

            def on_progress(p: SyncProgress) -> None:
                if p.connection not in tasks:
                    tasks[p.connection] = bar.add_task(p.connection, total=None)
                bar.update(tasks[p.connection], completed=p.records,
                           description=f"{p.connection} ({p.phase}): {p.stored} new")

            runner = SyncRunner(store, keyring(s), open_secret_store(s, store.engine), batch_size=batch_size,
                                progress=on_progress)
            for n in names:
                try:
                    results.append(runner.run(n, full=full, reconcile=reconcile))
                except EngramError as exc:
                    if not all_:
                        raise
                    results.append(SyncResult(connection=n, mode="full" if full else "incremental",
                                              reconcile=reconcile, status="error", error=str(exc)))
    if as_json:
        emit_json({"results": [r.as_dict() for r in results]})
    else:
        for r in results:
            line = (f"{r.connection}: {r.records} records, {r.stored} new events, {r.duplicates} unchanged, "
                    f"{len(r.failures)} failed" + (f", {r.tombstones} deletions" if r.reconcile else "")
                    + f" ({r.seconds:.1f}s)")
            console.print(line, highlight=False)
            for f in r.failures[:20]:
                console.print(f"  failed {f.entity_id}: {f.reason}", highlight=False)
    bad = [r for r in results if not r.ok]
    if bad:
        fail(f"connection {bad[0].connection}: {bad[0].error}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))


# --- engram worker ---------------------------------------------------------------------------------


@app.command("worker")
def worker(
    once: bool = typer.Option(False, "--once", help="Drain what is due now, then exit."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between polls when idle."),
    max_attempts: int = typer.Option(6, "--max-attempts", min=1, help="Attempts before dead-lettering."),
    training: bool = typer.Option(True, "--training/--no-training",
                                  help="Also run queued training jobs (needs the train extra)."),
    as_json: bool = JsonOption,
) -> None:
    """Drain the webhook queue (refetch, sign, store) and run queued training jobs: the background
    work of `engram serve --no-workers`, on any host sharing the database."""
    import threading
    import time

    from .._jobs import Jobs, run_job

    s = settings()
    with open_store(s) as store, show_waits():
        w = WebhookWorker(store, keyring(s), open_secret_store(s, store.engine), max_attempts=max_attempts)
        jobs = Jobs(store)
        if training:
            try:
                plugins.trainer().check()
            except MissingExtra:
                console.print("training jobs skipped: the train extra is not installed here")
                training = False

        def train_once() -> int:
            job = jobs.claim() if training else None
            if job is None:
                return 0
            done = run_job(jobs, job, s)
            console.print(f"training job {done.id} for team {done.team}: {done.status} ({done.message})")
            return 1

        if once:
            r = w.drain()
            trained = 0
            while train_once():
                trained += 1
            counts = WebhookQueue(store).counts()
            if as_json:
                emit_json({"claimed": r.claimed, "done": r.done, "retried": r.retried, "dead": r.dead,
                           "stored": r.stored, "queue": counts, "training_jobs": trained})
            else:
                console.print(f"processed {r.claimed}: {r.done} done, {r.retried} to retry, {r.dead} dead-lettered, "
                              f"{r.stored} new events; queue: {counts}; training jobs run: {trained}")
            return
        console.print("worker running; Ctrl-C to stop")
        stop = threading.Event()
        try:
            while not stop.is_set():
                busy = w.run_once().claimed + train_once()
                if not busy:
                    time.sleep(interval)
        except KeyboardInterrupt:
            stop.set()


# --- engram sandbox --------------------------------------------------------------------------------


@app.command("sandbox")
def sandbox(
    platform: str = typer.Argument(..., help="The connector whose sandbox to run."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", exists=True, dir_okay=False,
                                             help="Workspace JSON (default: the sandbox's sample)."),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    tls: bool = typer.Option(False, "--tls", help="Serve https with a throwaway CA; prints its bundle path."),
    tls_dir: Optional[Path] = typer.Option(None, "--tls-dir", help="Where to write the CA bundle and cert."),
) -> None:
    """Run a platform's sandbox (a local server speaking its API) in the foreground."""
    from importlib import import_module

    try:
        from .._sandbox import run_forever
    except ImportError as exc:  # starlette and uvicorn come with the server extra
        fail(f"sandboxes need the `server` extra: pip install 'engram-sdk[server]' ({exc.name} is missing)")

    cls = load_connector(platform)
    if not cls.sandbox:
        fail(f"the {platform} connector ships no sandbox")
    module, _, attr = cls.sandbox.partition(":")
    sandbox_cls = getattr(import_module(module), attr)
    try:
        data = json.loads(workspace.read_text()) if workspace else sandbox_cls.default_workspace()
    except ValueError as exc:
        raise EngramError(f"{workspace} is not valid JSON: {exc}") from None
    tls = tls or getattr(sandbox_cls, "requires_tls", False)  # e.g. MSAL accepts only https authorities
    run_forever(sandbox_cls(data), port=port, tls=tls, tls_dir=tls_dir, echo=lambda m: print(m, flush=True))
