from __future__ import annotations

import engram_microsoft


def test_all_is_sorted_and_importable():
    names = engram_microsoft.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert getattr(engram_microsoft, name) is not None


def test_connector_is_registered_as_an_entry_point():
    from engram_sdk._connector import load_connector

    assert load_connector("microsoft") is engram_microsoft.MicrosoftConnector
