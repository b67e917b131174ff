"""examples/partner_ui in headless Chromium (Debian's, driven by Playwright): a question typed into
the "Ask the team" panel goes browser -> partner backend -> SDK client -> Engram server (tiny model)
and its answer appears with its prompt token count; the API key never reaches the browser."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from engram_sdk._sandbox import serve
from engram_sdk.client import EngramClient
from examples.partner_ui.app import MAX_TOKENS, create_app

QUESTION = "Who approves vendor contracts?"


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


def open_panel(browser, url: str) -> tuple[Page, list[tuple[str, dict[str, str], bytes]]]:
    """A page on ``url`` that records every response the browser receives (url, headers, body)."""
    page = browser.new_page()
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def record(response) -> None:
        seen.append((response.url, response.headers, response.body()))

    page.on("response", record)
    page.goto(url)
    return page, seen


def test_an_answer_appears_in_the_panel_with_its_prompt_tokens(browser, partner, engram_server):
    url, key = partner
    page, seen = open_panel(browser, url)
    assert page.title() == "Launch plan · Acme workspace"
    assert page.get_by_role("heading", name="Ask the team").is_visible()

    page.fill("#question", QUESTION)
    page.click("#ask")
    exchange = page.locator(".exchange").first
    usage = exchange.locator(".usage")
    usage.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("document.querySelector('.usage').dataset.promptTokens !== undefined")

    assert exchange.locator(".question").inner_text() == QUESTION
    shown = exchange.locator(".answer").inner_text()
    tokens = int(usage.get_attribute("data-prompt-tokens"))
    assert re.fullmatch(rf"{tokens} prompt tokens · adapter v1", usage.inner_text())
    # The very answer the server gives for this question (greedy decoding), with the same count.
    with EngramClient(engram_server.url, engram_server.new_key("acme", "query")) as engram:
        direct = engram.query("acme", QUESTION, max_tokens=MAX_TOKENS)
    assert shown.strip() == direct.answer.strip() and shown.strip()
    assert tokens == direct.usage.prompt_tokens > 5

    # Nothing the browser received (page, script, stylesheet, the answer) holds the key or names
    # the Engram server.
    assert {u.rsplit("/", 1)[-1] for u, _, _ in seen} >= {"", "panel.js", "panel.css", "ask"}
    for _, headers, body in seen:
        assert key.encode() not in body and engram_server.url.encode() not in body
        assert key not in str(headers)
    assert key not in page.content()


def test_served_html_and_js_never_contain_the_key(partner, engram_server):
    url, key = partner
    secret = key.split("_", 2)[2]  # egk_<key id>_<secret>: not even the secret part on its own
    for path in ("/", "/static/panel.js", "/static/panel.css"):
        r = httpx.get(url + path)
        assert r.status_code == 200
        assert secret not in r.text and engram_server.url not in r.text
    for path in ("/app.py", "/static/%2e%2e/app.py"):  # the backend's own source is not served
        assert httpx.get(url + path).status_code == 404


def test_a_backend_error_shows_in_the_panel_without_details(browser, engram_server):
    revoked = "egk_" + "0" * 40  # a key Engram does not know: the operator's problem, not the user's
    with serve(create_app(engram_server.url, revoked, "acme")) as backend:
        page, seen = open_panel(browser, backend.url)
        page.fill("#question", QUESTION)
        page.click("#ask")
        error = page.locator(".answer.error")
        error.wait_for(timeout=30_000)
        assert error.inner_text() == "The team assistant is not available right now."
        assert all(revoked.encode() not in body for _, _, body in seen)
