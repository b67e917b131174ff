"""HTML to plain text for Graph bodies: Teams messages, OneNote pages, site-page text web parts.

Stdlib only (``html.parser``). Block elements become line breaks, list items get ``- ``, table
cells are joined with `` | `` per row, ``<at>`` mentions become ``@Name``, links keep their
target when it differs from the text, images keep their ``alt`` text, and ``<head>``,
``<script>`` and ``<style>`` are dropped. Runs of spaces collapse; at most one blank line
survives between blocks.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_BLOCK = {
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
    "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
}  # fmt: skip
_SKIP = {"head", "script", "style", "title", "template", "noscript"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._pre = 0
        self._links: list[tuple[str | None, int]] = []  # (href, len(out) at <a>)
        self._cells_in_row = 0
        self._in_mention = False

    # -- helpers ----------------------------------------------------------------------------
    def _newline(self, blank: bool = False) -> None:
        """End the current line (and leave a blank one if ``blank``), never adding more breaks
        than that on top of those already pending."""
        want = 2 if blank else 1
        have = 0
        for chunk in reversed(self.out):
            stripped = chunk.strip(" \t")
            if stripped == "":
                continue
            if stripped.strip("\n") == "":
                have += stripped.count("\n")
                continue
            break
        else:
            return  # nothing written yet: no leading breaks
        if have < want:
            self.out.append("\n" * (want - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            if tag not in _VOID:
                self._skip += 1
            return
        if self._skip:
            return
        a = dict(attrs)
        if tag == "br":
            self.out.append("\n")
        elif tag == "img":
            alt = (a.get("alt") or "").strip()
            if alt:
                self.out.append(f" [image: {alt}] ")
        elif tag == "at":
            self._in_mention = True
            self.out.append(" @")
        elif tag == "a":
            self._links.append((a.get("href"), len(self.out)))
        elif tag == "pre":
            self._pre += 1
            self._newline(blank=True)
        elif tag == "tr":
            self._cells_in_row = 0
            self._newline()
        elif tag in ("td", "th"):
            if self._cells_in_row:
                self.out.append(" | ")
            self._cells_in_row += 1
        elif tag == "li":
            self._newline()
            self.out.append("- ")
        elif tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol"):
            self._newline(blank=True)
        elif tag in _BLOCK:
            self._newline()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <img/>, and odd self-closed non-void tags such as <systemEventMessage/>
        if tag in _VOID:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "at":
            self._in_mention = False
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            text = "".join(self.out[start:]).strip()
            if href and not href.startswith(("#", "javascript:")) and href != text and text:
                self.out.append(f" ({href})")
            elif href and not text:
                self.out.append(href)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._newline(blank=True)
        elif tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol"):
            self._newline(blank=True)
        elif tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.out.append(data.replace("\n", "\x00"))  # protected from whitespace collapsing
            return
        data = data.replace("\r", " ").replace("\n", " ")  # source line breaks are whitespace
        if self._in_mention:
            data = data.strip()
        self.out.append(data)


_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(html: str | None) -> str:
    """Render an HTML fragment or document as readable plain text (see the module docstring)."""
    if not html:
        return ""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    raw = "".join(parser.out)
    lines = [_SPACES.sub(" ", line).strip() for line in raw.split("\n")]
    text = _BLANKS.sub("\n\n", "\n".join(lines)).strip()
    return text.replace("\x00", "\n")
