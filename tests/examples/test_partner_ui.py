"""examples/partner_ui in headless Chromium (Debian's, driven by Playwright): a question typed into
the "Ask the team" panel goes browser -> partner backend -> SDK client -> Engram server (tiny model);
its answer streams in, and under it the panel shows what it cost next to retrieval and the pages it
likely rests on; the API key never reaches the browser. Screenshots go to test-artifacts/partner_ui/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from engram_sdk._sandbox import serve
from engram_sdk.client import EngramClient
from examples.partner_ui.app import MAX_TOKENS, create_app

QUESTION = "Who approves vendor contracts?"
# Every change to the newest exchange, as the browser saw it: the answer's text, the exchange's
# state (streaming / done / error) and the usage line, so a test can tell a streamed answer from
# one that arrived whole.
RECORD_CHANGES = """() => {
  window.changes = [];
  new MutationObserver(() => {
    const item = document.querySelector(".exchange:last-child");
    if (!item) return;
    window.changes.push({ state: item.dataset.state || "", answer: item.querySelector(".answer").textContent,
                          usage: item.querySelector(".usage").textContent });
  }).observe(document.getElementById("conversation"), { childList: true, subtree: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True)
        yield b
        b.close()


@pytest.fixture
def partner(engram_server):
    key = engram_server.new_key("acme", "query")
    with serve(create_app(engram_server.url, key, "acme")) as backend:
        yield backend.url, key


@pytest.fixture
def shots(artifacts: Path) -> Path:
    d = artifacts / "partner_ui"
    d.mkdir(exist_ok=True)
    return d


def open_panel(browser, url: str) -> tuple[Page, list[tuple[str, dict[str, str], bytes]]]:
    """A page on ``url`` that records every response the browser receives (url, headers, body)."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def record(response) -> None:
        # Chromium keeps no body for a streamed answer (test_the_backend_streams_lines_... reads
        # that one field by field); its headers are recorded all the same.
        streamed = response.headers.get("content-type") == "application/x-ndjson"
        seen.append((response.url, response.headers, b"" if streamed else response.body()))

    page.on("response", record)
    page.goto(url)
    page.evaluate(RECORD_CHANGES)
    return page, seen


def direct_answer(engram_server, question: str):
    """The very answer the server gives for ``question`` (greedy decoding), asked with the SDK."""
    with EngramClient(engram_server.url, engram_server.new_key("acme", "query")) as engram:
        return engram.query("acme", question, max_tokens=MAX_TOKENS)


def test_an_answer_streams_in_with_its_cost_next_to_retrieval_and_its_sources(browser, partner, engram_server,
                                                                              shots):
    url, key = partner
    page, seen = open_panel(browser, url)
    assert page.title() == "Launch plan · Acme workspace"
    assert page.get_by_role("heading", name="Ask the team").is_visible()

    page.fill("#question", QUESTION)
    page.press("#question", "Enter")  # Enter asks
    exchange = page.locator(".exchange").first
    page.locator(".exchange[data-state=done]").wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "answer.png"), full_page=True)

    direct = direct_answer(engram_server, QUESTION)
    shown = exchange.locator(".answer").inner_text()
    assert exchange.locator(".question").inner_text() == QUESTION
    assert shown.strip() == direct.answer.strip() and shown.strip()
    assert page.input_value("#question") == ""

    # Streamed: the answer grew piece by piece, each piece the start of the final answer, while the
    # usage line stayed empty; only then did the answer end and the usage appear.
    changes = page.evaluate("window.changes")
    partial = [c["answer"] for c in changes if c["state"] == "streaming"]
    distinct = list(dict.fromkeys(partial))
    print(f"{len(distinct)} partial answers shown before the whole one")
    assert len(distinct) >= 2, f"the answer arrived whole, not streamed: {changes}"
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(distinct, distinct[1:]))
    assert all(direct.answer.startswith(p) and len(p) < len(direct.answer) for p in distinct[:-1])
    assert all(c["usage"] == "" for c in changes if c["state"] == "streaming")
    assert changes[-1]["state"] == "done"

    # Under the answer: its prompt tokens next to a retrieval prompt's, and the pages it rests on.
    n, m = direct.usage.prompt_tokens, direct.retrieval_prompt_tokens
    assert m is not None and m > n > 5
    assert exchange.locator(".usage").inner_text() == f"{n} prompt tokens · retrieval would send {m}"
    sources = exchange.locator(".sources").inner_text()
    if direct.sources:
        assert sources == "Likely from: " + ", ".join(s.title for s in direct.sources)
    else:
        assert sources == "No page of the team matches this answer."

    # Nothing the browser received (page, script, stylesheet, the answer's headers; its lines are
    # checked in test_the_backend_streams_lines_ending_with_the_whole_answer) holds the key or names the Engram server.
    assert {u.rsplit("/", 1)[-1] for u, _, _ in seen} >= {"", "panel.js", "panel.css", "ask"}
    for _, headers, body in seen:
        assert key.encode() not in body and engram_server.url.encode() not in body
        assert key not in str(headers)
    assert key not in page.content()


def test_enter_asks_and_shift_enter_starts_a_new_line(browser, partner, shots):
    url, _ = partner
    page, _ = open_panel(browser, url)
    page.click("#question")
    page.keyboard.type("Who approves")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("vendor contracts?")
    assert page.input_value("#question") == "Who approves\nvendor contracts?"
    assert page.locator(".exchange").count() == 0  # Shift+Enter asked nothing
    page.screenshot(path=str(shots / "shift-enter.png"), full_page=True)

    page.keyboard.press("Enter")
    page.locator(".exchange[data-state=done]").wait_for(timeout=60_000)
    assert page.locator(".exchange").count() == 1
    assert page.locator(".exchange .question").inner_text() == "Who approves\nvendor contracts?"
    assert page.input_value("#question") == ""


def test_an_empty_answer_shows_a_placeholder(browser, partner, shots):
    # An empty answer cannot be asked of the tiny model on purpose, so the backend's answer is
    # replaced on the wire (the browser's network layer), in the backend's own line format.
    url, _ = partner
    page, _ = open_panel(browser, url)
    done = {"answer": "", "adapter_version": 3, "prompt_tokens": 31, "completion_tokens": 1,
            "retrieval_prompt_tokens": 412,
            "sources": [{"title": "Vendor contracts", "url": "https://notion.example/vendors"},
                        {"title": "Procurement <b>FAQ</b>", "url": None}]}
    page.route("**/api/ask", lambda route: route.fulfill(
        status=200, content_type="application/x-ndjson", body=json.dumps({"done": done}) + "\n"))
    page.fill("#question", QUESTION)
    page.press("#question", "Enter")
    page.locator(".exchange[data-state=done]").wait_for(timeout=10_000)
    page.screenshot(path=str(shots / "empty-answer.png"), full_page=True)

    answer = page.locator(".exchange .answer")
    assert answer.inner_text() == "(no answer)" and "empty" in answer.get_attribute("class")
    assert page.locator(".exchange .usage").inner_text() == "31 prompt tokens · retrieval would send 412"
    assert page.locator(".exchange .sources").inner_text() == "Likely from: Vendor contracts, Procurement <b>FAQ</b>"
    link = page.locator(".exchange .sources a")
    assert link.count() == 1 and link.get_attribute("href") == "https://notion.example/vendors"


def test_the_backend_streams_lines_ending_with_the_whole_answer(partner, engram_server):
    url, key = partner
    with httpx.stream("POST", url + "/api/ask", json={"question": QUESTION}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        raw = r.read().decode()
    assert key not in raw and engram_server.url not in raw
    lines = [json.loads(line) for line in raw.splitlines() if line]
    *deltas, last = lines
    direct = direct_answer(engram_server, QUESTION)
    assert len(deltas) > 1 and "".join(d["delta"] for d in deltas) == direct.answer
    assert last["done"] == {"answer": direct.answer.strip(), "adapter_version": 1,
                            "prompt_tokens": direct.usage.prompt_tokens,
                            "completion_tokens": direct.usage.completion_tokens,
                            "retrieval_prompt_tokens": direct.retrieval_prompt_tokens,
                            "sources": [{"title": s.title, "url": s.url} for s in direct.sources]}


def test_served_html_and_js_never_contain_the_key(partner, engram_server):
    url, key = partner
    secret = key.split("_", 2)[2]  # egk_<key id>_<secret>: not even the secret part on its own
    for path in ("/", "/static/panel.js", "/static/panel.css"):
        r = httpx.get(url + path)
        assert r.status_code == 200
        assert secret not in r.text and engram_server.url not in r.text
    for path in ("/app.py", "/static/%2e%2e/app.py"):  # the backend's own source is not served
        assert httpx.get(url + path).status_code == 404


def test_a_backend_error_shows_in_the_panel_without_details(browser, engram_server, shots):
    revoked = "egk_" + "0" * 40  # a key Engram does not know: the operator's problem, not the user's
    with serve(create_app(engram_server.url, revoked, "acme")) as backend:
        page, seen = open_panel(browser, backend.url)
        page.fill("#question", QUESTION)
        page.click("#ask")
        error = page.locator(".answer.error")
        error.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "error.png"), full_page=True)
        assert error.inner_text() == "The team assistant is not available right now."
        assert all(revoked.encode() not in body for _, _, body in seen)
