"""Where things live: ENGRAM_HOME, its config file, and the database URL.

Precedence for each setting: environment variable, then ``<ENGRAM_HOME>/config.toml``, then the
default. Layout of ENGRAM_HOME (written by ``engram init``)::

    config.toml         settings (database_url, base_model); no secrets
    engram.db           the event store, when ENGRAM_DATABASE_URL names no other database
                        (0600, and so its -wal and -shm files, which SQLite creates alike)
    keys/               the signing keyring (0700; private keys 0600)
    adapters/           team adapters, one directory per team and version
    secrets/            connector secrets (0600), added by the connector framework

Outside ENGRAM_HOME, one cache per user (``Settings.cache_root``): ``ENGRAM_CACHE_DIR``, or
``cache_dir`` in config.toml, else ``$XDG_CACHE_HOME/engram``, else ``~/.cache/engram``; 0700. It
holds what is derived from public files and is the same for every home: the dequantised base model
(``models/<sha256[:16]>/``, ~517 MB for the default), so a second ENGRAM_HOME writes no second copy.

ENGRAM_HOME itself is 0700: the store holds every team's content, so no other local account may
read it. What exists already is never chmod-ed behind the operator's back; ``exposure_warnings``
names what is open to others, and ``engram init`` and the server say it.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import ConfigError

__all__ = ["Settings", "default_cache_dir", "ensure_private_dir", "exposure_warnings"]

_CONFIG_TEMPLATE = """\
# Engram settings. Environment variables (ENGRAM_DATABASE_URL, ENGRAM_BASE_MODEL) win over this file.
# database_url = "postgresql+psycopg://user@host/dbname"
# base_model = "/path/to/model-or.gguf"
# cache_dir = "/path/to/user/cache"   (ENGRAM_CACHE_DIR; default $XDG_CACHE_HOME/engram or ~/.cache/engram)
"""


def default_cache_dir() -> Path:
    """The per-user cache: ENGRAM_CACHE_DIR, else $XDG_CACHE_HOME/engram, else ~/.cache/engram.
    Read at call time, so a test (or an operator's shell) that sets the variable is obeyed."""
    explicit = os.environ.get("ENGRAM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "engram"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    base_model: str | None = None
    cache_dir: Path | None = None  # None: default_cache_dir()

    @classmethod
    def load(cls, home: str | Path | None = None) -> Settings:
        root = Path(home or os.environ.get("ENGRAM_HOME") or Path.home() / ".engram").expanduser()
        file_values: dict[str, object] = {}
        cfg = root / "config.toml"
        if cfg.exists():
            try:
                file_values = tomllib.loads(cfg.read_text())
            except (tomllib.TOMLDecodeError, OSError) as exc:
                raise ConfigError(f"{cfg} is not valid TOML: {exc}") from None
        url = os.environ.get("ENGRAM_DATABASE_URL") or file_values.get("database_url")
        if not url:
            url = f"sqlite:///{root / 'engram.db'}"
        model = os.environ.get("ENGRAM_BASE_MODEL") or file_values.get("base_model")
        cache = os.environ.get("ENGRAM_CACHE_DIR") or file_values.get("cache_dir")
        return cls(home=root, database_url=str(url), base_model=str(model) if model else None,
                   cache_dir=Path(str(cache)).expanduser() if cache else None)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def cache_root(self) -> Path:
        """The per-user cache (see the module docstring); created 0700 by whoever writes to it."""
        return self.cache_dir or default_cache_dir()

    def init_home(self) -> list[Path]:
        """Create ENGRAM_HOME and its config file; returns what was created."""
        created = []
        for d in (self.home, self.keys_dir, self.adapters_dir):
            if not d.exists():
                ensure_private_dir(d)
                created.append(d)
        cfg = self.home / "config.toml"
        if not cfg.exists():
            cfg.write_text(_CONFIG_TEMPLATE)
            created.append(cfg)
        return created


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parent with mode 0700 (``mkdir(parents=True, mode=...)``
    applies the mode to the last component only). Existing directories are left as they are.

    Public because plugins write into ENGRAM_HOME and the per-user cache too (the trainer's model
    copies and caches): the rule that those are 0700 all the way down keeps one implementation."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # created by another process meanwhile
            pass


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return Path(db) if db and db != ":memory:" else None


def exposure_warnings(settings: Settings) -> list[str]:
    """One line per file or directory of this deployment that other local users may open: ENGRAM_HOME
    and, on SQLite, the database with its -wal and -shm files. Empty when all are private."""
    out = []
    candidates: list[tuple[Path, str]] = [(settings.home, "700")]
    db = _sqlite_file(settings.database_url)
    if db is not None:
        candidates += [(db, "600"), (db.with_name(db.name + "-wal"), "600"), (db.with_name(db.name + "-shm"), "600")]
    for path, want in candidates:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            what = "ENGRAM_HOME" if path == settings.home else "the event store file"
            out.append(f"{what} {path} is open to other users on this machine (mode {mode:o}): "
                       f"run `chmod {want} {path}`")
    return out
