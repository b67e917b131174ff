"""Follow one Notion edit from the webhook to the adapter's answer, and list the project files its
data passes through (docs/architecture.md is written from this list; tests/core/test_architecture.py
checks that the two agree).

    .venv/bin/python scripts/trace_edit.py [--json]

What runs is the real path, in one process: the Notion sandbox on loopback sends a signed webhook
for an edited paragraph to `engram serve`'s app (uvicorn in a thread); its webhook worker refetches
the page through notion-client, stores the signed events; a training job (the one `POST
/v1/teams/{team}/train` and the scheduler queue) makes the continual version; the team's API key
asks a question and the server answers with that version. The base model is the tests' tiny
random model, so the answer is noise: what is traced is where the edit's data goes, not what the
adapter says.

"Passes through" is measured, not declared: a profile hook looks at every call into a project
file and at every value returned from one, and keeps the file when an argument or the return value
holds the edit, searched a few levels deep in strings, bytes, containers and objects' attributes.
The edit is first the page's id and its new sentence; then also the ids of the events stored for
it; then also the directory of the version trained from them. Sandboxes (the platform's stand-in)
and this script are not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The tiny model trains in well under a minute alone; under a profile hook on a loaded 2-core
# machine (a benchmark beside the test suite) a version took over 300 s.
TRAIN_WAIT_S = 600

ROOT = Path(__file__).resolve().parent.parent
PROJECT = [ROOT / "engram_sdk", ROOT / "connectors", ROOT / "training"]
NOT_COUNTED = ("sandbox", "_sandbox")  # the platforms' stand-ins: not part of the path

TEAM = "trace"
PAGE_ID = "5c6a1e0b-7d2f-4e8a-9b3c-000000000001"
BEFORE = "The nightly export runs at 02:00 and Ilse Varga looks after it."
AFTER = "The nightly export now runs at 02:45 and Ilse Varga looks after it."
STEPS = ("webhook", "store", "train", "answer")


@dataclass
class Hit:
    path: str
    function: str
    step: str


@dataclass
class ValueTrace:
    """The profile hook: records each project file where the edit's data shows up."""

    markers: set[str]
    step: str = "webhook"
    hits: dict[str, Hit] = field(default_factory=dict)
    _files: dict[str, str | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _project(self, filename: str) -> str | None:
        known = self._files.get(filename)
        if known is not None or filename in self._files:
            return known
        rel = None
        p = Path(filename)
        for root in PROJECT:
            if p.is_relative_to(root):
                rel = p.relative_to(ROOT).as_posix()
                if p.stem.startswith(NOT_COUNTED):
                    rel = None
                break
        self._files[filename] = rel
        return rel

    def _holds(self, value: Any, depth: int, seen: set[int]) -> bool:
        if isinstance(value, str):
            return any(m in value for m in self.markers)
        if isinstance(value, (bytes, bytearray)):
            return any(m.encode() in value for m in self.markers)
        if isinstance(value, Path):
            return self._holds(str(value), depth, seen)
        if depth == 0 or id(value) in seen or isinstance(value, (int, float, bool, type(None))):
            return False
        mod = type(value).__module__
        if mod.startswith(("torch", "transformers", "peft", "numpy", "sqlalchemy", "threading", "asyncio")):
            return False  # tensors and engines: the edit is not in them as text
        seen.add(id(value))
        if isinstance(value, dict):
            items = list(value.items())[:300]
            return any(self._holds(k, depth - 1, seen) or self._holds(v, depth - 1, seen) for k, v in items)
        if isinstance(value, (list, tuple, set, frozenset)):
            return any(self._holds(v, depth - 1, seen) for v in list(value)[:300])
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            return any(self._holds(v, depth - 1, seen) for v in list(attrs.values())[:50])
        slots = getattr(type(value), "__slots__", ())
        return any(self._holds(getattr(value, s, None), depth - 1, seen) for s in slots if isinstance(s, str))

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        rel = self._project(frame.f_code.co_filename)
        if rel is None or rel in self.hits:
            return
        values = list(frame.f_locals.values()) if event == "call" else [arg]
        if any(self._holds(v, 4, set()) for v in values):
            with self._lock:
                self.hits.setdefault(rel, Hit(rel, frame.f_code.co_qualname, self.step))

    def start(self) -> None:
        threading.setprofile(self.hook)
        sys.setprofile(self.hook)

    def stop(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def _workspace() -> dict[str, Any]:
    when = "2026-11-02T09:00:00.000Z"
    para = {"object": "block", "type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": BEFORE}}]}}
    page = {"object": "page", "id": PAGE_ID, "created_time": when, "last_edited_time": when,
            "properties": {"title": {"type": "title", "title": [{"text": {"content": "Operations home"}}]}},
            "children": [para]}
    return {"users": [], "pages": [page], "tokens": ["secret_trace"]}


