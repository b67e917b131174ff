"""The demo's one training recipe constant: first and continual runs, and `--set` on top."""

from __future__ import annotations

from engram_sdk._cli.bench import _recipe
from engram_training.config import TrainConfig
from examples.kestrel_demo import DEMO_TRAINING, FRESHNESS_START, Demo


def test_first_and_continual_runs_read_one_constant(tmp_path):
    demo = Demo(tmp_path / "d")
    first, continual = demo._config(continual=False), demo._config(continual=True)
    assert first.epochs == DEMO_TRAINING["epochs"] and continual.epochs == DEMO_TRAINING["continual"]["epochs"]
    for key in ("train_questions_per_fact", "page_examples", "replay_general"):
        assert getattr(first, key) == getattr(continual, key) == DEMO_TRAINING[key]
    # what the constant does not name follows the trainer's own recipe
    assert first.lr == TrainConfig().lr and first.min_recall == TrainConfig().min_recall


def test_freshness_start_applies_to_the_first_version_only(tmp_path):
    demo = Demo(tmp_path / "d", first_training={**DEMO_TRAINING, **FRESHNESS_START})
    assert demo._config(continual=False).holdout_per_fact == 0
    assert demo._config(continual=True).holdout_per_fact == TrainConfig().holdout_per_fact
    assert demo._config(continual=True).epochs == DEMO_TRAINING["continual"]["epochs"]


def test_set_overrides_both_runs():
    recipe = _recipe(["epochs=1", "rank=4"])
    demo = Demo("unused", training=recipe)
    assert demo._config(continual=False).epochs == demo._config(continual=True).epochs == 1.0
    assert demo._config(continual=True).rank == 4
