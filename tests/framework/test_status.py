"""`engram status` as an operator runs it (the real CLI in a subprocess): a deployment with a synced
connection, a failing one, queued webhook work, a running scheduler and a trained adapter with
events waiting after it; a fresh home; a home open to other users; a core without the trainer."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from engram_sdk import samples
from engram_sdk._example.sandbox import ExampleSandbox, sample_workspace
from engram_sdk._scheduler import ScheduleConfig, Scheduler, list_jobs
from engram_sdk.connectors import FakeClock, SandboxServer, serve
from engram_sdk.testing import Harness
from examples.kestrel_demo import load_records
from tests.waiting import wait_until

from .conftest import TOKEN, example_config

SECOND_TOKEN = "tok-second-do-not-print"
DB_PASSWORD = "pg-password-do-not-print"
FAST = dict(generation="facts", epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0, checkpoint_every=1000,
            max_new_tokens=8, eval_batch_size=64)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-c", "from engram_sdk._cli import main; main()", "status", *args],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def status_json(env: dict[str, str]) -> dict:
    return json.loads(cli(env, "--json").stdout.strip().splitlines()[-1])


def table80(env: dict[str, str]) -> list[str]:
    """The text output as an 80-column terminal shows it (rich's TTY_COMPATIBLE), less escape codes."""
    r = cli({**env, "COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"})
    lines = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout).splitlines()
    assert max(len(line) for line in lines) <= 80, r.stdout
    return lines


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_") or k == "ENGRAM_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


@pytest.fixture
def server(clock: FakeClock) -> Iterator[SandboxServer]:
    workspace = sample_workspace(12)
    workspace["tokens"].append(SECOND_TOKEN)
    with serve(ExampleSandbox(workspace, clock=clock)) as s:
        yield s


