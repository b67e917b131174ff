"""RFC 8785 (JSON Canonicalization Scheme) bytes, fast for the values events carry.

For JSON made only of strings, booleans, null, integers within ±2**53 and objects whose keys are
ASCII, RFC 8785's output is exactly CPython's ``json.dumps(sort_keys=True, ensure_ascii=False,
separators=(",", ":"))``: the same key order (ASCII sorts identically by UTF-16 code unit and by
code point), the same escapes (``\\" \\\\ \\b \\f \\n \\r \\t`` and ``\\u00XX`` for other controls,
everything else literal) and the same integer digits. Anything else (a float, a big integer, a
non-ASCII key) goes through the reference implementation, the ``rfc8785`` package. The test suite
checks both paths produce identical bytes.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["canonical_json"]

_SAFE_INT = 2**53 - 1
_encoder = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _simple(value: Any) -> bool:
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return -_SAFE_INT <= value <= _SAFE_INT
    if t is dict:
        try:
            if not "".join(value).isascii():  # all keys at once, at C speed
                return False
        except TypeError:  # a non-string key
            return False
        for v in value.values():
            if type(v) is not str and not _simple(v):
                return False
        return True
    if t is list:
        for v in value:
            if type(v) is not str and not _simple(v):
                return False
        return True
    return False


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value, as UTF-8 bytes."""
    if _simple(value):
        try:
            return _encoder.encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the reference implementation report it
    return rfc8785.dumps(value)
