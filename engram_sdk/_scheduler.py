"""The scheduler: per connection an incremental sync; per team two speeds of training, a small
continual update in the day and a rebuild from scratch at night ("sleep").

``engram schedule run`` starts one ``Scheduler``: an APScheduler 3 ``BackgroundScheduler`` whose
jobs live in the event store's own database (``SQLAlchemyJobStore``, table
``engram_apscheduler_jobs``). Jobs, one per thing to do (see ``desired_jobs``):

- ``sync:<connection>``: ``sync_job(connection)``, an incremental sync every ``sync_interval``
  (per connection overridable), first run as soon as the job appears. The sync runner checkpoints
  after every page, so a run that fails or is killed loses nothing: the next run resumes from the
  last stored checkpoint. Graph subscription renewal (Microsoft) and Harvey polling are simply
  those connections' syncs.
- ``update:<team>``: ``update_job(team)``, every ``update_interval`` (0: no such jobs): the daytime
  update. It queues a continual training job (``Jobs.submit``, ``from_scratch=False``) that
  continues the current adapter on the events stored after it, with the trainer's production
  bounds, so its cost follows the new events. Skipped when the team has no adapter yet (the first
  one is a sleep's: training it costs the whole workspace), when a training job of the team is
  already queued or running, or when nothing was stored after the current adapter (or after a
  rejected update on top of it: the same events would only be rejected again).
- ``sleep:<team>``: ``sleep_job(team)``, daily at ``sleep_at``: the consolidation. It queues a
  training job from scratch (``from_scratch=True``) on all current content: deleted entities leave
  the weights and the day's updates are folded in; the trainer publishes it only if its gates
  pass, else the current version keeps serving. Skipped when nothing was stored after the newest
  from-scratch version (published or rejected: the same content would train the same weights).

Cost: an update's follows the new events, not the workspace (the trainer replays at most
``continual_replay_per_example`` earlier examples per new one and asks at most
``continual_retention_questions`` retention questions), plus a fixed evaluation; a sleep's follows
the whole workspace, once a night per team that changed. An operator changes them with
``engram schedule run --update-interval 1h | off``, ``--sleep-at`` / ``--timezone`` and ``--set``
(training settings of both), or pauses one team's speed (``engram schedule pause update:acme``);
docs/scheduler.md has the details.

A training run records which speed it was (``meta["run"]``: update | sleep), the training job, the
version and whether it was published; a version the gates refused ends the run ``rejected`` (not
an error: it is not retried, the next new event or night tries again).

Every job coalesces missed runs into one, runs at most one instance at a time, and still runs when
it is late by less than ``misfire_grace_time``. A run that fails (an exception, or a sync whose
result is not ok) is retried from the next tick, then with doubling delays capped at the job's
interval; each run records its status, error and event count in ``scheduler_jobs`` and logs them.

**One scheduler per deployment** (APScheduler 3 does not coordinate several): the scheduler holds
the row of ``scheduler_lock`` with a lease that each tick renews. A second scheduler refuses to
start (``SchedulerLocked``) while the lease is fresh, and takes over once it has expired (the
holder died). A holder that finds the row taken, or that cannot renew for a whole lease, stops.

**The tick** (every ``tick`` seconds, on its own thread so that long jobs never delay it) renews
the lease, then re-reads everything from the database: connections and teams (adding and removing
jobs), and ``scheduler_jobs``, where ``engram schedule pause | resume | run-now`` in any other
process record what they want (``request``). So a request takes effect within one tick; nothing
relies on APScheduler noticing changes to its job store by itself.

Job functions are top-level functions taking plain arguments, because APScheduler stores a
reference to them; they run against the scheduler running in this process.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as _secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _schema as t
from ._config import Settings
from ._connections import Connections
from ._exceptions import ConnectorError, EngramError, SchedulerLocked, TrainingError
from ._jobs import ACTIVE, Job, Jobs, run_job
from ._secrets import SecretStore, open_secret_store
from ._signing import Keyring
from ._store import EventStore, StoredAdapter, as_utc
from ._sync import SyncProgress, SyncRunner

__all__ = [
    "JobSpec",
    "JobView",
    "LockInfo",
    "ScheduleConfig",
    "Scheduler",
    "desired_jobs",
    "list_jobs",
    "lock_info",
    "request",
    "resolve_job",
    "sleep_job",
    "sync_job",
    "update_job",
]

log = logging.getLogger("engram.scheduler")

JOBSTORE_TABLE = "engram_apscheduler_jobs"
LOCK = "default"
Action = Literal["pause", "resume", "run-now"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleConfig:
    sync_interval: float = 900.0  # seconds between incremental syncs of one connection
    intervals: dict[str, float] = field(default_factory=dict)  # connection -> its own interval
    # seconds between daytime updates of one team (continual, bounded by the new events); 0: none
    update_interval: float = 900.0
    sleep_at: str = "02:00"  # HH:MM, daily: the nightly rebuild from scratch ("sleep") of each team
    timezone: str = "UTC"  # of sleep_at
    tick: float = 2.0  # seconds between lease renewals and re-reads of jobs and requests
    lease: float = 30.0  # a lock not renewed for this long is stale: another scheduler may take over
    misfire_grace_time: float = 3600.0  # a run late by less than this still runs (once: coalesced)
    sync_workers: int = 4  # syncs running at once (one per connection at most)
    train_overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields for updates and sleeps

    def __post_init__(self) -> None:
        if self.tick <= 0 or self.sync_interval <= 0 or any(v <= 0 for v in self.intervals.values()):
            raise ValueError("tick and sync intervals must be positive")
        if self.update_interval < 0:
            raise ValueError(f"the update interval must be positive, or 0 for no daytime updates, "
                             f"not {self.update_interval}")
        if self.lease < 2 * self.tick:
            raise ValueError(f"the lease ({self.lease}s) must be at least two ticks ({2 * self.tick}s)")
        self.sleep_time()  # validates
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} (e.g. UTC, Europe/Berlin)") from None

    def interval_of(self, connection: str) -> float:
        return self.intervals.get(connection, self.sync_interval)

    @property
    def updates(self) -> bool:
        """Whether each team gets a daytime update job."""
        return self.update_interval > 0

    def sleep_time(self) -> tuple[int, int]:
        try:
            hour, minute = (int(p) for p in self.sleep_at.split(":"))
            if not (0 <= hour < 24 and 0 <= minute < 60):
                raise ValueError
        except ValueError:
            raise ValueError(f"the sleep time (--sleep-at) must be HH:MM, not {self.sleep_at!r}") from None
        return hour, minute


@dataclass(frozen=True)
class JobSpec:
    id: str
    kind: Literal["sync", "update", "sleep"]
    target: str  # the connection (sync) or team (update, sleep)


def desired_jobs(store: EventStore, *, updates: bool = True) -> list[JobSpec]:
    """The jobs this deployment should have: one sync per connection; per team a daytime update
    (unless ``updates`` is off) and a sleep."""
    conns = Connections(store).list()
    specs = [JobSpec(f"sync:{c.name}", "sync", c.name) for c in conns]
    for team in sorted({c.team_id for c in conns}):
        if updates:
            specs.append(JobSpec(f"update:{team}", "update", team))
        specs.append(JobSpec(f"sleep:{team}", "sleep", team))
    return specs


def _scheduled_jobs(store: EventStore, conn: Connection) -> list[JobSpec]:
    """The jobs as another process sees them. Whether updates are on is the running scheduler's
    setting, which only it knows: it keeps a ``scheduler_jobs`` row per job it schedules (and
    deletes the update rows when started with updates off), so updates count as on when such a row
    exists. Before any scheduler ran there are none, so update jobs show from its first tick on."""
    updates = conn.execute(sa.select(t.scheduler_jobs.c.job_id).where(t.scheduler_jobs.c.kind == "update")
                           .limit(1)).first() is not None
    return desired_jobs(store, updates=updates)


# --- the lock -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    ticks: int

    def alive(self, now: datetime | None = None) -> bool:
        return self.expires_at > (now or _now())

    def as_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, "acquired_at": self.acquired_at.isoformat(),
                "heartbeat_at": self.heartbeat_at.isoformat(), "expires_at": self.expires_at.isoformat(),
                "ticks": self.ticks, "alive": self.alive()}


def _lock_row(conn: Connection) -> LockInfo | None:
    r = conn.execute(sa.select(t.scheduler_lock).where(t.scheduler_lock.c.name == LOCK)).first()
    if r is None:
        return None
    return LockInfo(r.owner, as_utc(r.acquired_at), as_utc(r.heartbeat_at), as_utc(r.expires_at), r.ticks)


def lock_info(store: EventStore) -> LockInfo | None:
    """Who holds the scheduler lock (alive or stale), or None if nobody ever did or it was released."""
    with store.engine.connect() as conn:
        return _lock_row(conn)


def _acquire(store: EventStore, owner: str, lease: float) -> LockInfo | None:
    """Take the lock; returns the stale holder taken over from, if any. ``SchedulerLocked`` if alive."""
    with store._write() as conn:
        now = _now()
        held = _lock_row(conn)
        values = dict(owner=owner, acquired_at=now, heartbeat_at=now,
                      expires_at=now + timedelta(seconds=lease), ticks=0)
        if held is None:
            conn.execute(t.scheduler_lock.insert().values(name=LOCK, **values))
            return None
        if held.owner != owner and held.alive(now):
            age = (now - held.heartbeat_at).total_seconds()
            raise SchedulerLocked(
                f"another scheduler is running ({held.owner}, last heartbeat {age:.1f}s ago); "
                f"it holds the lock until {held.expires_at.isoformat(timespec='seconds')} unless it renews it",
                owner=held.owner)
        conn.execute(t.scheduler_lock.update().where(t.scheduler_lock.c.name == LOCK).values(**values))
        return held if held.owner != owner else None


def _renew(store: EventStore, owner: str, lease: float) -> bool:
    """Renew our lease; False if the lock is no longer ours."""
    with store._write() as conn:
        now = _now()
        n = conn.execute(t.scheduler_lock.update()
                         .where(t.scheduler_lock.c.name == LOCK, t.scheduler_lock.c.owner == owner)
                         .values(heartbeat_at=now, expires_at=now + timedelta(seconds=lease),
                                 ticks=t.scheduler_lock.c.ticks + 1)).rowcount
    return n == 1


def _release(store: EventStore, owner: str) -> None:
    with store._write() as conn:
        conn.execute(t.scheduler_lock.delete().where(t.scheduler_lock.c.name == LOCK,
                                                     t.scheduler_lock.c.owner == owner))


# --- job state and requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    """What `engram schedule list` shows for one job."""

    id: str
    kind: str
    target: str
    paused: bool
    next_run_at: datetime | None  # None: paused, or no scheduler has added the job yet
    run_now_requested: bool
    retry_at: datetime | None
    runs: int
    failures: int
    last_status: str | None  # running | ok | skipped | rejected (a version the gates refused) | error
    last_error: str | None
    last_events: int | None
    last_seconds: float | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    # What the last run did, for training runs: "run" (update | sleep), "detail" (one line: the
    # version and whether it was published, or why the run was skipped), "train_job", "version",
    # "published", "from_scratch".
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def _ensure_rows(conn: Connection, specs: list[JobSpec]) -> None:
    have = {r[0] for r in conn.execute(sa.select(t.scheduler_jobs.c.job_id))}
    fresh = [dict(job_id=s.id, kind=s.kind, target=s.target, paused=False, runs=0, failures=0, meta="{}",
                  updated_at=_now()) for s in specs if s.id not in have]
    if fresh:
        conn.execute(t.scheduler_jobs.insert(), fresh)


def _rows(conn: Connection) -> dict[str, Any]:
    return {r.job_id: r for r in conn.execute(sa.select(t.scheduler_jobs))}


def resolve_job(store: EventStore, name: str) -> JobSpec:
    """A job by id (``sync:acme-notion``), or by a connection or team name naming exactly one job."""
    with store.engine.connect() as conn:
        specs = _scheduled_jobs(store, conn)
    exact = [s for s in specs if s.id == name]
    matches = exact or [s for s in specs if s.target == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if name.startswith("update:"):
            raise EngramError(f"no scheduled job {name!r}: daytime updates are scheduled while a scheduler "
                              "runs with them on (`engram schedule run --update-interval 15m`); see "
                              "`engram schedule list`")
        raise EngramError(f"no scheduled job {name!r}: see `engram schedule list`")
    raise EngramError(f"{name!r} names several jobs ({', '.join(s.id for s in matches)}): give the job id")


def request(store: EventStore, name: str, action: Action) -> JobSpec:
    """Record a pause, resume or run-now; the running scheduler applies it at its next tick."""
    spec = resolve_job(store, name)
    values: dict[str, Any]
    if action == "pause":
        values = dict(paused=True)
    elif action == "resume":
        values = dict(paused=False)
    elif action == "run-now":
        values = dict(run_now_at=_now())
    else:
        raise ValueError(f"unknown action {action!r}")
    with store._write() as conn:
        _ensure_rows(conn, [spec])
        conn.execute(t.scheduler_jobs.update().where(t.scheduler_jobs.c.job_id == spec.id)
                     .values(**values, updated_at=_now()))
    return spec


def _next_runs(conn: Connection) -> dict[str, float | None]:
    a = t.apscheduler_jobs
    return {r.id: r.next_run_time for r in conn.execute(sa.select(a.c.id, a.c.next_run_time))}


def list_jobs(store: EventStore) -> list[JobView]:
    with store.engine.connect() as conn:
        specs = _scheduled_jobs(store, conn)
        rows = _rows(conn)
        nexts = _next_runs(conn)
    out = []
    for s in specs:
        r = rows.get(s.id)
        nxt = nexts.get(s.id)
        out.append(JobView(
            id=s.id, kind=s.kind, target=s.target, paused=bool(r and r.paused),
            next_run_at=datetime.fromtimestamp(nxt, timezone.utc) if nxt is not None else None,
            run_now_requested=bool(r and r.run_now_at is not None),
            retry_at=as_utc(r.retry_at) if r else None, runs=r.runs if r else 0, failures=r.failures if r else 0,
            last_status=r.last_status if r else None, last_error=r.last_error if r else None,
            last_events=r.last_events if r else None, last_seconds=r.last_seconds if r else None,
            last_started_at=as_utc(r.last_started_at) if r else None,
            last_finished_at=as_utc(r.last_finished_at) if r else None,
            meta=json.loads(r.meta) if r else {}))
    return out


# --- the scheduler ------------------------------------------------------------------------------------

_active: Scheduler | None = None  # the scheduler running in this process; job functions use it
_active_lock = threading.Lock()


def _running() -> Scheduler:
    if _active is None:
        raise RuntimeError("no engram scheduler is running in this process")
    return _active


class Scheduler:
    """One per deployment (see the module docstring). ``start()`` / ``stop()``, or ``with``."""

    def __init__(self, store: EventStore, settings: Settings, config: ScheduleConfig | None = None, *,
                 keyring: Keyring | None = None, secrets: SecretStore | None = None):
        self.store = store
        self.settings = settings
        self.config = config or ScheduleConfig()
        self.keyring = keyring or Keyring(settings.keys_dir)
        self.secrets = secrets or open_secret_store(settings, store.engine)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{_secrets.token_hex(3)}"
        self.took_over_from: LockInfo | None = None
        self.lost_lock: str | None = None  # why we stopped, when the lock was lost
        self.stopped = threading.Event()
        self._stopping = threading.Event()
        self._training: set[str] = set()  # training job ids an update or sleep run of ours waits for
        self._aps: Any = None
        self._renewed = 0.0
        # Held for a whole tick. APScheduler's shutdown(wait=True) holds its job-store lock while it
        # waits for running jobs, and a tick needs that lock (get_jobs): shutting down while a tick
        # runs would deadlock, so shutdown first waits for the tick under this lock.
        self._tick_lock = threading.Lock()

    # --- life cycle -------------------------------------------------------------------------------

    def start(self) -> Scheduler:
        global _active
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        with _active_lock:
            if _active is not None:
                raise RuntimeError("a scheduler is already running in this process")
            self.took_over_from = _acquire(self.store, self.owner, self.config.lease)
            _active = self
        self._renewed = time.monotonic()
        if self.took_over_from is not None:
            log.warning("took over the scheduler lock from %s (last heartbeat %s)", self.took_over_from.owner,
                        self.took_over_from.heartbeat_at.isoformat(timespec="seconds"))
        try:
            self._recover_interrupted()
            self._aps = BackgroundScheduler(
                jobstores={"internal": MemoryJobStore(),
                           "default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBSTORE_TABLE)},
                executors={"internal": ThreadPoolExecutor(1),
                           "default": ThreadPoolExecutor(self.config.sync_workers),
                           "train": ThreadPoolExecutor(1)},
                job_defaults={"coalesce": True, "max_instances": 1,
                              "misfire_grace_time": int(self.config.misfire_grace_time)},
                timezone=self.config.timezone,
            )
            self._aps.start(paused=True)
            self._reconcile()
            self._aps.add_job(self._tick, "interval", seconds=self.config.tick, id="engram:tick",
                              jobstore="internal", executor="internal", misfire_grace_time=None)
            self._aps.resume()
        except BaseException:
            self._shutdown(release=True)
            raise
        log.info("scheduler %s started: tick %ss, lease %ss", self.owner, self.config.tick, self.config.lease)
        return self

    def stop(self) -> None:
        """Stop and release the lock. Running syncs finish; a running training is cancelled at its
        next step (it keeps its checkpoint, and the sleep run is retried when a scheduler starts)."""
        self._shutdown(release=self.lost_lock is None)

    def _shutdown(self, *, release: bool) -> None:
        global _active
        self._stopping.set()
        for job_id in list(self._training):
            try:
                Jobs(self.store).cancel(job_id)
            except EngramError as exc:
                log.warning("could not cancel training job %s: %s", job_id, exc)
        with self._tick_lock:  # a running tick finishes; later ones see _stopping and return
            pass
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=True)
        if release:
            try:
                _release(self.store, self.owner)
            except EngramError as exc:
                log.warning("could not release the scheduler lock: %s", exc)
        with _active_lock:
            if _active is self:
                _active = None
        self.stopped.set()

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _recover_interrupted(self) -> None:
        """Runs left 'running' by a scheduler that died are failures: retry them now."""
        with self.store._write() as conn:
            conn.execute(t.scheduler_jobs.update().where(t.scheduler_jobs.c.last_status == "running")
                         .values(last_status="error", last_error="interrupted: the scheduler stopped during this run",
                                 failures=t.scheduler_jobs.c.failures + 1, retry_at=_now(), updated_at=_now()))

    # --- the tick ---------------------------------------------------------------------------------

    def _tick(self) -> None:
        with self._tick_lock:
            if not self._stopping.is_set():
                self._tick_once()

    def _tick_once(self) -> None:
        try:
            if not _renew(self.store, self.owner, self.config.lease):
                held = lock_info(self.store)
                self._lose(f"lost the scheduler lock to {held.owner if held else 'nobody (released)'}")
                return
            self._renewed = time.monotonic()
            self._reconcile()
        except EngramError as exc:  # the database is busy or away: try again next tick
            log.warning("scheduler tick failed: %s", exc)
            if time.monotonic() - self._renewed > self.config.lease:
                self._lose(f"could not renew the scheduler lock for {self.config.lease}s: {exc}")

    def _lose(self, why: str) -> None:
        log.error("%s; stopping", why)
        self.lost_lock = why
        # shutdown(wait=True) from this job's own thread would wait for itself
        threading.Thread(target=self._shutdown, kwargs={"release": False}, daemon=True).start()

    def _trigger(self, spec: JobSpec) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if spec.kind == "sync":
            return IntervalTrigger(seconds=self.config.interval_of(spec.target), timezone=self.config.timezone)
        if spec.kind == "update":
            return IntervalTrigger(seconds=self.config.update_interval, timezone=self.config.timezone)
        hour, minute = self.config.sleep_time()
        return CronTrigger(hour=hour, minute=minute, timezone=self.config.timezone)

    def _reconcile(self) -> None:
        """Bring APScheduler's jobs in line with the database: jobs, pauses, run-now and retries."""
        specs = desired_jobs(self.store, updates=self.config.updates)
        wanted = {s.id for s in specs}
        with self.store.engine.connect() as conn:
            rows = _rows(conn)
        if set(rows) != wanted:  # a connection or team came or went: one write, only then
            with self.store._write() as conn:
                _ensure_rows(conn, specs)
                conn.execute(t.scheduler_jobs.delete().where(t.scheduler_jobs.c.job_id.not_in(wanted)))
                rows = _rows(conn)
        now = _now()
        existing = {j.id: j for j in self._aps.get_jobs(jobstore="default")}
        for spec in specs:
            row = rows[spec.id]
            trigger = self._trigger(spec)
            job = existing.pop(spec.id, None)
            if job is None:
                func = {"sync": sync_job, "update": update_job, "sleep": sleep_job}[spec.kind]
                extra: dict[str, Any] = {}
                if row.paused:
                    extra["next_run_time"] = None  # added paused: it must not fire before the pause below
                elif spec.kind == "sync":
                    extra["next_run_time"] = now  # a new connection syncs at once
                job = self._aps.add_job(func, trigger, args=[spec.target], id=spec.id, name=spec.id,
                                        # updates and sleeps share one thread: one training at a time
                                        jobstore="default", executor="default" if spec.kind == "sync" else "train",
                                        replace_existing=True, **extra)
                log.info("scheduled %s (%s)", spec.id, trigger)
            elif _trigger_key(job.trigger) != _trigger_key(trigger):
                job = self._aps.reschedule_job(spec.id, jobstore="default", trigger=trigger)
                log.info("rescheduled %s (%s)", spec.id, trigger)
            if row.paused and job.next_run_time is not None:
                self._aps.pause_job(spec.id, jobstore="default")
                log.info("paused %s", spec.id)
            elif not row.paused and job.next_run_time is None:
                self._aps.resume_job(spec.id, jobstore="default")
                log.info("resumed %s", spec.id)
            retry_due = row.retry_at is not None and as_utc(row.retry_at) <= now and not row.paused
            if (row.run_now_at is not None or retry_due) and row.last_status != "running":
                self._aps.modify_job(spec.id, jobstore="default", next_run_time=now)
                log.info("%s %s", "running now" if row.run_now_at is not None else "retrying", spec.id)
                with self.store._write() as conn:
                    # clear only what was applied: a request made meanwhile stays for the next tick
                    q = t.scheduler_jobs.update().where(t.scheduler_jobs.c.job_id == spec.id)
                    if row.run_now_at is not None:
                        conn.execute(q.where(t.scheduler_jobs.c.run_now_at == row.run_now_at).values(run_now_at=None))
                    if retry_due:
                        conn.execute(q.where(t.scheduler_jobs.c.retry_at == row.retry_at).values(retry_at=None))
        for gone in existing:
            self._aps.remove_job(gone, jobstore="default")
            log.info("removed %s (its connection or team is gone, or daytime updates are off)", gone)

    # --- recording runs -----------------------------------------------------------------------------

    @contextmanager
    def _run(self, job_id: str, retry_cap: float) -> Iterator[_Run]:
        run = _Run()
        started = time.monotonic()
        with self.store._write() as conn:
            row = conn.execute(sa.select(t.scheduler_jobs.c.meta).where(t.scheduler_jobs.c.job_id == job_id)).first()
            run.meta = json.loads(row.meta) if row else {}
            conn.execute(t.scheduler_jobs.update().where(t.scheduler_jobs.c.job_id == job_id)
                         .values(last_status="running", last_started_at=_now(), updated_at=_now()))
        try:
            yield run
        except BaseException as exc:
            self._finish(job_id, run, started, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                         retry_cap=retry_cap)
            raise
        self._finish(job_id, run, started, error=None, retry_cap=retry_cap)

    def _finish(self, job_id: str, run: _Run, started: float, *, error: str | None, retry_cap: float) -> None:
        seconds = round(time.monotonic() - started, 3)
        values: dict[str, Any] = dict(last_finished_at=_now(), last_events=run.events, last_seconds=seconds,
                                      runs=t.scheduler_jobs.c.runs + 1, meta=json.dumps(run.meta, sort_keys=True),
                                      updated_at=_now())
        with self.store._write() as conn:
            q = t.scheduler_jobs.update().where(t.scheduler_jobs.c.job_id == job_id)
            if error is None:
                conn.execute(q.values(last_status=run.status, last_error=None, failures=0, retry_at=None, **values))
                return
            failures = (conn.execute(sa.select(t.scheduler_jobs.c.failures)
                                     .where(t.scheduler_jobs.c.job_id == job_id)).scalar() or 0) + 1
            delay = min(self.config.tick * 2 ** (failures - 1), retry_cap)
            conn.execute(q.values(last_status="error", last_error=error[:1000], failures=failures,
                                  retry_at=_now() + timedelta(seconds=delay), **values))
        log.warning("%s failed after %.1fs (%d new events stored): %s; retrying in %.1fs", job_id, seconds,
                    run.events, error, delay)


