"""The example platform's sandbox: a tiny notes service on the sandbox base.

Its API (all JSON, bearer token auth)::

    GET /api/me                                   {"workspace": {"id", "name"}}
    GET /api/folders                              {"folders": [{"id", "title"}]}
    GET /api/changes?after=SEQ&limit=N            {"changes": [{"seq", "id", "op"}], "next_after", "has_more"}
    GET /api/notes?cursor=C&limit=N               {"notes": [{"id", "folder", "title"}], "next_cursor"}
    GET /api/notes/{id}                           {"id", "folder", "title", "text", "author", "updated_at", "seq"}

``/api/changes`` is a compacted change log: one entry per note (its latest change) with a sequence
number; deletions stay in it. Errors are ``{"error": code, "message": text}``.

Workspace file: ``{"workspace": {"id", "name"}, "tokens": [...], "folders": [...], "users": [...],
"notes": [{"id", "folder", "title", "text", "author"}]}``. Admin ops (``POST /_sandbox/ops/<op>``):
``add_note``, ``edit_note`` (text, title, or folder: a move), ``delete_note``, ``break_note`` /
``fix_note`` (GET of that note answers 500), ``generate`` (``count`` notes in ``folder``). Each
change is delivered to the configured webhook URL as ``{"type": "note.updated"|"note.deleted",
"id": ...}``, signed with Standard Webhooks v1.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._sandbox import Sandbox

__all__ = ["ExampleSandbox", "sample_workspace"]

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _time(seq: int) -> str:
    # Deterministic timestamps: two sandboxes given the same edits serve identical notes.
    return (T0 + timedelta(minutes=seq)).isoformat().replace("+00:00", "Z")


def sample_workspace(notes: int = 12, folders: tuple[str, ...] = ("eng", "sales")) -> dict[str, Any]:
    """A small workspace: ``notes`` notes spread over ``folders``."""
    return {
        "workspace": {"id": "ws-example-1", "name": "Example Co"},
        "tokens": ["tok-example-1"],
        "users": [{"id": "u1", "name": "Ada Lovelace"}, {"id": "u2", "name": "Grace Hopper"}],
        "folders": [{"id": f, "title": f.title()} for f in folders],
        "notes": [
            {"id": f"note-{i:04d}", "folder": folders[i % len(folders)], "title": f"Note {i}",
             "text": f"Fact {i}: the Northwind review for item {i} is on day {i % 28 + 1}.",
             "author": "u1" if i % 2 else "u2"}
            for i in range(notes)
        ],
    }


class ExampleSandbox(Sandbox):
    platform = "example"

    @classmethod
    def default_workspace(cls) -> dict[str, Any]:
        return sample_workspace()

    def on_load(self) -> None:
        ws = self.workspace
        ws.setdefault("notes", [])
        ws.setdefault("deleted", [])
        ws.setdefault("broken", [])
        seq = int(ws.get("seq", 0))
        for note in ws["notes"]:
            if "seq" not in note:
                seq += 1
                note["seq"] = seq
                note.setdefault("updated_at", _time(seq))
        ws["seq"] = max([seq] + [n["seq"] for n in ws["notes"]] + [d["seq"] for d in ws["deleted"]])

    # --- platform API ------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": code, "message": message}, status, headers=headers)

    def routes(self) -> list[Route]:
        return [
            Route("/api/me", self.me),
            Route("/api/folders", self.folders),
            Route("/api/changes", self.changes),
            Route("/api/notes", self.notes),
            Route("/api/notes/{id}", self.note),
        ]

    def authenticate(self, request: Request) -> Any:
        token = self.token_of(request)
        if token is None or token not in self.workspace.get("tokens", []):
            return self.error(401, "invalid_token", "The token is missing or not valid.")
        return token

    def _limit(self, request: Request) -> int:
        return max(1, min(100, int(request.query_params.get("limit", "50"))))

    async def me(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"workspace": self.workspace["workspace"]})

    async def folders(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"folders": self.workspace.get("folders", [])})

    async def changes(self, request: Request) -> Response:
        with self.lock:
            after = int(request.query_params.get("after", "0"))
            log = [{"seq": n["seq"], "id": n["id"], "op": "upsert"} for n in self.workspace["notes"]]
            log += [{"seq": d["seq"], "id": d["id"], "op": "delete"} for d in self.workspace["deleted"]]
            log = sorted((c for c in log if c["seq"] > after), key=lambda c: c["seq"])
            page = log[: self._limit(request)]
            return JSONResponse({"changes": page, "next_after": page[-1]["seq"] if page else after,
                                 "has_more": len(log) > len(page)})

    async def notes(self, request: Request) -> Response:
        with self.lock:
            start = int(request.query_params.get("cursor") or 0)
            items = sorted(self.workspace["notes"], key=lambda n: n["id"])
            page = items[start : start + self._limit(request)]
            nxt = start + len(page)
            return JSONResponse({"notes": [{"id": n["id"], "folder": n["folder"], "title": n["title"]} for n in page],
                                 "next_cursor": str(nxt) if nxt < len(items) else None})

    async def note(self, request: Request) -> Response:
        with self.lock:
            note_id = request.path_params["id"]
            if note_id in self.workspace["broken"]:
                return self.error(500, "internal_error", "Something went wrong.")
            for n in self.workspace["notes"]:
                if n["id"] == note_id:
                    return JSONResponse(n)
            return self.error(404, "not_found", f"No note {note_id}.")

    # --- admin ops ---------------------------------------------------------------------------------

    def _bump(self) -> int:
        self.workspace["seq"] += 1
        return self.workspace["seq"]

    def _find(self, note_id: str) -> dict[str, Any]:
        for n in self.workspace["notes"]:
            if n["id"] == note_id:
                return n
        raise KeyError(f"no note {note_id}")

    def op_add_note(self, body: dict[str, Any]) -> dict[str, Any]:
        seq = self._bump()
        note = {"id": body["id"], "folder": body["folder"], "title": body.get("title", body["id"]),
                "text": body.get("text", ""), "author": body.get("author", "u1"), "seq": seq,
                "updated_at": _time(seq)}
        self.workspace["deleted"] = [d for d in self.workspace["deleted"] if d["id"] != note["id"]]
        self.workspace["notes"].append(note)
        self.deliver({"type": "note.updated", "id": note["id"]})
        return note

    def op_edit_note(self, body: dict[str, Any]) -> dict[str, Any]:
        note = self._find(body["id"])
        for k in ("text", "title", "folder"):
            if k in body:
                note[k] = body[k]
        note["seq"] = self._bump()
        note["updated_at"] = _time(note["seq"])
        self.deliver({"type": "note.updated", "id": note["id"]})
        return note

    def op_delete_note(self, body: dict[str, Any]) -> dict[str, Any]:
        note = self._find(body["id"])
        self.workspace["notes"].remove(note)
        self.workspace["deleted"].append({"id": note["id"], "seq": self._bump()})
        self.deliver({"type": "note.deleted", "id": note["id"]})
        return {"id": note["id"]}

    def op_delete_silently(self, body: dict[str, Any]) -> dict[str, Any]:
        """Remove a note without a trace in the change log (what incremental sync cannot see)."""
        note = self._find(body["id"])
        self.workspace["notes"].remove(note)
        return {"id": note["id"]}

    def op_break_note(self, body: dict[str, Any]) -> None:
        self._find(body["id"])
        self.workspace["broken"].append(body["id"])

    def op_fix_note(self, body: dict[str, Any]) -> None:
        self.workspace["broken"] = [b for b in self.workspace["broken"] if b != body["id"]]

    def op_generate(self, body: dict[str, Any]) -> int:
        count, folder = int(body["count"]), body.get("folder", "eng")
        base = len(self.workspace["notes"]) + len(self.workspace["deleted"])
        for i in range(count):
            seq = self._bump()
            self.workspace["notes"].append({
                "id": f"gen-{base + i:06d}", "folder": folder, "title": f"Generated {base + i}",
                "text": f"Generated fact {base + i}.", "author": "u2", "seq": seq, "updated_at": _time(seq)})
        return count
