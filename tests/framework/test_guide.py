"""docs/writing-a-connector.md is executable: its files are written out, its acceptance tests run,
and its `engram` session is replayed against its sandbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-connector.md"
BLOCK = re.compile(r"```python file=(\S+)\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guide")
    blocks = BLOCK.findall(GUIDE.read_text())
    assert {p for p, _ in blocks} == {"acme_notes/connector.py", "acme_notes/__init__.py", "acme_notes/sandbox.py",
                                      "tests/test_acme_notes.py"}
    for rel, code in blocks:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(code)
    return root


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(project), *[p for p in sys.path if p]])
    env["ENGRAM_CONNECTORS"] = "notes=acme_notes:NotesConnector"
    env.update(extra)
    return env


def test_the_guides_acceptance_tests_pass(project: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(project),
                           str(project / "tests" / "test_acme_notes.py")],
                          cwd=project, env=_env(project), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "7 passed" in proc.stdout


def test_the_guides_session(project: Path, tmp_path: Path) -> None:
    env = _env(project, ENGRAM_HOME=str(tmp_path / "home"), NOTES_TOKEN="secret-token")
    engram = [sys.executable, "-c", "from engram_sdk._cli import main; main()"]
    sandbox = subprocess.Popen([*engram, "sandbox", "notes", "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        url = sandbox.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")

        def run(*args: str) -> str:
            proc = subprocess.run([*engram, *args], env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            return " ".join(proc.stdout.split())

        run("keys", "generate", "--team", "acme")
        out = run("connect", "notes", "--name", "acme-notes", "--team", "acme", "--scope", "folder:eng",
                  "--base-url", url, "--token-env", "NOTES_TOKEN")
        assert out == "connected acme-notes: Acme (notes://workspace/w1) -> team acme, scope folder:eng"
        out = run("sync", "--connection", "acme-notes")
        assert out.startswith("acme-notes: 5 records, 5 new events, 0 unchanged, 0 failed (")
        assert "secret-token" not in run("connections", "show", "acme-notes")
        assert run("sync", "--connection", "acme-notes", "--reconcile").startswith("acme-notes: 0 records")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