@pytest.fixture
def deployment(tmp_path: Path, store_url: str, server: SandboxServer, clock: FakeClock, tiny_model: Path):
    """Two connections of team acme ("ex" synced, "broken" whose token was revoked), two webhook
    deliveries queued, adapter v1 trained on the tiny model and 1+ events stored after it; on
    PostgreSQL the database URL carries a password (the local server trusts, so it is ignored)."""
    url = store_url
    if url.startswith("postgresql"):
        url = make_url(url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    h = Harness(tmp_path / "home", clock=clock, database_url=url)
    h.connect("example", "ex", scope="all", config=example_config(server))
    h.connect("example", "broken", scope="folder:eng", config=example_config(server, token=SECOND_TOKEN))
    assert h.sync("ex").ok

    from engram_training.config import TrainConfig
    from engram_training.train import train

    records = load_records()
    samples.ingest(h.store, h.keyring, team_id="acme", records=[r for r in records if r.entity_id in
                                                                ("np-charter", "np-moonwick")])
    trained = train("acme", store=h.store, settings=dataclasses.replace(h.settings, base_model=str(tiny_model)),
                    config=TrainConfig(**FAST))
    assert trained.published
    waiting = len(samples.ingest(h.store, h.keyring, team_id="acme",
                                 records=[r for r in records if r.entity_id == "np-tooling"]).accepted)
    assert waiting > 0
    h.queue().enqueue("ex", ["note-0001", "note-0002"])

    server.admin.revoke(SECOND_TOKEN)
    scheduler = Scheduler(h.store, h.settings, ScheduleConfig(tick=0.25, lease=30.0, sync_interval=3600.0),
                          keyring=h.keyring, secrets=h.secrets)
    scheduler.start()
    try:
        # its first runs: "ex" syncs (nothing new), "broken" fails on the revoked token
        wait_until(lambda: all(j.runs >= 1 and j.last_status != "running" for j in list_jobs(h.store)
                               if j.kind == "sync"), timeout=60, what="the first sync runs")
        # ENGRAM_DATABASE_URL without ENGRAM_SECRET_KEY: status opens no secrets store
        env = {**base_env(), "ENGRAM_HOME": str(h.home), "ENGRAM_DATABASE_URL": url}
        yield h, env, trained, waiting, scheduler
    finally:
        scheduler.stop()
        h.close()


def test_status_shows_connections_queue_scheduler_and_adapter(deployment) -> None:
    h, env, trained, waiting, scheduler = deployment
    s = status_json(env)
    conns = {c["name"]: c for c in s["connections"]}
    ex, broken = conns["ex"], conns["broken"]
    assert ex["status"] == "ok" and ex["last_sync_at"] and ex["last_error"] is None
    next_sync = datetime.fromisoformat(ex["next_sync_at"])
    assert 3000 < (next_sync - datetime.now(timezone.utc)).total_seconds() <= 3600
    assert broken["status"] in ("error", "reconnect_needed") and "token" in broken["last_error"]
    assert datetime.fromisoformat(broken["next_sync_at"]) < next_sync  # its retry, not the hourly run
    assert ex["webhooks_pending"] == 2 and broken["webhooks_pending"] == 0
    assert s["webhook_queue"]["pending"] == 2 and s["webhook_queue"]["dead"] == 0
    sch = s["scheduler"]
    assert sch["running"] is True and sch["lock"]["owner"] == scheduler.owner
    assert sch["jobs"] == 4 and sch["failing"] == ["sync:broken"]  # 2 syncs, update:acme, sleep:acme
    (team,) = s["teams"]
    adapter = team["adapter"]
    metrics = trained.version.manifest["metrics"]
    assert team["team"] == "acme" and team["events"] == h.store.count("acme")
    assert adapter["version"] == 1 and adapter["gates_passed"] is True
    assert 0 <= adapter["age_seconds"] < 600
    assert (adapter["recall"], adapter["retention"], adapter["general_score"], adapter["base_general_score"]) == (
        metrics.get("recall"), metrics.get("retention"), metrics["general_score"], metrics["base_general_score"])
    assert team["waiting"] == waiting
    # the two speeds of training: the update every 15 minutes (the default), the sleep at 02:00 UTC
    assert team["update"]["job"] == "update:acme" and team["update"]["last_status"] is None
    update_in = datetime.fromisoformat(team["update"]["next_run_at"]) - datetime.now(timezone.utc)
    assert 0 < update_in.total_seconds() <= 900
    assert datetime.fromisoformat(team["sleep"]["next_run_at"]).astimezone(timezone.utc).hour == 2
    assert s["home"]["signing_teams"] == ["acme"] and s["training"] == "installed"

    lines = table80(env)
    text = "\n".join(lines)
    for section in ("Home", "Connections", "Webhook queue", "Scheduler", "Teams"):
        assert section in lines
    row = next(line for line in lines if line.startswith("│ ex "))
    assert "ok" in row and "ago" in row and re.search(r"in 5\dm", row) and "2 pending" in row
    assert any(line.startswith("broken: ") and "token" in line for line in lines)  # the error, in full
    assert "2 pending, 0 dead-lettered" in text and f"{scheduler.owner}, running" in text
    team_row = next(line for line in lines if line.startswith("│ acme "))
    cells = [c.strip() for c in team_row.strip("│").split("│")]
    assert cells[1] == "v1" and cells[-1] == str(waiting)
    assert f"{metrics['general_score']:.2f}" in team_row
    assert any(line.startswith("acme update: never ran; next in ") for line in lines)
    assert any(line.startswith("acme sleep: never ran; next in ") for line in lines)

    for out in (text, json.dumps(s)):
        assert TOKEN not in out and SECOND_TOKEN not in out and DB_PASSWORD not in out
    if h.settings.database_url.startswith("postgresql"):
        assert ":***@" in s["home"]["database"]


def test_a_fresh_home_says_what_to_do_first(engram_home: Path) -> None:
    env = {**base_env(), "ENGRAM_HOME": str(engram_home)}
    s = status_json(env)
    assert s["initialised"] is False and s["next_steps"] == ["create the home and the store: `engram init`"]
    assert not engram_home.exists()  # status creates nothing
    text = cli(env).stdout
    assert "does not exist" in text and "engram init" in text

    subprocess.run([sys.executable, "-c", "from engram_sdk._cli import main; main()", "init"], env=env,
                   check=True, capture_output=True, timeout=120)
    s = status_json(env)
    assert s["initialised"] and s["connections"] == [] and s["teams"] == [] and s["home"]["warnings"] == []
    steps = " ".join(s["next_steps"])
    assert "engram keys generate --team TEAM" in steps and "engram connect <platform>" in steps
    lines = table80(env)
    assert lines[lines.index("Connections") + 1] == "none" and "not running" in "\n".join(lines)


def test_a_home_open_to_others_is_warned_about(engram_home: Path) -> None:
    env = {**base_env(), "ENGRAM_HOME": str(engram_home)}
    subprocess.run([sys.executable, "-c", "from engram_sdk._cli import main; main()", "init"], env=env,
                   check=True, capture_output=True, timeout=120)
    engram_home.chmod(0o755)
    (engram_home / "engram.db").chmod(0o644)
    warnings = status_json(env)["home"]["warnings"]
    assert any("ENGRAM_HOME" in w and "chmod 700" in w for w in warnings)
    assert any("event store file" in w and "chmod 600" in w for w in warnings)
    assert "warning: ENGRAM_HOME" in cli(env).stdout


def test_without_the_trainer_the_rest_is_still_shown(engram_home: Path, tmp_path: Path) -> None:
    """``engram_training`` failing to import (a core install without it): teams are listed with
    their events, and status says training is not installed."""
    shadow = tmp_path / "shadow" / "engram_training"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('engram_training is not installed here')\n")
    h = Harness(engram_home)
    samples.ingest(h.store, h.keyring, team_id="acme", records=load_records()[:2])
    events = h.store.count("acme")
    h.close()
    env = base_env()
    env.update(ENGRAM_HOME=str(engram_home), PYTHONPATH=os.pathsep.join([str(shadow.parent), env["PYTHONPATH"]]))
    s = status_json(env)
    assert s["training"] == "not installed"
    assert s["teams"] == [{"team": "acme", "events": events, "adapter": None, "latest_rejected": None,
                           "waiting": None, "update": None, "sleep": None}]
    assert "training not installed" in cli(env).stdout
