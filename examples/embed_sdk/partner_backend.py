"""Embedding the Engram SDK client in a partner's backend.

What a partner's server-side code does with Engram: register its signing key for a team, turn its
own content into signed events and ingest them, and ask the team's adapter questions on behalf of
its UI, turning the SDK's typed errors into something the product can show. The API key lives
here, in the backend; a browser never sees it (examples/partner_ui shows the browser side).

    ENGRAM_URL=http://127.0.0.1:8000 ENGRAM_API_KEY=egk_... \\
        python -m examples.embed_sdk.partner_backend --team acme --train "Who approves vendor contracts?"
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from engram_sdk import Document, Keyring, TrainingEvent, build_events
from engram_sdk.client import (
    APIError,
    APIRateLimited,
    AsyncEngramClient,
    EngramClient,
    Forbidden,
    IngestResponse,
    QueryResponse,
    Unauthorized,
)

log = logging.getLogger("partner.engram")

BATCH = 1000  # the server takes at most this many events per request

# Stands in for the partner's own content: in a real backend these come from your database.
SAMPLE_PAGES = {
    "handbook-vendors": ("Vendor contracts", "Vendor contracts are approved by Dana Whitfield in legal."),
    "handbook-releases": ("Releases", "Releases go out on Tuesdays after the release review."),
    "handbook-oncall": ("On-call", "The pager rotates every Monday at 09:00."),
}


def sample_documents(workspace: str = "demo") -> list[Document]:
    # A fixed time: the same content must give the same event ids on every run.
    edited = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    return [Document(platform="partnerapp", workspace_id=workspace, entity_id=eid, title=title, text=text,
                     updated_at=edited) for eid, (title, text) in SAMPLE_PAGES.items()]


@dataclass
class Answer:
    """What the product shows: an answer, or a notice saying why there is none."""

    text: str | None
    prompt_tokens: int = 0
    notice: str | None = None
    retry_after: float | None = None


def register_signing_key(admin: EngramClient, keyring: Keyring, team: str) -> str:
    """Trust this backend's public key for ``team`` on the server (needs an admin API key).
    Trusting the same key twice is harmless, so this can run at every deploy."""
    key = keyring.active()
    admin.signing_keys.trust(team, key.kid, key.public_key)
    return key.kid


def sign_documents(keyring: Keyring, team: str, docs: Sequence[Document], *, connection: str,
                   source: str) -> list[TrainingEvent]:
    """Wrap the partner's own content as signed events. Ids derive from the content, so signing an
    unchanged document again gives the same event, which the server stores once."""
    return [keyring.sign(ev) for doc in docs
            for ev in build_events(doc, team_id=team, connection_id=connection, source=source)]


def ingest(client: EngramClient, events: Sequence[TrainingEvent]) -> IngestResponse:
    """Send events in batches; rejected ones are logged with the server's reason and skipped,
    because the rest of a batch is stored either way."""
    total = IngestResponse(results=[], accepted=0, duplicates=0, conflicts=0, rejected=0)
    for start in range(0, len(events), BATCH):
        part = client.events.ingest(events[start:start + BATCH])
        for r in part.results:
            if r.status == "rejected":
                log.warning("event %s rejected: %s (%s)", r.id, r.reason, r.message)
        total.results += part.results
        total.accepted += part.accepted
        total.duplicates += part.duplicates
        total.conflicts += part.conflicts
        total.rejected += part.rejected
    return total


def _answered(r: QueryResponse) -> Answer:
    return Answer(r.answer, prompt_tokens=r.usage.prompt_tokens)


def _explain(exc: APIError) -> Answer:
    """Errors a user may see explained; anything else is a bug or an outage and is raised."""
    if isinstance(exc, APIRateLimited):
        return Answer(None, notice="Too many questions right now; try again shortly.", retry_after=exc.retry_after)
    if isinstance(exc, (Unauthorized, Forbidden)):
        # Our configuration is wrong (a revoked key, the wrong team): the operator must act, and the
        # user must not learn anything about keys or teams.
        log.error("Engram refused our API key: %s", exc)
        return Answer(None, notice="The team assistant is not available right now.")
    if exc.code == "no_adapter":
        return Answer(None, notice="The team assistant is still learning; ask again after its first training.")
    raise exc


def ask(client: EngramClient, team: str, question: str, *, max_tokens: int = 64) -> Answer:
    try:
        return _answered(client.query(team, question, max_tokens=max_tokens))
    except APIError as exc:
        return _explain(exc)


async def ask_async(client: AsyncEngramClient, team: str, question: str, *, max_tokens: int = 64) -> Answer:
    try:
        return _answered(await client.query(team, question, max_tokens=max_tokens))
    except APIError as exc:
        return _explain(exc)


async def ask_many(client: AsyncEngramClient, team: str, questions: Sequence[str], *,
                   max_tokens: int = 64) -> list[Answer]:
    """An async backend asks several questions at once (one request each, concurrently)."""
    return list(await asyncio.gather(*(ask_async(client, team, q, max_tokens=max_tokens) for q in questions)))


def train_and_wait(client: EngramClient, team: str, *, timeout: float = 3600) -> int:
    """Ask the server for a training run and wait for the new adapter version (admin key)."""
    job = client.training.start(team)
    deadline = time.monotonic() + timeout
    while job.status in ("queued", "running"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"training job {job.id} still {job.status} after {timeout}s")
        time.sleep(2)
        job = client.training.status(team, job.id)
    if job.status != "succeeded" or job.version is None:
        raise RuntimeError(f"training job {job.id} {job.status}: {job.message}")
    return job.version


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("questions", nargs="*", default=["Who approves vendor contracts?"])
    p.add_argument("--team", required=True)
    p.add_argument("--url", default=os.environ.get("ENGRAM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--keys", type=Path, default=Path(".partner-keys"), help="this backend's signing keyring")
    p.add_argument("--train", action="store_true", help="train after ingesting (needs an admin API key)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    api_key = os.environ.get("ENGRAM_API_KEY")  # from the environment: never on a command line
    if not api_key:
        p.error("set ENGRAM_API_KEY (create one with `engram keys api create --team TEAM --role admin`)")

    keyring = Keyring(args.keys)
    if not keyring.keys():
        keyring.generate([args.team])
    with EngramClient(args.url, api_key) as engram:
        register_signing_key(engram, keyring, args.team)
        events = sign_documents(keyring, args.team, sample_documents(), connection="partner-app",
                                source="partnerapp://workspace/demo")
        result = ingest(engram, events)
        print(f"ingested {len(events)} events: {result.accepted} new, {result.duplicates} already stored, "
              f"{result.rejected} rejected")
        if args.train:
            print(f"adapter version {train_and_wait(engram, args.team)} is current")
        for q in args.questions:
            a = ask(engram, args.team, q)
            print(f"Q: {q}\nA: {a.text if a.text is not None else a.notice}  ({a.prompt_tokens} prompt tokens)")

    async def concurrently() -> list[Answer]:
        async with AsyncEngramClient(args.url, api_key) as engram:
            return await ask_many(engram, args.team, args.questions)

    answers = asyncio.run(concurrently())
    print(f"asked {len(answers)} question(s) concurrently with the async client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
