"""Text out of drive files: txt, md, html, docx and pdf; anything else is kept as metadata only.

``extractable(name, mime_type)`` says whether a file's bytes are worth downloading;
``extract_text(name, mime_type, data)`` returns its text, or None for a format it does not read.
A file that claims a readable format but cannot be parsed raises ``ExtractionError`` so the
connector can report that one item and go on.

docx is read with the standard library (it is a zip of WordprocessingML); pdf needs ``pypdf``
(in the ``microsoft`` extra).
"""

from __future__ import annotations

import io
import zipfile
from xml.etree import ElementTree

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
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


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
    except (ValueError, KeyError, zipfile.BadZipFile, ElementTree.ParseError) as exc:
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


def _docx_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        xml = zf.read("word/document.xml")
    root = ElementTree.fromstring(xml)
    paragraphs: list[str] = []
    for para in root.iter(f"{_W}p"):
        parts: list[str] = []
        for node in para.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag == f"{_W}tab":
                parts.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
        paragraphs.append("".join(parts))
    return "\n".join(paragraphs).strip()


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
