"""The end-to-end demo (``engram demo``): the Kestrel team on three platform sandboxes, through the
connectors, signed events, the team adapter and the server (see README.md and ``demo.py``).

An example, not part of the package: ``engram demo``, ``engram bench demo|freshness`` and ``engram
bench train --workspace kestrel`` load it from a clone with ``engram_sdk.samples.load_example``.
Importing it needs the core only; running the demo needs every extra (``check_installed``).
"""

from __future__ import annotations

from .demo import (
    CONNECTIONS,
    DEMO_BOUNDS,
    DEMO_FACTS,
    DEMO_TRAINING,
    EDITED_FACT,
    FRESHNESS_START,
    Demo,
    DemoError,
    DemoReport,
    check_installed,
    measure_freshness,
)
from .records import RECORDS, load_records

__all__ = [
    "CONNECTIONS",
    "DEMO_BOUNDS",
    "DEMO_FACTS",
    "DEMO_TRAINING",
    "EDITED_FACT",
    "FRESHNESS_START",
    "RECORDS",
    "Demo",
    "DemoError",
    "DemoReport",
    "check_installed",
    "load_records",
    "measure_freshness",
]
