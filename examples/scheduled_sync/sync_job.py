"""A scheduled sync job: keep a deployment's connections synced on an interval, in your own process.

It runs the SDK's scheduler (APScheduler, its job store in the deployment's own database; the one
``engram schedule run`` runs), so it gets what that gets: one incremental sync job per connection,
coalesced missed runs, one running instance per job, retries from the next tick, and a database
lock that stops a second copy of this job from starting. Each run continues from the connection's
checkpoint, which the sync runner saves with every page of stored events, so a job that was
stopped or killed resumes where it left off.

    python -m examples.scheduled_sync.sync_job --every 30
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from engram_sdk import EventStore, Settings
from engram_sdk.scheduler import JobView, ScheduleConfig, Scheduler, SchedulerLocked, list_jobs, request

log = logging.getLogger("partner.sync")


def sync_jobs(store: EventStore) -> list[JobView]:
    return [j for j in list_jobs(store) if j.kind == "sync"]


@contextmanager
def running(settings: Settings, *, every: float, tick: float = 2.0) -> Iterator[Scheduler]:
    """Run the deployment's scheduler with syncs every ``every`` seconds until the block ends."""
    store = EventStore.open(settings.database_url)
    try:
        with Scheduler(store, settings, ScheduleConfig(sync_interval=every, tick=tick,
                                                       lease=max(30.0, 2 * tick))) as scheduler:
            # A restarted job catches up at once instead of waiting out a whole interval (a new
            # connection syncs at once anyway).
            for job in sync_jobs(store):
                if job.runs:
                    request(store, job.id, "run-now")
            yield scheduler
    finally:
        store.close()


def summary(store: EventStore) -> list[str]:
    return [f"{j.id}: {j.runs} run(s), last {j.last_status or 'none yet'}"
            f"{f' ({j.last_events} new events)' if j.last_events is not None else ''}"
            f"{f', error: {j.last_error}' if j.last_error else ''}" for j in sync_jobs(store)]


def main() -> int:
    p = argparse.ArgumentParser(description="sync every connection of ENGRAM_HOME's deployment on an interval")
    p.add_argument("--every", type=float, default=900.0, help="seconds between syncs of a connection")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("apscheduler", "httpx"):  # every tick and every platform request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    stop = threading.Event()
    # SIGTERM (a container stop, systemd) as well as Ctrl-C: a clean stop releases the lock at once.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = Settings.load()
    try:
        with running(settings, every=args.every) as scheduler:
            while not stop.wait(60) and not scheduler.stopped.is_set():
                for line in summary(scheduler.store):
                    log.info("%s", line)
            if scheduler.lost_lock:  # another scheduler took over: exit non-zero for the supervisor
                log.error("%s", scheduler.lost_lock)
                return 1
    except SchedulerLocked as exc:
        log.error("%s", exc)  # another copy of this job (or `engram schedule run`) holds the lock
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
