"""The Engram HTTP server (extra ``server``): ``create_app()`` returns an ASGI app a partner can
run with uvicorn (``engram serve``) or mount inside their own app."""

from ._app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
