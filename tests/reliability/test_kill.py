"""kill -9 of the real ``engram`` CLI in a subprocess at random points, then a rerun: during a
Notion sync (full, and in the full run also incremental after edits) against the sandbox, and
during ``engram events import`` of a JSON Lines file. Held: after the rerun the store holds exactly
the events of an uninterrupted run, none twice.

Not here: kill -9 during training. It needs the real base model to be meaningful (minutes per
run on this machine); training's own resume from its checkpoint is tested in tests/training.
Set ENGRAM_TEST_SEED to replay a run's kill points."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from engram_notion import NotionConnector
from engram_notion.sandbox import NotionSandbox
from engram_sdk import load_key_set
from engram_sdk._sandbox import serve
from engram_sdk.testing import Harness, kill_at_random_points
from tests.factories import signed_events

from .conftest import FULL, scale


def _seed() -> int:
    return int(os.environ.get("ENGRAM_TEST_SEED", "0")) or random.randrange(1 << 30)


def _notion(h: Harness, url: str) -> None:
    h.connect("notion", "acme-notion", scope="all",
              config={"token": "secret_sandbox", "base_url": url, "requests_per_second": 1000})


def test_kill_9_during_notion_syncs(tmp_path, tally):
    seed = _seed()
    rng = random.Random(seed)
    pages = scale(120, 2000)
    with serve(NotionSandbox({"pages": []})) as sandbox:
        sandbox.admin.op("generate", count=pages)
        killed = Harness(tmp_path / "killed", connector_cls=NotionConnector)
        reference = Harness(tmp_path / "reference", connector_cls=NotionConnector)
        for h in (killed, reference):
            _notion(h, sandbox.url)
        rounds = [("full sync", scale(3, 16))] + ([("incremental sync after edits", 10)] if FULL else [])
        for label, kills in rounds:
            if label.startswith("incremental"):
                for i, p in enumerate(sandbox.admin.workspace()["pages"][: pages // 10]):
                    sandbox.admin.op("edit_page", id=p["id"], text=f"Edited for the kill test, {i}.")
            assert reference.sync("acme-notion").ok
            expected = reference.event_ids()
            sandbox.admin.set_latency(0.003)
            at = kill_at_random_points(killed, "acme-notion", kills=kills, rng=rng, total_hint=len(expected),
                                       extra_args=("--batch-size", "9"))
            sandbox.admin.set_latency(0)
            assert any(0 < n < len(expected) for n in at), f"no kill landed mid-sync: {at}"
            done = killed.cli("sync", "--connection", "acme-notion", "--batch-size", "9", timeout=600)
            assert done.returncode == 0, done.stderr
            got = killed.event_ids()
            row = tally.row(f"kill -9 during a Notion {label} ({pages} pages)")
            for n, stored in enumerate(at, 1):
                row.check(got == expected and killed.event_count() == len(expected),
                          f"kill {n} (at {stored} events, ENGRAM_TEST_SEED={seed}): "
                          f"{len(expected - got)} lost, {killed.event_count() - len(got)} duplicated")
        killed.close()
        reference.close()


def test_kill_9_during_events_import(tmp_path, tally):
    seed = _seed()
    rng = random.Random(seed)
    producer = Harness(tmp_path / "producer")
    count = scale(3000, 30000)
    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        for ev in signed_events(producer.keyring, count):
            f.write(ev.to_json() + "\n")
    expected = {json.loads(line)["id"] for line in path.read_text().splitlines()}
    kills = scale(3, 12)

    def fresh_receiver(n: int) -> Harness:
        h = Harness(tmp_path / f"receiver-{n}", team="acme")
        h.store.trust(load_key_set(producer.keyring.export_public()))
        return h

    receiver, at, stores = fresh_receiver(0), [], 1
    # Small batches make the store phase long enough to land in. A run that finished before its kill
    # leaves nothing to kill into, so it starts again on an empty store (bounded): the rerun below
    # must follow kills that landed mid-import, however fast the machine.
    for _ in range(kills * 5):
        if len(at) >= kills and any(0 < n < count for n in at):
            break
        if receiver.event_count() >= count:
            receiver.close()
            receiver, at, stores = fresh_receiver(stores), [], stores + 1
        target = receiver.event_count() + rng.randint(0, max(0, count - receiver.event_count() - 1))
        proc = subprocess.Popen(receiver.cli_args("events", "import", str(path), "--batch-size", "20"),
                                env=receiver.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and receiver.event_count() < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        at.append(receiver.event_count())
    assert any(0 < n < count for n in at), f"no kill landed mid-import: {at}"
    done = receiver.cli("events", "import", str(path), "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    row = tally.row(f"kill -9 during `engram events import` ({count} events)")
    got = receiver.event_ids()
    for n, stored in enumerate(at, 1):
        row.check(got == expected and receiver.event_count() == count,
                  f"kill {n} (at {stored} events, ENGRAM_TEST_SEED={seed}): {len(expected - got)} lost")
    verify = receiver.cli("events", "verify", str(path), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout.strip().splitlines()[-1])["valid"] == count
    producer.close()
    receiver.close()


pytestmark = pytest.mark.timeout(1800)
