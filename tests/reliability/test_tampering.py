"""Tampered events of every kind (tests/reliability/_corpus.py) against every path that accepts
events: ``engram events verify``, ``import`` and ``import --partial`` on SQLite and PostgreSQL, and
HTTP ingest on a server over loopback. Held: refused with the expected reason, and nothing of it
stored; the genuine lines around it are accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from engram_sdk import EventStore, Keyring, Settings, parse_event
from engram_sdk._apikeys import ApiKeys
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._events import content_digest
from engram_sdk._pgtemp import temporary_database
from engram_sdk._sandbox import serve
from engram_sdk.server import ServerConfig, create_app

from . import _corpus
from .conftest import FULL, scale


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> _corpus.Corpus:
    root = tmp_path_factory.mktemp("producers")
    keyrings = {}
    for name, teams in (("acme", ["acme"]), ("globex", ["globex"]), ("retired", ["acme"])):
        keyrings[name] = Keyring(root / f"{name}-keys")
        keyrings[name].generate(teams)
    return _corpus.build(keyrings["acme"], keyrings["globex"], keyrings["retired"], good=scale(20, 200), huge=FULL)


@contextmanager
def receiving_store(backend: str, tmp_path: Path, corpus: _corpus.Corpus) -> Iterator[tuple[str, EventStore]]:
    """The other machine: trusts the producers' keys (one of them revoked since) and already holds
    one genuine event (the one a conflicting line contradicts)."""

    def prepare(url: str) -> EventStore:
        store = EventStore.open(url)
        store.trust(corpus.trust)
        store.revoke_key(corpus.revoked)
        store.append([parse_event(corpus.stored_first)])
        return store

    if backend == "SQLite":
        url = f"sqlite:///{tmp_path / 'receiver.db'}"
        store = prepare(url)
        yield url, store
        store.close()
    else:
        with temporary_database(prefix="engram_reliability") as url:
            store = prepare(url)
            yield url, store
            store.close()


def stored_copy(store: EventStore, envelope: dict | None) -> bool:
    """Whether the store holds this very envelope's content (under its team and id)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("id"), str):
        return False
    team = envelope.get("teamid") if isinstance(envelope.get("teamid"), str) else "acme"
    held = store.get(team, envelope["id"])
    return held is not None and content_digest(held.envelope) == content_digest(envelope)


@pytest.mark.parametrize("backend", ["SQLite", "PostgreSQL"])
@pytest.mark.parametrize("command", ["verify", "import", "import --partial"])
def test_tampered_events_through_the_cli(backend, command, corpus, tmp_path, monkeypatch, capsys, tally):
    lines = corpus.lines()
    path = tmp_path / "events.jsonl"
    path.write_text("".join(text + "\n" for text, _ in lines))
    with receiving_store(backend, tmp_path, corpus) as (url, store):
        monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("ENGRAM_DATABASE_URL", url)
        code = run_app(app, ["events", *command.split(), str(path), "--json"])
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 1
        rejected = {r["line"]: r["reason"] for r in report["rejected"]}
        row = tally.row(f"tampered events, `engram events {command}`, {backend}")
        for number, (_, t) in enumerate(lines, 1):
            if t is None:
                continue
            reason = rejected.get(number)
            row.check(reason in t.reasons and not stored_copy(store, t.envelope),
                      f"{t.kind}: line {number} answered {reason!r}, expected one of {sorted(t.reasons)}")
        genuine_lines = {n for n, (_, t) in enumerate(lines, 1) if t is None}
        assert not genuine_lines & set(rejected), "a genuine line was rejected"
        expected = len(corpus.good) + 1 if command == "import --partial" else 1
        assert store.count("acme") == expected


def test_tampered_events_through_http_ingest(corpus, tmp_path, tally):
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'server.db'}")
    settings.init_home()
    with receiving_store("SQLite", tmp_path, corpus) as (_, store):
        token = ApiKeys(store).create("acme", "ingest", "reliability")[1]
        headers = {"Authorization": f"Bearer {token}"}
        app_ = create_app(settings, store=store, config=ServerConfig(workers=False, max_body_bytes=8 * 1024 * 1024))
        with serve(app_) as server, httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            row = tally.row("tampered events, HTTP `POST /v1/events`, SQLite")
            batch = [(t, json.loads(t.line)) for t in corpus.tampered
                     if t.envelope is not None and len(t.line) < 1_000_000]
            resp = http.post("/v1/events", json={"events": corpus.good + [b for _, b in batch]})
            assert resp.status_code == 200, resp.text
            results = resp.json()["results"]
            assert all(r["status"] == "accepted" for r in results[: len(corpus.good)])
            for (t, _), r in zip(batch, results[len(corpus.good):]):
                ok = r["reason"] in t.http_reasons and r["status"] in ("rejected", "conflict")
                row.check(ok and not stored_copy(store, t.envelope),
                          f"{t.kind}: {r['status']} {r['reason']!r}, expected one of {sorted(t.http_reasons)}")
            # what cannot be an element of a JSON batch is sent as a body of its own
            for t in corpus.tampered:
                if t.envelope is not None and len(t.line) < 1_000_000:
                    continue
                body = '{"events": [\n' + t.line + "\n]}"
                r = http.post("/v1/events", content=body, headers={"content-type": "application/json"})
                expected = 413 if len(body) > 8 * 1024 * 1024 else 422
                named = expected == 413 or "at line 2" in r.text or "events.0" in r.text  # where it broke
                row.check(r.status_code == expected and named,
                          f"{t.kind}: HTTP {r.status_code} {r.text[:200]}")
            assert store.count("acme") == len(corpus.good) + 1
