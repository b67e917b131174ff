"""GET /v1/teams/{team}/adapters/report: the adapter report page, for the team's admin keys only,
checked through TestClient and in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright) against a real uvicorn server on loopback.

The browser authenticates the way any client of the API does: the page is requested with
``Authorization: Bearer <admin key>`` (a browser context's extra HTTP headers), so there is no
second way in (no cookie, no key in the URL). The page loads nothing else, so that one request
is all the browser makes. A screenshot of the page lands in test-artifacts/ at the repository root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engram_sdk._sandbox import serve
from engram_sdk.server import ServerConfig, create_app
from tests.server.conftest import Deployment, make_deployment
from tests.training.test_report import Page, train_two_versions

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ROUTE = "/v1/teams/acme/adapters/report"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Deployment]:
    """acme with two versions (v1 published, v2 rejected); globex with none."""
    dep = make_deployment(tmp_path_factory.mktemp("report-server"), tiny_model)
    train_two_versions(dep.store, dep.keyrings["acme"], dep.settings, "acme")
    yield dep
    dep.store.close()


@pytest.fixture(scope="module")
def app(trained: Deployment):
    return create_app(trained.settings, store=trained.store, config=ServerConfig(workers=False))


def test_the_teams_admin_key_gets_the_report(trained, app):
    with TestClient(app) as client:
        r = client.get(ROUTE, headers=trained.headers("acme", "admin"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert r.headers["cache-control"] == "no-store"
    page = Page(r.text)
    assert [(row["data-version"], row["data-status"]) for row in page.rows] == [("2", "rejected"), ("1", "published")]
    assert len(page.images) == 3 and all(i["src"].startswith("data:image/png;base64,") for i in page.images)


@pytest.mark.parametrize(("team", "role"), [("globex", "admin"), ("acme", "query"), ("acme", "ingest")])
def test_another_teams_key_or_a_lesser_role_gets_403(trained, app, team, role):
    with TestClient(app) as client:
        r = client.get(ROUTE, headers=trained.headers(team, role))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert "Adapter report" not in r.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer egk_" + "0" * 40}])
def test_no_key_or_an_unknown_key_gets_401(app, headers):
    with TestClient(app) as client:
        r = client.get(ROUTE, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_a_team_without_versions_gets_404_with_the_reason(trained, app):
    with TestClient(app) as client:
        r = client.get("/v1/teams/globex/adapters/report", headers=trained.headers("globex", "admin"))
    assert r.status_code == 404 and "unknown team globex" in r.json()["error"]["message"]


def test_the_report_renders_in_chromium(trained, app):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (f"{CHROMIUM} is missing: install Debian's chromium "
                                     "(apt-get install chromium; .ci/run does it when it is missing)")
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(app) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(extra_http_headers=trained.headers("acme", "admin"),
                                          viewport={"width": 1100, "height": 900})
            page = context.new_page()
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            response = page.goto(srv.url + ROUTE)
            assert response is not None and response.status == 200

            assert page.title() == "Adapter report · acme"
            assert page.get_by_role("heading", name="Adapter report · acme").is_visible()
            rows = page.locator("#versions tbody tr")
            assert rows.count() == 2
            v2, v1 = rows.nth(0), rows.nth(1)
            assert v2.locator("td").nth(0).inner_text() == "v2" and v2.locator("td").nth(1).inner_text() == "rejected"
            assert "is below the minimum 0.99" in v2.locator("td").last.inner_text()
            assert v1.locator("td").nth(0).inner_text() == "v1 · current"
            assert v1.locator("td").last.inner_text() == "all gates passed"

            images = page.locator("figure img")
            assert images.count() == 3
            for i in range(3):
                img = images.nth(i)
                img.scroll_into_view_if_needed()
                assert img.is_visible()
                # Decoded and laid out: a broken image has naturalWidth 0.
                assert img.evaluate("el => el.complete && el.naturalWidth") == 720
                assert img.evaluate("el => el.getBoundingClientRect().width") > 300
            assert [c.inner_text() for c in page.locator("figcaption").all()][0].startswith("Training loss per step")
            assert requests == [srv.url + ROUTE]  # the page itself and nothing else

            page.screenshot(path=str(ARTIFACTS / "adapter-report.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "adapter-report.png").stat().st_size > 10_000

    # The same browser without the key gets the API's 401, not the page.
    with serve(app) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            response = page.goto(srv.url + ROUTE)
            assert response is not None and response.status == 401
            assert "Adapter report" not in page.content()
        finally:
            browser.close()
