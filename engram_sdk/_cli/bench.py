"""``engram bench events``: sign, verify and store N events, against a bound measured in the same run.

The bound is the time of the five unavoidable steps done alone on the same events (canonical JSON,
Ed25519 sign, Ed25519 verify, deriving the id again from the record as verification must, a plain
batched INSERT), added up. The ratio says how much of the
end-to-end rate the SDK's own work (validation, idempotency checks, bookkeeping) leaves standing.

Also ``bench demo`` and ``bench freshness``; the trainer's and the connectors' benchmarks
(``bench train``, ``serve``, ``notion``, ``microsoft``) come from their plugins.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer

from .. import plugins
from .._canonical import canonical_json
from .._events import TrainingEvent, build_events, event_id
from .._records import Document, Person
from .._signing import Keyring, TrustedKey, TrustedKeys, _b64u, _unb64u, verify_event
from .._store import EventStore
from . import bench_app
from ._common import console, emit_json, progress

_WORDS = ("launch budget review client matter draft policy renewal vendor contract onboarding quarter "
          "deadline approval migration incident retro roadmap hiring audit filing").split()


def sample_events(n: int, team: str = "bench-team", seed: int = 7) -> list[TrainingEvent]:
    """n unsigned events around 2 KB each, like a real page of prose."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out: list[TrainingEvent] = []
    for i in range(n):
        text = " ".join(rng.choice(_WORDS) for _ in range(260))[:1700]
        doc = Document(platform="notion", workspace_id="bench-ws", entity_id=f"page-{i:07d}", parent_id="root",
                       url=f"https://www.notion.so/page-{i}", path=["Team wiki"], title=f"Page {i}",
                       text=text, authors=[Person(id="u-1", name="Ada")],
                       updated_at=base + timedelta(seconds=i))
        out.extend(build_events(doc, team_id=team, connection_id="bench-notion", source="notion://workspace/bench-ws"))
    return out


def _run(url: str, events: list[TrainingEvent], keyring: Keyring, batch: int) -> dict[str, float]:
    kid, private = keyring.signer()
    public = private.public_key()
    trusted = TrustedKeys.of([TrustedKey(kid=kid, team_id=events[0].teamid,
                                         public_key=_unb64u(keyring.get(kid).public_key), status="trusted")])
    n = len(events)

    # End to end, through the public path: sign, verify, append in batches.
    store = EventStore.open(url)
    with progress() as bar:
        task = bar.add_task(f"end to end ({store.dialect})", total=n)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            signed = [keyring.sign_with(ev, kid, private) for ev in events[i : i + batch]]
            for ev in signed:
                verify_event(ev, trusted)
            store.append(signed)
            bar.advance(task, len(signed))
        e2e = time.perf_counter() - t0
    assert store.count(events[0].teamid) == n
    store.close()

    # The bound: each step alone, on the same events, into a fresh table.
    bodies = []
    for ev in events:
        body = ev.to_dict()
        body["engramkid"] = kid
        bodies.append(body)
    t0 = time.perf_counter()
    payloads = [canonical_json(b) for b in bodies]
    t_canon = time.perf_counter() - t0
    t0 = time.perf_counter()
    sigs = [private.sign(p) for p in payloads]
    t_sign = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p, s in zip(payloads, sigs):
        public.verify(s, p)
    t_verify = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in bodies:  # the id rule's floor: one canonical serialisation of the record and two hashes
        event_id(b["source"], b["type"], b["subject"], "sha256:" + hashlib.sha256(canonical_json(b["data"])).hexdigest())
    t_derive = time.perf_counter() - t0
    rows = [{"team_id": b["teamid"] + "-bound", "event_id": b["id"], "connection_id": b["connectionid"],
             "source": b["source"], "type": b["type"], "subject": b["subject"], "time": b["time"], "kid": kid,
             "sig": _b64u(s), "digest": b["id"], "core": p.decode(), "stored_at": datetime.now(timezone.utc)}
            for b, p, s in zip(bodies, payloads, sigs)]
    store = EventStore.open(url)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        store.insert_unchecked(rows[i : i + batch])
    t_insert = time.perf_counter() - t0
    store.close()
    bound = t_canon + t_sign + t_verify + t_derive + t_insert
    return {
        "events_per_s": round(n / e2e, 1),
        "bound_events_per_s": round(n / bound, 1),
        "ratio": round(bound / e2e, 3),
        "seconds": round(e2e, 3),
        "bound_seconds": {"canonicalise": round(t_canon, 3), "sign": round(t_sign, 3),
                          "verify": round(t_verify, 3), "derive_id": round(t_derive, 3),
                          "insert": round(t_insert, 3)},
    }


