"""examples/scheduled_sync against the Notion sandbox on loopback: the job syncs on its interval and
the events land in the store; stopped and started again, it resumes from the connection's
checkpoint (only what changed is read and stored); a second copy cannot start beside it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engram_notion.sandbox import NotionSandbox
from engram_sdk._sandbox import serve
from engram_sdk.scheduler import SchedulerLocked, lock_info
from engram_sdk.testing import Harness
from examples.scheduled_sync.sync_job import running, summary, sync_jobs

from tests.waiting import wait_until

PAGES = 6
REPO = Path(__file__).resolve().parents[2]


def page_id(i: int) -> str:
    return str(uuid.UUID(int=(0xA << 120) + i))


def workspace() -> dict:
    """Pages last edited an hour apart, the newest an hour ago, so an incremental sync has an
    older part to skip."""
    newest = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)

    def page(i: int) -> dict:
        when = (newest - timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {"object": "page", "id": page_id(i), "created_time": when, "last_edited_time": when,
                "properties": {"title": {"type": "title", "title": [{"text": {"content": f"Page {i}"}}]}},
                "children": [{"type": "paragraph",
                              "paragraph": {"rich_text": [{"text": {"content": f"Fact {i} of the team."}}]}}]}

    return {"pages": [page(i) for i in range(PAGES)]}


@pytest.fixture
def deployment(tmp_path):
    h = Harness(tmp_path / "home", team="acme")
    with serve(NotionSandbox(workspace())) as notion:
        h.connect("notion", "acme-notion", scope="all",
                  config={"token": "secret_sandbox", "base_url": notion.url, "requests_per_second": 100})
        yield h, notion.admin
    h.close()


def job(h: Harness):
    (only,) = sync_jobs(h.store)
    return only


def test_the_job_syncs_on_its_interval_and_events_land_in_the_store(deployment):
    h, notion = deployment
    with running(h.settings, every=0.5, tick=0.25):
        wait_until(lambda: job(h).runs >= 1, what="the first sync")
        first = job(h)
        assert first.last_status == "ok" and first.last_events == PAGES == h.event_count()
        wait_until(lambda: job(h).runs >= 3, what="two more runs on the interval")
    assert job(h).last_status == "ok" and job(h).last_events == 0 and h.event_count() == PAGES
    texts = {r.entity_id: r.text for r in (e.event.record for e in h.store.iter_events("acme"))}
    assert texts == {page_id(i): f"Fact {i} of the team." for i in range(PAGES)}
    (line,) = summary(h.store)
    assert re.fullmatch(r"sync:acme-notion: [34] run\(s\), last ok \(0 new events\)", line), line


def test_a_restarted_job_resumes_from_the_checkpoint(deployment):
    h, notion = deployment
    with running(h.settings, every=3600, tick=0.25):
        wait_until(lambda: job(h).runs == 1 and job(h).last_status == "ok", what="the first sync")
    checkpoint = h.checkpoint("acme-notion")
    assert checkpoint and checkpoint["watermark"]
    assert h.event_count() == PAGES

    notion.op("edit_page", id=page_id(3), text="Fact 3 changed: the review moved to Friday.")
    notion.reset_stats()
    with running(h.settings, every=3600, tick=0.25):  # an hour's interval: only the restart runs it
        wait_until(lambda: job(h).runs == 2 and job(h).last_status == "ok", what="the catch-up sync")
    assert job(h).last_events == 2  # the page's new version and the edit record
    records = [e.event.record for e in h.store.iter_events("acme")]
    assert [(r.entity_id, r.after) for r in records if r.kind == "edit"] == [
        (page_id(3), "Fact 3 changed: the review moved to Friday.")]
    # Resumed, not restarted: only the edited page and the page at the old watermark's minute
    # (it could have changed again within that minute) were read; the four older pages were not.
    read = {path.split("/")[3] for path in notion.stats()["by_path"] if path.endswith("/children")}
    assert read == {page_id(3), page_id(0)}
    assert h.checkpoint("acme-notion")["watermark"] > checkpoint["watermark"]


def test_the_script_holds_the_lock_until_sigterm(deployment):
    h, _ = deployment
    script = subprocess.Popen([sys.executable, "-m", "examples.scheduled_sync.sync_job", "--every", "3600"],
                              cwd=REPO, env=h.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: sync_jobs(h.store) and job(h).runs == 1 and job(h).last_status == "ok",
                   timeout=60, what="the script's first sync")
        assert h.event_count() == PAGES
        with pytest.raises(SchedulerLocked, match="another scheduler is running"):
            with running(h.settings, every=3600):
                pass
    finally:
        script.send_signal(signal.SIGTERM)
        output = script.communicate(timeout=30)[0]
    assert script.returncode == 0, output
    assert "sync acme-notion: 6 new events" in output
    assert lock_info(h.store) is None  # released on SIGTERM: the next copy starts at once
    with running(h.settings, every=3600, tick=0.25):
        wait_until(lambda: job(h).runs == 2, what="the next copy's catch-up sync")
