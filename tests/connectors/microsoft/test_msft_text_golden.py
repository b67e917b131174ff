"""Re-sync stability of extracted text (issue 18, item 9).

Microsoft records carry no ``revision``, so a Document's event id derives from its text: if the
text of an unchanged page, message or file changed with the extraction code, a re-sync would emit
new events for it. ``text_golden.json`` holds the text the hand-written ``html.parser``/``zipfile``
extraction gave for every HTML body in the recorded fixtures and the sandbox workspaces (the test
workspace, Kestrel, the bench) and for hand-made cases (see ``make_text_golden.py``); the current
extraction must give the same strings.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from engram_microsoft import extract_text, html_to_text

GOLDEN = json.loads((Path(__file__).parent / "text_golden.json").read_text())
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize("case", GOLDEN["html"], ids=lambda c: c["source"])
def test_html_text_unchanged(case):
    assert html_to_text(case["html"]) == case["text"]


@pytest.mark.parametrize("case", GOLDEN["docx"], ids=lambda c: c["source"])
def test_docx_text_unchanged(case):
    assert extract_text("f.docx", DOCX, base64.b64decode(case["docx_base64"])) == case["text"]


def test_golden_covers_fixtures_and_sandboxes():
    sources = {c["source"].split(" ")[0] + " " + c["source"].split(" ")[1] for c in GOLDEN["html"]}
    assert "fixture onenote_page_content_output.html" in sources
    assert "sandbox kestrel_workspace" in sources
    assert any(s.startswith("sandbox tests/") for s in sources)
