"""The scheduler against the example connector's sandbox: jobs, counts, the lock, requests from
another process, retries after failures, and the nightly training job."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from engram_sdk._exceptions import SchedulerLocked
from engram_sdk._jobs import Jobs
from engram_sdk._pgtemp import temporary_database
from engram_sdk import _schema as t
from engram_sdk._scheduler import ScheduleConfig, Scheduler, lock_info, request
from engram_sdk._status import collect
from engram_sdk.testing import Harness

from tests.framework.conftest import example_config
from tests.training.conftest import tiny_model  # noqa: F401
from tests.waiting import wait_until

from .conftest import TICK, job, within_one_tick

TOKEN = "tok-example-1"
# as small as a real run gets: what is tested is the scheduling, not what the adapter learns
FAST_TRAINING = dict(epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0, checkpoint_every=1000,
                     max_new_tokens=4, general_max_new_tokens=4, eval_batch_size=64, replay_general=0.0,
                     max_len=128, rank=4, alpha=8, target_modules=["q_proj", "v_proj"])


def test_sync_runs_at_once_and_counts_its_events(harness, start, admin, caplog) -> None:
    caplog.set_level(logging.INFO, logger="engram.scheduler")
    start()
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
    first = job(harness, "sync:ex")
    assert first.last_status == "ok" and first.last_events == 12 == harness.event_count()
    assert first.next_run_at is not None and first.paused is False
    assert "sync ex: 12 new events" in caplog.text

    sleep = job(harness, "sleep:acme")  # one nightly training per team, at 02:00 UTC
    assert sleep.next_run_at is not None and (sleep.next_run_at.hour, sleep.next_run_at.minute) == (2, 0)
    assert sleep.runs == 0

    admin.op("add_note", id="note-new", folder="eng", title="New", text="A new fact.")
    request(harness.store, "sync:ex", "run-now")
    wait_until(lambda: job(harness, "sync:ex").runs == 2, what="the second sync")
    assert job(harness, "sync:ex").last_events == 1 and harness.event_count() == 13


def test_a_new_connection_gets_its_own_job_and_interval(harness, server, start) -> None:
    s = start(intervals={"ex2": 1800.0})
    harness.connect("example", "ex2", scope="folder:eng", config=example_config(server))
    within_one_tick(harness)
    jobs = {j.id: j for j in s._aps.get_jobs(jobstore="default")}
    assert str(jobs["sync:ex"].trigger) == "interval[1:00:00]"
    assert str(jobs["sync:ex2"].trigger) == "interval[0:30:00]"
    assert str(jobs["update:acme"].trigger) == "interval[0:15:00]"  # the daytime update's default
    assert {"sleep:acme", "update:acme", "sync:ex", "sync:ex2"} == set(jobs)
    for j in jobs.values():
        assert j.coalesce is True and j.max_instances == 1 and j.misfire_grace_time == 3600
    harness.connections.remove("ex2", harness.secrets)
    within_one_tick(harness)
    assert {j.id for j in s._aps.get_jobs(jobstore="default")} == {"sleep:acme", "update:acme", "sync:ex"}


def test_pause_resume_run_now_from_another_process_take_effect_within_one_tick(harness, start, admin) -> None:
    start()
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")

    assert harness.cli("schedule", "pause", "sync:ex").returncode == 0
    within_one_tick(harness)
    assert job(harness, "sync:ex").paused and job(harness, "sync:ex").next_run_at is None

    admin.op("add_note", id="note-new", folder="eng", title="New", text="A new fact.")
    done = harness.cli("schedule", "run-now", "ex")  # a connection name names its sync job
    assert done.returncode == 0 and "within one tick" in done.stdout
    within_one_tick(harness)
    assert not job(harness, "sync:ex").run_now_requested
    wait_until(lambda: job(harness, "sync:ex").last_finished_at and job(harness, "sync:ex").runs == 2,
               what="the requested run")
    assert job(harness, "sync:ex").last_events == 1
    within_one_tick(harness)
    assert job(harness, "sync:ex").next_run_at is None  # a run-now does not resume a paused job

    assert harness.cli("schedule", "resume", "sync:ex").returncode == 0
    within_one_tick(harness)
    view = job(harness, "sync:ex")
    assert not view.paused and view.next_run_at is not None

    listed = harness.cli("schedule", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    out = json.loads(listed.stdout.strip().splitlines()[-1])
    assert out["scheduler"]["alive"] is True
    row = next(j for j in out["jobs"] if j["id"] == "sync:ex")
    assert row["runs"] == 2 and row["last_events"] == 1 and row["last_status"] == "ok" and row["paused"] is False
    assert row["next_run_at"] is not None
    table = harness.cli("schedule", "list")
    assert "sync:ex" in table.stdout and "sleep:acme" in table.stdout


def test_schedule_list_at_80_columns_shows_every_header_and_fits(harness, start) -> None:
    start()
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
    request(harness.store, "sleep:acme", "pause")
    within_one_tick(harness)
    # a terminal 80 columns wide, as rich sees one (TTY_COMPATIBLE), without colour codes
    env = {**harness.env(), "COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    r = subprocess.run(harness.cli_args("schedule", "list"), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout).splitlines()
    header = next(line for line in lines if " job " in line)
    assert re.findall(r"┃ *([^┃]*?) *(?=┃)", header) == ["job", "next run", "last run", "result", "runs"]
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if "sync:ex" in line)
    assert "ok, 12 events" in row and "│ 1 " in row
    assert "paused" in next(line for line in lines if "sleep:acme" in line)


def test_unknown_job_is_a_one_line_error(harness) -> None:
    r = harness.cli("schedule", "pause", "nope")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["error: no scheduled job 'nope': see `engram schedule list`"]


def test_a_failed_run_is_retried_at_the_next_tick_and_keeps_its_checkpoint(harness, start, admin, caplog) -> None:
    caplog.set_level(logging.INFO, logger="engram.scheduler")
    # page_size 5: the first page (1 change-log call, 1 workspace call, 5 notes) is stored with its
    # checkpoint, then the token dies: the run raises.
    admin.revoke(TOKEN, after=7)
    start()
    wait_until(lambda: job(harness, "sync:ex").failures >= 1, what="the failed run")
    failed = job(harness, "sync:ex")
    assert failed.last_status in ("error", "running") and "rejected the token" in failed.last_error
    assert harness.checkpoint("ex") == {"after": 5} and harness.event_count() == 5
    assert "sync:ex failed after" in caplog.text and "(5 new events stored)" in caplog.text

    # retried from the next tick (not after the hour-long interval), still failing: nothing moves
    wait_until(lambda: job(harness, "sync:ex").failures >= 2, timeout=3 * TICK + 5, what="the retry")
    assert harness.checkpoint("ex") == {"after": 5} and harness.event_count() == 5

    admin.restore()
    wait_until(lambda: job(harness, "sync:ex").last_status == "ok", what="a successful retry")
    ok = job(harness, "sync:ex")
    assert ok.failures == 0 and ok.retry_at is None
    assert ok.last_events == 7  # resumed from the checkpoint: only the rest was new
    assert harness.checkpoint("ex") == {"after": 12} and harness.event_count() == 12


def test_second_scheduler_is_refused_until_the_first_lease_goes_stale(harness) -> None:
    first = subprocess.Popen(harness.cli_args("schedule", "run", "--tick", "0.2", "--lease", "3"),
                             env=harness.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        held = wait_until(lambda: (h := lock_info(harness.store)) and f":{first.pid}:" in h.owner and h, timeout=30,
                          what="the first scheduler's lock")
        second = harness.cli("schedule", "run", "--tick", "0.2", "--lease", "3")
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: another scheduler is running (")
        assert held.owner in errors[0]
    finally:
        os.kill(first.pid, signal.SIGKILL)  # dies without releasing the lock
        first.wait()

    config = ScheduleConfig(tick=TICK, lease=3.0, sync_interval=3600.0)
    s = Scheduler(harness.store, harness.settings, config, keyring=harness.keyring, secrets=harness.secrets)
    if lock_info(harness.store).alive():
        with pytest.raises(SchedulerLocked):
            s.start()
    wait_until(lambda: not lock_info(harness.store).alive(), timeout=6, what="the lease to expire")
    s.start()
    try:
        assert s.took_over_from is not None and s.took_over_from.owner == held.owner
        assert lock_info(harness.store).owner == s.owner
        within_one_tick(harness)  # it ticks, and runs the jobs the dead one left
        wait_until(lambda: job(harness, "sync:ex").last_status == "ok", what="a sync by the new scheduler")
        assert harness.event_count() == 12
    finally:
        s.stop()
    assert lock_info(harness.store) is None  # a clean stop releases the lock


def test_a_scheduler_that_lost_its_lock_stops(harness, start) -> None:
    s = start()
    with harness.store._write() as conn:  # what a takeover after a long stall looks like to the holder
        conn.execute(t.scheduler_lock.update().values(owner="elsewhere:1:abc"))
    wait_until(s.stopped.is_set, timeout=10, what="the scheduler to stop")
    assert s.lost_lock and "elsewhere:1:abc" in s.lost_lock
    assert lock_info(harness.store).owner == "elsewhere:1:abc"  # not released: it is not ours


def test_sleep_skips_a_team_without_new_events_and_records_a_failed_training(harness, start, tmp_path) -> None:
    request(harness.store, "sync:ex", "pause")
    missing = dataclasses.replace(harness.settings, base_model=str(tmp_path / "no-such-model.gguf"))
    start(settings=missing)
    within_one_tick(harness)
    assert job(harness, "sync:ex").runs == 0  # paused before it ever ran

    request(harness.store, "sleep:acme", "run-now")
    wait_until(lambda: job(harness, "sleep:acme").runs == 1, what="the sleep run")
    assert job(harness, "sleep:acme").last_status == "skipped" and job(harness, "sleep:acme").last_events == 0
    assert Jobs(harness.store).list("acme") == []

    request(harness.store, "sync:ex", "run-now")
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="a sync")
    request(harness.store, "sleep:acme", "run-now")
    wait_until(lambda: job(harness, "sleep:acme").runs == 2, timeout=120, what="the training run")
    sleep = job(harness, "sleep:acme")
    assert sleep.last_status == "error" and sleep.last_events == 12
    [train] = Jobs(harness.store).list("acme")
    assert train.status == "failed" and sleep.last_error.startswith(f"training job {train.id} for acme failed")
    assert "no-such-model.gguf, which does not exist" in sleep.last_error



def test_on_postgresql(tmp_path, server, clock) -> None:
    """The same lock, job store and requests on PostgreSQL (a scratch database on the test server)."""
    with temporary_database(prefix="engram_test") as url:
        h = Harness(tmp_path / "pg-home", clock=clock, database_url=url)
        try:
            h.connect("example", "ex", scope="all", config=example_config(server))
            config = ScheduleConfig(tick=TICK, lease=5.0, sync_interval=3600.0)
            with Scheduler(h.store, h.settings, config, keyring=h.keyring, secrets=h.secrets):
                wait_until(lambda: job(h, "sync:ex").runs == 1, what="the first sync")
                assert job(h, "sync:ex").last_events == 12 == h.event_count()
                env = {**h.env(), "ENGRAM_DATABASE_URL": url, "ENGRAM_SECRETS": "file"}
                second = subprocess.run(h.cli_args("schedule", "run"), env=env, capture_output=True, text=True,
                                        timeout=60)
                assert second.returncode == 1
                assert second.stderr.strip().startswith("error: another scheduler is running (")
                assert len(second.stderr.strip().splitlines()) == 1
                paused = subprocess.run(h.cli_args("schedule", "pause", "sync:ex"), env=env, capture_output=True,
                                        text=True, timeout=60)
                assert paused.returncode == 0, paused.stderr
                within_one_tick(h)
                assert job(h, "sync:ex").paused and job(h, "sync:ex").next_run_at is None
            assert lock_info(h.store) is None
        finally:
            h.close()


def test_sleep_trains_the_team_on_new_events_then_skips_until_more_arrive(harness, start, tiny_model) -> None:
    settings = dataclasses.replace(harness.settings, base_model=str(tiny_model))
    start(settings=settings, train_overrides=FAST_TRAINING)
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
    request(harness.store, "sleep:acme", "run-now")
    wait_until(lambda: job(harness, "sleep:acme").runs == 1, timeout=180, what="the training run")
    sleep = job(harness, "sleep:acme")
    assert sleep.last_status == "ok" and sleep.last_events == 12, sleep.last_error
    [train] = Jobs(harness.store).list("acme")
    assert train.status == "succeeded" and train.version == 1

    request(harness.store, "sleep:acme", "run-now")
    wait_until(lambda: job(harness, "sleep:acme").runs == 2, what="the second sleep")
    assert job(harness, "sleep:acme").last_status == "skipped" and job(harness, "sleep:acme").last_events == 0
    assert len(Jobs(harness.store).list("acme")) == 1


def test_engram_schedule_run_logs_each_run_and_releases_the_lock_on_sigterm(harness) -> None:
    proc = subprocess.Popen(harness.cli_args("schedule", "run", "--tick", "0.2", "--lease", "2"), env=harness.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: harness.event_count() == 12 and job(harness, "sync:ex").last_status == "ok", timeout=30,
                   what="the scheduler's first sync")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "sync ex: 12 new events" in err and "scheduled sleep:acme" in err
    assert "scheduler stopped" in out
    assert lock_info(harness.store) is None


def test_status_shows_a_retry_under_way_as_due_not_at_the_next_scheduled_time(harness, start, admin) -> None:
    admin.revoke(TOKEN)
    s = start()
    wait_until(lambda: job(harness, "sync:ex").failures >= 1 and job(harness, "sync:ex").last_status == "error",
               what="the failed run")
    s.stop()
    now = datetime.now(timezone.utc)
    status = collect(harness.settings, now=now)
    waiting = datetime.fromisoformat(status["connections"][0]["next_sync_at"])
    assert waiting == job(harness, "sync:ex").retry_at.replace(microsecond=0)  # the retry, to the second
    assert waiting < now + timedelta(minutes=5)
    assert status["scheduler"]["failing"] == ["sync:ex"]

    # what a tick leaves as it starts the retry (and a scheduler killed during it): the retry time
    # cleared, the job's schedule an hour away; status must say the sync is due, not in an hour
    with harness.store._write() as conn:
        conn.execute(t.scheduler_jobs.update().where(t.scheduler_jobs.c.job_id == "sync:ex")
                     .values(retry_at=None, last_status="running"))
    assert job(harness, "sync:ex").next_run_at > now + timedelta(minutes=50)
    status = collect(harness.settings, now=now)
    assert datetime.fromisoformat(status["connections"][0]["next_sync_at"]) == now.replace(microsecond=0)
    assert status["scheduler"]["failing"] == ["sync:ex"]  # failing until the retry succeeds
    request(harness.store, "sync:ex", "pause")
    assert collect(harness.settings, now=now)["connections"][0]["paused"] is True
