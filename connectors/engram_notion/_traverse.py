"""Fetch a page's whole block tree: iteratively, following ``has_children`` and every cursor.

- Every list call goes through ``NotionAPI.children``, which follows ``has_more``/``next_cursor``
  to the end (a 1,000-block page is ten calls, not one truncated one).
- An explicit stack replaces recursion, so nesting depth is no limit.
- A ``synced_block`` that references another block gets the *original's* children; a chain of
  references that comes back to a block already on the way down (a cycle) stops there, leaving
  the renderer's "content not available" marker. An original the integration cannot read
  (404/403) is treated the same way, as is a block deleted while the tree is read; the page itself
  is still synced.
- ``child_page`` and ``child_database`` are not descended into: they are records of their own.
"""

from __future__ import annotations

from typing import Any

from engram_sdk.connectors import NotFound, PermissionDenied

from ._client import NotionAPI

__all__ = ["fetch_tree"]

_SEPARATE = frozenset({"child_page", "child_database"})


def fetch_tree(api: NotionAPI, root_id: str) -> list[dict[str, Any]]:
    """The children of ``root_id`` (a page or block), each with its descendants under ``"children"``."""
    root: list[dict[str, Any]] = []
    # (block whose children to list, list to fill, synced originals on the way down, is a synced original)
    stack: list[tuple[str, list[dict[str, Any]], frozenset[str], bool]] = [(root_id, root, frozenset(), False)]
    while stack:
        block_id, out, chain, from_synced = stack.pop()
        try:
            items = list(api.children(block_id))
        except (NotFound, PermissionDenied):
            if block_id == root_id and not from_synced:
                raise  # the page itself is gone
            # an original on a page not shared with the integration, or a block deleted while we
            # read: the page's last_edited_time moved, so the next run reads it again
            continue
        for item in items:
            node = dict(item)
            out.append(node)
            kind = node.get("type")
            if kind in _SEPARATE:
                continue
            if kind == "synced_block":
                source = ((node.get("synced_block") or {}).get("synced_from") or {}).get("block_id")
                origin = source or node["id"]
                if origin in chain:
                    continue  # a reference cycle: stop here
                if source:
                    node["children"] = []
                    stack.append((source, node["children"], chain | {origin}, True))
                    continue
                chain_below = chain | {origin}
            else:
                chain_below = chain
            if node.get("has_children"):
                node["children"] = []
                stack.append((node["id"], node["children"], chain_below, False))
    return root
