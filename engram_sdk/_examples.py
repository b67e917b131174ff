"""The repository's examples (``examples/<name>/``), found and loaded from a clone.

The examples are not part of the package: a wheel has no ``examples/`` directory. Commands built on
one (``engram demo``, ``engram bench demo``, ``engram bench train --workspace kestrel``) find it by
path rather than by import, so that the core never names the packages an example pulls in (the
connectors, the trainer): ``ENGRAM_EXAMPLES`` when set, otherwise the ``examples/`` directory of the
checkout this ``engram_sdk`` was imported from.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from ._exceptions import ConfigError

__all__ = ["EXAMPLES_ENV", "find_example", "load_example"]

EXAMPLES_ENV = "ENGRAM_EXAMPLES"  # a clone's examples/ directory, for an engram_sdk installed elsewhere
_PACKAGE = "examples"  # the examples' import package, as tests and `python -m examples.<name>` see it


def find_example(name: str) -> Path:
    """The directory of ``examples/<name>`` (a package), or ConfigError saying it needs a clone."""
    given = os.environ.get(EXAMPLES_ENV)
    if given:
        folder = Path(given).expanduser().resolve() / name
        if (folder / "__init__.py").is_file():
            return folder
        raise ConfigError(f"{EXAMPLES_ENV}={given} holds no {name}/ example: point it at the examples/ directory "
                          "of a clone of the engram-sdk repository")
    # An editable install or a source tree: engram_sdk/ sits beside examples/ at the checkout's root.
    for root in Path(__file__).resolve().parents[1:]:
        folder = root / _PACKAGE / name
        if (folder / "__init__.py").is_file() and (root / _PACKAGE / "__init__.py").is_file():
            return folder
    raise ConfigError(f"examples/{name} ships with the engram-sdk repository, not with the installed package: "
                      "clone the repository, run scripts/setup.sh in it and use its .venv/bin/engram "
                      f"(scripts/demo.sh does both for engram demo), or set {EXAMPLES_ENV} to the clone's "
                      "examples/ directory")


def load_example(name: str) -> ModuleType:
    """``examples.<name>`` imported from the directory ``find_example`` names.

    It is imported under its usual name, so that tests which import it and a command which loads it
    share one module (one ``DemoError`` class, one set of constants)."""
    folder = find_example(name)
    qualified = f"{_PACKAGE}.{name}"
    loaded = sys.modules.get(qualified)
    if loaded is not None and Path(loaded.__file__ or "").resolve().parent == folder:
        return loaded
    parent = sys.modules.get(_PACKAGE)
    if parent is None or folder.parent not in {Path(p).resolve() for p in getattr(parent, "__path__", ())}:
        # Not importable from sys.path (an installed engram_sdk, ENGRAM_EXAMPLES), or another
        # "examples" package came first: bind the name to this checkout's package.
        spec = importlib.util.spec_from_file_location(_PACKAGE, folder.parent / "__init__.py",
                                                      submodule_search_locations=[str(folder.parent)])
        assert spec is not None and spec.loader is not None
        parent = importlib.util.module_from_spec(spec)
        sys.modules[_PACKAGE] = parent
        spec.loader.exec_module(parent)
        for stale in [m for m in sys.modules if m.startswith(qualified + ".") or m == qualified]:
            del sys.modules[stale]
    return importlib.import_module(qualified)
