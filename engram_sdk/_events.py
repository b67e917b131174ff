"""Training events: a record wrapped in a CloudEvents 1.0 envelope, ready to be signed.

The envelope is the contract in DESIGN.md: the CloudEvents attributes ``specversion``, ``id``,
``source``, ``type``, ``subject``, ``time``, ``datacontenttype``, ``data`` (the record), and the
extensions ``teamid``, ``connectionid``, ``engramkid`` and ``engramsig``.

``id`` is the hash of (source, type, subject, revision): the revision is the platform's precise
version id when the record carries one, else the sha256 of the normalized record. An unchanged
re-sync therefore yields the same id, and two different edits never share one. ``id_problem``
derives it again from an envelope's own content: every path that accepts events from outside
checks it (through ``verify_event``), so a signer cannot claim an id its content does not give.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from ._canonical import canonical_json
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ._exceptions import EventError, RecordError
from ._records import Document, Edit, Thread, Tombstone, parse_record, record_digest, split_record

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "TrainingEvent",
    "build_events",
    "content_core",
    "content_digest",
    "event_id",
    "id_problem",
    "parse_event",
    "record_revision",
]

EventType = Literal[
    "ai.engram.document.upserted",
    "ai.engram.thread.upserted",
    "ai.engram.edit.recorded",
    "ai.engram.entity.deleted",
]
EVENT_TYPES: dict[str, str] = {
    "document": "ai.engram.document.upserted",
    "thread": "ai.engram.thread.upserted",
    "edit": "ai.engram.edit.recorded",
    "tombstone": "ai.engram.entity.deleted",
}
# One signed envelope never exceeds this; records are split well below it (see LIMITS).
MAX_EVENT_BYTES = 8 * 1024 * 1024

_SOURCE_RE = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
# CloudEvents: extension names are lower-case letters and digits only.
_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class TrainingEvent(BaseModel):
    """One signed (or about to be signed) training event; ``data`` holds the record as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: EventType
    subject: str = Field(min_length=1)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    teamid: str = Field(min_length=1, max_length=200)
    connectionid: str = Field(min_length=1, max_length=200)
    engramkid: str | None = None
    engramsig: str | None = None

    # The JSON values exactly as received (or as built here). Signatures cover these, never a
    # re-serialisation through this model, so an envelope written by any producer still verifies.
    _raw: dict[str, Any] | None = PrivateAttr(default=None)
    # Canonical bytes of ``_raw`` without engramsig, kept by the signer: the event is immutable, so
    # a verify in the same process need not serialise it again.
    _payload: bytes | None = PrivateAttr(default=None)

    @field_validator("source")
    @classmethod
    def _source_is_platform_uri(cls, v: str) -> str:
        if not _SOURCE_RE.match(v):
            raise ValueError("must be a URI naming the platform account, e.g. notion://workspace/<id>")
        return v

    @field_validator("id")
    @classmethod
    def _id_is_hash(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("must be 64 lower-case hex characters (sha256)")
        return v

    @property
    def record(self) -> Document | Thread | Edit | Tombstone:
        return parse_record(self.data)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as plain JSON values (a copy: changing it never changes the event).
        Unset extensions are left out, as CloudEvents wants."""
        return _copy_json(self._top())

    def _top(self) -> dict[str, Any]:
        """A copy of the top level only, for internal code that adds or drops attributes."""
        raw = self.__pydantic_private__["_raw"]  # direct: BaseModel.__getattr__ is slow on hot paths
        if raw is not None:
            return dict(raw)
        out = self.model_dump(mode="json", exclude_none=True)
        out["time"] = _rfc3339(out["time"])
        return out

    def signing_payload(self) -> bytes:
        """RFC 8785 canonical JSON of the envelope without ``engramsig``: the bytes that are signed."""
        payload = self.__pydantic_private__["_payload"]
        if payload is not None:
            return payload
        body = self._top()
        body.pop("engramsig", None)
        return canonical_json(body)

    def to_json(self) -> str:
        return json.dumps(self._top(), ensure_ascii=False, separators=(",", ":"))


def _copy_json(value: Any) -> Any:
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy_json(v) for v in value]
    return value


def _rfc3339(value: str) -> str:
    # pydantic writes "+00:00" for UTC; CloudEvents examples and most producers write "Z".
    return value[:-6] + "Z" if value.endswith("+00:00") else value


def event_id(source: str, type_: str, subject: str, revision: str) -> str:
    return hashlib.sha256(canonical_json([source, type_, subject, revision])).hexdigest()


def record_revision(record: Document | Thread | Edit | Tombstone) -> str:
    """The id's revision input: the platform's precise version when the record has one (with the
    part's subject, so the parts of one split version differ), else the sha256 of the record."""
    if record.revision is not None:
        return "platform:" + record.revision + (f"#{record.subject}" if record.part else "")
    return "sha256:" + record_digest(record)


def id_problem(envelope: TrainingEvent | Mapping[str, Any]) -> str | None:
    """Why the envelope's ``id`` is not the one its own content derives, or None when it is.

    Everything comes from the envelope as received (what the signature covers): the record in
    ``data`` is validated and normalized again, so a record hashed by another producer from the
    same normalized values gives the same id. ``type`` and ``subject`` must be the record's own,
    since they are id inputs too: an envelope cannot move a record to another subject."""
    body = envelope._top() if isinstance(envelope, TrainingEvent) else envelope
    claimed, source, type_, subject = (body.get(k) for k in ("id", "source", "type", "subject"))
    if not isinstance(source, str) or not isinstance(claimed, str):
        return "the envelope has no string id or source to check"
    try:
        record = parse_record(body.get("data"))
    except RecordError as exc:
        return f"the id cannot be derived: data is not a valid record ({exc})"
    expected_type = EVENT_TYPES[record.kind]
    if type_ != expected_type:
        return f"type {type_!r} is not the one of a {record.kind} record ({expected_type})"
    if subject != record.subject:
        return f"subject {subject!r} is not the record's subject {record.subject!r}"
    expected = event_id(source, expected_type, record.subject, record_revision(record))
    if claimed != expected:
        return f"id {claimed[:16]}... is not the hash of [source, type, subject, revision] ({expected[:16]}...)"
    return None


# Left out of the content digest: who signed the event and through which connection it came.
UNSIGNED_CONTENT_EXCLUDES = ("engramsig", "engramkid", "connectionid")


def content_core(event: TrainingEvent | dict[str, Any]) -> bytes:
    """Canonical JSON of the envelope without signer and connection: what makes two envelopes with
    one id "the same event". A re-sign with a rotated key, or the same account reconnected under a
    new connection name, is a duplicate, not a conflict."""
    body = event._top() if isinstance(event, TrainingEvent) else dict(event)
    for k in UNSIGNED_CONTENT_EXCLUDES:
        body.pop(k, None)
    return canonical_json(body)


def content_digest(event: TrainingEvent | dict[str, Any]) -> str:
    return hashlib.sha256(content_core(event)).hexdigest()


def build_events(
    record: Document | Thread | Edit | Tombstone | dict[str, Any],
    *,
    team_id: str,
    connection_id: str,
    source: str,
) -> list[TrainingEvent]:
    """Wrap a record in unsigned envelopes: one, or one per part when it is above the size limits."""
    rec = parse_record(record) if isinstance(record, dict) else record
    out = []
    for part in split_record(rec):
        type_ = EVENT_TYPES[part.kind]
        time = part.updated_at
        try:
            event = TrainingEvent(
                id=event_id(source, type_, part.subject, record_revision(part)),
                source=source,
                type=type_,  # type: ignore[arg-type]
                subject=part.subject,
                time=time,
                data=part.model_dump(mode="json"),
                teamid=team_id,
                connectionid=connection_id,
            )
        except ValidationError as exc:
            raise EventError(_describe(exc)) from None
        event._raw = event._top()
        out.append(event)
    return out


def parse_event(data: dict[str, Any] | str | bytes) -> TrainingEvent:
    """Validate an envelope (dict or JSON text); the error names the attribute that is wrong."""
    if isinstance(data, (str, bytes)):
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise EventError(f"malformed JSON: {exc}") from None
    else:
        raw = data
    if not isinstance(raw, dict):
        raise EventError("invalid event: an envelope must be a JSON object")
    try:
        event = TrainingEvent.model_validate(raw)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from None
    expected = EVENT_TYPES.get(str(event.data.get("kind")))
    if expected != event.type:
        raise EventError(f"invalid event: data.kind {event.data.get('kind')!r} does not match type {event.type!r}")
    try:
        event.record
    except RecordError as exc:
        raise EventError(f"invalid event: data: {exc}") from None
    event._raw = _copy_json(raw)  # ours: a caller changing its dict later cannot change the event
    return event


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        parts.append(f"{where}: {err['msg']}")
    return "invalid event: " + "; ".join(parts)

