"""Normalized records: what every connector yields, whatever its platform.

Four kinds, told apart by ``kind``:

- ``Document``  a page, note, file, site page or data-source row, as text
- ``Thread``    a conversation: root messages, each with its replies (a channel thread,
                a comment thread, a Harvey query with its answer and feedback)
- ``Edit``      one entity's before -> after, with author and time
- ``Tombstone`` the entity is gone for this team (deleted, trashed, unshared, moved out of scope)

Size limits are per record and generous (see ``LIMITS``); content beyond them is never dropped
or rejected: ``split_record`` cuts it into parts that each fit, and ``build_events`` always
splits before signing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from ._canonical import canonical_json
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from ._exceptions import RecordError

__all__ = [
    "LIMITS",
    "Document",
    "Edit",
    "Message",
    "Part",
    "Person",
    "Record",
    "Thread",
    "Tombstone",
    "parse_record",
    "record_digest",
    "split_record",
]


class Limits(BaseModel):
    """Per-record size limits. A record above them is split into parts by ``split_record``.

    Sized for real content: a 1,000-block Notion page renders to roughly 100-300 k characters and a
    Teams thread with thousands of replies to a few hundred k, so both usually fit in one record;
    the limits exist so one signed event stays well under the store's 8 MiB event cap.
    """

    model_config = ConfigDict(frozen=True)
    max_text_chars: int = 1_000_000
    max_thread_messages: int = 5_000
    max_thread_chars: int = 1_000_000


LIMITS = Limits()

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Person(_Model):
    """Someone who wrote or changed content; ``id`` is the platform's user id."""

    id: NonEmpty
    name: str | None = None
    email: str | None = None


class Part(_Model):
    """Set on records produced by ``split_record``: this is part ``index`` (1-based) of ``count``."""

    index: int = Field(ge=1)
    count: int = Field(ge=2)


class _RecordBase(_Model):
    platform: NonEmpty = Field(description="connector platform, e.g. 'notion'")
    workspace_id: NonEmpty = Field(description="Notion workspace, Microsoft tenant, Harvey org")
    entity_id: NonEmpty = Field(description="the platform's id of the entity")
    parent_id: str | None = Field(default=None, description="the container the entity sits in")
    url: str | None = None
    path: list[str] = Field(default_factory=list, description="titles from the root down to the parent")
    authors: list[Person] = Field(default_factory=list)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime
    visible_to: list[str] = Field(
        default_factory=list, description="ids of the people or groups allowed to see the entity"
    )
    restricted: bool = Field(
        default=False,
        description="True when only ``visible_to`` may see it; False when everyone who can open "
        "its container can (``visible_to`` then only lists explicit grants)",
    )
    revision: str | None = Field(
        default=None,
        description="the platform's own precise version id, when it has one; events use it as id input",
    )
    part: Part | None = None

    @property
    def subject(self) -> str:
        """The CloudEvents ``subject``: the entity, and the part when split."""
        if self.part is None:
            return self.entity_id
        return f"{self.entity_id}#part-{self.part.index}-of-{self.part.count}"


class Document(_RecordBase):
    kind: Literal["document"] = "document"
    doc_type: NonEmpty = Field(default="page", description="page, note, file, site_page, row, ...")
    title: str = ""
    text: str
    mime_type: str | None = None
    properties: dict[str, str] = Field(default_factory=dict, description="metadata rendered as text")


class Message(_Model):
    id: NonEmpty
    author: Person | None = None
    created_at: AwareDatetime
    edited_at: AwareDatetime | None = None
    text: str
    replies: list[Message] = Field(default_factory=list)

    def walk(self) -> Iterator[tuple[Message, Message | None]]:
        """This message and every reply below it (replies of replies too) in reading order, each
        with the message it answers (None for this one). Iterative, so a reply chain thousands
        deep cannot reach the recursion limit."""
        stack: list[tuple[Message, Message | None]] = [(self, None)]
        while stack:
            message, parent = stack.pop()
            yield message, parent
            stack.extend((reply, message) for reply in reversed(message.replies))


class Thread(_RecordBase):
    kind: Literal["thread"] = "thread"
    thread_type: NonEmpty = Field(default="conversation", description="channel_thread, comments, query, ...")
    title: str = ""
    messages: list[Message] = Field(min_length=1)

    def walk(self) -> Iterator[tuple[Message, Message | None]]:
        """Every message of the thread in reading order (each root, then its replies, depth first),
        each with the message it answers (None for a root)."""
        for root in self.messages:
            yield from root.walk()


class Edit(_RecordBase):
    kind: Literal["edit"] = "edit"
    field: NonEmpty = Field(default="text", description="what changed: 'text', 'title', 'cell:<column>'")
    before: str | None = Field(default=None, description="the previous value, None when unknown")
    before_known: bool = Field(default=True, description="False when the first sighting was already edited")
    after: str
    author: Person | None = None
    title: str = ""

    @classmethod
    def between(cls, previous: Document | Thread | None, doc: Document, *,
                author: Person | None = None) -> Edit | None:
        """The text change from ``previous`` (the entity's last stored version, as
        ``ConnectorContext.previous`` returns it) to ``doc``; None when there is no earlier document
        or its text is unchanged: a first sighting is a Document, not an Edit. ``author`` (who
        made the change, when the platform says) defaults to the document's last author."""
        if not isinstance(previous, Document) or previous.text == doc.text:
            return None
        return cls(platform=doc.platform, workspace_id=doc.workspace_id, entity_id=doc.entity_id,
                   parent_id=doc.parent_id, url=doc.url, path=list(doc.path), authors=list(doc.authors),
                   created_at=doc.created_at, updated_at=doc.updated_at, field="text", before=previous.text,
                   after=doc.text, author=author or (doc.authors[-1] if doc.authors else None), title=doc.title)


