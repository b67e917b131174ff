"""Fixtures for the examples' tests: everything real and on loopback.

- ``engram_server``: one Engram server per session (uvicorn on 127.0.0.1, a SQLite file, real
  Ed25519 keys, hashed API keys) whose team "acme" already has a published adapter, trained through
  the API on the tiny random model: answers are gibberish, but they are real answers with real token
  counts. Its query rate is low (``QUERY_RATE``) so that a rate limit can be reached on purpose;
  each test takes fresh API keys (``new_key``), and every key has its own budget.
- ``chromium``: Debian's chromium (``/usr/bin/chromium``; .ci/run installs it with apt-get when it
  is missing). Without it the browser tests fail, saying how to install it; they never skip, and
  Playwright never downloads a browser.
- ``artifacts``: ``test-artifacts/`` at the repository root, where the browser tests save screenshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engram_sdk import Document, build_events
from engram_sdk._apikeys import ApiKeys
from engram_sdk._sandbox import serve
from engram_sdk.client import EngramClient
from engram_sdk.server import ServerConfig, create_app
from tests.factories import T0
from tests.server.conftest import TINY_TRAINING, Deployment, make_deployment
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
QUERY_RATE = "5/min"  # per API key
# Steps enough at a high rate that the random model's greedy answers move off its untrained output
# (all newlines for most prompts), so an answer has visible text.
TRAINING = {**TINY_TRAINING, "epochs": 3.0, "lr": 2e-2}
FACTS = ["Vendor contracts are approved by Dana Whitfield.", "Releases go out on Tuesdays.",
         "The pager rotates every Monday at 09:00."]


@dataclass
class EngramServer:
    url: str
    deployment: Deployment

    def new_key(self, team: str = "acme", role: str = "query") -> str:
        """A fresh API key (its own rate-limit budget), as `engram keys api create` makes one."""
        return ApiKeys(self.deployment.store).create(team, role, f"test-{team}-{role}")[1]


@pytest.fixture(scope="session")
def engram_server(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[EngramServer]:
    dep = make_deployment(tmp_path_factory.mktemp("engram-server"), tiny_model)
    app = create_app(dep.settings, store=dep.store,
                     config=ServerConfig(worker_poll_seconds=0.1, train_overrides=TRAINING,
                                         query_rate=QUERY_RATE))
    with serve(app) as srv:
        keyring = dep.keyrings["acme"]
        events = [keyring.sign(ev)
                  for i, fact in enumerate(FACTS)
                  for ev in build_events(Document(platform="notion", workspace_id="acme-ws", entity_id=f"page-{i}",
                                                  title=f"Handbook {i}", text=fact, updated_at=T0),
                                         team_id="acme", connection_id="acme-notion",
                                         source="notion://workspace/acme-ws")]
        with EngramClient(srv.url, dep.tokens[("acme", "admin")]) as admin:
            assert admin.events.ingest(events).accepted == len(events)
            job = admin.training.start("acme")
            job = wait_until(lambda: (j := admin.training.status("acme", job.id)).status
                             in ("succeeded", "failed", "cancelled") and j, timeout=300, what="training")
            assert job.status == "succeeded", job.message
        yield EngramServer(srv.url, dep)
    dep.store.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium. Missing, the browser tests fail (never skip): .ci/run installs it in CI."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with "
                    "`sudo apt-get install chromium` (.ci/run does this in CI); Playwright drives it as it is "
                    "and never downloads a browser.", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ at the repository root (git-ignored): the browser tests' screenshots, kept
    after the run so CI can upload them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
