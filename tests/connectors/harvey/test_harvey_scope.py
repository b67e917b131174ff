"""Scope filtering: the org-wide history export is cut down to a team's matters, projects and users."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from harvey_data import query_event, workspace

from engram_harvey import HarveyScope

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
WS = workspace(NOW)


def _resolved(text):
    return HarveyScope.parse(text).resolve(WS["projects"], WS["client_matters"], {"p-1": ["f-1", "f-2"]})


def test_all_admits_everything():
    assert HarveyScope.parse("all").resolve().admits(query_event("x", NOW, user="z@z"))


def test_matter_by_id_admits_v2_cm_id_and_v1_matter_name():
    scope = _resolved("matter:cm-1")
    assert scope.admits(query_event("a", NOW, cm_id="cm-1"))
    assert scope.admits({"client_matter_name": "M-2024-0035", "user": "x@y"})
    assert not scope.admits(query_event("b", NOW, cm_id="cm-2"))


def test_matter_by_name_admits_its_id_too():
    assert _resolved("matter:M-2024-0035").admits(query_event("a", NOW, cm_id="cm-1"))


def test_project_admits_queries_by_project_name_or_file_ids():
    scope = _resolved("project:p-1")
    assert scope.admits(query_event("a", NOW, vault_project_name="Nightingale DD"))
    assert scope.admits(query_event("b", NOW, file_ids=["f-2"]))
    assert not scope.admits(query_event("c", NOW, vault_project_name="Other matter"))
    assert not scope.admits(query_event("d", NOW))


def test_user_admits_only_that_users_queries():
    scope = _resolved("user:Carol@Firm.example")
    assert scope.admits(query_event("a", NOW, user="carol@firm.example"))
    assert not scope.admits(query_event("b", NOW))


def test_scope_round_trips_through_text():
    text = "matter:cm-1,project:p-1,user:a@b"
    assert str(HarveyScope.parse(text)) == "project:p-1,matter:cm-1,user:a@b"
    assert HarveyScope.parse(str(HarveyScope.parse(text))) == HarveyScope.parse(text)


@pytest.mark.parametrize("bad", ["", "folder:1", "project:", "p-1"])
def test_bad_scope_items_are_refused(bad):
    with pytest.raises(ValueError):
        HarveyScope.parse(bad)
