"""``engram serve``: the HTTP server (uvicorn) with its background workers."""

from __future__ import annotations

from typing import Optional

import typer

from . import app
from ._common import console, fail, settings


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    no_workers: bool = typer.Option(False, "--no-workers",
                                    help="Leave training jobs to `engram worker` on other hosts."),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="Allow this browser origin."),
    adapter_cache: int = typer.Option(8, "--adapter-cache", min=1, help="Team adapters kept loaded."),
    query_rate: str = typer.Option("60/min", "--query-rate", help="Queries per API key, e.g. 60/min."),
    max_body_mb: int = typer.Option(16, "--max-body-mb", min=1, help="Largest request body accepted."),
    warm: bool = typer.Option(False, "--warm",
                              help="Load the base model at start (in the background) so the first answer has "
                                   "no cold start; /v1/health?ready=true answers 503 until it is loaded."),
) -> None:
    """Serve the /v1 API: ingest signed events, answer queries with team adapters, manage adapters."""
    try:
        import uvicorn

        from ..server import ServerConfig, create_app
    except ImportError as exc:
        fail(f"the server needs the `server` extra: pip install 'engram-sdk[server]' ({exc.name} is missing)")
    s = settings()
    s.init_home()
    config = ServerConfig(workers=not no_workers, cors_origins=list(cors_origin or []),
                          adapter_cache_size=adapter_cache, query_rate=query_rate,
                          max_body_bytes=max_body_mb * 1024 * 1024, warm=warm)
    app_ = create_app(s, config=config)
    console.print(f"serving http://{host}:{port}/v1  (OpenAPI at /openapi.json, metrics at /metrics; "
                  f"workers {'off' if no_workers else 'on'}; "
                  f"base model {'loading now' if warm else 'loaded on the first query with an adapter'})")
    uvicorn.run(app_, host=host, port=port, log_level="info")
