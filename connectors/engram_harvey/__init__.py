"""Harvey connector for Engram: query history, Vault and review tables as training records.

Poll-only (Harvey documents no webhooks). What Harvey's public docs leave open is written down
in one place, ``engram_harvey._assumptions`` (``ASSUMPTIONS`` lists it line by line).
"""

from ._assumptions import ASSUMPTIONS, REGIONS
from ._client import HarveyClient
from ._connector import HarveyCheckpoint, HarveyConfig, HarveyConnector
from ._scope import HarveyScope
from ._windows import UsageDeduplicator, Window, history_windows

__all__ = [
    "ASSUMPTIONS",
    "REGIONS",
    "HarveyCheckpoint",
    "HarveyClient",
    "HarveyConfig",
    "HarveyConnector",
    "HarveyScope",
    "UsageDeduplicator",
    "Window",
    "history_windows",
]
