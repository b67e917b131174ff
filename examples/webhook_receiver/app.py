"""A webhook receiver a partner deploys: platform webhooks and signed Engram events, one small app.

- ``POST /webhooks/<connection>``: Notion webhooks and Microsoft Graph change notifications. The
  SDK's ``WebhookReceiver`` hands each delivery to the connection's connector, which checks the
  platform's own signature (Notion's ``X-Notion-Signature``, Graph's ``clientState`` and
  validation tokens), queues the entities to refetch, and answers at once, as platforms expect.
  A worker thread drains the queue: it refetches those entities, signs and stores their events.
- ``POST /events``: signed Engram event envelopes from elsewhere (another connector host, a
  partner's own pipeline), as CloudEvents JSON (``application/cloudevents+json``, one event) or a
  batch (``application/cloudevents-batch+json``, a JSON array). Each must be signed by a key this
  deployment trusts for the event's team (``engram keys trust FILE``); a batch with any bad event
  is refused whole, with the reason for each, and nothing of it is stored.
- ``GET /healthz``: liveness and the webhook queue's counts.

    ENGRAM_HOME=~/.engram python -m examples.webhook_receiver.app --port 8090
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from engram_sdk import EventStore, Keyring, Rejection, Settings, check_envelope
from engram_sdk.connectors import WebhookQueue, WebhookReceiver, WebhookWorker, open_secret_store

log = logging.getLogger("partner.receiver")

MAX_BODY = 16 * 1024 * 1024  # bytes per request; the same limit as the Engram server's
MAX_EVENTS = 1000  # per batch, as the Engram server


def create_app(settings: Settings | None = None, *, worker: bool = True, poll_seconds: float = 1.0) -> Starlette:
    """The receiver for the deployment in ``settings`` (default: ENGRAM_HOME / ENGRAM_DATABASE_URL).
    ``worker=False`` leaves the queue to ``engram worker`` processes elsewhere."""
    settings = settings or Settings.load()
    store = EventStore.open(settings.database_url)
    secrets = open_secret_store(settings, store.engine)
    queue = WebhookQueue(store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = None
        if worker:
            # Refetching is slow platform I/O: it runs beside the receiver, so a delivery is
            # answered in milliseconds whatever the platform's latency.
            drain = WebhookWorker(store, Keyring(settings.keys_dir), secrets)
            thread = threading.Thread(target=drain.run_forever, kwargs={"interval": poll_seconds, "stop": stop},
                                      name="webhook-worker", daemon=True)
            thread.start()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=10)
        store.close()

    def store_events(body: bytes, batch: bool) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"error": "malformed_json", "message": str(exc)}
        envelopes = payload if batch else [payload]
        if not isinstance(envelopes, list) or not envelopes:
            return 400, {"error": "schema_error", "message": "a batch is a non-empty JSON array of events"}
        if len(envelopes) > MAX_EVENTS:
            return 413, {"error": "too_many_events", "message": f"at most {MAX_EVENTS} events per batch"}
        trusted = store.trusted_keys()  # read per request: `engram keys trust` takes effect at once
        good, rejected = [], []
        for i, raw in enumerate(envelopes):
            try:
                good.append(check_envelope(raw, trusted))
            except Rejection as r:
                rejected.append({"index": i, "id": r.event_id, "reason": r.reason, "message": r.message})
        if rejected:
            log.warning("refused a batch of %d event(s): %s", len(envelopes),
                        ", ".join(f"#{r['index']} {r['reason']}" for r in rejected))
            return 422, {"error": "rejected", "message": f"{len(rejected)} of {len(envelopes)} event(s) failed "
                                                         "verification; nothing was stored", "rejected": rejected}
        result = store.append(good)
        return 202, {"accepted": len(result.accepted), "duplicates": len(result.duplicates),
                     "conflicts": len(result.conflicts)}

    async def events(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse({"error": "payload_too_large"}, 413)
        body = b""
        async for chunk in request.stream():  # counted as it arrives: no Content-Length is trusted
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": "payload_too_large"}, 413)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        status, out = await run_in_threadpool(store_events, body, kind == "application/cloudevents-batch+json")
        return JSONResponse(out, status)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "queue": await run_in_threadpool(queue.counts)})

    return Starlette(routes=[
        Route("/events", events, methods=["POST"]),
        Route("/healthz", healthz),
        # Platforms authenticate with their own signatures, checked per connection by its connector.
        Mount("/webhooks", WebhookReceiver(store, secrets, prefix="")),
    ], lifespan=lifespan)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description="the webhook receiver example")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--no-worker", action="store_true", help="only queue deliveries; `engram worker` drains them")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the worker's every platform request otherwise
    uvicorn.run(create_app(worker=not args.no_worker), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
