"""``engram schedule run | list | pause | resume | run-now`` (see ``engram_sdk/_scheduler.py``).

``run`` is the one scheduler of a deployment; the others can run in any process on any host that
shares the database: they record the request, and the running scheduler applies it at its next
tick.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from datetime import datetime, timezone
from typing import Any, Optional

import typer

from .. import plugins
from .._exceptions import MissingExtra
from .._scheduler import ScheduleConfig, Scheduler, list_jobs, lock_info, request
from . import app
from ._common import JsonOption, console, emit_json, fail, open_store, settings

schedule_app = typer.Typer(help="The scheduler: incremental syncs, daytime updates and the nightly rebuild "
                                "('sleep').",
                           no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str, what: str, *, off: bool = False) -> float:
    """'900', '0.5s', '15m', '1h' -> seconds; with ``off``, also '0' or 'off' -> 0."""
    if off and text.strip().lower() in ("0", "off"):
        return 0.0
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        fail(f"{what}: {text!r} is not a duration (e.g. 900, 0.5s, 15m, 1h{', or 0 for off' if off else ''})")
    return float(m.group(1)) * _UNITS[m.group(2)]


@schedule_app.command("run")
def run(
    sync_interval: str = typer.Option("15m", "--sync-interval", help="Between incremental syncs of a connection."),
    interval: Optional[list[str]] = typer.Option(None, "--interval", metavar="CONNECTION=DURATION",
                                                 help="One connection's own sync interval (repeatable)."),
    update_interval: str = typer.Option("15m", "--update-interval",
                                        help="Between daytime updates of a team (continual, costs what is new); "
                                             "0 or off: none."),
    sleep_at: str = typer.Option("02:00", "--sleep-at",
                                 help="Daily time (HH:MM) of each team's rebuild from scratch ('sleep')."),
    tz: str = typer.Option("UTC", "--timezone", help="Time zone of --sleep-at."),
    tick: str = typer.Option("2s", "--tick", help="How often requests and connections are re-read."),
    lease: str = typer.Option("30s", "--lease", help="A lock not renewed for this long may be taken over."),
    misfire_grace: str = typer.Option("1h", "--misfire-grace", help="A run late by less than this still runs."),
    workers: int = typer.Option(4, "--workers", min=1, help="Syncs running at once."),
    setting: list[str] = typer.Option([], "--set", help="A training setting for updates and sleeps, e.g. "
                                                        "--set epochs=2 (repeatable; see docs/training.md)."),
) -> None:
    """Run the scheduler in the foreground until Ctrl-C (one per deployment)."""
    per: dict[str, float] = {}
    for item in interval or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--interval takes CONNECTION=DURATION, not {item!r}")
        per[name] = _seconds(value, f"--interval {name}")
    overrides: dict[str, Any] = {}
    if setting:
        try:
            parse_overrides = plugins.trainer().parse_overrides
        except MissingExtra:
            fail("--set needs the training extra: pip install 'engram-sdk[train]'")
        try:
            overrides = parse_overrides(setting)
        except (ValueError, TypeError) as exc:
            fail(str(exc))
    try:
        config = ScheduleConfig(sync_interval=_seconds(sync_interval, "--sync-interval"), intervals=per,
                                update_interval=_seconds(update_interval, "--update-interval", off=True),
                                sleep_at=sleep_at, timezone=tz, tick=_seconds(tick, "--tick"),
                                lease=_seconds(lease, "--lease"),
                                misfire_grace_time=_seconds(misfire_grace, "--misfire-grace"), sync_workers=workers,
                                train_overrides=overrides)
    except ValueError as exc:
        fail(str(exc))
    s = settings()
    with open_store(s) as store:
        # after opening the store: its schema check would otherwise log alembic's chatter
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # our own lines say what ran and did
        scheduler = Scheduler(store, s, config)
        scheduler.start()  # SchedulerLocked: "error: another scheduler is running (...)"
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print(f"scheduler running as {scheduler.owner}"
                      + (f" (took over from {scheduler.took_over_from.owner})" if scheduler.took_over_from else "")
                      + "; Ctrl-C to stop", highlight=False)
        try:
            while not stop.wait(0.2) and not scheduler.stopped.is_set():
                pass
        except KeyboardInterrupt:
            pass
        finally:
            scheduler.stop()
    if scheduler.lost_lock:
        fail(scheduler.lost_lock)
    console.print("scheduler stopped")


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@schedule_app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """Each job: next run (or paused), last run, its result and event count, runs, and the last error
    (a training run's version or why it was skipped); and who holds the scheduler's lock."""
    with open_store() as store:
        jobs = list_jobs(store)
        held = lock_info(store)
    scheduler: dict[str, Any] | None = held.as_dict() if held else None
    if as_json:
        emit_json({"scheduler": scheduler, "jobs": [j.as_dict() for j in jobs]})
        return
    if held is None:
        console.print("scheduler: not running (start it with `engram schedule run`)")
    else:
        state = "running" if held.alive() else "stale (its holder stopped without releasing the lock)"
        console.print(f"scheduler: {held.owner}, {state}, last heartbeat {_when(held.heartbeat_at)}", highlight=False)
    if not jobs:
        console.print("no jobs: add a connection with `engram connect <platform> ...`")
        return
    from rich.table import Table

    # Five columns that fit 80 characters: paused and the event count fold into "next run" and
    # "result"; errors, and what a training run did (its version, or why it skipped), go under
    # the table in full. A header is never narrower than its word (rich
    # would otherwise squeeze columns to nothing, headers included, to make no_wrap ones fit).
    table = Table("job", "next run", "last run", "result", "runs")
    for column in table.columns:
        column.min_width, column.overflow = len(str(column.header)), "fold"
    table.columns[0].no_wrap = True
    errors = []
    for j in jobs:
        if j.run_now_requested:
            nxt = "requested now" + (", paused" if j.paused else "")
        else:
            nxt = "paused" if j.paused else _short(j.next_run_at)
        result = j.last_status or "-"
        if j.last_events is not None:
            result += f", {j.last_events} events"
        table.add_row(j.id, nxt, _short(j.last_started_at), result, str(j.runs))
        if j.last_error:
            errors.append(f"{j.id}: {j.last_error}")
        elif j.meta.get("detail") and j.last_status != "running":
            errors.append(f"{j.id}: {j.last_status}: {j.meta['detail']}")
    console.print(table, width=None if console.is_terminal else 200)  # a pipe gets whole rows
    for line in errors:
        console.print(line, highlight=False, soft_wrap=True)


def _short(value: datetime | None) -> str:
    """To the minute, in UTC: the table's times; ``--json`` has them to the second."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def _request(job: str, action: Any, done: str) -> None:
    with open_store() as store:
        spec = request(store, job, action)
        held = lock_info(store)
    tail = ("the running scheduler applies it within one tick" if held and held.alive()
            else "no scheduler is running: it applies when `engram schedule run` starts")
    console.print(f"{spec.id}: {done}; {tail}", highlight=False)


_JOB_HELP = "A job id (sync:CONNECTION, update:TEAM, sleep:TEAM), or its connection."


@schedule_app.command("pause")
def pause(job: str = typer.Argument(..., help=_JOB_HELP)) -> None:
    """Stop a job's scheduled runs (a run in progress finishes)."""
    _request(job, "pause", "paused")


@schedule_app.command("resume")
def resume(job: str = typer.Argument(..., help=_JOB_HELP)) -> None:
    """Schedule a paused job again."""
    _request(job, "resume", "resumed")


@schedule_app.command("run-now")
def run_now(job: str = typer.Argument(..., help=_JOB_HELP)) -> None:
    """Run a job once as soon as possible (paused or not; after the current run if one is going)."""
    _request(job, "run-now", "run requested")
