"""`engram demo` end to end with the tiny model: sandboxes -> connections -> signed events ->
adapter -> server -> questions -> a live Notion edit through the webhook -> a continual version;
then a rerun that reuses all of it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engram_sdk import EventStore
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._records import Edit
from engram_sdk._webhooks import WebhookQueue
from engram_training.registry import Registry
from examples.kestrel_demo import CONNECTIONS, DEMO_FACTS

from .conftest import TINY_SET


def _store(root: Path) -> EventStore:
    return EventStore.open(f"sqlite:///{root / 'home' / 'engram.db'}")


def test_every_platform_synced_signed_and_verified(demo_runs):
    r = demo_runs.first
    assert set(r.events_by_platform) == {"notion", "microsoft", "harvey"}
    # 14 Notion pages in scope (+ their folders) and a comment thread; 6 notes, a site page and 3
    # channel threads; the Harvey project, 3 files, 7 verified cells and a query
    assert r.events_by_platform["microsoft"] == 10
    assert r.events_by_platform["harvey"] >= 12 and r.events_by_platform["notion"] >= 15
    assert r.synced == r.events_by_platform  # all new on the first run ...
    assert r.verified_events == sum(r.events_by_platform.values())  # ... and every one verifies
    with _store(demo_runs.root) as store:
        trusted = store.trusted_keys()
        events = list(store.iter_events("kestrel"))
        for ev in events:
            trusted.verify(ev.envelope)  # raises SignatureError on any bad one
        records = [ev.event.record for ev in events]
    sources = {ev.envelope["source"].split(":")[0] for ev in events}
    assert sources == {"notion", "msgraph", "harvey"}
    # the team's later edits came through an incremental sync as Edit events, per platform
    edits = {(e.platform, e.field) for e in records if isinstance(e, Edit)}
    assert ("harvey", "cell:Notice period") in edits and ("notion", "text") in edits
    # the restricted page sits outside the connection's scope: never synced
    assert not any("Compensation" in (getattr(x, "title", "") or "") for x in records)
    assert "device-code sign-in" in "\n".join(demo_runs.first_lines)


def test_adapter_trained_published_and_served_with_prompt_tokens(demo_runs):
    r = demo_runs.first
    first = r.trained[0]
    assert first["version"] == 1 and first["published"] and not first["continual"]
    assert first["steps"] > 0 and first["train_tokens"] > 0
    assert len(r.answers) == len(DEMO_FACTS)
    for a in r.answers:
        assert a.adapter_version == 1  # answered by the server, with the team's adapter
        assert 0 < a.prompt_tokens < a.rag_prompt_tokens  # the adapter's prompt vs retrieval's
        assert a.expected  # the fact's current value, for scoring
    questions = [a.question for a in r.answers]
    assert any("launch date" in q.lower() for q in questions)


def test_live_notion_edit_goes_webhook_queue_event_continual_version(demo_runs):
    r = demo_runs.first
    edit = r.edit
    assert edit["field"] == "Launch date" and edit["after"] == "21 March 2027"
    assert edit["events_stored"] >= 1 and edit["seconds_to_ingest"] > 0
    assert edit["published"] and edit["version"] == 2 == r.adapter_version
    assert edit["answer"]["adapter_version"] == 2 and edit["answer"]["expected"] == "21 March 2027"
    continual = r.trained[1]
    assert continual["continual"] and continual["version"] == 2
    with _store(demo_runs.root) as store:
        # the edit reached the store as an Edit record of the page, signed like the rest
        page_edits = [ev.event.record for ev in store.iter_events("kestrel")
                      if isinstance(ev.event.record, Edit) and "21 March 2027" in ev.event.record.after]
        assert len(page_edits) == 1 and "14 March 2027" in (page_edits[0].before or "")
        # delivered by the webhook (the server queued and processed it), not by a sync
        counts = WebhookQueue(store).counts(CONNECTIONS["notion"])
        assert counts["done"] >= 1 and counts["pending"] == 0 and counts["dead"] == 0
        versions = Registry(store, demo_runs.root / "home" / "adapters").versions("kestrel")
        assert [v.version for v in versions] == [1, 2]
        assert versions[1].manifest["parent_version"] == 1 and not versions[1].manifest["from_scratch"]
        assert versions[1].manifest["events"]["changed_entities"] >= 1
        # the API key made for the run was revoked when it ended
        from engram_sdk._apikeys import ApiKeys

        assert all(k.revoked_at is not None for k in ApiKeys(store).list("kestrel"))


def test_rerun_reuses_everything(demo_runs):
    again = demo_runs.rerun
    assert again.synced == {"notion": 0, "microsoft": 0, "harvey": 0}  # incremental, nothing new
    stored_by_edit = demo_runs.first.edit["events_stored"]
    assert again.events_by_platform == {k: v + (stored_by_edit if k == "notion" else 0)
                                        for k, v in demo_runs.first.events_by_platform.items()}
    assert again.trained == []  # same events: no training
    assert again.edit == {"already_made": True, "answer": again.edit["answer"]}
    assert again.adapter_version == 2 and all(a.adapter_version == 2 for a in again.answers)
    assert [a.question for a in again.answers] == [a.question for a in demo_runs.first.answers]
    assert "not training again" in "\n".join(demo_runs.rerun_lines)
    state = json.loads((demo_runs.root / "demo-state.json").read_text())
    assert state["history_edits"] is True and set(state["ports"]) == {"notion", "microsoft", "harvey"}


def test_demo_cli_reports_a_failed_gate(tmp_path, tiny_model, capsys, monkeypatch):
    """The demo's own recipe on the tiny model: the gates fail, and the demo says so with the numbers."""
    monkeypatch.setenv("ENGRAM_BASE_MODEL", str(tiny_model))
    assert run_app(app, ["demo", "--home", str(tmp_path / "d"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["gate_failures"] and "recall 0.00 is below the minimum" in report["gate_failures"][0]
    assert report["trained"][0]["published"] is False and report["trained"][0]["recall"] == 0.0
    assert report["adapter_version"] is None
    # no adapter to answer with: the server's 409 is shown, never a made-up answer
    assert all("409" in a["answer"] and not a["correct"] for a in report["answers"])
    assert report["edit"] == {"skipped": "no published adapter"}


@pytest.mark.parametrize("platform", ["notion", "microsoft", "harvey"])
def test_sandbox_workspaces_are_saved_for_the_rerun(demo_runs, platform):
    saved = json.loads((demo_runs.root / "sandboxes" / f"{platform}.json").read_text())
    text = json.dumps(saved)
    if platform == "notion":
        assert "Launch date: 21 March 2027" in text and "Standup time: 09:45" in text
    elif platform == "harvey":
        assert '"summary": "120 days"' in text
    else:
        assert "Stormgauge" in text


def test_sigterm_stops_the_demo_and_the_server_it_started(tmp_path, tiny_model):
    """A demo killed with SIGTERM (an operator's `kill`, a CI timeout) runs its cleanups: the
    `engram serve` process it started is stopped, not left holding its port."""
    env = {**os.environ, "ENGRAM_BASE_MODEL": str(tiny_model), "COLUMNS": "400"}
    argv = [sys.executable, "-c", "from engram_sdk._cli import main; main()", "bench", "demo",
            "--home", str(tmp_path / "d")]
    for pair in TINY_SET:
        argv += ["--set", pair]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server_pid = None
    try:
        for line in proc.stdout:  # the demo names the server's pid once it answers
            if m := re.search(r"engram serve, pid (\d+)", line):
                server_pid = int(m.group(1))
                break
        assert server_pid is not None, "the demo never started its server"
        os.kill(server_pid, 0)  # running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(server_pid):
        time.sleep(0.1)
    leaked = _alive(server_pid)
    if leaked:
        os.kill(server_pid, signal.SIGKILL)  # a failing run must not leave it behind either
    assert not leaked, "the server outlived the demo"
    assert (tmp_path / "d" / "sandboxes").is_dir()  # the workspaces were saved on the way out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
