"""Where things live: ENGRAM_HOME, its config file, and the database URL.

Precedence for each setting: environment variable, then ``<ENGRAM_HOME>/config.toml``, then the
default. Layout of ENGRAM_HOME (written by ``engram init``)::

    config.toml         settings (database_url, base_model); no secrets
    engram.db           the event store, when ENGRAM_DATABASE_URL names no other database
    keys/               the signing keyring (0700; private keys 0600)
    adapters/           team adapters, one directory per team and version
    secrets/            connector secrets (0600), added by the connector framework
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import ConfigError

__all__ = ["Settings"]

_CONFIG_TEMPLATE = """\
# Engram settings. Environment variables (ENGRAM_DATABASE_URL, ENGRAM_BASE_MODEL) win over this file.
# database_url = "postgresql+psycopg://user@host/dbname"
# base_model = "/path/to/model-or.gguf"
"""


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    base_model: str | None = None

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
        return cls(home=root, database_url=str(url), base_model=str(model) if model else None)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    def init_home(self) -> list[Path]:
        """Create ENGRAM_HOME and its config file; returns what was created."""
        created = []
        for d, mode in ((self.home, 0o755), (self.keys_dir, 0o700), (self.adapters_dir, 0o755)):
            if not d.exists():
                d.mkdir(parents=True, mode=mode)
                created.append(d)
        cfg = self.home / "config.toml"
        if not cfg.exists():
            cfg.write_text(_CONFIG_TEMPLATE)
            created.append(cfg)
        return created
