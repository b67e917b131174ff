"""What a wheel carries besides code: ``py.typed`` markers, the license, and the top-level
LICENSE and CHANGELOG.md themselves. The wheel is really built (a few seconds, no network)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The packages that promise type hints. engram_training (training/) has no marker yet.
TYPED = ("engram_sdk", "engram_notion", "engram_microsoft", "engram_harvey")


def test_license_is_the_apache_2_text_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == {"text": "Apache-2.0"}
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_keeps_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "Keep a Changelog" in text and "## [Unreleased]" in text


def test_the_wheel_carries_py_typed_in_each_typed_package_and_the_license(tmp_path):
    # Built from a copy, so the worktree gets no build/ directory and a concurrent run no stale one.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for tree in ("engram_sdk", "connectors", "training"):
        shutil.copytree(ROOT / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "dist"
    # No build isolation: setuptools comes from this environment, so no index is needed.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("engram_sdk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in TYPED:
        assert f"{package}/py.typed" in names, package
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
