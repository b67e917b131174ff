"""What a release is made of, and what `pip install engram-sdk` gives a partner.

`python -m build` really builds the sdist, and the wheel from that sdist, out of a copy of the
project (so the worktree gets no build/ directory and a concurrent run no stale one) that also holds
the clutter a working copy has (.venv, test-artifacts/, build/): none of it may reach the sdist.
The wheel is then installed into a fresh virtual environment (no system site-packages) with its core
dependencies only, taken from the configured package index, and the CLI's smoke checks run from
there: the core install stays free of torch and of every extra's dependencies, and a command that
needs an extra says which one in one line. About 20 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# The packages that promise type hints. engram_training (training/) has no marker yet.
TYPED = ("engram_sdk", "engram_notion", "engram_microsoft", "engram_harvey")
PACKAGES = ("engram_sdk", "connectors/engram_notion", "connectors/engram_microsoft", "connectors/engram_harvey",
            "training/engram_training")
# What a working copy holds besides the source, and what a clean checkout lacks.
NOT_COPIED = (".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "test-artifacts", ".engram-demo",
              ".pytest_cache")
DECOYS = (".venv/pyvenv.cfg", "test-artifacts/panel.png", "build/lib/engram_sdk/stale.py", "engram-try/engram.db")


def test_license_is_the_apache_2_text_pyproject_declares():
    project = PYPROJECT["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_keeps_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "Keep a Changelog" in text and "## [Unreleased]" in text


def test_the_core_install_names_no_extras_dependency():
    """Whatever an extra needs (torch, a connector's client, the server) is not a core dependency."""
    core = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert not core & _extras_dependencies(), "move these to the extra that needs them"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_COPIED))
    for decoy in DECOYS:
        (src / decoy).parent.mkdir(parents=True, exist_ok=True)
        (src / decoy).write_text("not part of a release\n")
    out = tmp / "dist"
    # No build isolation: setuptools comes from this environment, so building needs no index.
    # Without --sdist/--wheel, build makes the sdist and then the wheel from it: the sdist must be complete.
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_the_sdist_holds_the_packages_and_the_top_level_files_and_no_clutter(dist):
    (sdist,) = dist.glob("engram_sdk-*.tar.gz")
    assert sdist.name == f"engram_sdk-{VERSION}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"):
        assert name in names, name
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    assert "engram_sdk/_migrations/script.py.mako" in names and "engram_sdk/samples/tidewater/records.jsonl" in names
    clutter = {".venv", "test-artifacts", "tests", "examples", "build", "dist", "engram-try", "__pycache__", ".git"}
    assert not [n for n in names if clutter & set(n.split("/")) or n.endswith(".pyc")]


def test_the_wheel_carries_py_typed_in_each_typed_package_and_the_license(dist):
    (wheel,) = dist.glob("engram_sdk-*.whl")
    assert wheel.name == f"engram_sdk-{VERSION}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in TYPED:
        assert f"{package}/py.typed" in names, package
    assert f"engram_sdk-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "engram_training/data/general_text.txt" in names
    assert not [n for n in names if n.startswith(("tests/", "connectors/", "training/", "examples/"))]


def test_the_wheel_in_a_fresh_venv_passes_the_cli_smoke_checks(dist, tmp_path):
    (wheel,) = dist.glob("engram_sdk-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    bin_dir = env_dir / "bin"
    env = _clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", ENGRAM_HOME=str(tmp_path / "home"),
                     ENGRAM_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200", NO_COLOR="1")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # cwd: not the repository, whose engram_sdk/ would shadow the installed one for `python -c`
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)

    python, engram = str(bin_dir / "python"), str(bin_dir / "engram")
    # The core dependencies come from the configured package index (pip's configuration is kept).
    install = run(python, "-m", "pip", "install", "-q", str(wheel), timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    listed = run(python, "-m", "pip", "list", "--format=json")
    installed = {canonicalize_name(p["name"]) for p in json.loads(listed.stdout)}
    assert "engram-sdk" in installed
    assert not installed & _extras_dependencies(), "the core install pulled an extra's dependency"
    assert not installed & {"torch", "transformers", "peft"}

    where = run(python, "-c", "import engram_sdk, engram_sdk.client, sys; "
                              "print(engram_sdk.__file__); print(sorted({'torch', 'transformers', 'peft'} & "
                              "set(sys.modules)))")
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines() == [str(env_dir / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
                                             / "site-packages" / "engram_sdk" / "__init__.py"), "[]"]

    version = run(engram, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"engram-sdk {VERSION}")

    help_ = run(engram, "--help")
    assert help_.returncode == 0, help_.stderr
    for command in ("init", "connect", "connectors", "connections", "sync", "events", "keys", "serve", "worker",
                    "schedule", "train", "adapters", "sandbox", "demo"):
        assert f" {command} " in help_.stdout, command

    listing = run(engram, "connectors", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    connectors = {c["platform"]: c for c in json.loads(listing.stdout)["connectors"]}
    assert set(connectors) == {"example", "harvey", "microsoft", "notion"}
    assert all(c["builtin"] and c["version"] == VERSION for c in connectors.values())
    assert connectors["harvey"]["loads"] and connectors["example"]["loads"]  # no extra needed
    for platform in ("notion", "microsoft"):  # their clients come with their extras
        assert not connectors[platform]["loads"]
        assert f"pip install 'engram-sdk[{platform}]'" in connectors[platform]["problem"]
    table = run(engram, "connectors", "list")
    assert table.returncode == 0 and "engram-sdk[notion]" in table.stdout, table.stdout

    init = run(engram, "init")
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "home" / "engram.db").is_file() and (tmp_path / "home" / "config.toml").is_file()
    keys = run(engram, "keys", "generate", "--team", "acme")
    assert keys.returncode == 0, keys.stderr

    # A command that needs an extra stops with one line naming it, not a traceback.
    for argv, extra in ((["train", "--team", "acme"], "train"), (["query", "--team", "acme", "Who?"], "train"),
                        (["serve"], "server"), (["sandbox", "notion"], "server")):
        proc = run(engram, *argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, (argv, proc.stderr[-2000:])
        assert lines[0].startswith("error: ") and f"pip install 'engram-sdk[{extra}]'" in lines[0], (argv, lines)
    assert not (tmp_path / "cache").exists()  # nothing reached for the base model

    # The demo is an example that ships with the repository: from a wheel it says so, in one line.
    demo = run(engram, "demo", "--home", str(tmp_path / "demo"))
    lines = demo.stderr.strip().splitlines()
    assert demo.returncode == 1 and len(lines) == 1, demo.stderr[-2000:]
    assert lines[0].startswith("error: the demo needs a clone of the repository") and "scripts/demo.sh" in lines[0]
    assert not (tmp_path / "demo").exists()


def _extras_dependencies() -> set[str]:
    """Every distribution an extra names, but not engram-sdk itself (`all` names the other extras)."""
    names = {canonicalize_name(Requirement(r).name)
             for reqs in PYPROJECT["project"]["optional-dependencies"].values() for r in reqs}
    return names - {"engram-sdk"}


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would leak this project's own setup into a fresh install."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENGRAM_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"))}
    return {**env, **extra}
