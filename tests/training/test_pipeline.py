"""The whole pipeline on a tiny random model: events -> dataset -> LoRA -> eval -> registry -> query."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from engram_sdk import samples
from engram_sdk._events import build_events
from engram_sdk._exceptions import GateFailed, TrainingError
from engram_sdk._records import Document, Tombstone
from engram_training import ops
from engram_training.config import TrainConfig
from engram_training.registry import Registry
from engram_training.train import train
from examples.kestrel_demo import load_records

# These tests are about the pipeline's mechanics (checkpoints, gates, registry, continual runs), on
# the Kestrel sample's `Key: value` facts; the prose recipe has its own tests (test_prose.py).
FAST = dict(generation="facts", epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0, checkpoint_every=1000,
            max_new_tokens=8, eval_batch_size=64)
SMALL = ["np-charter", "np-moonwick", "hv-row-nimbusfold", "tm-loadtest"]  # includes two edits


def _ingest(env, ids=SMALL):
    recs = [r for r in load_records() if r.entity_id in ids]
    samples.ingest(env.store, env.keyring, team_id=env.team, records=recs)


def _train(env, **kw):
    scratch = kw.pop("from_scratch", False)
    return train(env.team, store=env.store, settings=env.settings, config=TrainConfig(**{**FAST, **kw}),
                 from_scratch=scratch)


def test_train_publishes_a_peft_adapter_with_manifest(team_env):
    _ingest(team_env)
    r = _train(team_env)
    assert r.published and r.version.version == 1 and r.version.current
    files = {p.name for p in r.version.path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "manifest.json", "probe.jsonl"} <= files
    m = json.loads((r.version.path / "manifest.json").read_text())
    cfg = json.loads((r.version.path / "adapter_config.json").read_text())
    assert not os.path.isabs(cfg["base_model_name_or_path"])  # no machine path
    assert m["base_model"]["sha256"] and m["config"]["lr"] == 1e-3 and m["generation"]
    assert m["watermark"] and m["dataset"]["facts"] >= 8 and m["events"]["rejected"] == {}
    for key in ("recall", "general_score", "base_general_score", "rag_recall", "rag_prompt_tokens",
                "adapter_prompt_tokens", "perplexity", "train_seconds", "tokens_per_s", "base_recall", "rag1_recall"):
        assert key in m["metrics"]
    assert m["metrics"]["rag_prompt_tokens"] > m["metrics"]["adapter_prompt_tokens"]
    assert set(m["entities_in_weights"]) == set(SMALL)
    # bf16 (the default) only where this CPU runs it natively, by its own flags: emulated it is ~35x slower.
    assert m["metrics"]["precision"] == ("bf16" if _cpu_has_native_bf16() else "fp32")


def _cpu_has_native_bf16() -> bool:
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def test_bf16_off_trains_in_fp32_on_any_hardware(team_env):
    _ingest(team_env)
    r = _train(team_env, bf16=False)
    assert json.loads((r.version.path / "manifest.json").read_text())["metrics"]["precision"] == "fp32"


def test_training_is_deterministic(team_env):
    _ingest(team_env)
    a = _train(team_env)
    b = _train(team_env, from_scratch=True)
    assert (a.version.path / "adapter_model.safetensors").read_bytes() == \
        (b.version.path / "adapter_model.safetensors").read_bytes()


def test_query_uses_the_current_adapter_and_counts_prompt_tokens(team_env):
    _ingest(team_env)
    _train(team_env)
    out = ops.query(team_env.store, team_env.settings, "kestrel", "What is the launch date of Project Moonwick?",
                    max_new_tokens=4)
    assert out["adapter_version"] == 1 and isinstance(out["answer"], str)
    assert 10 < out["usage"]["prompt_tokens"] < 40


def test_continual_run_trains_only_new_content_and_replays(team_env):
    _ingest(team_env, ["np-charter", "np-oncall"])
    v1 = _train(team_env)
    with pytest.raises(TrainingError, match="nothing new"):
        _train(team_env)
    _ingest(team_env, ["np-tooling"])
    v2 = _train(team_env)
    m = v2.version.manifest
    assert m["parent_version"] == 1 and not m["from_scratch"]
    assert m["dataset"]["replay_examples"] > 0 and m["dataset"]["retention_questions"] > 0
    assert m["metrics"]["retention"] is not None
    assert set(m["entities"]) == {"np-charter", "np-oncall", "np-tooling"}
    assert v1.version.manifest["watermark"] != m["watermark"]


def test_a_continual_run_is_bounded_by_default_like_the_demo(team_env):
    """Nightly updates (no ``Bounds`` passed) replay at most ``continual_replay_per_example``
    earlier examples per new one and ask at most ``continual_retention_questions``; 0 lifts a cap."""
    _ingest(team_env, ["np-charter", "np-oncall", "np-tooling"])
    _train(team_env)
    _ingest(team_env, ["np-moonwick"])
    v2 = _train(team_env, replay_old=1.0, continual_replay_per_example=1, continual_retention_questions=3)
    d = v2.version.manifest["dataset"]
    assert 0 < d["old_replay_examples"] <= d["examples"]
    assert v2.version.manifest["metrics"]["retention_questions"] == 3


def test_failing_gate_keeps_previous_version_current(team_env):
    _ingest(team_env, ["np-charter"])
    _train(team_env)
    _ingest(team_env, ["np-oncall"])
    with pytest.raises(GateFailed, match="recall"):
        train("kestrel", store=team_env.store, settings=team_env.settings,
              config=TrainConfig(**{**FAST, "min_recall": 0.99}), raise_on_gate=True)
    reg = Registry(team_env.store, team_env.settings.adapters_dir)
    assert reg.current_version("kestrel") == 1
    v2 = reg.get("kestrel", 2)
    assert v2.status == "rejected" and "recall" in v2.reason
    with pytest.raises(TrainingError, match="--force"):
        reg.publish("kestrel", 2)
    assert reg.publish("kestrel", 2, force=True).current
    assert reg.rollback("kestrel").version == 1 and reg.current_version("kestrel") == 1


def test_deleted_entity_absent_after_from_scratch(team_env):
    _ingest(team_env)
    _train(team_env)
    gone = Tombstone(platform="notion", workspace_id="ws-fennwick", entity_id="np-moonwick",
                     updated_at=datetime(2026, 12, 1, tzinfo=timezone.utc))
    team_env.store.append([team_env.keyring.sign(e) for e in build_events(
        gone, team_id="kestrel", connection_id="sample-notion", source="notion://workspace/ws-fennwick")])
    shown = ops.show(team_env.store, team_env.settings, "kestrel")
    assert shown["deleted_entities_inside"] == ["np-moonwick"] and "--from-scratch" in shown["forget_hint"]
    # A continual run would keep it in the weights; --from-scratch rebuilds without it.
    r = _train(team_env, from_scratch=True)
    m = r.version.manifest
    assert "np-moonwick" not in m["entities_in_weights"] and "np-moonwick" not in m["entities"]
    probe = (r.version.path / "probe.jsonl").read_text()
    assert "Moonwick" not in probe and "Quillstone" not in probe
    assert ops.show(team_env.store, team_env.settings, "kestrel")["deleted_entities_inside"] == []


def test_killed_training_run_resumes_from_its_checkpoint(team_env):
    _ingest(team_env)
    env = {**os.environ, "ENGRAM_HOME": str(team_env.settings.home)}
    args = ["train", "--team", "kestrel", "--set", "epochs=8", "--set", "checkpoint_every=2",
            "--set", "min_recall=0", "--set", "general_tolerance=1", "--set", "max_new_tokens=8"]
    proc = subprocess.Popen([sys.executable, "-c", "from engram_sdk._cli import main; main()", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work = team_env.settings.adapters_dir / "kestrel" / "work"
    deadline = time.time() + 240
    while not list(work.glob("*/checkpoint.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(work.glob("*/checkpoint.pt")), "no checkpoint was written before the kill"
    r = train("kestrel", store=team_env.store, settings=team_env.settings,
              config=TrainConfig(epochs=8, checkpoint_every=2, min_recall=0, general_tolerance=1, max_new_tokens=8))
    assert r.resumed_from_step >= 2 and r.published
    assert not list(work.glob("*/checkpoint.pt"))  # cleaned up after a finished run


def test_export_writes_a_plain_peft_directory_peft_can_load(team_env, tmp_path):
    from peft import PeftConfig

    _ingest(team_env, ["np-charter"])
    _train(team_env)
    out = Registry(team_env.store, team_env.settings.adapters_dir).export("kestrel", None, tmp_path / "export")
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                               "engram-manifest.json"}
    assert PeftConfig.from_pretrained(str(out)).r == 16


def test_purge_removes_events_and_adapters(team_env):
    _ingest(team_env, ["np-charter"])
    _train(team_env)
    out = ops.purge_team(team_env.store, team_env.settings, "kestrel")
    assert out["events"] == 1 and out["adapter_versions"] == 1
    assert team_env.store.count("kestrel") == 0
    assert not (team_env.settings.adapters_dir / "kestrel").exists()
    assert Registry(team_env.store, team_env.settings.adapters_dir).current_version("kestrel") is None


def test_no_trainable_content_is_a_clear_error(team_env):
    doc = Document(platform="notion", workspace_id="w", entity_id="secret", title="S", text="- A: b\n",
                   restricted=True, visible_to=["u1"], updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    team_env.store.append([team_env.keyring.sign(e) for e in build_events(
        doc, team_id="kestrel", connection_id="c", source="notion://workspace/w")])
    with pytest.raises(TrainingError, match="no trainable content.*1 restricted"):
        _train(team_env)


def test_scaled_updates_are_tried_when_a_gate_fails_and_recorded(team_env):
    from safetensors.torch import load_file

    from engram_training.train import _scale_update

    _ingest(team_env, ["np-charter"])
    result = _train(team_env, min_recall=0.99, scales=[0.5, 0.25])
    assert not result.published
    trials = result.metrics["scale_trials"]
    assert [t["scale"] for t in trials] == [0.5, 0.25]  # each tried, none passed the recall gate
    assert all({"recall", "general_score"} <= set(t) for t in trials)
    assert result.metrics["scale"] == 1.0  # the rejected version keeps the update as trained

    src = result.version.path
    full = load_file(str(src / "adapter_model.safetensors"))
    _scale_update(src, team_env.settings.home / "half", 0.5)
    half = load_file(str(team_env.settings.home / "half" / "adapter_model.safetensors"))
    assert full.keys() == half.keys()
    for k, v in full.items():
        expected = v * 0.5 if "lora_B" in k else v
        assert (half[k] - expected).abs().max().item() == 0.0, k


def test_scales_parse_as_numbers_and_are_validated():
    from engram_training.config import parse_overrides

    assert parse_overrides(["scales=0.75,0.5"]) == {"scales": [0.75, 0.5]}
    with pytest.raises(ValueError, match="scales"):
        TrainConfig(scales=[1.5])


def test_eval_baselines_choose_which_comparisons_are_scored(team_env):
    _ingest(team_env)
    m = _train(team_env, eval_baselines=["rag"]).metrics
    assert m["rag_recall"] is not None and m["rag_prompt_tokens"] > 0
    assert m["base_general_score"] is not None  # the general gate needs it whatever is chosen
    assert "base_recall" not in m and "rag1_recall" not in m
    with pytest.raises(ValueError, match="eval_baselines"):
        TrainConfig(eval_baselines=["bm25"])
