"""``engram status``: one screen with the deployment's state (``engram_sdk/_status.py`` gathers it).

Sections: Home, Connections, Webhook queue, Scheduler, Teams. Tables fit an 80-column terminal;
times are relative (``12m ago``, ``in 3m``) and ``--json`` has them in full.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.markup import escape
from rich.table import Table

from .._status import collect
from . import _version, app
from ._common import JsonOption, console, emit_json, settings


@app.command("status")
def status(as_json: bool = JsonOption) -> None:
    """Connections (last and next sync, errors), webhook queue, scheduler lease, and each team's
    current adapter (version, age, gate figures) with the events waiting to be trained."""
    now = datetime.now(timezone.utc)
    out = {"version": _version(), **collect(settings(), now=now)}
    if as_json:
        emit_json(out)
        return
    _render(out, now)


def _ago(iso: str | None, now: datetime) -> str:
    """'12m ago' / 'in 3m' / '-'."""
    if not iso:
        return "-"
    seconds = (datetime.fromisoformat(iso) - now).total_seconds()
    text = _span(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _due(iso: str | None, now: datetime) -> str:
    """'in 3m', or 'due' once the time has come (a run or retry about to start)."""
    if iso and datetime.fromisoformat(iso) <= now:
        return "due"
    return _ago(iso, now)


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _fig(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _table(*headers: str) -> Table:
    # A header is never narrower than its word (see `schedule list`): rich would otherwise squeeze
    # columns, headers included, to make the others fit 80 columns.
    table = Table(*headers)
    for column in table.columns:
        column.min_width, column.overflow = len(str(column.header)), "fold"
    return table


def _section(title: str) -> None:
    console.print()
    console.print(f"[bold]{title}[/bold]")


def _print(text: str) -> None:
    # wrapped to a terminal's width; a pipe gets whole lines
    console.print(text, highlight=False, soft_wrap=not console.is_terminal)


def _render(s: dict[str, Any], now: datetime) -> None:
    width = None if console.is_terminal else 200  # a pipe gets whole rows
    home = s["home"]
    _print(f"[bold]engram-sdk {escape(s['version'])}[/bold]")
    _section("Home")
    _print(f"path: {escape(home['path'])}" + ("" if home["exists"] else " (does not exist)"))
    _print(f"database: {escape(home['database'])}")
    _print("signing key: " + (f"active, for {escape(', '.join(home['signing_teams']))}" if home["signing_teams"]
                              else "none"))
    for line in home["warnings"]:
        _print(f"[yellow]warning:[/yellow] {escape(line)}")
    if not s["initialised"]:
        _print("not initialised: nothing is stored yet")
        _next(s)
        return

    _section("Connections")
    errors = []
    if not s["connections"]:
        _print("none")
    else:
        table = _table("name", "team", "status", "last sync", "next sync", "webhooks")
        table.columns[0].no_wrap = True
        for c in s["connections"]:
            nxt = "paused" if c["paused"] else _due(c["next_sync_at"], now)
            hooks = f"{c['webhooks_pending']} pending" + (f", {c['webhooks_dead']} dead" if c["webhooks_dead"] else "")
            table.add_row(c["name"], c["team"], c["status"], _ago(c["last_sync_at"], now), nxt, hooks)
            if c["last_error"]:
                errors.append(f"{c['name']}: {c['last_error']}")
            if c["failed_items"]:
                errors.append(f"{c['name']}: {c['failed_items']} items failed to sync "
                              f"(`engram connections show {c['name']}`)")
        console.print(table, width=width)
        for line in errors:
            _print(escape(line))

    _section("Webhook queue")
    q = s["webhook_queue"]
    _print(f"{q['pending']} pending, {q['dead']} dead-lettered, {q['done']} done")
    for item in q["dead_items"][:5]:
        _print(escape(f"dead: {item['connection']} {item['entity_id']} after {item['attempts']} attempts: "
                      f"{item['last_error']}"))

    _section("Scheduler")
    sch = s["scheduler"]
    lock = sch["lock"]
    if lock is None:
        _print("not running (start it with `engram schedule run`)")
    else:
        state = "running" if sch["running"] else "stale: its holder stopped without releasing the lease"
        _print(escape(f"{lock['owner']}, {state}; last heartbeat {_ago(lock['heartbeat_at'], now)}, "
                      f"lease {'expires' if sch['running'] else 'expired'} {_ago(lock['expires_at'], now)}"))
    detail = f"{sch['jobs']} jobs"
    if sch["paused"]:
        detail += f"; paused: {', '.join(sch['paused'])}"
    if sch["failing"]:
        detail += f"; failing: {', '.join(sch['failing'])}"
    _print(escape(detail) + " (`engram schedule list`)")

    _section("Teams")
    if s["training"] != "installed":
        _print("training not installed (pip install 'engram-sdk[train]')")
    if not s["teams"]:
        _print("none")
    else:
        table = _table("team", "adapter", "age", "recall", "retain", "general", "waiting")
        table.columns[0].no_wrap = True
        notes = []
        for t in s["teams"]:
            a = t["adapter"]
            waiting = "-" if t["waiting"] is None else str(t["waiting"])
            if a is None:
                table.add_row(t["team"], "none", "-", "-", "-", "-", waiting)
            else:
                general = _fig(a["general_score"])
                if a["base_general_score"] is not None:
                    general += f" (base {_fig(a['base_general_score'])})"
                table.add_row(t["team"], f"v{a['version']}", _span(a["age_seconds"] or 0), _fig(a["recall"]),
                              _fig(a["retention"]), general, waiting)
                if a["gate_reasons"]:
                    notes.append(f"{t['team']} v{a['version']}: published despite: {'; '.join(a['gate_reasons'])}")
            if t["latest_rejected"]:
                r = t["latest_rejected"]
                notes.append(f"{t['team']} v{r['version']} rejected: {r['reason']}")
            notes.extend(_speeds(t, now))
        console.print(table, width=width)
        _print("waiting: events stored after the current adapter (all of them: no adapter yet)")
        for line in notes:
            _print(escape(line))
    _next(s)


def _speeds(t: dict[str, Any], now: datetime) -> list[str]:
    """One line per training speed of the team: its last run and what it did, and its next run."""
    lines = []
    for name in ("update", "sleep"):
        job = t[name]
        if job is None:
            continue
        last = "never ran" if job["last_finished_at"] is None else (
            f"last {job['last_status']} {_ago(job['last_finished_at'], now)}"
            + (f" ({job['detail']})" if job["detail"] else ""))
        nxt = "paused" if job["paused"] else f"next {_due(job['next_run_at'], now)}"
        lines.append(f"{t['team']} {name}: {last}; {nxt}")
    return lines


def _next(s: dict[str, Any]) -> None:
    if s["next_steps"]:
        _section("Next")
        for step in s["next_steps"]:
            _print(escape(f"- {step}"))
