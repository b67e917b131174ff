"""`engram connect harvey`, `engram sync` and `engram sandbox harvey`, run as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from engram_harvey._sample import sample_workspace
from engram_harvey.sandbox import HarveySandbox
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._sandbox import serve


def engram(capsys, *args: str) -> tuple[int, str, str]:
    code = run_app(app, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cli_sandbox(engram_home, capsys):
    assert engram(capsys, "init")[0] == 0
    assert engram(capsys, "keys", "generate", "--team", "legal")[0] == 0
    ws = sample_workspace()
    ws["history"][0]["utc_time"] = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    with serve(HarveySandbox(ws)) as server:
        yield server


def test_connect_and_sync_through_the_cli(cli_sandbox, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HV_TOKEN", "harvey-sandbox-token")
    code, out, err = engram(
        capsys, "connect", "harvey", "--name", "kestrel", "--team", "legal", "--scope", "user:ana@kestrel.example",
        "--region", "eu", "--token-env", "HV_TOKEN", "--base-url", cli_sandbox.url, "--lookback-days", "1",
        "--audit-dir", str(tmp_path / "audit"),
    )
    assert code == 0, err
    assert "Kestrel & Finch LLP (harvey://org/org-kestrel)" in out and "harvey-sandbox-token" not in out
    code, out, err = engram(capsys, "connections", "show", "kestrel", "--json")
    shown = json.loads(out.strip().splitlines()[-1])
    assert shown["meta"]["streams"]["audit"] == "ok" and shown["config"]["region"] == "eu"
    assert "harvey-sandbox-token" not in out
    code, out, err = engram(capsys, "sync", "--connection", "kestrel", "--json")
    assert code == 0, err
    (result,) = json.loads(out.strip().splitlines()[-1])["results"]
    assert result["stored"] == 1 and result["failures"] == []  # ana's query; ben's is outside the scope


def test_connect_with_an_unknown_region_fails_in_one_line(cli_sandbox, capsys):
    code, out, err = engram(capsys, "connect", "harvey", "--name", "k", "--team", "legal", "--scope", "all",
                            "--region", "mars", "--token", "x")
    assert code != 0 and "region" in err and len(err.strip().splitlines()) == 1


def test_sandbox_command_serves_the_sample_workspace(tmp_path):
    env = dict(os.environ, ENGRAM_HOME=str(tmp_path / "home"))
    cmd = [sys.executable, "-u", "-c", "from engram_sdk._cli import main; main()", "sandbox", "harvey", "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"listening on (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "the sandbox did not report its address"
        who = httpx.get(url + "/api/whoami", headers={"Authorization": "Bearer harvey-sandbox-token"}).json()
        assert who["org_id"] == "org-kestrel"
    finally:
        proc.terminate()
        proc.wait(10)


def test_sandbox_command_loads_a_workspace_file(tmp_path):
    ws = sample_workspace()
    ws["org"] = {"org_id": "org-from-file", "name": "From File"}
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(ws))
    env = dict(os.environ, ENGRAM_HOME=str(tmp_path / "home"))
    cmd = [sys.executable, "-u", "-c", "from engram_sdk._cli import main; main()", "sandbox", "harvey",
           "--workspace", str(path), "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"listening on (http://\S+)", line).group(1)
        who = httpx.get(url + "/api/whoami", headers={"Authorization": "Bearer harvey-sandbox-token"}).json()
        assert who["org_id"] == "org-from-file"
    finally:
        proc.terminate()
        proc.wait(10)
