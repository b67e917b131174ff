"""engram_training.pages: the retrieval estimate and the sources an answer carries, on a real store
of signed events and the real tokenizer (the tiny model's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram_sdk import Document, Tombstone, build_events
from engram_training.dataset import collect, page_chunks
from engram_training.evaluate import retrieval_contexts
from engram_training.infer import prompt_ids
from engram_training.pages import PagesCache, Source, TeamPages
from tests.factories import T0

PAGES = {
    "vendors": ("Vendor contracts", "Vendor contracts are approved by Dana Whitfield in procurement."),
    "releases": ("Release calendar", "Releases go out on Tuesdays after the release review."),
    "oncall": ("On-call", "The pager rotates every Monday at 09:00 between the platform engineers."),
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def ingest(env, entity: str, title: str, text: str, **kw) -> None:
    doc = Document(platform="notion", workspace_id="ws", entity_id=entity, title=title, text=text,
                   url=f"https://notion.example/{entity}", updated_at=T0, **kw)
    env.store.append([env.keyring.sign(e) for e in build_events(doc, team_id=env.team, connection_id="c",
                                                                   source="notion://workspace/ws")])


@pytest.fixture
def team(team_env):
    for entity, (title, text) in PAGES.items():
        ingest(team_env, entity, title, text)
    return team_env


def test_an_answer_rests_on_the_page_whose_words_it_uses(team, tokenizer):
    pages = TeamPages(collect(team.store, team.team), tokenizer, chunk_tokens=256, top_k=3)
    assert pages.sources("Dana Whitfield approves them.") == [
        Source("vendors", "Vendor contracts", "https://notion.example/vendors")]
    assert [s.entity_id for s in pages.sources("On Tuesdays, after the review.")] == ["releases"]


def test_an_answer_that_matches_no_page_has_no_sources(team, tokenizer):
    pages = TeamPages(collect(team.store, team.team), tokenizer, chunk_tokens=256, top_k=3)
    assert pages.sources("zqx wobble") == []
    assert pages.sources("") == []


def test_the_retrieval_estimate_is_the_trainers_retrieval_prompt(team, tokenizer):
    col = collect(team.store, team.team)
    pages = TeamPages(col, tokenizer, chunk_tokens=256, top_k=2)
    question = "Who approves vendor contracts?"
    context = retrieval_contexts(page_chunks(col, tokenizer, 256), [question], top_k=2)[0]
    expected = len(prompt_ids(tokenizer, question, context))
    assert pages.retrieval_prompt_tokens(question) == expected > len(prompt_ids(tokenizer, question))


def test_a_team_without_pages_estimates_the_bare_prompt(team_env, tokenizer):
    pages = TeamPages(collect(team_env.store, team_env.team), tokenizer, chunk_tokens=256, top_k=3)
    assert pages.sources("anything at all") == []
    assert pages.retrieval_prompt_tokens("Who?") == len(prompt_ids(tokenizer, "Who?", ""))


def test_restricted_and_deleted_pages_are_never_sources(team, tokenizer):
    ingest(team, "secret", "Salaries", "Dana Whitfield earns a secret salary.", restricted=True,
           visible_to=["dana"])
    team.store.append([team.keyring.sign(e) for e in build_events(
        Tombstone(platform="notion", workspace_id="ws", entity_id="vendors", updated_at=T0),
        team_id=team.team, connection_id="c", source="notion://workspace/ws")])
    pages = TeamPages(collect(team.store, team.team), tokenizer, chunk_tokens=256, top_k=3)
    assert pages.sources("Dana Whitfield") == []


def test_the_cache_rebuilds_when_events_arrive_or_the_adapter_changes(team, tokenizer):
    cache = PagesCache(team.store, tokenizer)
    first = cache.get(team.team, 1)
    assert cache.get(team.team, 1) is first and cache.builds == 1
    ingest(team, "lunch", "Lunch", "Lunch is served at noon on Fridays.")
    assert [s.entity_id for s in cache.get(team.team, 1).sources("served at noon")] == ["lunch"]
    cache.get(team.team, 2)
    assert cache.builds == 3
