"""`engram bench microsoft` and `engram sandbox microsoft` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from engram_sdk._cli import main


def test_bench_reports_rates_and_a_cheap_incremental_round(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "microsoft", "--items", "1000", "--json"])
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"items_per_s", "requests_per_item", "min_requests_per_item", "incremental_request_fraction"} <= set(result)
    assert result["items"] == 1000 and result["items_per_s"] > 0
    assert result["requests_per_item"] <= result["min_requests_per_item"] * 1.05
    assert result["incremental_request_fraction"] <= 0.05


def test_sandbox_command_serves_the_idp_over_tls(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", "from engram_sdk._cli import main; main()", "sandbox", "microsoft", "--port", "0",
         "--tls-dir", str(tmp_path)],  # no --tls: the Microsoft sandbox always serves https
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "listening on" in line:
                url = line.split("listening on", 1)[1].split()[0]
        assert url and url.startswith("https://127.0.0.1:")
        import ssl

        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        doc = httpx.get(f"{url}/bench-tenant/v2.0/.well-known/openid-configuration", verify=ctx).json()
        assert doc["token_endpoint"] == f"{url}/bench-tenant/oauth2/v2.0/token"
    finally:
        proc.terminate()
        proc.wait(10)
