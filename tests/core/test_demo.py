"""The README's main job, as it stands: sign, store, export, trust, import, refuse a tampered copy."""

from __future__ import annotations

import json

from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_sdk._cli.demo import sample_records


def run_demo(home, capsys) -> dict:
    assert run_app(app, ["demo", "--home", str(home), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_demo_runs_end_to_end_and_a_rerun_stores_nothing_twice(tmp_path, capsys):
    records = sample_records()
    assert len(records) >= 30
    first = run_demo(tmp_path / "demo", capsys)
    assert first["events_stored"] >= len(records) and first["new_this_run"] == first["events_stored"]
    assert first["server_verified"] == first["server_imported"] == first["events_stored"]
    assert first["tampered_rejected"] == ["line 1: bad_signature"]
    again = run_demo(tmp_path / "demo", capsys)
    assert again["new_this_run"] == 0 and again["already_stored"] == first["events_stored"]
    assert again["events_stored"] == first["events_stored"] and again["signing_key"] == first["signing_key"]