def _trigger_key(trigger: Any) -> tuple[str, str]:
    return str(trigger), str(getattr(trigger, "timezone", ""))


@dataclass
class _Run:
    events: int = 0
    status: str = "ok"
    meta: dict[str, Any] = field(default_factory=dict)


# --- job functions (top level, plain arguments: APScheduler stores references to them) ---------------


def sync_job(connection: str) -> int:
    """One incremental sync of ``connection``; returns the number of new events stored."""
    s = _running()
    with s._run(f"sync:{connection}", retry_cap=s.config.interval_of(connection)) as run:

        def on_progress(p: SyncProgress) -> None:
            run.events = p.stored

        runner = SyncRunner(s.store, s.keyring, s.secrets, progress=on_progress)
        result = runner.run(connection)
        run.events = result.stored
        if not result.ok:
            # Raised so that APScheduler and the run's record see a failure; what was stored stays,
            # and the checkpoint is where the last complete page left it.
            raise ConnectorError(f"sync of {connection} failed: {result.error}")
        log.info("sync %s: %d new events (%d records, %d unchanged, %d failed) in %.1fs", connection,
                 result.stored, result.records, result.duplicates, len(result.failures), result.seconds)
    return run.events


def update_job(team: str) -> int:
    """The daytime update of ``team``: continue its current adapter on the events stored after it
    (see the module docstring for when it is skipped); returns how many events that was."""
    s = _running()
    with s._run(f"update:{team}", retry_cap=s.config.update_interval or 900.0) as run:
        run.meta = {"run": "update"}
        current = s.store.adapter_version(team)
        if current is None:
            # A first adapter is trained on the whole workspace: that is the sleep's cost, not an update's.
            return _skip(run, team, "no adapter yet: the nightly sleep trains the first one "
                                    f"(now: `engram schedule run-now sleep:{team}`)")
        active = Jobs(s.store).active(team)
        if active is not None:
            return _skip(run, team, f"training job {active.id} of the team is already {active.status}")
        # A rejected update on top of the current version saw these events already: retraining on
        # the same ones would be refused the same way, every interval.
        since = _last_attempt(s.store, team, current)
        run.events = s.store.count(team, after=since.watermark)
        if run.events == 0:
            what = f"version {since.version}" + (" (rejected)" if since.status == "rejected" else "")
            return _skip(run, team, f"nothing stored since {what}")
        run.events = s.store.events_since_adapter(team)  # what the continual run reads
        _train(s, run, team, from_scratch=False)
    return run.events


