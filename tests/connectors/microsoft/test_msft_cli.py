"""`engram connect microsoft` (device code), `engram connections test`, `engram sync` through the CLI."""

from __future__ import annotations

import json

import pytest
from msft_data import APP, DRIVE, NOTEBOOK, RANDOM, SANDBOX_TENANT, TEAM

from engram_sdk._cli import main


def _run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out + captured.err


def test_connect_with_device_code_then_sync(ms, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("MS_SECRET", APP["client_secret"])
    assert _run(capsys, "init")[0] == 0
    assert _run(capsys, "keys", "generate", "--team", "team-cli")[0] == 0
    code, out = _run(
        capsys, "connect", "microsoft", "--name", "ms-cli", "--team", "team-cli",
        "--scope", f"channel:{TEAM}/{RANDOM},drive:{DRIVE},notebook:{NOTEBOOK}",
        "--tenant", SANDBOX_TENANT, "--client-id", APP["client_id"], "--client-secret-env", "MS_SECRET",
        "--delegated", "--authority", f"{ms.server.url}/{SANDBOX_TENANT}", "--graph-url", f"{ms.server.url}/v1.0",
        "--ca-bundle", ms.server.ca_bundle)
    assert code == 0 and "awaiting authorization" in out and "enter the code" in out
    user_code = out.split("enter the code ", 1)[1].split()[0]
    ms.admin.op("approve_device", user_code=user_code, user="u-ann")
    code, out = _run(capsys, "connections", "test", "ms-cli", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["source"] == "msgraph://tenant/tenant-1"
    code, out = _run(capsys, "sync", "--connection", "ms-cli", "--json")
    result = json.loads(out.strip().splitlines()[-1])["results"][0]
    assert result["records"] == 2 + 6 + 3  # 2 Random threads, 6 readable drive files, 3 notes
    assert [f["entity_id"] for f in result["failures"]] == [f"drives/{DRIVE}/items/BAD"]
    assert "secret-1" not in out
