"""The Harvey sandbox speaks the documented endpoints, shapes, errors and limits (raw httpx)."""

from __future__ import annotations

import httpx
import pytest
from harvey_data import NOW

T = int(NOW.timestamp())
DAY = 86_400


@pytest.fixture
def http(sandbox):
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": "Bearer tok-full"}) as c:
        yield c


def test_whoami_names_the_service_user_and_org(http):
    body = http.get("/api/whoami").json()
    assert body["email"] == "svc@firm.example" and body["org_id"] == "org-acme"


def test_missing_or_unknown_token_is_401_in_harveys_error_shape(sandbox):
    assert httpx.get(sandbox.url + "/api/whoami").status_code == 401
    r = httpx.get(sandbox.url + "/api/whoami", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}


def test_history_requires_start_time(http):
    r = http.get("/api/v2/history/query", params={"end_time": T})
    assert r.status_code == 400 and r.json() == {"error": "Missing start_time"}


def test_history_window_of_thirty_days_is_served(http):
    r = http.get("/api/v2/history/query", params={"start_time": T - 30 * DAY, "end_time": T})
    assert r.status_code == 200
    assert {e["unique_usage_id"] for e in r.json()["events"]} == {"q-secret", "q-vault", "q-other", "q-old"}


def test_history_window_over_thirty_days_is_400(http):
    r = http.get("/api/v2/history/query", params={"start_time": T - 30 * DAY - 1, "end_time": T})
    assert r.status_code == 400 and "30 days" in r.json()["error"]


def test_history_start_older_than_a_year_is_400(http):
    r = http.get("/api/v2/history/query", params={"start_time": T - 366 * DAY, "end_time": T - 365 * DAY})
    assert r.status_code == 400


def test_window_bounds_are_inclusive(http):
    at = T - 2 * DAY  # q-secret and q-other sit exactly here
    r = http.get("/api/v2/history/query", params={"start_time": at, "end_time": at})
    assert {e["unique_usage_id"] for e in r.json()["events"]} == {"q-secret", "q-other"}


def test_usage_history_carries_no_query_text(http):
    events = http.get("/api/v2/history/usage", params={"start_time": T - 5 * DAY, "end_time": T}).json()["events"]
    assert events and all("query" not in e and "response" not in e for e in events)


def test_file_ids_only_when_asked(sandbox, http):
    sandbox.admin.op("add_query", unique_usage_id="q-files", utc_time="2026-03-01 11:00:00", file_ids=["f-1"],
                     query="q", response="r")
    params = {"start_time": T - DAY, "end_time": T}
    plain = http.get("/api/v2/history/query", params=params).json()["events"]
    with_ids = http.get("/api/v2/history/query", params={**params, "include_file_ids": "true"}).json()["events"]
    assert "file_ids" not in plain[0] and with_ids[0]["file_ids"] == ["f-1"]


def test_v1_history_when_v2_is_not_available(sandbox, http):
    ws = sandbox.admin.workspace()
    sandbox.admin.put_workspace({**ws, "history_v2": False})
    params = {"start_time": T - 5 * DAY, "end_time": T}
    assert http.get("/api/v2/history/query", params=params).status_code == 404
    items = http.get("/api/v1/history/query", params=params).json()
    secret = next(i for i in items if i["message_ID"] == "q-secret")
    assert secret["Client Matter #"] == "M-2024-0035" and secret["Query"].startswith("Draft")


def test_projects_page_pagination(http):
    body = http.get("/api/v1/vault/workspace/projects", params={"page": 2, "per_page": 1}).json()
    content = body["response"]["content"]
    assert content["pagination"] == {"page": 2, "per_page": 1, "total": 2, "total_pages": 2}
    assert [p["id"] for p in content["projects"]] == ["p-2"]
    assert "files" not in content["projects"][0]


def test_projects_per_page_over_100_is_400(http):
    assert http.get("/api/v1/vault/workspace/projects", params={"per_page": 101}).status_code == 400


def test_files_cursor_pagination(http):
    first = http.get("/api/v1/vault/projects/p-1/files", params={"limit": 1}).json()
    assert first["pagination"]["has_more"] and first["pagination"]["total_count"] == 2
    second = http.get("/api/v1/vault/projects/p-1/files",
                      params={"limit": 1, "cursor": first["pagination"]["next_cursor"]}).json()
    assert not second["pagination"]["has_more"] and second["pagination"]["next_cursor"] is None
    assert [f["id"] for f in first["files"] + second["files"]] == ["f-1", "f-2"]