def sleep_job(team: str) -> int:
    """The nightly consolidation of ``team``: rebuild its adapter from scratch on all current
    content (see the module docstring for when it is skipped); returns how many events were
    stored after the previous from-scratch version (all of them: none yet)."""
    s = _running()
    with s._run(f"sleep:{team}", retry_cap=6 * 3600.0) as run:
        run.meta = {"run": "sleep"}
        last = _last_sleep(s.store, team)
        run.events = s.store.count(team, after=last.watermark if last else None)
        if run.events == 0:
            if last is None:
                return _skip(run, team, "no events: nothing to train")
            what = f"version {last.version}" + (" (rejected)" if last.status == "rejected" else "")
            return _skip(run, team, f"nothing stored since the last rebuild, {what}")
        _train(s, run, team, from_scratch=True)
    return run.events


def _skip(run: _Run, team: str, why: str) -> int:
    run.status, run.events, run.meta["detail"] = "skipped", 0, why
    log.info("%s %s: skipped: %s", run.meta["run"], team, why)
    return 0


def _last_attempt(store: EventStore, team: str, current: StoredAdapter) -> StoredAdapter:
    """The newest version trained on top of ``current`` (a rejected update), else ``current``."""
    later = [v for v in store.adapter_versions(team)
             if v.version > current.version and v.manifest.get("parent_version") == current.version]
    return later[-1] if later else current


