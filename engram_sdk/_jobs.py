"""Training jobs: queued by the server (or the CLI), run by a worker in the server process or by
``engram worker`` on another host sharing the database. One running job per team at a time."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from . import _schema as t
from . import plugins
from ._config import Settings
from ._store import EventStore, as_utc

__all__ = ["Job", "Jobs", "run_job"]

log = logging.getLogger("engram.jobs")

ACTIVE = ("queued", "running")
PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class Job:
    id: str
    team: str
    status: str
    from_scratch: bool
    cancel_requested: bool
    message: str | None
    version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    step: int | None = None  # progress of a running (or finished) run: the step reached of total_steps
    total_steps: int | None = None
    progress_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _job(r: Any) -> Job:
    return Job(r.job_id, r.team_id, r.status, r.from_scratch, r.cancel_requested, r.message, r.version,
               as_utc(r.created_at), as_utc(r.started_at), as_utc(r.finished_at),
               r.step, r.total_steps, as_utc(r.progress_at))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Jobs:
    def __init__(self, store: EventStore):
        self.store = store

    def submit(self, team_id: str, *, from_scratch: bool = False) -> Job:
        """Queue a run; a team with a run already queued or running gets that one back."""
        with self.store._write() as conn:
            row = conn.execute(sa.select(t.train_jobs).where(t.train_jobs.c.team_id == team_id,
                                                            t.train_jobs.c.status.in_(ACTIVE))).first()
            if row is not None:
                return _job(row)
            job_id = secrets.token_hex(8)
            conn.execute(t.train_jobs.insert().values(
                job_id=job_id, team_id=team_id, status="queued", from_scratch=from_scratch,
                cancel_requested=False, created_at=_now()))
        return self.get(job_id)  # type: ignore[return-value]

    def active(self, team_id: str) -> Job | None:
        """The team's queued or running job, if any (there is at most one: ``submit`` reuses it)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.train_jobs).where(t.train_jobs.c.team_id == team_id,
                                                            t.train_jobs.c.status.in_(ACTIVE))).first()
        return _job(row) if row else None

    def get(self, job_id: str) -> Job | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.train_jobs).where(t.train_jobs.c.job_id == job_id)).first()
        return _job(row) if row else None

    def list(self, team_id: str, limit: int = 20) -> list[Job]:
        q = (sa.select(t.train_jobs).where(t.train_jobs.c.team_id == team_id)
             .order_by(t.train_jobs.c.created_at.desc()).limit(limit))
        with self.store.engine.connect() as conn:
            return [_job(r) for r in conn.execute(q)]

    def queued_count(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.train_jobs)
                                    .where(t.train_jobs.c.status == "queued")).scalar_one())

    def cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one stops at its next step."""
        with self.store._write() as conn:
            conn.execute(t.train_jobs.update().where(t.train_jobs.c.job_id == job_id,
                                                     t.train_jobs.c.status == "queued")
                         .values(status="cancelled", cancel_requested=True, finished_at=_now()))
            conn.execute(t.train_jobs.update().where(t.train_jobs.c.job_id == job_id,
                                                     t.train_jobs.c.status == "running")
                         .values(cancel_requested=True))
        return self.get(job_id)

    def claim(self) -> Job | None:
        """Take the oldest queued job (atomically: two workers never run the same one)."""
        with self.store._write() as conn:
            row = conn.execute(sa.select(t.train_jobs).where(t.train_jobs.c.status == "queued")
                               .order_by(t.train_jobs.c.created_at).limit(1)).first()
            if row is None:
                return None
            n = conn.execute(t.train_jobs.update().where(t.train_jobs.c.job_id == row.job_id,
                                                         t.train_jobs.c.status == "queued")
                             .values(status="running", started_at=_now())).rowcount
        return self.get(row.job_id) if n else None

    def cancel_requested(self, job_id: str) -> bool:
        job = self.get(job_id)
        return bool(job and job.cancel_requested)

    def report_progress(self, job_id: str, step: int, total_steps: int) -> None:
        """Record how far a running job is (what ``GET /v1/teams/{team}/train/{job_id}`` shows)."""
        with self.store._write() as conn:
            conn.execute(t.train_jobs.update().where(t.train_jobs.c.job_id == job_id)
                         .values(step=step, total_steps=total_steps, progress_at=_now()))

    def finish(self, job_id: str, status: str, *, message: str | None = None, version: int | None = None) -> None:
        with self.store._write() as conn:
            conn.execute(t.train_jobs.update().where(t.train_jobs.c.job_id == job_id)
                         .values(status=status, message=message, version=version, finished_at=_now()))


class _Cancelled(Exception):
    pass


def run_job(jobs: Jobs, job: Job, settings: Settings, overrides: dict[str, Any] | None = None) -> Job:
    """Run one claimed job to its end; the job row always ends in a final state.

    Cancellation is checked at every training step; a cancelled run keeps its checkpoint, so the
    next run resumes. Needs a trainer plugin (the ``train`` extra): without one the job fails,
    saying what to install."""

    written = 0.0

    def on_progress(p: Any) -> None:
        nonlocal written
        # A write every few seconds, not every step: a step can take well under a second on a GPU.
        if p.step >= p.total or time.monotonic() - written >= PROGRESS_EVERY_S:
            jobs.report_progress(job.id, p.step, p.total)
            written = time.monotonic()
        if jobs.cancel_requested(job.id):
            raise _Cancelled()

    try:
        result = plugins.trainer().train(job.team, store=jobs.store, settings=settings, overrides=overrides,
                                         from_scratch=job.from_scratch, on_progress=on_progress)
        message = "published" if result.published else "gate failed: " + "; ".join(result.reasons)
        jobs.finish(job.id, "succeeded", message=message, version=result.version)
    except _Cancelled:
        jobs.finish(job.id, "cancelled", message="cancelled; a rerun resumes from the last checkpoint")
    except Exception as exc:  # a failed run must not kill the worker; the reason goes on the job
        log.exception("training job %s for team %s failed", job.id, job.team)
        jobs.finish(job.id, "failed", message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return jobs.get(job.id)  # type: ignore[return-value]


def run_pending(jobs: Jobs, settings: Settings, overrides: dict[str, Any] | None = None) -> int:
    """Run queued jobs until none is left; returns how many ran."""
    n = 0
    while (job := jobs.claim()) is not None:
        run_job(jobs, job, settings, overrides)
        n += 1
    return n
