"""Ingest signed events, train through the API, query: real uvicorn on loopback, the SDK client,
a tiny random model. Two teams, so every step also checks that neither sees the other."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from engram_sdk import Document, build_events
from engram_sdk._sandbox import serve
from engram_sdk.client import AsyncEngramClient, EngramClient, Forbidden, Source
from engram_sdk.server import ServerConfig, create_app
from tests.factories import T0
from tests.server.conftest import TINY_TRAINING, make_deployment

QUESTION = "Who approves vendor contracts?"
# Enough steps at a high rate that two teams' adapters surely answer differently.
TRAINING = {**TINY_TRAINING, "epochs": 3.0, "lr": 2e-2}


def team_events(dep, team: str, facts: list[str]):
    keyring = dep.keyrings[team]
    out = []
    for i, fact in enumerate(facts):
        doc = Document(platform="notion", workspace_id=f"{team}-ws", entity_id=f"{team}-page-{i}",
                       title=f"{team} handbook {i}", text=fact, updated_at=T0)
        out += [keyring.sign(e) for e in build_events(doc, team_id=team, connection_id=f"{team}-notion",
                                                      source=f"notion://workspace/{team}-ws")]
    return out


def wait_for(client: EngramClient, team: str, job_id: str, timeout: float = 600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.training.status(team, job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"training job {job_id} did not finish in {timeout}s")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    dep = make_deployment(tmp_path_factory.mktemp("e2e"), tiny_model)
    app = create_app(dep.settings, store=dep.store,
                     config=ServerConfig(worker_poll_seconds=0.1, train_overrides=TRAINING, adapter_cache_size=1))
    with serve(app) as srv:
        clients = {t: EngramClient(srv.url, dep.tokens[(t, "admin")]) for t in ("acme", "globex")}
        facts = {
            "acme": ["The vendor contract approver is Dana Whitfield.", "The acme launch is on Tuesday.",
                     "Acme payroll runs on the 25th."] * 2,
            "globex": ["Globex ships from the Rotterdam warehouse.", "The globex fiscal year ends in June.",
                       "Globex interns report to Omar."] * 2,
        }
        for team, client in clients.items():
            result = client.events.ingest(team_events(dep, team, facts[team]))
            assert result.accepted == 6 and result.rejected == 0
        jobs = {t: c.training.start(t) for t, c in clients.items()}
        finished = {t: wait_for(clients[t], t, jobs[t].id) for t in clients}
        yield dep, srv, clients, finished
        for c in clients.values():
            c.close()
    dep.store.close()


def test_training_through_the_api_publishes_version_1(trained):
    dep, srv, clients, finished = trained
    for team, job in finished.items():
        assert job.status == "succeeded" and job.version == 1, job.message
        listing = clients[team].adapters.list(team)
        assert listing.current == 1 and listing.adapters[0].current


def test_query_answers_with_the_team_adapter_and_counts_tokens(trained):
    dep, srv, clients, _ = trained
    a = clients["acme"].query("acme", QUESTION, max_tokens=12)
    assert a.adapter_version == 1 and a.usage.prompt_tokens > 10 and 0 < a.usage.completion_tokens <= 12
    assert a.answer


def test_streamed_answer_equals_the_plain_one(trained):
    dep, srv, clients, _ = trained
    plain = clients["acme"].query("acme", QUESTION, max_tokens=12)
    items = list(clients["acme"].query_stream("acme", QUESTION, max_tokens=12))
    *pieces, final = items
    assert "".join(pieces) == final.answer == plain.answer and final.usage == plain.usage


def test_an_answer_carries_the_retrieval_estimate_and_its_sources(trained):
    from transformers import AutoTokenizer

    from engram_training.dataset import collect, page_chunks
    from engram_training.evaluate import retrieval_contexts
    from engram_training.infer import prompt_ids
    from engram_training.pages import TeamPages

    dep, srv, clients, _ = trained
    plain = clients["acme"].query("acme", QUESTION, max_tokens=12)
    *_, streamed = clients["acme"].query_stream("acme", QUESTION, max_tokens=12)

    async def ask_async():
        async with AsyncEngramClient(srv.url, dep.tokens[("acme", "query")]) as c:
            return await c.query("acme", QUESTION, max_tokens=12)

    from_async = asyncio.run(ask_async())
    raw = httpx.post(f"{srv.url}/v1/teams/acme/query", headers=dep.headers("acme", "query"),
                     json={"question": QUESTION, "max_tokens": 12}).json()
    assert {"sources", "retrieval_prompt_tokens"} <= raw.keys()
    # a version not trained to abstain on confidence never does
    assert raw["abstained"] is False and not plain.abstained and not streamed.abstained

    # M is the trainer's own retrieval baseline prompt for this question (BM25 top-3 of 256-token
    # chunks of the team's pages), counted with the model's tokenizer: far more than the adapter's.
    tok = AutoTokenizer.from_pretrained(dep.settings.base_model)
    col = collect(dep.store, "acme")
    context = retrieval_contexts(page_chunks(col, tok, 256), [QUESTION], top_k=3)[0]
    expected = len(prompt_ids(tok, QUESTION, context))
    assert (plain.retrieval_prompt_tokens == streamed.retrieval_prompt_tokens == from_async.retrieval_prompt_tokens
            == raw["retrieval_prompt_tokens"] == expected > plain.usage.prompt_tokens)
    # Sources are matched against the answer after it is made: the answer's own pages, acme's only.
    found = [Source(entity_id=s.entity_id, title=s.title, url=s.url)
             for s in TeamPages(col, tok, chunk_tokens=256, top_k=3).sources(plain.answer)]
    assert plain.sources == streamed.sources == from_async.sources == found
    assert {s.entity_id for s in plain.sources} <= {f"acme-page-{i}" for i in range(3)}


def test_stop_sequences_cut_the_answer(trained):
    dep, srv, clients, _ = trained
    full = clients["acme"].query("acme", QUESTION, max_tokens=12)
    middle = len(full.answer) // 2
    stop = full.answer[middle : middle + 1]
    cut = clients["acme"].query("acme", QUESTION, max_tokens=12, stop=[stop])
    assert stop not in cut.answer and full.answer.startswith(cut.answer) and len(cut.answer) <= middle
    assert cut.usage.completion_tokens < full.usage.completion_tokens


def test_each_team_gets_its_own_adapter_even_under_concurrent_load(trained):
    dep, srv, clients, _ = trained
    reference = {t: clients[t].query(t, QUESTION, max_tokens=16).answer for t in clients}
    assert reference["acme"] != reference["globex"], "the two adapters must differ for this test to mean anything"

    def ask(i: int):
        team = ("acme", "globex")[i % 2]
        return team, clients[team].query(team, QUESTION, max_tokens=16).answer

    # An LRU of one adapter: every alternation reloads, the worst case for a mix-up.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(24)))
    assert all(answer == reference[team] for team, answer in results)


def test_a_team_key_cannot_query_or_read_the_other_team(trained):
    dep, srv, clients, _ = trained
    with pytest.raises(Forbidden):
        clients["acme"].query("globex", QUESTION)
    with pytest.raises(Forbidden):
        clients["acme"].adapters.list("globex")
    with pytest.raises(Forbidden):
        clients["acme"].training.start("globex")


def test_rollback_makes_an_earlier_version_current(trained):
    dep, srv, clients, _ = trained
    c = clients["globex"]
    idle = wait_for(c, "globex", c.training.start("globex").id)
    assert idle.status == "failed" and "nothing new" in idle.message
    c.events.ingest(team_events(dep, "globex", ["Globex moved its warehouse to Antwerp."]))
    job = wait_for(c, "globex", c.training.start("globex").id)
    assert job.status == "succeeded" and job.version == 2, job.message
    assert c.adapters.list("globex").current == 2
    assert c.adapters.rollback("globex", 1).current
    assert c.adapters.list("globex").current == 1
    assert c.query("globex", QUESTION, max_tokens=4).adapter_version == 1
