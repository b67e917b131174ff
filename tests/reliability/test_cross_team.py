"""Every operation the server's OpenAPI document lists, called for team acme by everyone who must
not get in: each of team globex's API keys (ingest, query, admin), no key, a malformed key, and
acme's own keys after they were revoked. Held: no 2xx (403 for another team's key, 401 without a
valid key; for batch ingest, every event rejected ``forbidden_team``), and acme's state unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from engram_sdk import Keyring
from engram_sdk._apikeys import ApiKeys
from engram_sdk._sandbox import serve
from engram_sdk.server import ServerConfig, create_app
from tests.factories import signed_events
from tests.server.conftest import make_deployment

from .conftest import FULL

ROLES = ("ingest", "query", "admin")


def _body(method: str, path: str, dep: Any, team: str) -> dict[str, Any] | None:
    """A valid body for the operation (so only the caller's rights can make it fail)."""
    if path == "/v1/events":
        return {"events": [e.to_dict() for e in signed_events(dep.keyrings[team], 2, team=team, start=900)]}
    if path.endswith("/signing-keys") and method == "post":
        fresh = Keyring(dep.settings.home / f"fresh-keys-{team}")
        if not fresh.keys():
            fresh.generate([team])
        info = fresh.active()
        return {"kid": info.kid, "public_key": info.public_key}
    if path.endswith("/query"):
        return {"question": "Who approves vendor contracts?"}
    return {} if method == "post" else None


def _state(dep: Any, team: str, job_id: str) -> tuple:
    """What a successful cross-team call would change: events, trusted keys, the training job."""
    from engram_sdk._jobs import Jobs

    store = dep.store
    keys = sorted((k.kid, k.status) for t in store.trusted_keys(team).by_kid.values() for k in t.values())
    return store.count(team), tuple(keys), Jobs(store).get(job_id).status


@pytest.fixture
def server(tmp_path):
    dep = make_deployment(tmp_path)
    app = create_app(dep.settings, store=dep.store, config=ServerConfig(workers=False, query_rate="10000/min"))
    with serve(app) as srv:
        yield dep, srv.url
    dep.store.close()


# acme's operations by globex's keys; the full run also the other way round
PAIRS = [("acme", "globex")] + ([("globex", "acme")] if FULL else [])


@pytest.mark.parametrize(("team", "other"), PAIRS)
def test_every_operation_refuses_everyone_but_the_team(server, tally, team, other):
    dep, url = server
    with httpx.Client(base_url=url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
        job = http.post(f"/v1/teams/{team}/train", json={}, headers=dep.headers(team, "admin")).json()
        values = {"team": team, "version": "1", "job_id": job["id"], "kid": dep.keyrings[team].active().kid}
        before = _state(dep, team, job["id"])
        operations = [(m, p) for p, ops in spec["paths"].items() for m in ops if p != "/v1/health"]
        assert len(operations) >= 10  # the document lists what the server serves

        revoked = {role: ApiKeys(dep.store).create(team, role, f"revoked-{role}")[1] for role in ROLES}
        for token in revoked.values():
            assert ApiKeys(dep.store).revoke(token)
        callers: dict[str, tuple[dict[str, str], int]] = {
            **{f"{other} {role} key": (dep.headers(other, role), 403) for role in ROLES},
            "no key": ({}, 401),
            "malformed key": ({"Authorization": "Bearer egk_not-a-key"}, 401),
            "not a bearer token": ({"Authorization": dep.headers(team, "admin")["Authorization"][7:]}, 401),
            **{f"{team} {role} key, revoked": ({"Authorization": f"Bearer {t}"}, 401) for role, t in revoked.items()},
        }
        cross = tally.row("cross-team requests, every OpenAPI operation x another team's keys")
        unauth = tally.row("requests without a valid API key (none, malformed, revoked), every operation")
        for method, path in operations:
            target = path.format(**values)
            for who, (headers, expected) in callers.items():
                r = http.request(method.upper(), target, json=_body(method, path, dep, team), headers=headers)
                if path == "/v1/events" and r.status_code == 200:  # per-event answers for a batch
                    held = all(x["reason"] == "forbidden_team" for x in r.json()["results"])
                else:
                    held = r.status_code == expected
                (cross if who.startswith(other) else unauth).check(
                    held, f"{method.upper()} {target} as {who}: HTTP {r.status_code} {r.text[:120]}")
        assert _state(dep, team, job["id"]) == before  # nothing of the team's changed