class Tombstone(_RecordBase):
    kind: Literal["tombstone"] = "tombstone"
    reason: Literal["deleted", "trashed", "unshared", "out_of_scope"] = "deleted"


Record = Annotated[Union[Document, Thread, Edit, Tombstone], Field(discriminator="kind")]
_RECORD_ADAPTER: TypeAdapter[Any] = TypeAdapter(Record)


def parse_record(data: Any) -> Document | Thread | Edit | Tombstone:
    """Validate a dict (or JSON string) into a record; errors name the offending field."""
    try:
        if isinstance(data, (str, bytes)):
            return _RECORD_ADAPTER.validate_json(data)
        return _RECORD_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise RecordError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "invalid record: " + "; ".join(parts) + more


def record_digest(record: _RecordBase) -> str:
    """sha256 of the record's RFC 8785 canonical JSON: the revision when the platform has none."""
    return hashlib.sha256(canonical_json(record.model_dump(mode="json"))).hexdigest()


# --- splitting -------------------------------------------------------------------------------------


def split_record(record: Document | Thread | Edit | Tombstone, limits: Limits = LIMITS) -> list[Any]:
    """Cut a record above ``limits`` into parts that fit; a record within them comes back alone.

    Every character survives: joining the parts' texts (documents) or messages (threads)
    gives back the original.
    """
    if isinstance(record, Document):
        chunks = _chunk_text(record.text, limits.max_text_chars)
        if len(chunks) == 1:
            return [record]
        return [
            record.model_copy(update={"text": c, "part": Part(index=i, count=len(chunks))})
            for i, c in enumerate(chunks, 1)
        ]
    if isinstance(record, Thread):
        groups = _chunk_messages(record.messages, limits)
        if len(groups) == 1:
            return [record]
        return [
            record.model_copy(update={"messages": g, "part": Part(index=i, count=len(groups))})
            for i, g in enumerate(groups, 1)
        ]
    if isinstance(record, Edit):
        # An edit is one change; both sides are cut in step so part i holds before[i] -> after[i].
        n = max(
            len(_chunk_text(record.after, limits.max_text_chars)),
            len(_chunk_text(record.before or "", limits.max_text_chars)),
        )
        if n == 1:
            return [record]
        afters = _even_chunks(record.after, n)
        befores = _even_chunks(record.before, n) if record.before is not None else [None] * n
        return [
            record.model_copy(update={"after": a, "before": b, "part": Part(index=i, count=n)})
            for i, (a, b) in enumerate(zip(afters, befores), 1)
        ]
    return [record]


def _chunk_text(text: str, limit: int) -> list[str]:
    """Split at paragraph, then line, then space boundaries where possible; never lose a character."""
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    start = 0
    while len(text) - start > limit:
        window = text[start : start + limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        end = start + (cut + 1 if cut > limit // 2 else limit)
        chunks.append(text[start:end])
        start = end
    chunks.append(text[start:])
    return chunks


def _even_chunks(text: str, n: int) -> list[str]:
    size = -(-len(text) // n) if text else 0
    return [text[i * size : (i + 1) * size] for i in range(n)]


def _chunk_messages(messages: list[Message], limits: Limits) -> list[list[Message]]:
    """Pack root messages with their replies into parts within the limits.

    A root whose replies straddle parts is repeated with empty text at the head of the next part,
    carrying the remaining replies, so every reply stays under its own root.
    """
    max_count, max_chars = limits.max_thread_messages, limits.max_thread_chars
    parts: list[list[Message]] = []
    cur: list[Message] = []
    count = chars = 0

    def full(extra_chars: int) -> bool:
        return count + 1 > max_count or chars + extra_chars > max_chars

    for root in messages:
        for text in _chunk_text(root.text, max_chars):
            if cur and full(len(text)):
                parts.append(cur)
                cur, count, chars = [], 0, 0
            cur.append(root.model_copy(update={"text": text, "replies": []}))
            count, chars = count + 1, chars + len(text)
        pending: list[Message] = []
        for reply in root.replies:
            for text in _chunk_text(reply.text, max_chars):
                if full(len(text)):
                    cur[-1] = cur[-1].model_copy(update={"replies": pending})
                    parts.append(cur)
                    cur, count, chars, pending = [root.model_copy(update={"text": "", "replies": []})], 1, 0, []
                pending.append(reply.model_copy(update={"text": text}))
                count, chars = count + 1, chars + len(text)
        cur[-1] = cur[-1].model_copy(update={"replies": pending})
    parts.append(cur)
    return parts
