"""The dequantised base model: one copy per user, shared by every ENGRAM_HOME, checked by sha256
before it is loaded, rebuilt when it does not match."""

from __future__ import annotations

import json
import shutil
import stat
import time
from pathlib import Path

import pytest

from engram_sdk._config import Settings
from engram_training import base


def _homes(tmp_path: Path) -> list[Settings]:
    return [Settings.load(tmp_path / name) for name in ("home-a", "home-b")]


def test_every_home_of_a_user_shares_one_copy(tmp_path: Path, real_model_cache: Path, user_cache: Path) -> None:
    gguf = base.default_model_path()
    ident = base.identify(gguf)
    copy = base.copy_dir(user_cache, ident)
    weights = copy / "model.safetensors"
    before = weights.stat()
    for settings in _homes(tmp_path):
        assert settings.cache_root == user_cache  # ENGRAM_CACHE_DIR (set for the whole test session)
        assert base.cached_copy(gguf, ident, settings.cache_root) == copy
        assert not (settings.home / "models").exists()
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not written again
    assert stat.S_IMODE((user_cache / "models").stat().st_mode) == 0o700
    manifest = json.loads((copy / base.COPY_MANIFEST).read_text())
    assert manifest["sha256"] == ident.sha256 and {"config.json", "model.safetensors"} <= set(manifest["files"])


def test_a_corrupted_copy_is_found_by_its_sha256_and_rebuilt(tmp_path: Path, real_model_cache: Path,
                                                             user_cache: Path) -> None:
    gguf = base.default_model_path()
    ident = base.identify(gguf)
    cache = tmp_path / "cache"
    copy = base.copy_dir(cache, ident)
    shutil.copytree(base.copy_dir(user_cache, ident), copy)
    started = time.perf_counter()
    assert base.verify_copy(copy, ident) is None
    print(f"sha256 check of the copy: {time.perf_counter() - started:.2f} s")
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as f:  # same size, different bytes: only the hash can tell
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert base.verify_copy(copy, ident) == "model.safetensors does not match its sha256"
    assert base.cached_copy(gguf, ident, cache) == copy  # rebuilt (dequantised again), not loaded
    assert base.verify_copy(copy, ident) is None
    assert not [p.name for p in copy.parent.iterdir() if ".tmp-" in p.name or ".stale-" in p.name]


def test_an_unfinished_copy_is_never_taken_for_a_copy(tmp_path: Path, real_model_cache: Path, user_cache: Path) -> None:
    ident = base.identify(base.default_model_path())
    copy = tmp_path / "copy"
    shutil.copytree(base.copy_dir(user_cache, ident), copy)
    (copy / "config.json").unlink()
    assert base.verify_copy(copy, ident) == "config.json is missing"
    (copy / base.COPY_MANIFEST).unlink()  # the manifest is written last: a crash before it
    assert base.verify_copy(copy, ident) == "no manifest (never finished)"


@pytest.mark.parametrize(("env", "expected"), [
    ({"ENGRAM_CACHE_DIR": "/srv/engram-cache", "XDG_CACHE_HOME": "/xdg"}, "/srv/engram-cache"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/engram"),
    ({"XDG_CACHE_HOME": "relative/ignored"}, "~/.cache/engram"),
    ({}, "~/.cache/engram"),
])
def test_where_the_user_cache_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                 expected: str) -> None:
    for name in ("ENGRAM_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings.load(tmp_path / "home").cache_root == Path(expected).expanduser()


def test_config_toml_names_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGRAM_CACHE_DIR", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'cache_dir = "{tmp_path / "shared-cache"}"\n')
    assert Settings.load(home).cache_root == tmp_path / "shared-cache"
