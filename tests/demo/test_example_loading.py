"""How `engram demo` finds the demo, an example in the repository (examples/kestrel_demo): by path,
in the checkout its engram_sdk runs from or in $ENGRAM_EXAMPLES; without either it says, in one
line, that it needs a clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import examples.kestrel_demo
from engram_sdk import ConfigError
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk.samples import EXAMPLES_ENV, find_example, load_example

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", EXAMPLES_ENV)}
    return {**env, "COLUMNS": "400", **extra}


def test_the_command_loads_the_module_the_tests_import(monkeypatch):
    monkeypatch.delenv(EXAMPLES_ENV, raising=False)
    assert find_example("kestrel_demo") == REPO / "examples" / "kestrel_demo"
    assert load_example("kestrel_demo") is examples.kestrel_demo  # one DemoError class, one recipe


def test_engram_examples_names_a_clones_examples_directory(monkeypatch):
    monkeypatch.setenv(EXAMPLES_ENV, str(REPO / "examples"))
    assert load_example("kestrel_demo") is examples.kestrel_demo


def test_a_directory_without_the_demo_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EXAMPLES_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=EXAMPLES_ENV):
        find_example("kestrel_demo")
    assert run_app(app, ["demo", "--home", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the demo needs a clone of the repository"), err
    assert not (tmp_path / "d").exists()


def test_loaded_by_path_when_examples_is_not_on_sys_path(tmp_path):
    """Run from elsewhere, `examples` is no importable package, and the demo still loads."""
    code = ("import importlib.util; assert importlib.util.find_spec('examples') is None; "
            "from engram_sdk.samples import load_example; m = load_example('kestrel_demo'); "
            "print(m.__file__); print(len(m.load_records()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(REPO / "examples" / "kestrel_demo" / "__init__.py"), "32"]


def test_an_engram_sdk_outside_a_clone_says_the_demo_needs_one(tmp_path):
    """engram_sdk imported from a directory with no examples/ beside it, as from a wheel."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "engram_sdk", site / "engram_sdk", ignore=shutil.ignore_patterns("__pycache__"))
    env = _env(PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import engram_sdk; print(engram_sdk.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(site / "engram_sdk" / "__init__.py"), where.stderr[-2000:]
    argv = [sys.executable, "-c", "from engram_sdk._cli import main; main()", "demo", "--home", str(tmp_path / "d")]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: the demo needs a clone of the repository") and "scripts/demo.sh" in lines[0]
    assert not (tmp_path / "d").exists()
