"""Fixtures for the connector framework's tests: the example connector against its sandbox.

- ``sandbox`` / ``server`` / ``admin``: the example sandbox on a free loopback port (real HTTP)
- ``harness``: a fresh deployment (ENGRAM_HOME, real Ed25519 keyring, SQLite file store, file
  secrets) whose FakeClock the sandbox shares, connected to the sandbox as connection "ex"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engram_sdk._example.sandbox import ExampleSandbox, sample_workspace
from engram_sdk.connectors import FakeClock, SandboxAdmin, SandboxServer, serve
from engram_sdk.testing import Harness

TOKEN = "tok-example-1"
SECRET = "whsec_" + "ZXhhbXBsZS13ZWJob29rLXNlY3JldC0xMjM0NQ=="


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> ExampleSandbox:
    return ExampleSandbox(sample_workspace(12), clock=clock)


@pytest.fixture
def server(sandbox: ExampleSandbox) -> Iterator[SandboxServer]:
    with serve(sandbox) as s:
        yield s


@pytest.fixture
def admin(server: SandboxServer) -> Iterator[SandboxAdmin]:
    a = server.admin
    yield a
    a.close()


def example_config(server: SandboxServer, **extra: object) -> dict[str, object]:
    return {"base_url": server.url, "token": TOKEN, "requests_per_second": 1000, "page_size": 5, **extra}


@pytest.fixture
def harness(tmp_path: Path, server: SandboxServer, clock: FakeClock) -> Iterator[Harness]:
    h = Harness(tmp_path / "home", clock=clock)
    h.connect("example", "ex", scope="all", config=example_config(server))
    yield h
    h.close()
