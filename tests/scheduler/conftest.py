"""The scheduler's tests reuse the connector framework's fixtures: the example connector's sandbox
on loopback and a ``harness`` deployment (SQLite file, real keyring) connected to it as "ex"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engram_sdk._scheduler import JobView, ScheduleConfig, Scheduler, list_jobs, lock_info
from engram_sdk.testing import Harness
from tests.framework.conftest import admin, clock, example_config, harness, sandbox, server  # noqa: F401
from tests.waiting import wait_until

TICK = 0.25  # seconds: every test runs many ticks in well under a second each


def job(h: Harness, job_id: str) -> JobView:
    return next(j for j in list_jobs(h.store) if j.id == job_id)


def ticks(h: Harness) -> int:
    held = lock_info(h.store)
    assert held is not None
    return held.ticks


def within_one_tick(h: Harness) -> None:
    """Return once a whole tick has run after this call (the tick that started next, complete)."""
    start = ticks(h)
    wait_until(lambda: ticks(h) >= start + 2, timeout=10, what="two ticks")


@pytest.fixture
def start(harness: Harness) -> Iterator[Callable[..., Scheduler]]:
    """Start an in-process scheduler on the harness deployment (stopped at the end of the test)."""
    started: list[Scheduler] = []

    def _start(settings: Any = None, **config: Any) -> Scheduler:
        cfg = ScheduleConfig(**{"tick": TICK, "lease": 5.0, "sync_interval": 3600.0, **config})
        s = Scheduler(harness.store, settings or harness.settings, cfg, keyring=harness.keyring,
                      secrets=harness.secrets)
        s.start()
        started.append(s)
        return s

    yield _start
    for s in started:
        if not s.stopped.is_set():
            s.stop()
