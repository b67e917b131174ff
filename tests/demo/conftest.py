"""One demo run (and its rerun) shared by the module's tests: real sandboxes on loopback, real
connections and syncs, real SQLite, the real server in its own process, the tiny model.

The tiny model learns nothing, so the gates are off here (``TINY``) and the tests check the
pipeline, never the answers; ``test_demo_cli_reports_a_failed_gate`` runs the demo's own recipe,
whose gates the tiny model fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.kestrel_demo import Demo, DemoReport

TINY = {"min_recall": 0.0, "general_tolerance": 1.0, "retention_tolerance": 1.0, "epochs": 1.0,
        "max_new_tokens": 4, "rank": 4, "alpha": 8, "checkpoint_every": 1000, "replay_general": 0.0}
TINY_SET = [f"{k}={v}" for k, v in TINY.items()]


@dataclass
class DemoRuns:
    root: Path
    first: DemoReport
    rerun: DemoReport
    first_lines: list[str]
    rerun_lines: list[str]


@pytest.fixture(scope="package")
def demo_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> DemoRuns:
    root = tmp_path_factory.mktemp("demo") / "home"
    first_lines: list[str] = []
    first = Demo(root, base_model=str(tiny_model), training=TINY, say=first_lines.append).run()
    rerun_lines: list[str] = []
    rerun = Demo(root, base_model=str(tiny_model), training=TINY, say=rerun_lines.append).run()
    return DemoRuns(root, first, rerun, first_lines, rerun_lines)
