"""The connector test kit, run against the example connector (as every built-in connector does)."""

from __future__ import annotations

from typing import Any

from engram_sdk._example import ExampleConnector
from engram_sdk._example.sandbox import ExampleSandbox, sample_workspace
from engram_sdk.connectors import FakeClock, SandboxAdmin, SandboxServer
from engram_sdk.testing import ConnectorAcceptanceTests


class TestExampleAcceptance(ConnectorAcceptanceTests):
    platform = "example"
    connector_cls = ExampleConnector
    scope = "folder:eng,folder:sales"
    token = "tok-example-1"
    webhooks = True

    def make_sandbox(self, clock: FakeClock) -> ExampleSandbox:
        return ExampleSandbox(sample_workspace(12), clock=clock)

    def connection_config(self, server: SandboxServer) -> dict[str, Any]:
        return {"base_url": server.url, "token": self.token, "requests_per_second": 1000, "page_size": 10}

    def edit(self, admin: SandboxAdmin) -> list[str]:
        admin.op("edit_note", id="note-0001", text="The review moved to Friday.")
        admin.op("edit_note", id="note-0003", title="Renamed")
        return ["note-0001", "note-0003"]

    def delete(self, admin: SandboxAdmin) -> list[str]:
        admin.op("delete_note", id="note-0002")
        return ["note-0002"]

    def enlarge(self, admin: SandboxAdmin) -> None:
        admin.op("generate", count=120, folder="eng")
