"""Stopping the scheduler while a tick runs: APScheduler's shutdown holds its job-store lock while it
waits for running jobs, and a tick needs that lock, so a stop must never wait on a tick that waits
on it (this deadlocked before the tick lock)."""

from __future__ import annotations

import random
import threading
import time

from engram_sdk._scheduler import ScheduleConfig, Scheduler

from tests.waiting import wait_until

from .conftest import job


def test_stop_during_ticks_never_deadlocks(harness) -> None:
    cfg = ScheduleConfig(tick=0.01, lease=5.0, sync_interval=3600.0)
    rng = random.Random(7)
    for attempt in range(60):  # ticks every 10 ms, stops at random points among them
        s = Scheduler(harness.store, harness.settings, cfg, keyring=harness.keyring, secrets=harness.secrets)
        s.start()
        if attempt == 0:
            wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
        time.sleep(rng.uniform(0, 0.05))
        stopper = threading.Thread(target=s.stop, daemon=True)
        stopper.start()
        stopper.join(timeout=10)
        assert not stopper.is_alive(), f"stop() hung on attempt {attempt}"
        assert s.stopped.is_set()
