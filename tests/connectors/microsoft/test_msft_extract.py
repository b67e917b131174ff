from __future__ import annotations

import pytest
from msft_files import make_docx, make_docx_body, make_pdf

from engram_microsoft import ExtractionError, extract_text, extractable


def test_txt_and_md_decode():
    assert extract_text("a.txt", None, "héllo".encode()) == "héllo"
    assert extract_text("a.md", "text/markdown", b"\xef\xbb\xbf# Title") == "# Title"


def test_html_file_rendered_as_text():
    assert extract_text("page.htm", None, b"<html><body><h1>Hi</h1><p>there</p></body></html>") == "Hi\n\nthere"


def test_docx_paragraphs():
    data = make_docx(["Budget 2026", "Travel is capped at 3 trips."])
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert extract_text("plan.docx", mime, data) == "Budget 2026\nTravel is capped at 3 trips."


def test_pdf_text():
    text = extract_text("memo.pdf", "application/pdf", make_pdf(["Launch date: May 4", "Owner: Ann"]))
    assert "Launch date: May 4" in text and "Owner: Ann" in text


def test_other_formats_are_metadata_only():
    assert extract_text("deck.pptx", None, b"PK...") is None
    assert not extractable("photo.jpg", "image/jpeg")
    assert extractable("a.pdf", None, size=10)
    assert not extractable("huge.pdf", None, size=10**9)


def test_corrupt_docx_reports_extraction_error():
    with pytest.raises(ExtractionError, match="docx"):
        extract_text("broken.docx", None, b"not a zip")


def test_corrupt_pdf_reports_extraction_error():
    with pytest.raises(ExtractionError, match="pdf"):
        extract_text("broken.pdf", None, b"%PDF-1.4 garbage")


def _p(*runs: str) -> str:
    return "<w:p>" + "".join(runs) + "</w:p>"


def _r(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def test_docx_text_box_paragraph_is_its_own_line_once():
    box = ('<w:r><w:pict><w:txbxContent xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
           + _p(_r("boxed")) + "</w:txbxContent></w:pict></w:r>")
    assert extract_text("a.docx", None, make_docx_body(_p(_r("outer"), box))) == "outer\nboxed"


def test_docx_page_break_inside_a_paragraph_is_a_line_break():
    body = _p(_r("end"), '<w:r><w:t>x</w:t><w:br w:type="page"/><w:t>y</w:t></w:r>', _r(" next"))
    assert extract_text("a.docx", None, make_docx_body(body)) == "endx\ny next"


def test_zip_without_a_document_reports_extraction_error():
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ExtractionError, match="docx"):
        extract_text("empty.docx", None, buf.getvalue())
