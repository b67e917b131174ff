"""The package's public surface, its registration, and the one list of assumptions."""

from __future__ import annotations

from pathlib import Path

import engram_harvey
from engram_harvey import ASSUMPTIONS, HarveyConnector
from engram_harvey._assumptions import FILE_DOWNLOAD_PATH, WEBHOOKS
from engram_sdk._connector import load_connector

DOC = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "harvey.md"


def test_public_names():
    modules = {"sandbox"}  # the submodule, imported by `engram sandbox harvey`
    public = {n for n in dir(engram_harvey) if not n.startswith("_")} - modules
    assert sorted(engram_harvey.__all__) == sorted(public)


def test_registered_as_the_harvey_connector():
    assert load_connector("harvey") is HarveyConnector
    assert HarveyConnector.scope_kinds == ("project", "matter", "user")
    assert not HarveyConnector.supports("handle_webhook")  # poll-only: Harvey documents no webhooks


def test_every_assumption_is_in_the_docs():
    text = DOC.read_text()
    for key in ASSUMPTIONS:
        assert f"**{key}**" in text, key


def test_what_is_undocumented_is_marked_as_such():
    assert WEBHOOKS is None and FILE_DOWNLOAD_PATH is None
