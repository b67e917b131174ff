"""Query history is confidential legal work product: it never reaches a log line or an error."""

from __future__ import annotations

import logging

from harvey_data import SECRET_ANSWER, SECRET_QUERY

from engram_sdk._connections import Connections

FRAGMENTS = (SECRET_QUERY, SECRET_ANSWER, "walk-away", "$4.2M", "Privileged")


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for fragment in FRAGMENTS:
            assert fragment not in text


def test_sync_with_retries_bad_items_and_a_failed_stream_logs_no_query_text(harvey, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    harvey.connect()
    # a retried 5xx, and a query that cannot be normalized: its "user" (an id, at most 2048
    # characters) holds the query text, which pydantic would quote in its error message
    harvey.admin.fault(status=503, times=1, path="/api/v2/history/query")
    harvey.admin.op("add_query", unique_usage_id="q-bad", user=SECRET_QUERY * 40, query=SECRET_QUERY,
                    response=SECRET_ANSWER)
    first = harvey.sync()
    assert first.ok, first.error
    assert [f.entity_id for f in first.failures] == ["q-bad"]
    assert "invalid record" in first.failures[0].reason
    # a stream that keeps failing: the sync's error and the connection's last_error
    harvey.admin.fault(status=500, times=100, path="/api/v2/history/query")
    second = harvey.sync()
    assert not second.ok
    conn = Connections(harvey.store).get("acme-harvey")

    # the secret went through (so the paths above really carried it) ...
    stored = [r for r in harvey.by_kind("thread") if r.entity_id == "q-secret"]
    assert stored and stored[0].messages[0].text == SECRET_QUERY
    # ... and was never written anywhere but the signed events
    assert "retrying" in caplog.text and "q-bad" in caplog.text  # the log did record these events
    out, err = capfd.readouterr()
    _assert_clean(caplog.text, out, err, second.error or "", conn.last_error or "", str(conn.meta),
                  *(f.reason for f in first.failures + second.failures))


def test_failure_reasons_are_stored_without_query_text(harvey):
    harvey.connect()
    harvey.admin.op("add_query", unique_usage_id="q-bad", user=SECRET_QUERY * 40, query=SECRET_QUERY,
                    response=SECRET_ANSWER)
    harvey.sync()
    reasons = [f["reason"] for f in Connections(harvey.store).failures("acme-harvey")]
    assert reasons
    _assert_clean(*reasons)


def test_checkpoint_holds_no_query_text(harvey):
    harvey.connect()
    harvey.sync()
    _assert_clean(str(harvey.store.checkpoint("acme-harvey")))
