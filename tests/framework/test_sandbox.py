"""The sandbox base: serving (plain and TLS), the admin endpoints, faults, budgets, revoked
tokens, request counting and outbound webhook deliveries."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engram_sdk._example.sandbox import ExampleSandbox, sample_workspace
from engram_sdk.connectors import FakeClock, Sandbox, StandardWebhook, serve

from .conftest import SECRET, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_serves_on_a_free_loopback_port_and_stops(sandbox) -> None:
    server = serve(sandbox)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/api/me", headers=AUTH).json()["workspace"]["id"] == "ws-example-1"
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/api/me", headers=AUTH)


def test_tls_with_a_trustme_ca(sandbox, tmp_path) -> None:
    with serve(sandbox, tls=True, tls_dir=tmp_path / "tls") as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_bundle == str(tmp_path / "tls" / "ca.pem")
        with pytest.raises(httpx.ConnectError):  # not trusted without the bundle
            httpx.get(server.url + "/api/me", headers=AUTH)
        r = httpx.get(server.url + "/api/me", headers=AUTH, verify=ssl.create_default_context(cafile=server.ca_bundle))
        assert r.status_code == 200


def test_workspace_from_a_file_and_edited_while_running(tmp_path) -> None:
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(sample_workspace(3)))
    sb = ExampleSandbox.from_file(path)
    with serve(sb) as server:
        admin = server.admin
        assert [n["id"] for n in admin.workspace()["notes"]] == ["note-0000", "note-0001", "note-0002"]
        admin.op("add_note", id="new", folder="eng", text="hello")
        assert httpx.get(server.url + "/api/notes/new", headers=AUTH).json()["text"] == "hello"
        ws = admin.workspace()
        ws["notes"] = []
        admin.put_workspace(ws)
        assert httpx.get(server.url + "/api/notes/new", headers=AUTH).status_code == 404


def test_unknown_op_and_bad_op_arguments(admin) -> None:
    with pytest.raises(RuntimeError, match="404"):
        admin.op("no_such_op")
    with pytest.raises(RuntimeError, match="400"):
        admin.op("edit_note", id="missing")


def test_requests_are_counted(server, admin) -> None:
    for _ in range(3):
        httpx.get(server.url + "/api/me", headers=AUTH)
    httpx.get(server.url + "/api/folders", headers=AUTH)
    stats = admin.stats()
    assert stats["requests"] == 4 and stats["by_path"] == {"/api/me": 3, "/api/folders": 1}
    admin.reset_stats()
    assert admin.stats()["requests"] == 0  # admin calls are never counted


def test_injected_429_carries_retry_after(server, admin) -> None:
    admin.fault(status=429, times=2, retry_after=0.5, path="/api/me")
    assert httpx.get(server.url + "/api/folders", headers=AUTH).status_code == 200  # other paths untouched
    r = httpx.get(server.url + "/api/me", headers=AUTH)
    assert r.status_code == 429 and r.headers["retry-after"] == "0.500"
    assert r.json()["error"] == "rate_limited"  # the platform's own error shape
    assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 429
    assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 200
    assert admin.stats()["throttled"] == 2


def test_injected_5xx(server, admin) -> None:
    admin.fault(status=503, times=1, method="GET")
    assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 503
    assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 200


def test_injected_delay_times_a_client_out(server, admin) -> None:
    admin.fault(delay=1.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url + "/api/me", headers=AUTH, timeout=0.2)


def test_faults_can_be_cleared(server, admin) -> None:
    admin.fault(status=500, times=5)
    admin.clear_faults()
    assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 200


def test_revoked_token_gets_401(server, admin) -> None:
    admin.revoke(TOKEN)
    r = httpx.get(server.url + "/api/me", headers=AUTH)
    assert r.status_code == 401
    admin.restore(TOKEN)
    assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 200


def test_token_revoked_after_n_requests(server, admin) -> None:
    admin.revoke(TOKEN, after=2)
    codes = [httpx.get(server.url + "/api/me", headers=AUTH).status_code for _ in range(4)]
    assert codes == [200, 200, 401, 401]


def test_budget_per_window_on_the_sandbox_clock() -> None:
    clock = FakeClock()
    with serve(ExampleSandbox(sample_workspace(2), clock=clock)) as server:
        server.admin.set_budget(2, window=60)
        codes = [httpx.get(server.url + "/api/me", headers=AUTH).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        clock.advance(15.5)
        r = httpx.get(server.url + "/api/me", headers=AUTH)
        assert r.status_code == 429 and float(r.headers["retry-after"]) == pytest.approx(44.5)
        server.admin.advance_clock(45)
        assert httpx.get(server.url + "/api/me", headers=AUTH).status_code == 200
        server.admin.clear_budget()


def test_latency(server, admin) -> None:
    admin.set_latency(0.2)
    r = httpx.get(server.url + "/api/me", headers=AUTH)
    assert r.elapsed.total_seconds() >= 0.2


def test_webhook_deliveries_are_signed_and_replayable(sandbox) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Sink(Sandbox):
        platform = "sink"

        def routes(self):
            return [Route("/hook", self.hook, methods=["POST"])]

        async def hook(self, request: Request):
            received.append((dict(request.headers), await request.body()))
            return JSONResponse({}, 202)

    with serve(Sink()) as sink, serve(sandbox) as server:
        admin = server.admin
        admin.set_webhook(sink.url + "/hook", SECRET)
        admin.op("edit_note", id="note-0001", text="x")
        deliveries = admin.deliveries()
        assert [d["status"] for d in deliveries] == [202]
        headers, body = received[0]
        assert StandardWebhook(SECRET).verify(headers, body) == "msg_0"
        assert json.loads(body) == {"type": "note.updated", "id": "note-0001"}
        admin.replay(0)
        admin.deliveries()
        assert len(received) == 2 and received[1][1] == body


def test_authenticate_runs_before_every_platform_route() -> None:
    class Keyed(Sandbox):
        platform = "keyed"
        open_paths = ("/oauth/",)

        def routes(self):
            return [Route("/who", self.who), Route("/oauth/token", self.who, methods=["POST"])]

        def authenticate(self, request: Request):
            if self.token_of(request) != "good":
                return self.error(401, "unauthorized", "no")
            return {"user": "ann"}

        async def who(self, request: Request):
            return JSONResponse({"principal": getattr(request.state, "principal", None)})

    with serve(Keyed()) as server:
        assert httpx.get(server.url + "/who", headers={"Authorization": "Bearer bad"}).status_code == 401
        r = httpx.get(server.url + "/who", headers={"Authorization": "Bearer good"})
        assert r.json() == {"principal": {"user": "ann"}}
        assert httpx.post(server.url + "/oauth/token").json() == {"principal": None}  # an open path
        assert server.admin.stats()["requests"] == 3  # refused requests are counted like any other


def test_a_delivery_to_another_url_with_its_own_headers(sandbox) -> None:
    received: list[dict[str, str]] = []

    class Sink(Sandbox):
        platform = "sink"

        def routes(self):
            return [Route("/notify", self.notify, methods=["POST"])]

        async def notify(self, request: Request):
            received.append(dict(request.headers))
            return JSONResponse({}, 202)

    with serve(Sink()) as sink:
        assert sandbox.deliver({"x": 1}) is None  # no webhook URL configured
        d = sandbox.deliver({"x": 1}, url=sink.url + "/notify", headers={"content-type": "application/json"})
        sandbox.wait_for_deliveries()
        assert d is not None and d.status == 202 and "webhook-signature" not in received[0]


def test_no_webhook_url_means_no_delivery(sandbox, admin) -> None:
    admin.op("edit_note", id="note-0001", text="x")
    assert admin.deliveries() == []


def test_engram_sandbox_command_prints_its_url(tmp_path) -> None:
    ws = tmp_path / "ws.json"
    ws.write_text(json.dumps(sample_workspace(2)))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from engram_sdk._cli import main; main()", "sandbox", "example",
         "--workspace", str(ws), "--port", "0", "--tls", "--tls-dir", str(tmp_path / "tls")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert "example sandbox listening on https://127.0.0.1:" in first
        url = first.split()[-1]
        bundle = proc.stdout.readline().split("CA bundle: ")[1].strip()
        assert httpx.get(url + "/api/me", headers=AUTH, verify=ssl.create_default_context(cafile=bundle)).json()["workspace"]["name"] == "Example Co"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