def _wait(what: str, done: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"trace_edit: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)


def trace(work: Path) -> list[Hit]:
    import os

    import uvicorn

    from engram_notion import NotionConnector
    from engram_notion.sandbox import NotionSandbox
    from engram_training.base import make_tiny

    from engram_sdk._apikeys import ApiKeys
    from engram_notion._connector import confirm_webhook_verification, reveal_verification_token
    from engram_sdk.client import EngramClient
    from engram_sdk.connectors import WebhookQueue, serve
    from engram_sdk.server import ServerConfig, create_app
    from engram_sdk.testing import Harness

    os.environ["ENGRAM_BASE_MODEL"] = str(make_tiny(work / "tiny", seed=3))
    tiny = {"min_recall": 0.0, "general_tolerance": 1.0, "retention_tolerance": 1.0, "epochs": 1.0,
            "max_new_tokens": 4, "rank": 4, "alpha": 8, "replay_general": 0.0}
    h = Harness(work / "home", team=TEAM, connector_cls=NotionConnector)
    os.environ["ENGRAM_HOME"] = str(h.home)
    sandbox = serve(NotionSandbox(_workspace(), clock=h.clock))
    h.connect("notion", "ops-notion", scope="all", config={"token": "secret_trace", "base_url": sandbox.url})
    assert h.sync("ops-notion").ok

    app = create_app(h.settings, store=h.store,
                     config=ServerConfig(train_overrides=tiny, worker_poll_seconds=0.2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    tracer = ValueTrace({PAGE_ID, PAGE_ID.replace("-", ""), AFTER})
    tracer.start()  # before the server's threads start, so that they are traced too
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    _wait("the server start", lambda: server.started)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    _key, secret = ApiKeys(h.store).create(TEAM, "admin", "trace")
    client = EngramClient(base_url=url, api_key=secret)
    try:
        first = client.training.start(TEAM)
        _wait("the first version", lambda: client.training.status(TEAM, first.id).status in ("succeeded", "failed"), TRAIN_WAIT_S)
        if client.training.status(TEAM, first.id).status != "succeeded":
            raise SystemExit(f"trace_edit: the first training job failed: {client.training.status(TEAM, first.id).message}")
        tracer.hits.clear()  # the first version is not the edit's path

        hook = f"{url}/v1/webhooks/ops-notion"
        sandbox.admin.set_webhook(hook, "notion-verification-token")
        sandbox.admin.op("send_verification")
        _wait("Notion's verification", lambda: reveal_verification_token(h.secrets, "ops-notion") is not None)
        confirm_webhook_verification(h.store, "ops-notion", h.secrets)
        before = h.store.count(TEAM)
        tracer.hits.clear()  # the handshake is not the edit

        tracer.step = "webhook"
        sandbox.admin.op("edit_page", id=PAGE_ID, text=AFTER)
        _wait("the edit's events", lambda: h.store.count(TEAM) > before)
        tracer.step = "store"
        queue = WebhookQueue(h.store)
        _wait("the webhook queue to drain", lambda: not queue.counts().get("pending", 0))
        tracer.markers |= {e.event_id for e in list(h.store.iter_events(TEAM))[before:]}  # the edit's own

        tracer.step = "train"
        job = client.training.start(TEAM)
        _wait("the edit's version", lambda: client.training.status(TEAM, job.id).status in ("succeeded", "failed"), TRAIN_WAIT_S)
        done = client.training.status(TEAM, job.id)
        current = client.adapters.list(TEAM)
        if done.status != "succeeded" or current.current != 2:
            raise SystemExit(f"trace_edit: the edit's training job {done.status} ({done.message}); "
                             f"current version {current.current}")
        tracer.markers.add(f"v{current.current:04d}")

        tracer.step = "answer"
        client.query(TEAM, "When does the nightly export run?")
    finally:
        tracer.stop()
        server.should_exit = True
        serving.join(timeout=10)
        sandbox.stop()
        h.close()
    return list(tracer.hits.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the files as one JSON line")
    parser.add_argument("--markdown", action="store_true", help="print the table docs/architecture.md holds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engram-trace-") as tmp:
        hits = trace(Path(tmp))
    if args.json:
        print(json.dumps({"files": [h.path for h in hits], "steps": {h.path: h.step for h in hits}}))
        return
    if args.markdown:
        print("| # | step | file | where the edit first shows up |\n|---|---|---|---|")
        for n, h in enumerate(hits, 1):
            print(f"| {n} | {h.step} | `{h.path}` | `{h.function}` |")
        return
    for n, h in enumerate(hits, 1):
        print(f"{n:2d}. {h.step:8s} {h.path}  ({h.function})")
    print(f"{len(hits)} project files")


if __name__ == "__main__":
    main()
