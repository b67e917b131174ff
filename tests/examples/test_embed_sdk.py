"""examples/embed_sdk against a real Engram server on loopback: key registration, signed ingest,
sync and async questions, and the typed errors a partner backend turns into notices."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

from engram_sdk import Keyring
from engram_sdk.client import AsyncEngramClient, EngramClient
from examples.embed_sdk import partner_backend as backend

REPO = Path(__file__).resolve().parents[2]
QUESTION = "Who approves vendor contracts?"


def test_signed_events_are_accepted_only_once_the_key_is_registered(engram_server, tmp_path):
    keyring = Keyring(tmp_path / "partner-keys")
    keyring.generate(["acme"])
    events = backend.sign_documents(keyring, "acme", backend.sample_documents(), connection="partner-app",
                                    source="partnerapp://workspace/demo")
    with EngramClient(engram_server.url, engram_server.new_key("acme", "admin")) as admin:
        before = backend.ingest(admin, events)
        assert before.rejected == 3 and {r.reason for r in before.results} == {"unknown_key"}

        assert backend.register_signing_key(admin, keyring, "acme") == keyring.active().kid
        first = backend.ingest(admin, events)
        assert (first.accepted, first.rejected) == (3, 0)
        again = backend.ingest(admin, events)  # a retried request stores nothing twice
        assert (again.accepted, again.duplicates) == (0, 3)

        tampered = events[0].to_dict()
        tampered["data"]["text"] = "Vendor contracts are approved by Mallory."
        bad = backend.ingest(admin, [tampered])
        assert bad.rejected == 1 and bad.results[0].reason == "bad_signature"

        other_team = backend.sign_documents(keyring, "globex", backend.sample_documents(), connection="partner-app",
                                            source="partnerapp://workspace/demo")
        assert backend.ingest(admin, other_team[:1]).results[0].reason == "forbidden_team"


def test_sync_and_async_clients_give_the_same_answer(engram_server):
    key = engram_server.new_key()
    with EngramClient(engram_server.url, key) as engram:
        answer = backend.ask(engram, "acme", QUESTION, max_tokens=8)
    assert answer.text and answer.notice is None and answer.prompt_tokens > 5

    async def both() -> list[backend.Answer]:
        async with AsyncEngramClient(engram_server.url, key) as engram:
            return await backend.ask_many(engram, "acme", [QUESTION, QUESTION], max_tokens=8)

    concurrent = asyncio.run(both())  # greedy decoding: the same question gets the same answer
    assert [a.text for a in concurrent] == [answer.text] * 2
    assert all(a.prompt_tokens == answer.prompt_tokens for a in concurrent)


def test_rate_limit_becomes_a_notice_with_retry_after(engram_server):
    with EngramClient(engram_server.url, engram_server.new_key(), max_retries=0) as engram:
        answers = [backend.ask(engram, "acme", QUESTION, max_tokens=2) for _ in range(6)]
    assert all(a.text for a in answers[:5])  # the key's budget is 5 a minute
    limited = answers[5]
    assert limited.text is None and "Too many questions" in limited.notice and limited.retry_after > 0


def test_a_wrong_or_foreign_key_becomes_a_generic_notice_and_never_shows_the_key(engram_server, caplog):
    caplog.set_level(logging.INFO, logger="partner.engram")
    wrong = "egk_" + "x" * 40
    foreign = engram_server.new_key("globex", "query")
    for key in (wrong, foreign):
        with EngramClient(engram_server.url, key) as engram:
            a = backend.ask(engram, "acme", QUESTION)
        assert a.text is None and a.notice == "The team assistant is not available right now."
        assert key not in caplog.text and key not in repr(a)
    assert "invalid or revoked API key" in caplog.text and "may not query for team acme" in caplog.text


def test_a_team_without_an_adapter_gets_a_still_learning_notice(engram_server):
    with EngramClient(engram_server.url, engram_server.new_key("globex", "query")) as engram:
        a = backend.ask(engram, "globex", QUESTION)
    assert a.text is None and "still learning" in a.notice


def test_the_script_runs_against_the_server(engram_server, tmp_path):
    key = engram_server.new_key("acme", "admin")
    env = {**os.environ, "ENGRAM_URL": engram_server.url, "ENGRAM_API_KEY": key}
    run = subprocess.run([sys.executable, "-m", "examples.embed_sdk.partner_backend", "--team", "acme",
                          "--keys", str(tmp_path / "keys"), QUESTION], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "ingested 3 events: 3 new" in run.stdout or "ingested 3 events: 0 new, 3 already stored" in run.stdout
    assert f"Q: {QUESTION}\nA: " in run.stdout and "prompt tokens)" in run.stdout
    assert "asked 1 question(s) concurrently" in run.stdout
    assert key not in run.stdout + run.stderr
