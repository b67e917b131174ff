"""The scheduler (APScheduler 3, its job store in the deployment's own database) for code that runs
it in its own process rather than through ``engram schedule run``. See ``engram_sdk._scheduler``
and docs/scheduler.md::

    from engram_sdk.scheduler import ScheduleConfig, Scheduler, list_jobs

    with Scheduler(store, settings, ScheduleConfig(sync_interval=300)):
        ...                                    # syncs every 5 minutes, updates every 15, rebuilds nightly
    for job in list_jobs(store): print(job.id, job.runs, job.last_events)
"""

from ._exceptions import SchedulerLocked
from ._scheduler import JobView, LockInfo, ScheduleConfig, Scheduler, list_jobs, lock_info, request

__all__ = [
    "JobView",
    "LockInfo",
    "ScheduleConfig",
    "Scheduler",
    "SchedulerLocked",
    "list_jobs",
    "lock_info",
    "request",
]