@bench_app.command("events")
def bench_events(
    count: int = typer.Option(5000, "--count", "-n", min=10, help="Events to sign, verify and store."),
    batch: int = typer.Option(500, "--batch", min=1, help="Events per transaction."),
    postgres_url: str = typer.Option(None, "--postgres-url", envvar="ENGRAM_TEST_POSTGRES_URL",
                                     help="Server to create a scratch database on (default: local test server)."),
    no_postgres: bool = typer.Option(False, "--no-postgres", help="SQLite only."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Sign, verify and store N ~2 KB events in SQLite (and PostgreSQL when reachable)."""
    events = sample_events(count)
    results: dict[str, Any] = {"count": count, "payload_bytes": len(events[0].to_json())}
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp:
        keyring = Keyring(Path(tmp) / "keys")
        keyring.generate([events[0].teamid])
        results["sqlite"] = _run(f"sqlite:///{tmp}/bench.db", events, keyring, batch)
        if not no_postgres:
            from .._pgtemp import temporary_database

            try:
                with temporary_database(postgres_url, prefix="engram_bench") as url:
                    results["postgresql"] = _run(url, events, keyring, batch)
            except Exception as exc:  # the figure is optional; say why it is missing
                results["postgresql"] = {"error": str(exc).splitlines()[0]}
    if as_json:
        emit_json(results)
        return
    for name in ("sqlite", "postgresql"):
        r = results.get(name)
        if r and "ratio" in r:
            console.print(f"{name}: {r['events_per_s']} events/s end to end, bound {r['bound_events_per_s']} "
                          f"events/s, ratio {r['ratio']}")
        elif r:
            console.print(f"{name}: not measured ({r['error']})")


def _recipe(pairs: list[str]) -> dict[str, Any]:
    """The demo's training recipe with ``--set`` overrides."""
    from ._common import fail
    from .demo import kestrel_demo

    parse = plugins.trainer().parse_overrides
    try:
        given = parse(pairs)
    except ValueError as exc:
        fail(str(exc))
    recipe = kestrel_demo().DEMO_TRAINING
    continual = {k: v for k, v in recipe.get("continual", {}).items() if k not in given}
    return {**recipe, **given, "continual": continual}  # --set applies to both runs


@bench_app.command("demo")
def bench_demo(
    home: Path = typer.Option(None, "--home", help="Time a run in this demo home (a rerun when it holds one); "
                                                  "default: a fresh temporary home, i.e. a first run."),
    setting: list[str] = typer.Option([], "--set", help="Override a setting of the demo's training recipe "
                                                        "(repeatable), e.g. --set epochs=3."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Time `engram demo` end to end: seconds, and how many of its questions the adapter answered right."""
    plugins.trainer().check()
    from .demo import run_demo

    with tempfile.TemporaryDirectory(prefix="engram-bench-demo-") as tmp:
        t0 = time.perf_counter()
        report = run_demo(home or Path(tmp) / "demo", quiet=as_json, training=_recipe(setting))
        seconds = time.perf_counter() - t0
    edit = report.get("edit") or {}
    result = {
        "seconds": round(seconds, 1),
        "answers_correct": report["answers_correct"],
        "answers_total": report["answers_total"],
        "edited_fact_correct": bool((edit.get("answer") or {}).get("correct")),
        "rag_answers_correct": sum(bool(a.get("rag_correct")) for a in report["answers"]),
        "adapter_prompt_tokens": [a["prompt_tokens"] for a in report["answers"]],
        "rag_prompt_tokens": [a["rag_prompt_tokens"] for a in report["answers"]],
        "gate_failures": report["gate_failures"],
        "trained": report["trained"],
        "new_events": report["synced"],
        "timings": report["timings"],
    }
    if as_json:
        emit_json(result)
        return
    console.print(f"demo: {result['seconds']} s; {result['answers_correct']}/{result['answers_total']} answers correct "
                  f"(retrieval: {result['rag_answers_correct']}); edited fact correct: {result['edited_fact_correct']}")


@bench_app.command("freshness")
def bench_freshness(
    directory: Path = typer.Option(None, "--dir", help="Keep the two runs' homes here (default: a temporary "
                                                       "directory); it must be empty."),
    setting: list[str] = typer.Option([], "--set", help="Override a setting of the demo's training recipe "
                                                        "(repeatable), e.g. --set epochs=3."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """From an edit of one fact in the Notion sandbox to the first correct answer from the team adapter
    (webhook -> queue -> event -> continual update), and the update's cost at 1x and 10x the workspace."""
    plugins.trainer().check()
    from ._common import fail
    from .demo import kestrel_demo

    example = kestrel_demo()

    say = (lambda m: None) if as_json else (lambda m: console.print(m, highlight=False))
    with tempfile.TemporaryDirectory(prefix="engram-bench-freshness-") as tmp:
        root = directory or Path(tmp)
        if root.exists() and any(root.iterdir()):
            fail(f"{root} is not empty: the measurement needs fresh homes")
        try:
            with progress() as bar:
                result = example.measure_freshness(root, scale=10, say=say, progress=bar, training=_recipe(setting))
        except example.DemoError as exc:
            fail(f"freshness: {exc}")
    if as_json:
        emit_json(result)
        return
    got = result["seconds_to_correct_answer"]
    when = f"{got:.1f} s" if got is not None else "not correct after the update"
    console.print(f"edit -> first correct answer: {when} (target <= 300 s); answer {result['x1'].get('answer')!r}")
    for size in ("1x", "10x"):
        r = result[f"x{size[:-1]}"]
        if r["update_seconds"] is None:
            console.print(f"[red]at {size} the update was not measured[/red]: {'; '.join(r['gate_failures'])}")
    if result["update_ratio"] is not None:
        console.print(f"continual update: {result['update_seconds_1x']:.1f} s at 1x ({result['events_1x']} events), "
                      f"{result['update_seconds_10x']:.1f} s at 10x ({result['events_10x']} events): "
                      f"ratio {result['update_ratio']} (1.0 = independent of the workspace size)")
