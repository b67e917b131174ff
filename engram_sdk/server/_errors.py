"""One error format everywhere: ``{"error": {"code", "message", "request_id"}}``."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._api import ERROR_CODES as _CODES


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.code = code or _CODES.get(status, "error")


def error_response(request: Request | None, status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) if request is not None else None
    body: dict[str, Any] = {"error": {"code": code or _CODES.get(status, "error"), "message": message,
                                      "request_id": rid}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.message, exc.code, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":
            parts.append(_json_error(exc.body, err))
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return error_response(request, 422, "; ".join(parts) or "invalid request")


def _json_error(body: Any, err: dict[str, Any]) -> str:
    """Where a body that is not JSON breaks, as a person finds it in the file they sent: line,
    column and, for a batch, which event (a byte offset alone sends them counting)."""
    loc = err.get("loc", ())
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    reason = (err.get("ctx") or {}).get("error") or err.get("msg") or "invalid JSON"
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or pos is None:
        return f"body is not valid JSON: {reason}"
    line = body.count("\n", 0, pos) + 1
    column = pos - (body.rfind("\n", 0, pos) + 1) + 1
    index = _batch_index(body, pos)
    within = f", in events[{index}]" if index is not None else ""
    return f"body is not valid JSON: {reason.removesuffix(' at')} at line {line}, column {column}{within}"


_BATCH_START = re.compile(r'\s*\{\s*"events"\s*:\s*\[')


def _batch_index(body: str, pos: int) -> int | None:
    """The position in ``{"events": [...]}`` of the element the error at ``pos`` falls in."""
    m = _BATCH_START.match(body)
    if m is None or pos < m.end():
        return None
    decoder, i, n = json.JSONDecoder(), m.end(), 0
    while True:
        while i < len(body) and body[i] in " \t\r\n":
            i += 1
        try:
            _, end = decoder.raw_decode(body, i)
        except ValueError:
            return n
        if end > pos:
            return n
        i = end
        while i < len(body) and body[i] in " \t\r\n":
            i += 1
        if i >= len(body) or body[i] != ",":
            return n + 1 if i >= pos else None
        i += 1
        n += 1


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    import logging

    logging.getLogger("engram.server").exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal error; the server log has the details")


def install(app: Any) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
