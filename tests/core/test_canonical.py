"""The fast canonical path must give exactly the bytes of the reference RFC 8785 implementation."""

from __future__ import annotations

import random

import pytest
import rfc8785

from engram_sdk._canonical import _simple, canonical_json

SAMPLES = [
    {"b": 1, "a": [True, False, None, "x"], "c": {"z": "", "y": -5}},
    {"text": "Café ☕ “quotes” \\ back\\slash \"dq\" \t\n\r\b\f \x00\x01\x1f\x7f \u2028\u2029 𝄞 🚀"},
    {"nested": [[[{"k": "v"}]]], "empty": {}, "list": []},
    {"int_edge": 2**53 - 1, "neg": -(2**53 - 1)},
    # These leave the fast path, and must still match:
    {"float": 1.5, "whole_float": 3.0, "tiny": 1e-7, "big": 1e21},
    {"clé": 1, "key\U0001f600": 2, "\ue000": 3},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_matches_the_reference_implementation(value):
    assert canonical_json(value) == rfc8785.dumps(value)


def test_random_documents_match_the_reference():
    rng = random.Random(5)
    alphabet = "abcXYZ09 _-\"\\\n\t\x03éü☕𝄞🚀\u2028"
    for _ in range(300):
        doc = {
            "".join(rng.choice("abcdefgh_") for _ in range(rng.randint(1, 6))): "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 30))
            )
            for _ in range(rng.randint(1, 8))
        }
        doc["n"] = rng.randint(-(10**9), 10**9)
        doc["sub"] = [dict(doc)]
        assert canonical_json(doc) == rfc8785.dumps(doc)


def test_integers_beyond_two_to_the_53_are_refused_like_the_reference():
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical_json({"big_int": 2**60})


def test_floats_and_non_ascii_keys_take_the_reference_path():
    assert _simple({"a": "é", "b": [1, None]})
    assert not _simple({"a": 1.0})
    assert not _simple({"é": 1})
    assert not _simple({"a": 2**60})