def test_files_limit_out_of_range_and_bad_cursor_are_400(http):
    assert http.get("/api/v1/vault/projects/p-1/files", params={"limit": 0}).status_code == 400
    assert http.get("/api/v1/vault/projects/p-1/files", params={"cursor": "###"}).status_code == 400


def test_get_files_reports_deleted_and_not_found(sandbox, http):
    sandbox.admin.op("delete_file", file_id="f-2")
    files = http.get("/api/v1/vault/get_files", params={"file_ids": "f-1,f-2,f-x"}).json()["files"]
    assert files[0]["deleted_at"] is None and files[1]["deleted_at"]
    assert files[2] == {"file_id": "f-x", "error": "not_found"}


def test_replace_file_creates_a_new_id_chained_to_the_original(sandbox, http):
    new = sandbox.admin.op("replace_file", file_id="f-1", new_id="f-1b")
    assert new["root_file_id"] == "f-1"
    newer = sandbox.admin.op("replace_file", file_id="f-1b", new_id="f-1c")
    assert newer["root_file_id"] == "f-1"
    ids = [f["id"] for f in http.get("/api/v1/vault/projects/p-1/files").json()["files"]]
    assert "f-1" not in ids and "f-1c" in ids


def test_metadata_review_table_and_row(http):
    meta = http.get("/api/v1/vault/get_metadata/p-1").json()
    assert meta["file_ids"] == ["f-1", "f-2"] and meta["review_table_ids"] == ["rt-1"]
    table = http.get("/api/v1/vault/review_table/rt-1").json()
    assert table["title"] == "Key terms" and table["file_ids"] == ["f-1"]
    row = http.get("/api/v1/vault/get_row/rt-1/f-1").json()
    assert [c["column_name"] for c in row["response"]["cells"]] == ["Governing law", "Cap"]
    assert http.get("/api/v1/vault/get_row/rt-1/f-2").status_code == 404


def test_audit_from_is_exclusive_and_take_is_capped(http):
    logs = http.get("/api/v1/logs/audit", params={"from": "00000000-0000-0000-0000-000000000002", "take": 2}).json()
    assert [e["id"][-1] for e in logs["logs"]] == ["3", "4"]
    assert http.get("/api/v1/logs/audit", params={"from": "x", "take": 1001}).status_code == 400


def test_audit_search_earliest_and_404_when_nothing_after(http):
    assert http.get("/api/v1/logs/audit/earliest").json()["log"]["id"].endswith("1")
    assert http.get("/api/v1/logs/audit/search", params={"time": T - 9 * 3600 - 1}).json()["log"]["id"].endswith("1")
    assert http.get("/api/v1/logs/audit/search", params={"time": T + 10}).status_code == 404


def test_token_without_the_audit_permission_gets_403_there_only(sandbox):
    h = {"Authorization": "Bearer tok-no-audit"}
    r = httpx.get(sandbox.url + "/api/v1/logs/audit/earliest", headers=h)
    assert r.status_code == 403 and "View audit logs" in r.json()["error"]
    assert httpx.get(sandbox.url + "/api/v1/client_matters", headers=h).status_code == 200


def test_vault_is_limited_to_ten_a_minute_then_429_until_the_window_resets(sandbox, http):
    codes = [http.get("/api/v1/vault/get_metadata/p-1").status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    assert http.get("/api/v1/vault/get_metadata/p-1").json() == {"error": "Rate limit exceeded"}
    assert http.get("/api/v1/client_matters").status_code == 200  # other categories unaffected
    sandbox.admin.advance_clock(60)
    assert http.get("/api/v1/vault/get_metadata/p-1").status_code == 200


def test_workspace_is_editable_through_the_admin_endpoint(sandbox, http):
    sandbox.admin.op("edit_cell", review_table_id="rt-1", file_id="f-1", column_name="Governing law",
                     summary="Delaware")
    cells = http.get("/api/v1/vault/get_row/rt-1/f-1").json()["response"]["cells"]
    assert cells[0]["summary"] == "Delaware" and cells[0]["is_edited"]
    sandbox.admin.op("set_permissions", token="tok-full", permissions=[])
    assert http.get("/api/v1/client_matters").status_code == 403
