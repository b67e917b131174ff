"""``engram connect notion``, ``engram sync`` and ``engram bench notion`` as an operator runs them."""

from __future__ import annotations

import json

from notion_data import TOKEN, flat_workspace

from engram_notion.sandbox import NotionSandbox
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._sandbox import serve

EXPECTED_BENCH_KEYS = {"pages_per_s", "requests_per_page", "min_requests_per_page", "incremental_request_fraction"}


def engram(capsys, *args: str) -> tuple[int, str]:
    code = run_app(app, list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_connect_and_sync_through_the_cli(engram_home, capsys, monkeypatch):
    assert engram(capsys, "init")[0] == 0
    assert engram(capsys, "keys", "generate", "--team", "wiki")[0] == 0
    monkeypatch.setenv("NOTION_TOKEN", TOKEN)
    with serve(NotionSandbox(flat_workspace(5))) as server:
        code, out = engram(capsys, "connect", "notion", "--name", "acme-notion", "--team", "wiki", "--scope", "all",
                           "--token-env", "NOTION_TOKEN", "--base-url", server.url, "--requests-per-second", "50",
                           "--json")
        assert code == 0, out
        assert TOKEN not in out
        code, out = engram(capsys, "sync", "--connection", "acme-notion", "--json")
        assert code == 0, out
        assert json.loads(out.strip().splitlines()[-1])["results"][0]["stored"] == 5


def test_bench_notion_json_has_the_issue_keys(engram_home, capsys):
    code, out = engram(capsys, "bench", "notion", "--pages", "200", "--json")
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    assert EXPECTED_BENCH_KEYS <= set(result)
    assert result["requests_per_page"] <= result["min_requests_per_page"] * 1.05
    assert result["incremental_request_fraction"] <= 0.05


def test_engram_sandbox_notion_serves_the_sample_workspace(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", "from engram_sdk._cli import main; main()", "sandbox", "notion",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={},
                               headers={"Authorization": f"Bearer {TOKEN}", "Notion-Version": "2025-09-03"})
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        assert r.status_code == 200
        assert {x["object"] for x in r.json()["results"]} == {"page", "data_source"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
