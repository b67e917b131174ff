"""HarveyClient against the sandbox over loopback: pagination, fallbacks, limits, retries, permissions."""

from __future__ import annotations

import pytest
from harvey_data import NOW

from engram_harvey._client import HarveyClient, base_url_for, harvey_limiter
from engram_harvey._windows import DAY, Window
from engram_sdk._exceptions import AuthError, PermissionDenied

T = int(NOW.timestamp())


def test_regions_have_their_documented_hosts():
    assert base_url_for("us") == "https://api.harvey.ai"
    assert base_url_for("EU") == "https://eu.api.harvey.ai"
    assert base_url_for("au") == "https://au.api.harvey.ai"
    assert base_url_for("eu", "http://127.0.0.1:9/") == "http://127.0.0.1:9"


def test_unknown_region_is_refused():
    with pytest.raises(ValueError, match="unknown Harvey region"):
        base_url_for("mars")


def test_whoami_validates_the_token(make_client):
    assert make_client().whoami()["org_id"] == "org-acme"
    with pytest.raises(AuthError):
        make_client("bad-token").whoami()


def test_projects_follow_page_pagination(make_client):
    client = make_client()
    assert [p["id"] for p in client.projects(per_page=1)] == ["p-1", "p-2"]
    assert client.stats.by_status == {200: 2}


def test_files_follow_cursor_pagination(make_client):
    client = make_client()
    assert [f["id"] for f in client.files("p-1", limit=1)] == ["f-1", "f-2"]
    assert client.stats.requests == 2


def test_query_history_v2(make_client):
    events = make_client().query_history(Window(T - 3 * DAY, T))
    assert {e["unique_usage_id"] for e in events} == {"q-secret", "q-vault", "q-other"}


def test_query_history_falls_back_to_v1_and_stays_there(sandbox, make_client):
    ws = sandbox.admin.workspace()
    sandbox.admin.put_workspace({**ws, "history_v2": False})
    client = make_client()
    events = client.query_history(Window(T - 3 * DAY, T))
    assert client.history_version == "v1"
    secret = next(e for e in events if e["unique_usage_id"] == "q-secret")
    assert secret["client_matter_name"] == "M-2024-0035" and secret["query"].startswith("Draft")
    sandbox.admin.reset_stats()
    client.query_history(Window(T - DAY, T))
    assert list(sandbox.admin.stats()["by_path"]) == ["/api/v1/history/query"]


def test_query_history_falls_back_to_v1_when_v2_is_forbidden(sandbox, make_client):
    ws = sandbox.admin.workspace()
    sandbox.admin.put_workspace({**ws, "history_v2": "forbidden"})
    client = make_client()
    assert {e["unique_usage_id"] for e in client.query_history(Window(T - 3 * DAY, T))} == {
        "q-secret", "q-vault", "q-other"}
    assert client.history_version == "v1"


def test_history_forbidden_on_both_versions_raises_permission_denied(sandbox, make_client):
    sandbox.admin.op("set_permissions", token="tok-full", permissions=["View workspace projects"])
    with pytest.raises(PermissionDenied):
        make_client().query_history(Window(T - DAY, T))


def test_audit_paging_and_seed(make_client):
    client = make_client()
    first = client.audit_earliest()
    page = client.audit_page(first["id"], take=1000)
    assert [e["id"] for e in page] == [f"00000000-0000-0000-0000-00000000000{i}" for i in (2, 3, 4, 5)]
    assert client.audit_search(T + 100) is None
    with pytest.raises(ValueError):
        client.audit_page(first["id"], take=1001)


def test_rate_limit_waits_on_the_injected_clock_without_a_single_429(sandbox, make_client, clock):
    client = make_client()
    for _ in range(12):
        client.project_metadata("p-1")
    # Vault is 10/min: requests are spaced 6 s apart, on the fake clock (the test takes no minute)
    assert clock.slept == pytest.approx(11 * 6.0)
    assert client.stats.by_status == {200: 12}


def test_categories_have_separate_buckets(make_client, clock):
    client = make_client()
    client.project_metadata("p-1")
    client.client_matters()  # client matters' own bucket: no wait behind Vault's
    client.project_metadata("p-1")
    assert clock.sleeps == [pytest.approx(6.0)]


def test_a_429_waits_out_the_minute_then_succeeds(sandbox, make_client, clock):
    # a limiter more generous than Harvey's, so the sandbox's own limit answers 429
    client = make_client(limiter=harvey_limiter(clock, {"vault": 1000}))
    for _ in range(11):
        client.project_metadata("p-1")
    assert client.stats.by_status == {200: 11, 429: 1}
    assert 60.0 in clock.sleeps  # no Retry-After from Harvey: the connector waits the window


def test_5xx_is_retried_with_backoff(sandbox, make_client, clock):
    sandbox.admin.fault(status=503, times=2, path="/api/v1/client_matters")
    client = make_client()
    assert len(client.client_matters()) == 2
    assert client.stats.retries == 2 and client.stats.by_status == {503: 2, 200: 1}


def test_probe_reports_one_forbidden_stream_and_reads_the_others(make_client):
    result = make_client("tok-no-audit").probe(now=T)
    assert result == {"history": "ok", "vault": "ok", "audit": "forbidden", "client_matters": "ok"}


def test_probe_raises_for_a_bad_token(make_client):
    with pytest.raises(AuthError):
        make_client("bad-token").probe(now=T)


def test_forbidden_call_raises_permission_denied_naming_the_endpoint(make_client):
    with pytest.raises(PermissionDenied) as err:
        make_client("tok-no-audit").audit_earliest()
    assert "/api/v1/logs/audit/earliest" in str(err.value) and err.value.status == 403


def test_token_never_appears_in_errors(make_client):
    with pytest.raises(AuthError) as err:
        make_client("sekrit-token-123").whoami()
    assert "sekrit" not in str(err.value)


def test_empty_token_is_refused():
    with pytest.raises(ValueError):
        HarveyClient("")


def test_https_with_the_sandboxs_test_ca(clock):
    from harvey_data import workspace

    from engram_harvey.sandbox import HarveySandbox
    from engram_sdk._sandbox import serve

    with serve(HarveySandbox(workspace(NOW), clock=clock, epoch=T), tls=True) as server:
        assert server.url.startswith("https://")
        with HarveyClient("tok-full", base_url=server.url, clock=clock, verify=server.ca_bundle) as client:
            assert client.whoami()["org_id"] == "org-acme"
