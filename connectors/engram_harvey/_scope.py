"""Which Harvey activity belongs to a team.

Harvey's history export is organisation-wide and not gated by client-matter or ethical-wall
boundaries, so the connector filters it itself. A scope is ``all`` or a list of
``project:<vault project id>``, ``matter:<client matter id or name>`` and ``user:<email>``.

Query events name their project by ``vault_project_name`` (and, with ``include_file_ids``, by the
files they used) and their matter by ``cm_id`` (v2) or ``Client Matter #`` (v1), so the scope is
first *resolved* against the project and matter listings: ids become names and file ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HarveyScope", "ResolvedScope"]

_KINDS = ("project", "matter", "user")


@dataclass(frozen=True)
class HarveyScope:
    everything: bool = False
    projects: frozenset[str] = frozenset()
    matters: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> HarveyScope:
        """``"all"`` or ``"project:ID,matter:ID,user:EMAIL"`` (a list of such items works too)."""
        items = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
        items = [p for p in items if p]
        if items == ["all"]:
            return cls(everything=True)
        if not items:
            raise ValueError("a Harvey scope is 'all' or project:ID, matter:ID, user:EMAIL items")
        found: dict[str, set[str]] = {k: set() for k in _KINDS}
        for item in items:
            kind, sep, value = item.partition(":")
            if not sep or kind not in found or not value.strip():
                raise ValueError(f"bad Harvey scope item {item!r}: expected project:ID, matter:ID or user:EMAIL")
            found[kind].add(value.strip().lower() if kind == "user" else value.strip())
        return cls(
            projects=frozenset(found["project"]),
            matters=frozenset(found["matter"]),
            users=frozenset(found["user"]),
        )

    def __str__(self) -> str:
        if self.everything:
            return "all"
        return ",".join(
            f"{kind}:{v}" for kind, vals in zip(_KINDS, (self.projects, self.matters, self.users)) for v in sorted(vals)
        )

    def wants_project(self, project_id: str) -> bool:
        return self.everything or project_id in self.projects

    def resolve(
        self,
        projects: Iterable[dict[str, Any]] = (),
        matters: Iterable[dict[str, Any]] = (),
        project_files: dict[str, Iterable[str]] | None = None,
    ) -> ResolvedScope:
        """Turn ids into what query events carry: project names, file ids, matter ids and names."""
        if self.everything:
            return ResolvedScope(everything=True)
        names, files = set(), set()
        for p in projects:
            if str(p.get("id")) in self.projects and p.get("name"):
                names.add(str(p["name"]))
        for pid, fids in (project_files or {}).items():
            if pid in self.projects:
                files.update(str(f) for f in fids)
        matter_keys = set(self.matters)
        for m in matters:
            ident, name = str(m.get("id") or ""), str(m.get("name") or "")
            if ident in self.matters or name in self.matters:
                matter_keys.update(k for k in (ident, name) if k)
        return ResolvedScope(
            project_names=frozenset(names),
            file_ids=frozenset(files),
            matters=frozenset(matter_keys),
            users=self.users,
        )


@dataclass(frozen=True)
class ResolvedScope:
    everything: bool = False
    project_names: frozenset[str] = field(default_factory=frozenset)
    file_ids: frozenset[str] = field(default_factory=frozenset)
    matters: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] = field(default_factory=frozenset)

    def admits(self, event: dict[str, Any]) -> bool:
        """True when a (v2-shaped) history event is tied to the scope's projects, matters or users."""
        if self.everything:
            return True
        user = str(event.get("user") or "").lower()
        if user and user in self.users:
            return True
        for key in ("cm_id", "client_matter_name"):
            if event.get(key) and str(event[key]) in self.matters:
                return True
        if event.get("vault_project_name") and str(event["vault_project_name"]) in self.project_names:
            return True
        return any(str(f) in self.file_ids for f in event.get("file_ids") or [])
