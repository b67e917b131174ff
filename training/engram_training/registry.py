"""The adapter registry: versions per team as PEFT directories plus a manifest, metadata in the store.

Files (under ``Settings.adapters_dir``)::

    <team>/v0003/adapter_config.json       standard PEFT layout: vLLM, LoRAX and peft load it as is
    <team>/v0003/adapter_model.safetensors
    <team>/v0003/manifest.json             base model id + hash, watermark, config, dataset stats,
                                           entities trained on, metrics, gate result
    <team>/v0003/probe.jsonl               the held-out questions (retention probe for later runs)
    <team>/work/                           resumable checkpoints of the run in progress

A version directory is written under a temporary name and renamed into place (atomic on one file
system) inside the store's write transaction that reserves its number (``EventStore.add_adapter_version``);
only then is its row added to the store's adapter index, and the team's current version changes in the
same transaction: publishing is all or nothing. A version whose gates
failed is kept with status ``rejected`` and its reason, and never becomes current unless an
operator publishes it with ``force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engram_sdk import EventStore, StoredAdapter, TrainingError

MANIFEST_FORMAT = "engram-adapter/1"
HUB_IDS = {"SmolLM2-135M-Instruct.Q4_1.gguf": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def team_dir_name(team_id: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", team_id):
        return team_id
    return "team-" + hashlib.sha256(team_id.encode()).hexdigest()[:16]


@dataclass
class Version:
    team_id: str
    version: int
    status: str
    path: Path
    manifest: dict[str, Any]
    reason: str | None
    created_at: datetime
    current: bool = False

    def summary(self) -> dict[str, Any]:
        m = self.manifest.get("metrics", {})
        return {
            "team": self.team_id,
            "version": self.version,
            "status": self.status,
            "current": self.current,
            "created_at": self.created_at.isoformat(timespec="seconds") if self.created_at else None,
            "recall": m.get("recall"),
            "general_score": m.get("general_score"),
            "reason": self.reason,
        }


class Registry:
    def __init__(self, store: EventStore, root: Path):
        self.store = store
        self.root = Path(root)

    def team_root(self, team_id: str) -> Path:
        return self.root / team_dir_name(team_id)

    def work_dir(self, team_id: str) -> Path:
        return self.team_root(team_id) / "work"

    # --- reading ---------------------------------------------------------------------------------

    def versions(self, team_id: str) -> list[Version]:
        return [self._version(a) for a in self.store.adapter_versions(team_id)]

    def _version(self, a: StoredAdapter) -> Version:
        return Version(a.team_id, a.version, a.status, self.root / a.path, a.manifest, a.reason, a.created_at,
                       a.current)

    def get(self, team_id: str, version: int | None = None) -> Version:
        """One version; None means the current one."""
        found = self.store.adapter_version(team_id, version)
        if found is None:
            if version is None:
                raise TrainingError(f"team {team_id} has no published adapter yet: run `engram train --team {team_id}`")
            raise TrainingError(f"team {team_id} has no adapter version {version}")
        return self._version(found)

    def current_version(self, team_id: str) -> int | None:
        return self.store.current_adapter_version(team_id)

    def current(self, team_id: str) -> Version | None:
        found = self.store.adapter_version(team_id)
        return self._version(found) if found else None

    def teams(self) -> list[str]:
        return self.store.adapter_teams()

    # --- writing ---------------------------------------------------------------------------------

    def add(self, team_id: str, adapter_dir: Path, manifest: dict[str, Any], *, publish: bool,
            reason: str | None = None) -> Version:
        """Move a trained adapter directory into the registry as the next version; make it current
        when ``publish`` (the gates passed), else keep it as rejected with ``reason``."""
        root = self.team_root(team_id)
        root.mkdir(parents=True, exist_ok=True)

        def place(version: int) -> tuple[str, dict[str, Any]]:
            # Runs inside the store's write transaction that reserves ``version``: the directory is
            # renamed into place before the row exists, and a crash before the commit leaves it
            # unregistered.
            final = root / f"v{version:04d}"
            stamped = {**manifest, "version": version}
            (adapter_dir / "manifest.json").write_text(json.dumps(stamped, indent=2, default=str))
            _pin_base(adapter_dir / "adapter_config.json", stamped)
            for f in adapter_dir.iterdir():
                _fsync(f)
            if final.exists():  # left by a crash between rename and commit: not registered, so replace
                shutil.rmtree(final)
            os.replace(adapter_dir, final)
            return str(final.relative_to(self.root)), stamped

        return self._version(self.store.add_adapter_version(team_id, place, publish=publish, reason=reason))

    def publish(self, team_id: str, version: int, *, force: bool = False) -> Version:
        v = self.get(team_id, version)
        if v.status == "rejected" and not force:
            raise TrainingError(f"version {version} failed its gates ({v.reason}); use --force to publish it anyway")
        self.store.set_current_adapter(team_id, version, publish=True)
        return self.get(team_id, version)

    def rollback(self, team_id: str, to: int | None = None) -> Version:
        """Make an earlier published version current (default: the one before the current)."""
        cur = self.current_version(team_id)
        if cur is None:
            raise TrainingError(f"team {team_id} has no current adapter to roll back")
        published = [v.version for v in self.versions(team_id) if v.status == "published"]
        if to is None:
            earlier = [n for n in published if n < cur]
            if not earlier:
                raise TrainingError(f"version {cur} is the first published version of team {team_id}")
            to = earlier[-1]
        elif to not in published:
            raise TrainingError(f"version {to} of team {team_id} was never published")
        self.store.set_current_adapter(team_id, to)
        return self.get(team_id, to)

    def export(self, team_id: str, version: int | None, target: Path) -> Path:
        """Copy a version as a plain PEFT directory (vLLM ``LoRARequest`` / LoRAX adapter source)."""
        v = self.get(team_id, version)
        target = Path(target)
        if target.exists() and any(target.iterdir()):
            raise TrainingError(f"{target} exists and is not empty")
        target.mkdir(parents=True, exist_ok=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(v.path / name, target / name)
        shutil.copy2(v.path / "manifest.json", target / "engram-manifest.json")
        return target

    def purge(self, team_id: str) -> int:
        """Delete every version of a team (files and rows); returns how many versions there were."""
        n = self.store.delete_adapter_versions(team_id)
        shutil.rmtree(self.team_root(team_id), ignore_errors=True)
        return n


def _pin_base(config_path: Path, manifest: dict[str, Any]) -> None:
    """peft writes the base model's absolute path; write its public name instead."""
    if not config_path.exists():
        return
    cfg = json.loads(config_path.read_text())
    name = manifest["base_model"]["name"]
    cfg["base_model_name_or_path"] = HUB_IDS.get(name, name)
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