def _last_sleep(store: EventStore, team: str) -> StoredAdapter | None:
    """The team's newest version trained from scratch, published or rejected."""
    return next((v for v in reversed(store.adapter_versions(team)) if v.manifest.get("from_scratch")), None)


def _train(s: Scheduler, run: _Run, team: str, *, from_scratch: bool) -> Job:
    """Queue the team's training job of this speed and see it to its end (run by this scheduler's
    thread, or by another worker sharing the queue); records it on ``run``."""
    jobs = Jobs(s.store)
    job = jobs.submit(team, from_scratch=from_scratch)
    if job.from_scratch != from_scratch:
        # The queue holds one job per team: one of the other speed is there (an update when the
        # night comes). Let it finish, then queue ours: a sleep must not count an update as a rebuild.
        log.info("%s %s: waiting for training job %s (%s) first", run.meta["run"], team, job.id,
                 "from scratch" if job.from_scratch else "continual")
        _see_through(s, jobs, job)
        job = jobs.submit(team, from_scratch=from_scratch)
        if job.from_scratch != from_scratch:
            raise TrainingError(f"another training job of {team} ({job.id}) was queued meanwhile; retrying later")
    log.info("%s %s: training %s on %d events (job %s)", run.meta["run"], team,
             "from scratch" if from_scratch else "continual", run.events, job.id)
    current = _see_through(s, jobs, job)
    if current.status != "succeeded":
        raise TrainingError(f"training job {job.id} for {team} {current.status}: {current.message or ''}")
    published = current.message == "published"  # run_job's message: "published" or "gate failed: ..."
    run.status = "ok" if published else "rejected"
    run.meta.update(train_job=job.id, version=current.version, published=published, from_scratch=from_scratch,
                    detail=f"v{current.version} {'from scratch' if from_scratch else 'continual'}, "
                           f"{current.message}")
    log.info("%s %s: %d events -> version %s (%s)", run.meta["run"], team, run.events, current.version,
             current.message)
    return current


def _see_through(s: Scheduler, jobs: Jobs, job: Job) -> Job:
    """Wait for ``job`` to end, running queued jobs in this thread meanwhile (at most one training
    at a time); cancelled when the scheduler stops (the retry resumes from its checkpoint)."""
    s._training.add(job.id)
    try:
        while (current := jobs.get(job.id)) is not None and current.status in ACTIVE:
            if s._stopping.is_set():
                jobs.cancel(job.id)
                raise TrainingError(f"the scheduler stopped: training job {job.id} cancelled "
                                    "(the retry resumes from its checkpoint)")
            claimed = jobs.claim()  # ours, or one queued before it
            if claimed is not None:
                run_job(jobs, claimed, s.settings, s.config.train_overrides or None)
            else:  # another worker (the server's) runs it: wait for it
                s._stopping.wait(s.config.tick)
    finally:
        s._training.discard(job.id)
    if current is None:
        raise TrainingError(f"training job {job.id} for {job.team} vanished from the queue")
    return current
