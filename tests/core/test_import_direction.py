"""Dependencies point one way: the core (``engram_sdk``) never imports the trainer or a connector
package, and reaches them only through the plugins they register (``engram_sdk.plugins``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import typer

import engram_sdk
from engram_sdk import plugins
from engram_sdk._cli._plugins import PLUGIN_BENCHES, PLUGIN_COMMANDS

CORE = Path(engram_sdk.__file__).parent
UPPER = ("engram_training", "engram_notion", "engram_microsoft", "engram_harvey")
# The layers above the core, which reach it through its public names only.
ABOVE = [Path(engram_sdk.__file__).parents[1] / "training" / "engram_training",
         *(Path(engram_sdk.__file__).parents[1] / "connectors" / n for n in UPPER[1:])]


def _names_upper(name: str) -> bool:
    return any(name == u or name.startswith((u + ".", u + ":")) for u in UPPER)


def _upward_references(path: Path) -> list[str]:
    """Imports of an upper package, and strings naming one handed to a call (``import_module``, ...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _names_upper(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _names_upper(node.module or ""):
            found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _names_upper(arg.value):
                    found.append(f"{node.lineno}: call with {arg.value!r}")
    return found


def test_the_core_imports_no_upper_layer():
    sources = sorted(CORE.rglob("*.py"))
    assert len(sources) > 30  # the walk found the package
    offending = {}
    for path in sources:
        rel = path.relative_to(CORE).as_posix()
        if refs := _upward_references(path):
            offending[rel] = refs
    assert offending == {}


def _private_core_imports(path: Path) -> list[str]:
    """``engram_sdk._x`` (or ``engram_sdk.server._app``...) imported, or ``_x`` imported from ``engram_sdk``."""
    def private(dotted: str) -> bool:
        parts = dotted.split(".")
        return parts[0] == "engram_sdk" and any(p.startswith("_") for p in parts[1:])

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("engram_sdk"):
            if private(node.module or "") or any(private(f"{node.module}.{a.name}") for a in node.names):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
    return found


def test_connectors_and_training_use_only_public_core_names():
    sources = [p for root in ABOVE for p in sorted(root.rglob("*.py"))]
    assert len(sources) > 40 and all(root.is_dir() for root in ABOVE)
    offending = {p.relative_to(ABOVE[0].parents[1]).as_posix(): refs
                 for p in sources if (refs := _private_core_imports(p))}
    assert offending == {}


def test_the_check_sees_each_kind_of_reference(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import engram_notion\n"
                      "from engram_training.registry import Registry\n"
                      "def f():\n"
                      "    import importlib\n"
                      "    importlib.import_module('engram_microsoft.bench')\n"
                      "    _optional(module='engram_training.train')\n"
                      "from . import plugins\n"
                      "x = 'engram_trainingX'\n")
    assert [r.split(":")[0] for r in _upward_references(sample)] == ["1", "2", "5", "6"]
    sample.write_text("from engram_sdk import EventStore\n"
                      "from engram_sdk._store import EventStore\n"
                      "from engram_sdk import _records\n"
                      "import engram_sdk.server._app\n"
                      "from engram_sdk.connectors import Connector\n")
    assert [r.split(":")[0] for r in _private_core_imports(sample)] == ["2", "3", "4"]


def test_the_installed_plugins_provide_what_the_core_needs(engram_home):
    by_name = {p.name: p for p in plugins.installed_plugins()}
    assert {"train", "notion", "microsoft"} <= set(by_name)
    assert all(p.problem is None and isinstance(p.plugin, plugins.Plugin) for p in by_name.values())

    trainer = plugins.trainer()
    assert trainer.parse_overrides(["epochs=2", "lr=5e-4"]) == {"epochs": 2, "lr": 5e-4}
    trainer.check()  # this environment has the train extra

    settings = engram_sdk.Settings.load()
    settings.init_home()
    with engram_sdk.EventStore.open(settings.database_url) as store:
        index = plugins.adapter_index(store, settings)
        assert index.teams() == [] and index.versions("acme") == [] and index.current_version("acme") is None
        try:
            index.report("acme")
        except engram_sdk.TrainingError as exc:
            assert "acme" in str(exc)
        else:
            raise AssertionError("a report of an unknown team must fail")

    app, bench = typer.Typer(), typer.Typer()
    for p in by_name.values():
        if p.plugin.commands is not None:
            p.plugin.commands(app, bench)
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert names == set(PLUGIN_COMMANDS)
    assert {c.name for c in bench.registered_commands} == set(PLUGIN_BENCHES)


def test_core_commands_import_no_plugin():
    code = ("import sys; from engram_sdk._cli import app; from engram_sdk._cli._common import run_app; "
            "assert run_app(app, ['keys', '--help']) == 0; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {UPPER!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_without_a_plugin_its_commands_are_listed_and_name_the_extra(tmp_path):
    """A core install without the trainer or the Notion client: the commands are still there, and
    using one says what to install, in one line."""
    shadow = tmp_path / "shadow"
    for package, line in (("engram_training", "raise ImportError('engram_training is not installed here')"),
                          ("engram_notion", "import notion_client_not_installed")):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(line + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update(PYTHONPATH=os.pathsep.join([str(shadow), env.get("PYTHONPATH", "")]), ENGRAM_HOME=str(tmp_path / "home"),
               COLUMNS="200", NO_COLOR="1")

    def engram(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from engram_sdk._cli import main; main()", *argv],
                              capture_output=True, text=True, timeout=120, env=env)

    listed = engram("--help")
    assert listed.returncode == 0, listed.stderr
    for name in PLUGIN_COMMANDS:
        assert f" {name} " in listed.stdout, name
    benches = engram("bench", "--help")
    for name in PLUGIN_BENCHES:
        assert f" {name} " in benches.stdout, name
    for argv, extra in ((["train", "--team", "acme"], "train"), (["adapters", "list", "--json"], "train"),
                        (["bench", "notion", "--json"], "notion")):
        proc = engram(*argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, (argv, proc.stderr)
        assert lines[0].startswith("error: ") and f"pip install 'engram-sdk[{extra}]'" in lines[0], lines
    # The Microsoft benchmark's plugin still loads: one missing plugin takes nothing else with it.
    assert "Full and incremental Microsoft 365 sync" in engram("bench", "microsoft", "--help").stdout
