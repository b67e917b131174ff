"""A page's block tree rendered as Markdown-flavoured text.

Input: block objects exactly as ``GET /v1/blocks/{id}/children`` returns them, each with its
fetched children attached under a top-level ``"children"`` key (the shape the sandbox workspace
uses too). A ``synced_block`` that references another block carries the original's children.

Rendering walks the tree with an explicit stack, so depth is no limit, and never aborts: a block
type this module does not know becomes ``[<type> block]`` followed by whatever text it carries.
``child_page`` and ``child_database`` render as a one-line reference; their content is a record
of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._text import file_to_text, rich_text, stray_text

__all__ = ["CONTAINER_TYPES", "KNOWN_BLOCK_TYPES", "render_blocks"]

# Blocks whose children are laid out at the block's own depth (they have no text of their own).
CONTAINER_TYPES = frozenset({"column_list", "column", "synced_block", "tab", "table"})
_HEADINGS = {"heading_1": "#", "heading_2": "##", "heading_3": "###", "heading_4": "####"}
_MEDIA = ("image", "video", "pdf", "file", "audio")
_SILENT = frozenset({"table_of_contents", "breadcrumb"})  # navigation only, no text to keep

KNOWN_BLOCK_TYPES = frozenset(
    {
        "paragraph", *_HEADINGS, "bulleted_list_item", "numbered_list_item", "to_do", "toggle", "quote",
        "callout", "code", "equation", "divider", "table", "table_row", "column_list", "column",
        "synced_block", "tab", "child_page", "child_database", "link_to_page", "bookmark", "embed",
        "link_preview", *_MEDIA, *_SILENT, "template", "meeting_notes", "transcription", "unsupported",
    }
)


@dataclass(frozen=True)
class _Frame:
    block: Mapping[str, Any]
    depth: int
    ordinal: int = 0  # position within a run of numbered_list_item siblings
    header_row: bool = False  # the first row of a table with a column header


def render_blocks(blocks: Sequence[Mapping[str, Any]]) -> str:
    """The text of a block tree; one or more lines per block, nested blocks indented by two spaces."""
    lines: list[str] = []
    stack = list(reversed(_frames(blocks, 0, None)))
    while stack:
        frame = stack.pop()
        block = frame.block
        kind = str(block.get("type") or "")
        indent = "  " * frame.depth
        for line in _own_lines(block, kind, frame):
            lines.append(indent + line if line else "")
        if frame.header_row:
            width = len((block.get("table_row") or {}).get("cells") or ())
            lines.append(indent + "|" + " --- |" * max(width, 1))
        children = block.get("children")
        if children and kind not in ("child_page", "child_database"):
            depth = frame.depth if (kind in CONTAINER_TYPES or kind in _HEADINGS) else frame.depth + 1
            stack.extend(reversed(_frames(children, depth, block if kind == "table" else None)))
    return "\n".join(lines)


def _frames(blocks: Sequence[Mapping[str, Any]], depth: int, table: Mapping[str, Any] | None) -> list[_Frame]:
    frames: list[_Frame] = []
    run = 0
    has_header = bool((table or {}).get("table", {}).get("has_column_header"))
    first_row = True
    for block in blocks:
        kind = block.get("type")
        run = run + 1 if kind == "numbered_list_item" else 0
        header = False
        if kind == "table_row":
            header = has_header and first_row
            first_row = False
        frames.append(_Frame(block, depth, run, header))
    return frames


def _payload(block: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    value = block.get(kind)
    return value if isinstance(value, Mapping) else {}


def _prefixed(prefix: str, text: str) -> list[str]:
    """``prefix`` on the first line, continuation lines aligned under the text."""
    first, *rest = text.split("\n")
    pad = " " * len(prefix)
    return [prefix + first, *(pad + r if r else "" for r in rest)]


def _own_lines(block: Mapping[str, Any], kind: str, frame: _Frame) -> list[str]:
    p = _payload(block, kind)
    text = rich_text(p.get("rich_text")) if "rich_text" in p else ""
    if kind == "paragraph" or kind == "template":
        return text.split("\n")
    if kind in _HEADINGS:
        return _prefixed(_HEADINGS[kind] + " ", text)
    if kind == "bulleted_list_item":
        return _prefixed("- ", text)
    if kind == "numbered_list_item":
        return _prefixed(f"{frame.ordinal}. ", text)
    if kind == "to_do":
        return _prefixed("- [x] " if p.get("checked") else "- [ ] ", text)
    if kind == "toggle":
        return _prefixed("▸ ", text)
    if kind == "quote":
        return ["> " + line for line in text.split("\n")]
    if kind == "callout":
        icon = p.get("icon") or {}
        emoji = icon.get("emoji") if isinstance(icon, Mapping) else None
        return _prefixed(f"{emoji} " if emoji else "", text)
    if kind == "code":
        lang = p.get("language") or ""
        lines = [f"```{lang if lang != 'plain text' else ''}", *text.split("\n"), "```"]
        caption = rich_text(p.get("caption"))
        return lines + ([caption] if caption else [])
    if kind == "equation":
        return [f"$${p.get('expression', '')}$$"]
    if kind == "divider":
        return ["---"]
    if kind == "table_row":
        cells = [rich_text(c).replace("\n", " ") for c in p.get("cells") or ()]
        return ["| " + " | ".join(cells) + " |"]
    if kind in ("table", "column_list", "column", "tab") or kind in _SILENT:
        return []
    if kind == "synced_block":
        source = (p.get("synced_from") or {}).get("block_id")
        if source and not block.get("children"):
            return [f"[synced block from {source}: content not available]"]
        return []
    if kind == "child_page":
        return [f"[page: {p.get('title', '')}]"]
    if kind == "child_database":
        return [f"[database: {p.get('title', '')}]"]
    if kind == "link_to_page":
        target = p.get(str(p.get("type"))) or ""
        return [f"[link to {str(p.get('type', 'page_id')).removesuffix('_id')} {target}]"]
    if kind in ("bookmark", "embed", "link_preview"):
        caption = rich_text(p.get("caption"))
        url = p.get("url") or ""
        label = f"[{kind}: {caption}]" if caption else f"[{kind}]"
        return [f"{label} <{url}>" if url else label]
    if kind in _MEDIA:
        caption = rich_text(p.get("caption"))
        source = file_to_text(p)
        label = f"[{kind}: {caption}]" if caption else f"[{kind}]"
        return [f"{label} {source}".rstrip()]
    if kind in ("meeting_notes", "transcription"):
        title = rich_text(p.get("title"))
        return [f"[meeting notes: {title}]" if title else "[meeting notes]"]
    if kind == "unsupported":
        inner = p.get("block_type") or "unknown"
        return [f"[unsupported block: {inner}]"]
    # A block type newer than this module: typed placeholder plus any text it carries.
    found = stray_text(p)
    return [f"[{kind or 'unknown'} block] {found}".rstrip()]
