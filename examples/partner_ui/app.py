"""A partner's UI panel: a workspace page with an "Ask the team" side panel, and the small backend
behind it.

The browser only ever talks to this backend (``POST /api/ask``, which streams the answer back as
it is made); the backend calls the Engram server through the SDK client with an API key that stays
in this process. In a real product this
route sits behind the product's own login, which decides which team a user may ask.

    ENGRAM_URL=http://127.0.0.1:8000 ENGRAM_API_KEY=egk_... ENGRAM_TEAM=acme \\
        python -m examples.partner_ui.app --port 8080
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from engram_sdk.client import (
    APIError,
    APIRateLimited,
    AsyncEngramClient,
    Forbidden,
    NoAdapterError,
    QueryResponse,
    Unauthorized,
)

log = logging.getLogger("partner.ui")

STATIC = Path(__file__).parent / "static"
MAX_QUESTION = 2000  # characters; a panel question, not a document
MAX_TOKENS = 64
UNAVAILABLE = "The team assistant is not available right now."


def notice(exc: APIError) -> JSONResponse:
    """An error answer from Engram as the short notice the panel shows; details go to our log only."""
    if isinstance(exc, APIRateLimited):
        headers = {"Retry-After": f"{exc.retry_after:.0f}"} if exc.retry_after else None
        return JSONResponse({"error": "Too many questions right now; try again shortly."}, 429, headers=headers)
    if isinstance(exc, (Unauthorized, Forbidden)):
        # Our key is wrong or revoked: the operator's problem; the browser learns nothing about it.
        log.error("Engram refused the backend's API key: %s", exc)
        return JSONResponse({"error": UNAVAILABLE}, 503)
    if isinstance(exc, NoAdapterError):
        return JSONResponse({"error": "The team assistant is still learning; try again later."}, 503)
    log.error("Engram query failed: %s", exc)
    return JSONResponse({"error": UNAVAILABLE}, 502)


async def lines(first: str | QueryResponse, stream: AsyncIterator[str | QueryResponse]) -> AsyncIterator[str]:
    """The answer to the browser as it is made, one JSON object a line: ``{"delta": "..."}`` per
    piece, then ``{"done": {...}}`` with the whole answer, its token counts and its sources (or
    ``{"error": "..."}`` if Engram fails half-way)."""
    item: str | QueryResponse | None = first
    try:
        while item is not None:
            if isinstance(item, QueryResponse):
                done = {"answer": item.answer.strip(), "adapter_version": item.adapter_version,
                        "prompt_tokens": item.usage.prompt_tokens,
                        "completion_tokens": item.usage.completion_tokens,
                        "retrieval_prompt_tokens": item.retrieval_prompt_tokens,
                        "sources": [{"title": s.title or s.entity_id, "url": s.url} for s in item.sources]}
                yield json.dumps({"done": done}) + "\n"
            else:
                yield json.dumps({"delta": item}) + "\n"
            item = await anext(stream, None)
    except APIError as exc:
        log.error("Engram failed while answering: %s", exc)
        yield json.dumps({"error": UNAVAILABLE}) + "\n"
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # query_stream is an async generator


def create_app(engram_url: str, api_key: str, team: str) -> Starlette:
    """The partner backend as an ASGI app; the Engram API key is held by its client only."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One client for the app's life: it keeps connections to Engram open between questions.
        # No retries: a person is waiting, and a rate limit is better shown than waited out.
        async with AsyncEngramClient(engram_url, api_key, max_retries=0, timeout=60) as engram:
            app.state.engram = engram
            yield

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def ask(request: Request) -> Response:
        try:
            body = await request.json()
            question = str(body["question"]).strip()
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "send {\"question\": \"...\"}"}, 400)
        if not question or len(question) > MAX_QUESTION:
            return JSONResponse({"error": f"a question has 1 to {MAX_QUESTION} characters"}, 400)
        engram: AsyncEngramClient = request.app.state.engram
        stream = engram.query_stream(team, question, max_tokens=MAX_TOKENS)
        try:
            first = await anext(stream)  # an error answer (rate limit, no adapter, bad key) comes here
        except APIError as exc:
            await stream.aclose()  # type: ignore[attr-defined]  # query_stream is an async generator
            return notice(exc)
        return StreamingResponse(lines(first, stream), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return Starlette(routes=[Route("/", page), Route("/api/ask", ask, methods=["POST"]),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")],
                     lifespan=lifespan)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description="the partner UI panel example")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    # From the environment, so the key is in no command line and in no file the browser can reach.
    missing = [name for name in ("ENGRAM_API_KEY", "ENGRAM_TEAM") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"set {' and '.join(missing)} (see examples/partner_ui/README.md)")
    app = create_app(os.environ.get("ENGRAM_URL", "http://127.0.0.1:8000"), os.environ["ENGRAM_API_KEY"],
                     os.environ["ENGRAM_TEAM"])
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
