"""The ``engram`` command line, run as a user runs it: ``init``, ``keys``, ``events``, ``bench``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from engram_sdk import EventStore, Keyring, Settings
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from tests.factories import signed_events


def engram(*args: str, capsys=None) -> tuple[int, str, str]:
    code = run_app(app, list(args))
    out = capsys.readouterr() if capsys else None
    return code, (out.out if out else ""), (out.err if out else "")


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def host(engram_home, capsys):
    """A machine with a signing key for acme and some stored, signed events."""
    assert engram("init", capsys=capsys)[0] == 0
    assert engram("keys", "generate", "--team", "acme", capsys=capsys)[0] == 0
    s = Settings.load()
    keyring = Keyring(s.keys_dir)
    with EventStore.open(s.database_url) as store:
        store.append(signed_events(keyring, 30))
    return s, keyring


def export(tmp_path, capsys) -> Path:
    out = tmp_path / "acme.jsonl"
    code, _, _ = engram("events", "export", "--team", "acme", "-o", str(out), capsys=capsys)
    assert code == 0
    return out


def test_init_creates_the_documented_layout(engram_home, capsys):
    code, out, _ = engram("init", "--json", capsys=capsys)
    assert code == 0
    info = last_json(out)
    assert Path(info["home"]) == engram_home
    assert (engram_home / "config.toml").exists() and (engram_home / "engram.db").exists()
    assert oct((engram_home / "keys").stat().st_mode & 0o777) == "0o700"
    assert engram("init", capsys=capsys)[0] == 0  # idempotent


def test_keys_list_json_and_private_key_never_printed(host, capsys):
    s, keyring = host
    code, out, err = engram("keys", "list", "--json", capsys=capsys)
    data = last_json(out)
    kid = keyring.active().kid
    assert data["signing_keys"][0]["kid"] == kid and data["signing_keys"][0]["status"] == "active"
    assert {"kid": kid, "team": "acme", "status": "trusted"} in data["trusted_keys"]
    pem_body = "".join((s.keys_dir / f"{kid}.pem").read_text().splitlines()[1:-1])
    engram("keys", "export-public", capsys=capsys)
    for cmd in (["keys", "list"], ["keys", "export-public"], ["keys", "rotate"]):
        code, out, err = engram(*cmd, capsys=capsys)
        assert pem_body not in out + err


def test_export_writes_one_signed_envelope_per_line(host, tmp_path, capsys):
    path = export(tmp_path, capsys)
    lines = path.read_text().splitlines()
    assert len(lines) == 30 and all(json.loads(ln)["engramsig"] for ln in lines)
    code, out, _ = engram("events", "verify", str(path), "--json", capsys=capsys)
    assert code == 0 and last_json(out)["valid"] == 30


def test_events_list_json_pages_with_a_cursor(host, capsys):
    code, out, _ = engram("events", "list", "--team", "acme", "--limit", "20", "--json", capsys=capsys)
    first = last_json(out)
    code, out, _ = engram("events", "list", "--team", "acme", "--after", first["cursor"], "--json", capsys=capsys)
    second = last_json(out)
    assert len(first["events"]) == 20 and len(second["events"]) == 10
    assert not {e["id"] for e in first["events"]} & {e["id"] for e in second["events"]}


def test_events_list_offers_a_next_page_only_while_there_is_one(host, capsys):
    code, out, _ = engram("events", "list", "--team", "acme", "--limit", "20", capsys=capsys)
    assert code == 0 and "next page: --after" in out
    cursor = out.split("next page: --after", 1)[1].split()[0]
    code, out, _ = engram("events", "list", "--team", "acme", "--after", cursor, "--limit", "10", capsys=capsys)
    assert code == 0 and "next page" not in out and "end of the events" in out  # 30 events: exactly the rest
    assert last_json(engram("events", "list", "--team", "acme", "--limit", "30", "--json",
                            capsys=capsys)[1])["has_more"] is False
    assert last_json(engram("events", "list", "--team", "acme", "--limit", "29", "--json",
                            capsys=capsys)[1])["has_more"] is True


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    import engram_sdk

    code, out, _ = engram("--version", capsys=capsys)
    assert code == 0 and out.strip() == f"engram-sdk {version('engram-sdk')}"
    assert version("engram-sdk") == engram_sdk.__version__  # the constant the server reports on /v1/health


def test_the_training_bar_never_shows_a_total_of_none():
    import io

    from rich.console import Console

    from engram_training.cli import training_bar

    @dataclass
    class Step:  # the shape of engram_training.train.Progress, without importing torch
        step: int
        total: int
        loss: float
        tokens_per_s: float

    bar, on_progress = training_bar("training acme")

    def frame() -> str:
        out = io.StringIO()
        Console(file=out, width=120, color_system=None).print(bar.make_tasks_table(bar.tasks))
        return out.getvalue()

    first = frame()
    assert "None" not in first and "preparing" in first and "0 tok/s" not in first
    on_progress(Step(3, 40, 2.5, 812.0))
    assert "3/40  loss 2.500  812 tok/s" in frame()


def test_training_progress_is_logged_as_lines_when_stderr_is_not_a_terminal(capsys):
    from engram_training.cli import training_bar

    @dataclass
    class Step:
        step: int
        total: int
        loss: float
        tokens_per_s: float

    _, on_progress = training_bar("training acme", log_every=3600)
    for step in (1, 2, 3):  # within the hour: the first step and the last one only
        on_progress(Step(step, 3, 1.0 / step, 200.0))
    on_progress(Step(1, 2, 0.9, 150.0))  # a second version through the same bar starts its own lines
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["training acme: step 1/3, loss 1.000, 200 tok/s",
                     "training acme: step 3/3, loss 0.333, 200 tok/s",
                     "training acme: step 1/2, loss 0.900, 150 tok/s"]

    _, on_progress = training_bar("training acme", log_every=0)
    for step in (1, 2):
        on_progress(Step(step, 10, 0.5, 100.0))
    assert "step 2/10, loss 0.500, 100 tok/s, about " in capsys.readouterr().err

    _, on_progress = training_bar("training acme", disable=True, log_every=0)  # --json: nothing at all
    on_progress(Step(1, 10, 0.5, 100.0))
    assert capsys.readouterr().err == ""


def _second_machine(tmp_path, monkeypatch, host, capsys, teams=("acme",)) -> Settings:
    s, keyring = host
    keyset = tmp_path / "keys.json"
    keyset.write_text(json.dumps(keyring.export_public()))
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "server"))
    assert engram("init", capsys=capsys)[0] == 0
    args = ["keys", "trust", str(keyset)] + [a for t in teams for a in ("--team", t)]
    assert engram(*args, capsys=capsys)[0] == 0
    return Settings.load()


def test_another_machine_trusts_the_key_set_and_imports(host, tmp_path, monkeypatch, capsys):
    path = export(tmp_path, capsys)
    server = _second_machine(tmp_path, monkeypatch, host, capsys)
    code, out, _ = engram("events", "import", str(path), "--json", capsys=capsys)
    assert code == 0 and last_json(out)["accepted"] == 30
    code, out, _ = engram("events", "import", str(path), "--json", capsys=capsys)
    assert code == 0 and last_json(out)["duplicates"] == 30 and last_json(out)["accepted"] == 0
    with EventStore.open(server.database_url) as store:
        assert store.count("acme") == 30


def test_import_without_trust_rejects_every_line(host, tmp_path, monkeypatch, capsys):
    path = export(tmp_path, capsys)
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "stranger"))
    code, out, _ = engram("events", "import", str(path), "--json", capsys=capsys)
    report = last_json(out)
    assert code == 1 and report["accepted"] == 0 and {r["reason"] for r in report["rejected"]} == {"unknown_key"}


def _bad_file(path: Path, tmp_path: Path) -> Path:
    lines = path.read_text().splitlines()
    tampered = json.loads(lines[3])
    tampered["data"]["text"] = "forged"
    lines[3] = json.dumps(tampered)
    lines[7] = lines[7][:-1]  # malformed JSON
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    return bad


def test_a_bad_line_stops_the_whole_import_by_default(host, tmp_path, monkeypatch, capsys):
    bad = _bad_file(export(tmp_path, capsys), tmp_path)
    server = _second_machine(tmp_path, monkeypatch, host, capsys)
    code, out, err = engram("events", "import", str(bad), capsys=capsys)
    assert code == 1
    assert f"{bad}:4 bad_signature" in out and f"{bad}:8 malformed_json" in out and "nothing stored" in out
    with EventStore.open(server.database_url) as store:
        assert store.count("acme") == 0


def test_partial_import_stores_the_good_lines_and_lists_the_rest(host, tmp_path, monkeypatch, capsys):
    bad = _bad_file(export(tmp_path, capsys), tmp_path)
    server = _second_machine(tmp_path, monkeypatch, host, capsys)
    code, out, _ = engram("events", "import", str(bad), "--partial", "--json", capsys=capsys)
    report = last_json(out)
    assert code == 1 and report["accepted"] == 28
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [(4, "bad_signature"), (8, "malformed_json")]
    with EventStore.open(server.database_url) as store:
        assert store.count("acme") == 28


def _file_with_forged_ids(path: Path, keyring: Keyring, tmp_path: Path) -> Path:
    """Lines 3 and 6 validly signed by the trusted key, with ids their content does not give."""
    lines = path.read_text().splitlines()
    zeros = json.loads(lines[2])
    zeros["id"] = "0" * 64
    moved = json.loads(lines[5])
    moved["subject"] = "page-999"
    lines[2] = keyring.sign(zeros).to_json()
    lines[5] = keyring.sign(moved).to_json()
    bad = tmp_path / "forged-ids.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    return bad


def test_events_verify_recomputes_every_id(host, tmp_path, capsys):
    s, keyring = host
    bad = _file_with_forged_ids(export(tmp_path, capsys), keyring, tmp_path)
    code, out, _ = engram("events", "verify", str(bad), "--json", capsys=capsys)
    report = last_json(out)
    assert code == 1 and report["valid"] == 28
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [(3, "id_mismatch"), (6, "id_mismatch")]
    code, out, _ = engram("events", "verify", str(bad), capsys=capsys)
    assert f"{bad}:3 id_mismatch" in out


def test_events_import_refuses_forged_ids_and_stores_the_genuine_lines(host, tmp_path, monkeypatch, capsys):
    s, keyring = host
    bad = _file_with_forged_ids(export(tmp_path, capsys), keyring, tmp_path)
    server = _second_machine(tmp_path, monkeypatch, host, capsys)
    code, out, _ = engram("events", "import", str(bad), capsys=capsys)
    assert code == 1 and "nothing stored" in out and f"{bad}:6 id_mismatch" in out
    code, out, _ = engram("events", "import", str(bad), "--partial", "--json", capsys=capsys)
    report = last_json(out)
    assert code == 1 and report["accepted"] == 28
    assert {r["reason"] for r in report["rejected"]} == {"id_mismatch"}
    with EventStore.open(server.database_url) as store:
        assert store.count("acme") == 28 and store.get("acme", "0" * 64) is None


def test_retrusting_a_revoked_key_says_it_stays_revoked(host, tmp_path, monkeypatch, capsys):
    s, keyring = host
    keyset = tmp_path / "keys.json"
    keyset.write_text(json.dumps(keyring.export_public()))  # exported while the key was active
    server = _second_machine(tmp_path, monkeypatch, host, capsys)
    kid = keyring.active().kid
    assert engram("keys", "revoke", kid, "--team", "acme", capsys=capsys)[0] == 0
    code, out, _ = engram("keys", "trust", str(keyset), capsys=capsys)
    assert code == 0 and f"trusted {kid} for team acme (revoked)" in out
    with EventStore.open(server.database_url) as store:
        assert store.trusted_keys().by_kid[kid]["acme"].status == "revoked"


def test_key_trusted_for_another_team_is_rejected_on_import(host, tmp_path, monkeypatch, capsys):
    s, keyring = host
    keyring.rotate(["acme", "globex"])
    with EventStore.open(s.database_url) as store:
        store.append(signed_events(keyring, 2, team="globex"))
    out_path = tmp_path / "globex.jsonl"
    assert engram("events", "export", "--team", "globex", "-o", str(out_path), capsys=capsys)[0] == 0
    _second_machine(tmp_path, monkeypatch, host, capsys, teams=("acme",))
    code, out, _ = engram("events", "verify", str(out_path), "--json", capsys=capsys)
    assert code == 1 and {r["reason"] for r in last_json(out)["rejected"]} == {"untrusted_for_team"}


def test_revoked_key_is_rejected(host, tmp_path, capsys):
    path = export(tmp_path, capsys)
    s, keyring = host
    assert engram("keys", "revoke", keyring.active().kid, capsys=capsys)[0] == 0
    code, out, _ = engram("events", "verify", str(path), "--json", capsys=capsys)
    assert code == 1 and {r["reason"] for r in last_json(out)["rejected"]} == {"revoked_key"}


def test_conflicting_line_is_reported_as_a_conflict(host, tmp_path, capsys):
    # Only a platform revision lets two contents share an id (a content hash cannot): the
    # platform says "version v7" of the page twice, with different text.
    s, keyring = host
    (stored,) = signed_events(keyring, 1, start=100, revision="v7")
    with EventStore.open(s.database_url) as store:
        store.append([stored])
    other = stored.to_dict()
    other["data"]["title"] = "same id, other content"
    resigned = keyring.sign(other)  # validly signed, but it contradicts what is stored
    conflict = tmp_path / "conflict.jsonl"
    conflict.write_text(json.dumps(resigned.to_dict()) + "\n")
    code, out, _ = engram("events", "import", str(conflict), "--json", capsys=capsys)
    report = last_json(out)
    assert code == 1 and report["rejected"][0]["reason"] == "conflict" and report["accepted"] == 0
    with EventStore.open(s.database_url) as store:
        assert store.get("acme", resigned.id).envelope["data"]["title"] != "same id, other content"


def test_truncated_file_reports_the_last_line(host, tmp_path, capsys):
    path = export(tmp_path, capsys)
    data = path.read_bytes()
    cut = tmp_path / "truncated.jsonl"
    cut.write_bytes(data[: len(data) - 200])
    code, out, _ = engram("events", "verify", str(cut), "--json", capsys=capsys)
    report = last_json(out)
    assert code == 1 and report["valid"] == 29
    assert report["rejected"][0]["line"] == 30 and report["rejected"][0]["reason"] == "malformed_json"


def test_a_50_mb_line_is_rejected_with_bounded_memory(host, tmp_path, capsys):
    import resource

    path = export(tmp_path, capsys)
    lines = path.read_text().splitlines()
    huge = json.loads(lines[0])
    huge["data"]["text"] = "x" * (50 * 1024 * 1024)
    big = tmp_path / "big.jsonl"
    with open(big, "w") as f:
        f.write(lines[1] + "\n")
        json.dump(huge, f)
        f.write("\n" + lines[2] + "\n")
    del huge
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, _ = engram("events", "verify", str(big), "--json", capsys=capsys)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    report = last_json(out)
    assert code == 1 and report["valid"] == 2
    assert report["rejected"] == [{"line": 2, "reason": "line_too_large", "message": report["rejected"][0]["message"],
                                   "event_id": None}]
    assert grown_mb < 40  # the 50 MB line was never held whole


def _writer(url: str, keys_dir: str, start: int, n: int) -> None:
    keyring = Keyring(Path(keys_dir))
    with EventStore.open(url) as store:
        for i in range(start, start + n, 10):
            # Overlapping ranges: both processes also write the same ids.
            store.append(signed_events(keyring, 10, start=i))


def test_two_processes_write_to_one_sqlite_store_at_once(tmp_path, keyring):
    import multiprocessing as mp

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    EventStore.open(url).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, str(keyring.directory), s, 200)) for s in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with EventStore.open(url) as store:
        ids = [e.event_id for e in store.iter_events("acme")]
    assert len(ids) == len(set(ids)) == 300


def test_import_killed_midway_resumes_with_no_duplicates(host, tmp_path, monkeypatch, capsys):
    s, keyring = host
    with EventStore.open(s.database_url) as store:
        store.append(signed_events(keyring, 6000, start=1000))
    path = export(tmp_path, capsys)
    total = len(path.read_text().splitlines())
    server = _second_machine(tmp_path, monkeypatch, host, capsys)
    env = dict(os.environ, ENGRAM_HOME=str(server.home))
    cmd = [sys.executable, "-c", "from engram_sdk._cli import main; main()", "events", "import", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    stored = 0
    with EventStore.open(server.database_url) as store:
        while time.time() < deadline and proc.poll() is None:
            stored = store.count("acme")
            if stored >= 500:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = store.count("acme")
        assert 0 < partial < total, "the kill must land mid-import"
        assert partial % 500 == 0, "whole batches only: nothing half-written"
    code = subprocess.run(cmd, env=env, capture_output=True).returncode
    assert code == 0
    with EventStore.open(server.database_url) as store:
        ids = [e.event_id for e in store.iter_events("acme")]
    assert len(ids) == len(set(ids)) == total


def test_bench_events_prints_the_figures_as_json(engram_home, capsys):
    code, out, _ = engram("bench", "events", "--count", "200", "--json", capsys=capsys)
    result = last_json(out)
    assert code == 0
    for backend in ("sqlite", "postgresql"):
        r = result[backend]
        assert set(r) >= {"events_per_s", "bound_events_per_s", "ratio"} and 0 < r["ratio"] < 5


def test_failures_exit_non_zero_with_one_line(engram_home, capsys):
    code, out, err = engram("keys", "rotate", capsys=capsys)
    assert code == 1 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1


def test_usage_errors_are_one_clear_message_not_a_traceback(engram_home, capsys):
    code, out, err = engram("no-such-command", capsys=capsys)
    assert code == 2 and "No such command" in err and "Traceback" not in err
    code, out, err = engram("keys", "generate", capsys=capsys)  # --team missing
    assert code == 2 and "--team" in err and "Traceback" not in err
