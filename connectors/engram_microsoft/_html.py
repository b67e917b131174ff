"""HTML to plain text for Graph bodies: Teams messages, OneNote pages, site-page text web parts
and .html drive files.

Rendered by inscriptis (the ``microsoft`` extra), which parses with lxml and lays text out the
way a browser would. inscriptis rather than html2text: it writes plain text, not Markdown (no
``**``, ``#`` or ``[text](url)`` to clean out of training prose, no lossy ASCII transliteration),
keeps headings, paragraphs, list items and table rows on lines of their own, is configured per
tag, and is Apache-2.0 like this project (html2text is GPL-3.0).

It is configured to give the text the earlier ``html.parser`` code gave (Microsoft records have
no revision, so a changed text would re-emit unchanged items; ``text_golden.json`` in the tests
pins it): paragraphs, headings, lists, tables, blockquotes and ``pre`` are set off by a blank
line, other blocks (``div``, ``br``) by a line break; list items get ``- `` at every depth; table
cells are joined with `` | `` per row; ``<at>`` mentions become ``@Name``; links keep their target
when it differs from the text; images keep their ``alt`` text as ``[image: alt]``; ``<head>``,
``<script>``, ``<style>``, ``<noscript>`` and ``<template>`` are dropped. Spaces collapse and at
most one blank line survives between blocks.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["html_to_text"]

_CONFIG: Any = None  # built on first use: inscriptis is imported only when HTML is rendered
# Blocks set off by a blank line. inscriptis carries a block's bottom margin into the blocks it
# contains (a <ul>'s into each <li>), so containers get an empty block of their own on each side.
_GAP = "engram-gap"
_GAPPED = ("ul", "ol", "table", "blockquote", "pre")
_LINE = ("dd", "dl", "dt", "fieldset", "figcaption", "figure", "form", "hr", "section", "thead", "tbody",
         "tfoot", "address", "article", "aside", "footer", "header", "main", "nav", "div")


def _config() -> Any:
    global _CONFIG
    if _CONFIG is None:
        from inscriptis.css_profiles import CSS_PROFILES
        from inscriptis.html_properties import Display
        from inscriptis.model.config import ParserConfig
        from inscriptis.model.html_element import HtmlElement
        from inscriptis.model.tag import CustomHtmlTagHandlerMapping

        css = dict(CSS_PROFILES["strict"])  # p and h1-h6: a blank line before and after
        css["ul"] = css["ol"] = HtmlElement(display=Display.block)  # no indentation: nested lists stay flat
        for tag in _LINE:
            css[tag] = HtmlElement(display=Display.block)
        for tag in ("noscript", "template"):
            css[tag] = HtmlElement(display=Display.none)
        css[_GAP] = HtmlElement(display=Display.block, margin_before=1, margin_after=1)

        def li_start(state: Any, _attrs: dict[str, str]) -> None:
            state.tags[-1].list_bullet = "- "  # one bullet at every depth, numbered lists too
            state.tags[-1].write("")

        _CONFIG = ParserConfig(
            css=css, display_images=False, display_links=False, table_cell_separator=" | ",
            custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
                start_tag_mapping={"li": li_start}, end_tag_mapping={}))
    return _CONFIG


def _rewrite(tree: Any) -> None:
    """What inscriptis does not do by configuration, done on the lxml tree before it renders."""
    for el in list(tree.iter("at")):  # Teams mentions
        name = " ".join(el.text_content().split())
        for child in list(el):
            el.remove(child)
        el.text = f" @{name}"
    for el in list(tree.iter("a")):
        href = el.get("href")
        text = el.text_content().strip()
        if href and not href.startswith(("#", "javascript:")) and href != text and text:
            el.tail = f" ({href})" + (el.tail or "")
        elif href and not text:
            el.text = href
    for el in list(tree.iter("img")):
        alt = (el.get("alt") or "").strip()
        el.tail = (f" [image: {alt}] " if alt else "") + (el.tail or "")
    for pre in tree.iter("pre"):  # its spaces survive the collapsing below
        for node in pre.iter():
            if node is not pre and node.tail:
                node.tail = node.tail.replace(" ", _PRE_SPACE)
            if isinstance(node.text, str):
                node.text = node.text.replace(" ", _PRE_SPACE)
    for el in list(tree.iter(*_GAPPED)):
        if el.getparent() is None:
            continue
        before, after = el.makeelement(_GAP, {}), el.makeelement(_GAP, {})
        after.tail, el.tail = el.tail, None
        el.addprevious(before)
        el.addnext(after)


_PRE_SPACE = "\ue000"  # a private-use character: not whitespace, so kept
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_CELL_PAD = re.compile(r" +\| ")  # inscriptis pads cells to the column's width
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(html: str | None) -> str:
    """Render an HTML fragment or document as readable plain text (see the module docstring)."""
    if not html or not html.strip():
        return ""
    from inscriptis import _get_html_tree
    from inscriptis.html_engine import Inscriptis

    tree = _get_html_tree(html)
    if tree is None:
        return ""
    _rewrite(tree)
    raw = Inscriptis(tree, _config()).get_text()
    lines = [_CELL_PAD.sub(" | ", _SPACES.sub(" ", line)).strip() for line in raw.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip().replace(_PRE_SPACE, " ")
