"""Notion unreachable, through the real CLI in a child process: the operator sees, within a couple
of seconds, what is being waited for and on which host and port, and never a secret."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from notion_data import TOKEN, flat_workspace

from engram_notion.sandbox import NotionSandbox
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._sandbox import serve

# From process start, so it includes the interpreter and the CLI's imports on a busy CI machine;
# the line itself must come right after the first failed attempt, which "0.0 s ... used" shows.
FIRST_LINE_WITHIN = 20.0


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def first_stderr_line(*args: str) -> tuple[str, float, str]:
    """Run ``engram ARGS``; return its first stderr line, the seconds it took, and all its output
    up to a moment later (the child keeps retrying for minutes, so it is stopped)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", "from engram_sdk._cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        first = lines.get(timeout=FIRST_LINE_WITHIN)
        took = time.monotonic() - start
        time.sleep(1.0)
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    return first.rstrip("\n"), took, first + "".join(rest) + (out or "")


def assert_names_the_wait(line: str, port: int) -> None:
    m = re.fullmatch(rf"retrying 127\.0\.0\.1:{port} in [\d.]+ s \(([\d.]+) s of 300 s used\): ConnectError on "
                     r"(GET|POST) /v1/\S+", line)
    assert m, line
    assert float(m.group(1)) < 2.0  # printed after the first failed attempt, not after a long wait


@pytest.fixture
def notion_home(engram_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv("NOTION_TOKEN", TOKEN)
    assert run_app(app, ["init"]) == 0 and run_app(app, ["keys", "generate", "--team", "wiki"]) == 0
    return engram_home


def test_connect_to_an_unreachable_notion_says_so_at_once(notion_home: Path) -> None:
    port = dead_port()
    line, took, output = first_stderr_line("connect", "notion", "--name", "n", "--team", "wiki", "--scope", "all",
                                           "--token-env", "NOTION_TOKEN", "--base-url", f"http://127.0.0.1:{port}")
    assert took < FIRST_LINE_WITHIN
    assert_names_the_wait(line, port)
    assert TOKEN not in output


@pytest.mark.parametrize("command", [["sync", "--connection", "acme-notion"], ["connections", "test", "acme-notion"]])
def test_sync_and_test_with_notion_down_say_so_at_once(notion_home: Path, capsys: pytest.CaptureFixture[str],
                                                       command: list[str]) -> None:
    with serve(NotionSandbox(flat_workspace(2))) as server:
        assert run_app(app, ["connect", "notion", "--name", "acme-notion", "--team", "wiki", "--scope", "all",
                             "--token-env", "NOTION_TOKEN", "--base-url", server.url]) == 0
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    capsys.readouterr()
    # The sandbox is stopped: its port refuses connections now.
    line, took, output = first_stderr_line(*command)
    assert took < FIRST_LINE_WITHIN
    assert_names_the_wait(line, port)
    assert TOKEN not in output
