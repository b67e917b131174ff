"""kill -9 of `engram sync` at random points of an incremental sync full of edits (whose `before`
text is read back from the store) and deletions: the rerun leaves exactly the events of an
uninterrupted run. (The acceptance kit kills a first full sync the same way.)"""

from __future__ import annotations

import os
import random

from engram_sdk.testing import Harness, kill_at_random_points

from .conftest import example_config


def test_kill_incremental_sync_with_edits_and_deletions(tmp_path, server, admin, clock) -> None:
    admin.op("generate", count=60, folder="eng")
    killed = Harness(tmp_path / "killed", clock=clock)
    reference = Harness(tmp_path / "reference", clock=clock)
    for h in (killed, reference):
        h.connect("example", "ex", scope="all", config=example_config(server))
        assert h.sync("ex").ok
    for i in range(60):
        admin.op("edit_note", id=f"gen-{12 + i:06d}", text=f"Generated fact {i}, revised.")
    for i in range(0, 12, 3):
        admin.op("delete_note", id=f"note-{i:04d}")

    assert reference.sync("ex").ok
    expected = reference.event_ids()
    seed = int(os.environ.get("ENGRAM_TEST_SEED", "0")) or random.randrange(1 << 30)
    admin.set_latency(0.002)
    stored = kill_at_random_points(killed, "ex", kills=3, rng=random.Random(seed), total_hint=len(expected),
                                   extra_args=("--batch-size", "3"))
    admin.set_latency(0)
    done = killed.cli("sync", "--connection", "ex")
    assert done.returncode == 0, done.stderr
    assert killed.event_ids() == expected, f"ENGRAM_TEST_SEED={seed}, stored at each kill: {stored}"
    assert killed.event_count() == len(expected) == 72 + 60 * 2 + 4
    assert killed.checkpoint("ex") == reference.checkpoint("ex")
    killed.close()
    reference.close()
