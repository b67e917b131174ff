"""docs/architecture.md names the files one edit passes through; scripts/trace_edit.py measures them by
following a real Notion edit (webhook -> events -> continual version -> answer, tiny model). The doc and
the measurement must agree, so the doc can't drift from the code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- traced path: begin -->", 1)[1].split("<!-- traced path: end -->", 1)[0]
    return re.findall(r"^\| *\d+ *\| *[a-z]+ *\| *`([^`]+)`", block, flags=re.M)


def test_the_documented_path_is_the_traced_path(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "trace_edit.py"), "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    traced = json.loads(run.stdout.strip().splitlines()[-1])["files"]
    # the trace saw every layer: the platform's connector, the core, the trainer and the answer
    assert any(f.startswith("connectors/engram_notion/") for f in traced)
    assert any(f.startswith("training/engram_training/") for f in traced)
    assert "engram_sdk/_store.py" in traced
    documented = _documented()
    assert sorted(documented) == sorted(traced), (
        f"only traced: {sorted(set(traced) - set(documented))}; only documented: "
        f"{sorted(set(documented) - set(traced))}; rerun scripts/trace_edit.py --markdown for the table")
