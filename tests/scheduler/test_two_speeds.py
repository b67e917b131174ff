"""The two speeds of training: the daytime update (``update:<team>``, continual, only on new
events and never beside another training job of the team) and the nightly sleep (``sleep:<team>``,
a rebuild from scratch, skipped when nothing changed since the last one). Real scheduler, real
SQLite store file, the example connector's sandbox, and the tiny random model for training."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
from typing import Any

import sqlalchemy as sa

from engram_sdk import _schema as t
from engram_sdk._jobs import Jobs
from engram_sdk._scheduler import JobView, list_jobs, request
from engram_sdk.testing import Harness

from tests.training import conftest as training
from tests.waiting import wait_until

from .conftest import job, within_one_tick
from .test_scheduler import FAST_TRAINING

tiny_model = training.tiny_model  # the fixture: a tiny random model, made once per session
HOUR = 3600.0  # the update interval of these tests: runs come from run-now requests, not the clock
FAST = {**FAST_TRAINING, "eval_baselines": []}  # what is tested is which run happens, not its figures


def run(h: Harness, job_id: str, timeout: float = 180) -> JobView:
    """Ask for one run of ``job_id`` now and return the job once that run has finished."""
    before = job(h, job_id).runs
    request(h.store, job_id, "run-now")
    wait_until(lambda: job(h, job_id).runs > before and job(h, job_id).last_status != "running", timeout=timeout,
               what=f"a run of {job_id}")
    return job(h, job_id)


def sync(h: Harness) -> None:
    run(h, "sync:ex", timeout=60)
    assert job(h, "sync:ex").last_status == "ok", job(h, "sync:ex").last_error


def tiny(h: Harness, model: Any) -> Any:
    return dataclasses.replace(h.settings, base_model=str(model))


def test_the_update_trains_continual_only_on_new_events_and_never_beside_another_job(harness, start, admin,
                                                                                     tiny_model) -> None:
    start(settings=tiny(harness, tiny_model), train_overrides=FAST, update_interval=HOUR)
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
    store, jobs = harness.store, Jobs(harness.store)

    first = run(harness, "update:acme")  # no adapter yet: the first one costs the workspace, a sleep's job
    assert first.last_status == "skipped" and first.meta["run"] == "update"
    assert first.meta["detail"].startswith("no adapter yet")
    assert jobs.list("acme") == [] and store.adapter_versions("acme") == []

    assert run(harness, "sleep:acme").last_status == "ok"
    assert store.current_adapter_version("acme") == 1

    idle = run(harness, "update:acme")  # nothing stored after version 1
    assert idle.last_status == "skipped" and idle.meta["detail"] == "nothing stored since version 1"
    assert len(jobs.list("acme")) == 1

    admin.op("add_note", id="note-new", folder="eng", title="New", text="The build server is named Quokka.")
    sync(harness)
    blocker = jobs.submit("acme")  # queued, as one the server's worker has not taken yet
    busy = run(harness, "update:acme")
    assert busy.last_status == "skipped"
    assert busy.meta["detail"] == f"training job {blocker.id} of the team is already queued"
    assert len(jobs.list("acme")) == 2 and len(store.adapter_versions("acme")) == 1
    jobs.cancel(blocker.id)

    update = run(harness, "update:acme")
    assert update.last_status == "ok" and update.last_events == 1, update.last_error
    assert update.meta["run"] == "update" and update.meta["published"] is True and update.meta["version"] == 2
    train = jobs.get(update.meta["train_job"])
    assert train is not None and train.status == "succeeded" and train.from_scratch is False
    v2 = store.adapter_version("acme")
    assert v2 is not None and v2.version == 2
    assert v2.manifest["parent_version"] == 1 and v2.manifest["from_scratch"] is False

    # what `engram schedule list` and `engram status` say about it
    listed = harness.cli("schedule", "list")
    assert listed.returncode == 0, listed.stderr
    assert "update:acme: ok: v2 continual, published" in listed.stdout
    status = harness.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    (team,) = json.loads(status.stdout.strip().splitlines()[-1])["teams"]
    assert team["update"]["version"] == 2 and team["update"]["detail"] == "v2 continual, published"
    assert team["sleep"]["detail"] == "v1 from scratch, published"
    assert team["adapter"]["from_scratch"] is False and team["adapter"]["parent_version"] == 1


def test_the_sleep_rebuilds_from_scratch_without_deleted_pages_then_skips_until_something_changes(
        harness, start, admin, tiny_model) -> None:
    start(settings=tiny(harness, tiny_model), train_overrides=FAST, update_interval=HOUR)
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
    store, jobs = harness.store, Jobs(harness.store)
    assert run(harness, "sleep:acme").last_status == "ok"

    admin.op("add_note", id="note-new", folder="eng", title="New", text="The build server is named Quokka.")
    sync(harness)
    assert run(harness, "update:acme").last_status == "ok"
    v2 = store.adapter_version("acme")
    assert v2 is not None and v2.version == 2 and "note-0003" in v2.manifest["entities_in_weights"]

    admin.op("delete_note", id="note-0003")
    sync(harness)
    sleep = run(harness, "sleep:acme")
    assert sleep.last_status == "ok", sleep.last_error
    assert sleep.last_events == 2  # stored after the last rebuild (version 1): the new note and the deletion
    assert sleep.meta["run"] == "sleep" and sleep.meta["from_scratch"] is True and sleep.meta["version"] == 3
    train = jobs.get(sleep.meta["train_job"])
    assert train is not None and train.from_scratch is True
    v3 = store.adapter_version("acme")
    assert v3 is not None and v3.version == 3
    assert v3.manifest["from_scratch"] is True and v3.manifest["parent_version"] is None
    assert "note-0003" not in v3.manifest["entities_in_weights"]  # the deleted page left the weights
    assert "note-new" in v3.manifest["entities_in_weights"]  # the day's update is folded in

    again = run(harness, "sleep:acme")
    assert again.last_status == "skipped" and again.last_events == 0
    assert again.meta["detail"] == "nothing stored since the last rebuild, version 3"
    assert len(jobs.list("acme")) == 3 and len(store.adapter_versions("acme")) == 3


def test_a_rejected_sleep_leaves_the_previous_version_serving(harness, start, admin, tiny_model, tmp_path) -> None:
    first = start(settings=tiny(harness, tiny_model), train_overrides=FAST, update_interval=HOUR)
    wait_until(lambda: job(harness, "sync:ex").runs == 1, what="the first sync")
    store, jobs = harness.store, Jobs(harness.store)
    assert run(harness, "sleep:acme").last_status == "ok"
    first.stop()

    admin.op("add_note", id="note-new", folder="eng", title="New", text="The build server is named Quokka.")
    # gates no version can pass: recall of at least 1.1
    second = start(settings=tiny(harness, tiny_model), train_overrides={**FAST, "min_recall": 1.1},
                   update_interval=HOUR)
    sync(harness)
    sleep = run(harness, "sleep:acme")
    assert sleep.last_status == "rejected" and sleep.last_error is None and sleep.retry_at is None
    assert sleep.meta["published"] is False and sleep.meta["version"] == 2
    assert store.current_adapter_version("acme") == 1  # the previous version keeps serving
    v2 = store.adapter_version("acme", 2)
    assert v2 is not None and v2.status == "rejected" and v2.manifest["from_scratch"] is True

    # the same content would be rejected the same way: not retrained until something changes
    again = run(harness, "sleep:acme")
    assert again.last_status == "skipped"
    assert again.meta["detail"] == "nothing stored since the last rebuild, version 2 (rejected)"

    # the update still continues version 1 (the rejected rebuild is not its parent), once
    update = run(harness, "update:acme")
    assert update.last_status == "rejected" and update.meta["version"] == 3
    v3 = store.adapter_version("acme", 3)
    assert v3 is not None and v3.manifest["parent_version"] == 1 and v3.status == "rejected"
    assert store.current_adapter_version("acme") == 1
    idle = run(harness, "update:acme")
    assert idle.last_status == "skipped" and idle.meta["detail"] == "nothing stored since version 3 (rejected)"
    assert len(jobs.list("acme")) == 3
    second.stop()

    # a failing update is recorded and retried like any scheduler job; nothing stored is lost
    events = harness.event_count()
    admin.op("add_note", id="note-later", folder="eng", title="Later", text="The deploy window is Tuesday.")
    start(settings=dataclasses.replace(harness.settings, base_model=str(tmp_path / "no-such-model.gguf")),
          update_interval=HOUR)
    sync(harness)
    request(harness.store, "update:acme", "run-now")
    wait_until(lambda: job(harness, "update:acme").failures >= 1, timeout=120, what="the failed update")
    failed = job(harness, "update:acme")
    assert "no-such-model.gguf, which does not exist" in failed.last_error
    assert jobs.list("acme")[0].status == "failed" and jobs.list("acme")[0].from_scratch is False
    wait_until(lambda: job(harness, "update:acme").failures >= 2, timeout=60, what="its retry")
    assert harness.event_count() == events + 1 and store.current_adapter_version("acme") == 1


def test_turning_daytime_updates_off_removes_their_job(harness, start) -> None:
    s = start()  # by default every team gets a daytime update
    within_one_tick(harness)
    assert {j.id for j in s._aps.get_jobs(jobstore="default")} == {"sync:ex", "update:acme", "sleep:acme"}
    assert [j.id for j in list_jobs(harness.store)] == ["sync:ex", "update:acme", "sleep:acme"]
    s.stop()

    proc = subprocess.Popen(harness.cli_args("schedule", "run", "--update-interval", "off", "--tick", "0.2",
                                             "--lease", "2"),
                            env=harness.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: [j.id for j in list_jobs(harness.store)] == ["sync:ex", "sleep:acme"], timeout=60,
                   what="the update job to go")
        refused = harness.cli("schedule", "pause", "update:acme")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "removed update:acme" in err
    with harness.store.engine.connect() as conn:  # gone from APScheduler's own job store too
        assert conn.execute(sa.select(t.apscheduler_jobs.c.id)
                            .where(t.apscheduler_jobs.c.id == "update:acme")).first() is None
    assert refused.returncode == 1
    assert "daytime updates are scheduled while a scheduler runs with them on" in refused.stderr
