"""The public surface is exactly ``engram_sdk.__all__``, and a core install needs no torch."""

from __future__ import annotations

import subprocess
import sys
import types

import engram_sdk


def test_all_is_sorted_and_complete():
    public = {n for n in dir(engram_sdk) if not n.startswith("_")
              and not isinstance(getattr(engram_sdk, n), types.ModuleType)} - {"annotations"}
    assert public == set(engram_sdk.__all__)
    assert list(engram_sdk.__all__) == sorted(engram_sdk.__all__, key=lambda n: (not n.isupper(), n))


def test_exported_classes_say_engram_sdk_not_the_private_module():
    assert repr(engram_sdk.Document).endswith("engram_sdk.Document'>")
    assert engram_sdk.EventStore.__module__ == "engram_sdk"


def test_importing_the_sdk_and_cli_loads_no_torch():
    code = ("import sys, engram_sdk, engram_sdk._cli; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_module_surface():
    import engram_sdk.client as client

    assert {"EngramClient", "AsyncEngramClient", "APIError", "Forbidden", "Unauthorized"} <= set(client.__all__)
    assert all(hasattr(client, n) for n in client.__all__)


def test_scheduler_module_surface():
    import engram_sdk.scheduler as scheduler

    assert {"Scheduler", "ScheduleConfig", "SchedulerLocked", "list_jobs", "request"} <= set(scheduler.__all__)
    assert all(hasattr(scheduler, n) for n in scheduler.__all__)
