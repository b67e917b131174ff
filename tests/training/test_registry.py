"""The adapter registry's file work over the store's adapter index, without a model: a version
directory here is a hand-written PEFT-shaped directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engram_sdk import TrainingError
from engram_training.registry import Registry

MANIFEST = {"base_model": {"name": "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": "0" * 64}, "watermark": None}


def trained(tmp_path: Path, name: str) -> Path:
    d = tmp_path / "runs" / name
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/home/someone/model"}))
    (d / "adapter_model.safetensors").write_bytes(b"weights " + name.encode())
    return d


def test_add_moves_the_directory_stamps_the_manifest_and_pins_the_base(store, tmp_path):
    reg = Registry(store, tmp_path / "adapters")
    v = reg.add("kestrel", trained(tmp_path, "a"), MANIFEST, publish=True)
    assert v.version == 1 and v.current and v.status == "published"
    assert v.path == reg.team_root("kestrel") / "v0001" and not (tmp_path / "runs" / "a").exists()
    assert json.loads((v.path / "manifest.json").read_text())["version"] == 1 == v.manifest["version"]
    cfg = json.loads((v.path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert reg.teams() == ["kestrel"] and reg.current("kestrel") == v


def test_add_replaces_what_a_crash_left_at_the_reserved_number(store, tmp_path):
    reg = Registry(store, tmp_path / "adapters")
    # A crash between the rename and the commit leaves a directory that no row names.
    left = reg.team_root("kestrel") / "v0001"
    left.mkdir(parents=True)
    (left / "adapter_model.safetensors").write_bytes(b"from the run that crashed")
    v = reg.add("kestrel", trained(tmp_path, "a"), MANIFEST, publish=True)
    assert v.version == 1 and (v.path / "adapter_model.safetensors").read_bytes() == b"weights a"


def test_a_failed_add_indexes_nothing(store, tmp_path):
    reg = Registry(store, tmp_path / "adapters")
    with pytest.raises(FileNotFoundError):
        reg.add("kestrel", tmp_path / "runs" / "never-written", MANIFEST, publish=True)
    assert reg.versions("kestrel") == [] and reg.current("kestrel") is None
    assert reg.add("kestrel", trained(tmp_path, "a"), MANIFEST, publish=True).version == 1


def test_rejected_needs_force_to_publish_and_rollback_goes_to_the_previous_published(store, tmp_path):
    reg = Registry(store, tmp_path / "adapters")
    reg.add("kestrel", trained(tmp_path, "a"), MANIFEST, publish=True)
    reg.add("kestrel", trained(tmp_path, "b"), MANIFEST, publish=True)
    rejected = reg.add("kestrel", trained(tmp_path, "c"), MANIFEST, publish=False, reason="recall 0.1 < 0.5")
    assert rejected.status == "rejected" and not rejected.current and reg.current_version("kestrel") == 2
    with pytest.raises(TrainingError, match="failed its gates"):
        reg.publish("kestrel", 3)
    assert reg.publish("kestrel", 3, force=True).current
    assert reg.rollback("kestrel").version == 2 and reg.current_version("kestrel") == 2
    assert [v.current for v in reg.versions("kestrel")] == [False, True, False]
    with pytest.raises(TrainingError, match="no adapter version 9"):
        reg.get("kestrel", 9)
    assert reg.purge("kestrel") == 3 and not reg.team_root("kestrel").exists() and reg.teams() == []
    with pytest.raises(TrainingError, match="no published adapter yet"):
        reg.get("kestrel")
