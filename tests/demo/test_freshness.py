"""`engram bench freshness` with the tiny model: real measurements through the webhook, the queue,
the events and a continual update, at 1x and 10x the workspace."""

from __future__ import annotations

import json

from tests.demo.conftest import TINY_SET

from engram_sdk import EventStore
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_training.registry import Registry
from examples.kestrel_demo import DEMO_BOUNDS


def test_freshness_bench_measures_the_update_at_1x_and_10x(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("ENGRAM_BASE_MODEL", str(tiny_model))
    root = tmp_path / "fresh"
    argv = ["bench", "freshness", "--dir", str(root), "--json"]
    for pair in TINY_SET:
        argv += ["--set", pair]
    assert run_app(app, argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("seconds_to_correct_answer", "update_seconds_1x", "update_seconds_10x", "update_ratio",
                "answered_correctly", "events_1x", "events_10x"):
        assert key in out
    one, ten = out["x1"], out["x10"]
    # real measurements: the edit travelled and was timed, both updates ran and were published
    assert 0 < one["seconds_to_ingest"] < 120 and 0 < ten["seconds_to_ingest"] < 120
    assert out["update_seconds_1x"] > 0 and out["update_seconds_10x"] > 0
    assert one["published"] and ten["published"]
    assert out["update_ratio"] == round(out["update_seconds_10x"] / out["update_seconds_1x"], 2)
    # the 10x workspace is ten times the events, yet the update trains the same number of steps:
    # its cost follows the new events (bounded replay), not the workspace
    assert out["events_10x"] >= 7 * out["events_1x"]
    assert one["steps"] == ten["steps"]
    # the tiny model never answers right: no time is claimed for a correct answer
    assert out["answered_correctly"] is False and out["seconds_to_correct_answer"] is None
    for size, events in (("x1", out["events_1x"]), ("x10", out["events_10x"])):
        with EventStore.open(f"sqlite:///{root / size / 'home' / 'engram.db'}") as store:
            assert store.count("kestrel") > events  # the edit's events came in after the count
            v = Registry(store, root / size / "home" / "adapters").current("kestrel")
            assert v.version == 2 and v.manifest["parent_version"] == 1
            # the retention probe is capped too
            assert v.manifest["dataset"]["retention_questions"] <= DEMO_BOUNDS["retention_questions"]


def test_freshness_refuses_a_used_directory(tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x1").mkdir()
    assert run_app(app, ["bench", "freshness", "--dir", str(tmp_path / "used"), "--json"]) != 0
    assert "is not empty" in capsys.readouterr().err
