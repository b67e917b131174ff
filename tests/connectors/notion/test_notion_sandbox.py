"""The Notion sandbox speaks the recorded API's shapes, through the real notion-client."""

from __future__ import annotations

import json

import httpx
import pytest
from notion_client import APIErrorCode, APIResponseError, Client
from notion_data import TOKEN, flat_workspace, load, para, page, pid

from engram_notion._webhook import is_verification_request, parse_delivery, verify_signature


@pytest.fixture
def env(make_env):
    return make_env({**flat_workspace(3), "pages": [page(0, "Root", [para("a"), page(1, "Child")]), page(2, "Other")]})


@pytest.fixture
def client(env):
    with Client(auth=TOKEN, base_url=env.url, retry=False) as c:
        yield c


def test_page_object_has_the_recorded_fields(client):
    got = client.pages.retrieve(pid(0))
    assert set(load("page_1.json")) <= set(got)
    assert got["parent"] == {"type": "workspace", "workspace": True}


def test_child_page_is_listed_as_a_child_page_block(client):
    got = client.blocks.children.list(pid(0))
    assert set(load("blocks_children_1.json")) <= set(got)
    kinds = [(b["type"], b["id"]) for b in got["results"]]
    assert kinds[1] == ("child_page", pid(1))
    assert got["results"][1]["child_page"] == {"title": "Child"}
    assert client.pages.retrieve(pid(1))["parent"] == {"type": "page_id", "page_id": pid(0)}


def test_search_is_sorted_and_cursor_paginated(client):
    first = client.search(page_size=2, sort={"timestamp": "last_edited_time", "direction": "descending"})
    assert first["has_more"] and first["next_cursor"] and first["type"] == "page_or_data_source"
    rest = client.search(page_size=2, start_cursor=first["next_cursor"],
                         sort={"timestamp": "last_edited_time", "direction": "descending"})
    times = [r["last_edited_time"] for r in first["results"] + rest["results"]]
    assert times == sorted(times, reverse=True) and not rest["has_more"]


def test_error_body_matches_the_recorded_404(client):
    with pytest.raises(APIResponseError) as info:
        client.pages.retrieve("00000000-0000-0000-0000-000000000000")
    assert info.value.code == APIErrorCode.ObjectNotFound and info.value.status == 404
    assert {"object", "status", "code", "message", "request_id"} <= set(load("error_404_object_not_found.json"))


def test_bad_token_is_401_unauthorized(env):
    with Client(auth="secret_nope", base_url=env.url, retry=False) as c, pytest.raises(APIResponseError) as info:
        c.users.list()
    assert info.value.code == APIErrorCode.Unauthorized
    assert info.value.body and '"message":"API token is invalid."' in info.value.body.replace(": ", ":")


def test_missing_version_header_is_400(env):
    r = httpx.get(f"{env.url}/v1/users", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.json()["code"] == "missing_version"


def test_unknown_path_is_invalid_request_url(client):
    with pytest.raises(APIResponseError) as info:
        client.request(path="invalid", method="GET")
    assert info.value.code == APIErrorCode.InvalidRequestURL


def test_page_size_over_100_is_a_validation_error(client):
    with pytest.raises(APIResponseError) as info:
        client.search(page_size=101)
    assert info.value.code == APIErrorCode.ValidationError


def test_budget_exceeded_answers_429_with_retry_after(env, client):
    env.admin.set_budget(2, window=30.0)
    client.users.me()
    client.users.me()
    with pytest.raises(APIResponseError) as info:
        client.users.me()
    assert info.value.code == APIErrorCode.RateLimited and float(info.value.headers["retry-after"]) > 0


def test_gateway_timeout_above_a_page_size(env, client):
    env.admin.op("set_timeout", page_size_above=10)
    with pytest.raises(APIResponseError) as info:
        client.blocks.children.list(pid(0), page_size=50)
    assert info.value.status == 504
    assert client.blocks.children.list(pid(0), page_size=10)["results"]


def test_users_me_names_the_workspace(client):
    me = client.users.me()
    assert me["type"] == "bot" and me["bot"]["workspace_id"]
    assert set(load("users_me.json")["bot"]) >= {"workspace_id", "workspace_name"}


def test_edits_send_signed_deliveries_in_notion_shape(env):
    env.admin.set_webhook("http://127.0.0.1:9/unreachable", secret="secret_tok")
    env.admin.op("edit_page", id=pid(2), text="x")
    (d,) = env.admin.deliveries()
    body = d["body"].encode()
    verify_signature(body, d["headers"]["X-Notion-Signature"], "secret_tok")
    delivery = parse_delivery(body)
    assert delivery.type == "page.content_updated" and delivery.entity_id == pid(2)
    assert set(load("webhook_page_created_2025-09-03.docs_example.json")) <= set(json.loads(body)) | {
        "accessible_by"}


def test_verification_request_shape(env):
    env.admin.set_webhook("http://127.0.0.1:9/unreachable", secret="secret_tok")
    env.admin.op("send_verification")
    (d,) = env.admin.deliveries()
    assert is_verification_request(json.loads(d["body"]))


def test_injected_faults_carry_notions_code_for_their_status(env, client):
    env.admin.fault(status=503, times=1, path="/v1/users")
    with pytest.raises(APIResponseError) as info:
        client.users.list()
    assert info.value.code == APIErrorCode.ServiceUnavailable and info.value.status == 503
