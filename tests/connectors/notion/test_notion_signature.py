"""X-Notion-Signature: HMAC-SHA256 keyed with the verification token over the raw body."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from engram_notion._webhook import refetch_targets, sign_webhook_payload, verify_signature
from engram_sdk._exceptions import WebhookError

from notion_data import load

TOKEN = "secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl"
BODY = b'{"verification_token":"secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl"}'


def test_signature_is_hmac_sha256_of_the_raw_body_in_lowercase_hex():
    expected = "sha256=" + hmac.new(TOKEN.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign_webhook_payload(BODY, TOKEN) == expected
    verify_signature(BODY, expected, TOKEN)


def test_uppercase_hex_is_accepted():
    verify_signature(BODY, sign_webhook_payload(BODY, TOKEN).upper().replace("SHA256=", "sha256="), TOKEN)


def test_missing_header():
    with pytest.raises(WebhookError) as info:
        verify_signature(BODY, None, TOKEN)
    assert info.value.reason == "missing_header"


def test_header_without_the_scheme_is_malformed():
    with pytest.raises(WebhookError) as info:
        verify_signature(BODY, sign_webhook_payload(BODY, TOKEN).removeprefix("sha256="), TOKEN)
    assert info.value.reason == "malformed_header"


def test_truncated_signature_is_malformed():
    with pytest.raises(WebhookError) as info:
        verify_signature(BODY, sign_webhook_payload(BODY, TOKEN)[:-2], TOKEN)
    assert info.value.reason == "malformed_header"


def test_wrong_token_does_not_match():
    with pytest.raises(WebhookError) as info:
        verify_signature(BODY, sign_webhook_payload(BODY, "secret_other"), TOKEN)
    assert info.value.reason == "no_match"


def test_one_changed_byte_does_not_match():
    with pytest.raises(WebhookError) as info:
        verify_signature(BODY + b" ", sign_webhook_payload(BODY, TOKEN), TOKEN)
    assert info.value.reason == "no_match"


def test_comment_on_a_block_refetches_the_blocks_and_the_pages_comments():
    payload = load("webhook_comment_created_on_block.docs_example.json")
    assert refetch_targets(payload) == [("comments", payload["data"]["parent"]["id"]),
                                        ("comments", payload["data"]["page_id"])]


def test_new_row_refetches_its_data_source_too():
    payload = load("webhook_page_created_2025-09-03.docs_example.json")
    assert refetch_targets(payload) == [("page", payload["entity"]["id"]),
                                        ("data_source", payload["data"]["parent"]["data_source_id"])]
