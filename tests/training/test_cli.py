"""The trainer's CLI commands, run in-process through the real typer app."""

from __future__ import annotations

import json
import subprocess
import sys

from engram_sdk import samples
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from examples.kestrel_demo import load_records

FAST = ["--set", "epochs=1", "--set", "min_recall=0", "--set", "general_tolerance=1", "--set", "max_new_tokens=6",
        "--set", "eval_batch_size=64"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_app(app, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_eval_query_adapters_via_cli(team_env, capsys, tmp_path):
    recs = [r for r in load_records() if r.entity_id in ("np-charter", "np-release")]
    samples.ingest(team_env.store, team_env.keyring, team_id="kestrel", records=recs)
    code, out, err = _run(capsys, "train", "--team", "kestrel", "--json", *FAST)
    assert code == 0, err
    trained = json.loads(out.strip().splitlines()[-1])
    assert trained["version"] == 1 and trained["published"] is True

    code, out, err = _run(capsys, "eval", "--team", "kestrel", "--json")
    assert code == 0, err
    ev = json.loads(out.strip().splitlines()[-1])
    for key in ("recall", "retention", "general_score", "base_general_score", "rag_recall", "rag_prompt_tokens",
                "adapter_prompt_tokens"):
        assert key in ev
    assert ev["rag_prompt_tokens"] > ev["adapter_prompt_tokens"] > 0

    code, out, err = _run(capsys, "query", "--team", "kestrel", "--json", "--max-new-tokens", "4",
                          "Who is the release manager?")
    assert code == 0, err
    q = json.loads(out.strip().splitlines()[-1])
    assert q["adapter_version"] == 1 and isinstance(q["answer"], str) and q["usage"]["prompt_tokens"] > 0

    code, out, _ = _run(capsys, "adapters", "list", "--json")
    assert code == 0 and json.loads(out)["adapters"][0]["current"] is True
    code, out, _ = _run(capsys, "adapters", "show", "kestrel", "--json")
    assert code == 0 and json.loads(out)["deleted_entities_inside"] == []
    code, out, _ = _run(capsys, "adapters", "export", "kestrel", str(tmp_path / "exp"))
    assert code == 0 and (tmp_path / "exp" / "adapter_model.safetensors").exists()
    code, _, err = _run(capsys, "adapters", "rollback", "kestrel")
    assert code == 1 and "first published version" in err

    code, out, _ = _run(capsys, "teams", "purge", "kestrel", "--yes", "--json")
    assert code == 0 and json.loads(out)["adapter_versions"] == 1
    code, _, err = _run(capsys, "query", "--team", "kestrel", "hello")
    assert code == 1 and "no published adapter" in err and len(err.strip().splitlines()) == 1


def test_train_needs_a_team(team_env, capsys):
    code, _, err = _run(capsys, "train")
    assert code == 1 and "--team" in err


def test_without_torch_the_cli_names_the_train_extra(team_env):
    # A fresh interpreter where torch cannot be imported (as after `pip install engram-sdk`).
    code = ("import sys; sys.modules['torch'] = None; from engram_sdk._cli import main; "
            "main(['train', '--team', 'kestrel'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "engram-sdk[train]" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
