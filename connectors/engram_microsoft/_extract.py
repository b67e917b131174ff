"""Text out of drive files: txt, md, html, docx and pdf; anything else is kept as metadata only.

``extractable(name, mime_type)`` says whether a file's bytes are worth downloading;
``extract_text(name, mime_type, data)`` returns its text, or None for a format it does not read.
A file that claims a readable format but cannot be parsed raises ``ExtractionError`` so the
connector can report that one item and go on.

docx is read with python-docx and pdf with ``pypdf``; HTML is rendered by ``_html`` (inscriptis).
All three are in the ``microsoft`` extra.
"""

from __future__ import annotations

import io
import zipfile

from ._errors import ExtractionError
from ._html import html_to_text

__all__ = ["MAX_DOWNLOAD_BYTES", "extract_text", "extractable", "file_kind"]

# Files above this are kept as metadata: their text would be split into many parts anyway and
# downloading them would dominate a sync's cost.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024

_BY_EXT = {
    ".txt": "text", ".text": "text", ".log": "text", ".csv": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html",
    ".docx": "docx",
    ".pdf": "pdf",
}  # fmt: skip
_BY_MIME = {
    "text/plain": "text",
    "text/csv": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/pdf": "pdf",
}


def file_kind(name: str | None, mime_type: str | None) -> str | None:
    """'text', 'markdown', 'html', 'docx', 'pdf' or None (metadata only)."""
    if mime_type:
        kind = _BY_MIME.get(mime_type.split(";")[0].strip().lower())
        if kind:
            return kind
    if name and "." in name:
        return _BY_EXT.get(name[name.rfind(".") :].lower())
    return None


def extractable(name: str | None, mime_type: str | None, size: int | None = None) -> bool:
    return file_kind(name, mime_type) is not None and (size is None or size <= MAX_DOWNLOAD_BYTES)


def extract_text(name: str | None, mime_type: str | None, data: bytes) -> str | None:
    kind = file_kind(name, mime_type)
    if kind is None:
        return None
    try:
        if kind in ("text", "markdown"):
            return _decode(data)
        if kind == "html":
            return html_to_text(_decode(data))
        if kind == "docx":
            return _docx_text(data)
        return _pdf_text(data)
    except ExtractionError:
        raise
    except (ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ExtractionError(f"cannot read {name or 'file'} as {kind}: {exc}") from exc


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


_RUN_CONTENT = "w:br | w:cr | w:noBreakHyphen | w:ptab | w:t | w:tab"  # what CT_R.text reads


def _docx_text(data: bytes) -> str:
    """Every paragraph of the main document in order (body, tables, content controls), one a line.

    python-docx opens the package (the main part is found through its relationships, not at a
    fixed path) and gives each run's text (``w:t``; ``w:tab`` as a tab; a line break as a newline).
    Its ``Paragraph.text`` reads only a paragraph's direct runs and hyperlinks, and
    ``iter_inner_content`` only direct paragraphs and tables, which would drop tracked insertions
    (``w:ins``) and content controls (``w:sdt``): so every ``w:p`` is visited, and each run is
    counted in the paragraph nearest to it (a text box's paragraph is its own line).
    """
    try:
        import docx
        from docx.opc.exceptions import OpcError
        from docx.oxml.ns import qn
        from lxml.etree import XMLSyntaxError
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ExtractionError("reading docx files needs python-docx: pip install 'engram-sdk[microsoft]'") from exc
    try:
        body = docx.Document(io.BytesIO(data)).element.body
    except (OpcError, XMLSyntaxError) as exc:
        raise ExtractionError(f"cannot read docx: {exc}") from exc
    p_tag, br = qn("w:p"), qn("w:br")
    typed_break = f"./{br}[@{qn('w:type')}]"
    lines = []
    for para in body.iter(p_tag):
        parts = []
        for run in para.iter(qn("w:r")):
            if next(run.iterancestors(p_tag)) is not para:
                continue
            if run.find(typed_break) is None:
                parts.append(run.text)
            else:  # python-docx renders a page or column break as nothing: keep it a line break
                parts.extend("\n" if el.tag == br else str(el) for el in run.xpath(_RUN_CONTENT))
        lines.append("".join(parts))
    return "\n".join(lines).strip()


def _pdf_text(data: bytes) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ExtractionError("reading pdf files needs pypdf: pip install 'engram-sdk[microsoft]'") from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except PdfReadError as exc:
        raise ExtractionError(f"cannot read pdf: {exc}") from exc
    return "\n\n".join(p for p in pages if p)
