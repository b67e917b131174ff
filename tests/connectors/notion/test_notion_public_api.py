"""The package's public names: exactly ``__all__``, sorted, each importable."""

from __future__ import annotations

import engram_notion


def test_all_is_sorted_and_complete():
    public = {n for n in vars(engram_notion) if not n.startswith("_")}
    modules = {"sandbox", "bench"}  # public modules, imported on demand
    assert sorted(engram_notion.__all__) == engram_notion.__all__
    assert public - modules == set(engram_notion.__all__)


def test_connector_is_registered_under_the_entry_point_group():
    from engram_sdk._connector import load_connector

    assert load_connector("notion") is engram_notion.NotionConnector
