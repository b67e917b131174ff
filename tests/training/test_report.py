"""``engram adapters report``: one self-contained HTML page for a team with two versions trained on
the tiny model (v1 published, v2 rejected by its recall gate), run through the real typer app."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from engram_sdk import samples
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_training.config import TrainConfig
from engram_training.plots import loss_points
from engram_training.train import train
from examples.kestrel_demo import load_records

FAST = dict(generation="facts", epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0, checkpoint_every=1000,
            max_new_tokens=8, eval_batch_size=64)
PNG = b"\x89PNG\r\n\x1a\n"


def train_two_versions(store, keyring, settings, team: str) -> None:
    """v1 published; v2 (one more page) rejected: its recall cannot reach 0.99 on a random model."""
    for ids, min_recall in ((["np-charter", "np-oncall"], 0.0), (["np-tooling"], 0.99)):
        samples.ingest(store, keyring, team_id=team, records=[r for r in load_records() if r.entity_id in ids])
        train(team, store=store, settings=settings, config=TrainConfig(**{**FAST, "min_recall": min_recall}))


class Page(HTMLParser):
    """What a reader of the page gets: its visible text, its images, its table rows, any script."""

    def __init__(self, html: str):
        super().__init__()
        self.text: list[str] = []
        self.images: list[dict[str, str]] = []
        self.rows: list[dict[str, str]] = []
        self.tags: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        if tag == "tr" and "data-version" in a:
            self.rows.append(a)

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_app(app, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_shows_every_version_its_gates_and_three_plots(team_env, capsys, tmp_path):
    train_two_versions(team_env.store, team_env.keyring, team_env.settings, "kestrel")
    out = tmp_path / "report.html"
    code, stdout, err = _run(capsys, "adapters", "report", "kestrel", "--out", str(out))
    assert code == 0, err
    assert f"wrote {out}" in stdout
    html = out.read_text()
    page = Page(html)
    text = " ".join(page.text)

    assert "Adapter report · kestrel" in text and "2 versions · current: v1" in text
    # Newest first: v2 rejected with its gate's reason, v1 current and published.
    assert [(r["data-version"], r["data-status"]) for r in page.rows] == [("2", "rejected"), ("1", "published")]
    assert re.search(r"v2 rejected .*recall 0\.\d\d is below the minimum 0\.99", text)
    assert re.search(r"v1 · current published .*all gates passed", text)
    for column in ("Recall", "Retention [95% interval]", "General (base)", "Perplexity (base)", "Prompt tokens",
                   "Retrieval tokens", "Final loss"):
        assert column in text
    # v2 is a continual run: its retention is shown with its interval, and both perplexities beside it.
    from engram_training.registry import Registry

    m = Registry(team_env.store, team_env.settings.adapters_dir).get("kestrel", 2).manifest["metrics"]
    low, high = m["retention_interval"]
    assert f"{m['retention']:.0%} [{low:.0%}–{high:.0%}]" in text
    assert f"{m['perplexity']:.1f} ({m['base_perplexity']:.1f})" in text

    # Three figures, each a PNG inside the page; nothing is loaded from elsewhere and nothing runs.
    captions = [i["alt"] for i in page.images]
    assert len(captions) == 3
    assert captions[0].startswith("Training loss per step") and captions[1].startswith("Recall")
    assert captions[2].startswith("Prompt tokens")
    for img in page.images:
        data = img["src"].removeprefix("data:image/png;base64,")
        assert data != img["src"] and base64.b64decode(data).startswith(PNG)
        assert len(base64.b64decode(data)) > 5_000  # drawn, not an empty canvas
    assert "script" not in page.tags and "http://" not in html and "https://" not in html

    # --out - writes the same page to stdout.
    code, stdout, _ = _run(capsys, "adapters", "report", "kestrel", "--out", "-")
    assert code == 0 and stdout.startswith("<!doctype html>") and "recall 0." in stdout


def test_loss_curve_is_stored_with_its_step_stride(team_env):
    train_two_versions(team_env.store, team_env.keyring, team_env.settings, "kestrel")
    from engram_training.registry import Registry

    for v in Registry(team_env.store, team_env.settings.adapters_dir).versions("kestrel"):
        steps, losses = loss_points(v.manifest)
        m = v.manifest
        assert m["loss_every"] == max(1, m["metrics"]["steps"] // 50)
        assert steps[0] == 1 and steps[-1] <= m["metrics"]["steps"] and len(steps) == len(losses) >= 1
        # A manifest from before ``loss_every`` gets the same steps from its step count.
        assert loss_points({k: x for k, x in m.items() if k != "loss_every"}) == (steps, losses)


def test_report_of_an_unknown_team_fails_in_one_line(team_env, capsys, tmp_path):
    code, _, err = _run(capsys, "adapters", "report", "nobody", "--out", str(tmp_path / "r.html"))
    assert code == 1 and "unknown team nobody" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_report_of_a_team_without_versions_says_to_train(team_env, capsys, tmp_path):
    samples.ingest(team_env.store, team_env.keyring, team_id="kestrel",
                   records=[r for r in load_records() if r.entity_id == "np-charter"])
    code, _, err = _run(capsys, "adapters", "report", "kestrel", "--out", str(tmp_path / "r.html"))
    assert code == 1 and "no adapter versions yet" in err and "engram train --team kestrel" in err
    assert not (tmp_path / "r.html").exists()


def test_without_matplotlib_the_report_names_the_train_extra(team_env):
    code = ("import sys; sys.modules['matplotlib'] = None; from engram_sdk._cli import main; "
            "main(['adapters', 'report', 'kestrel'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "engram-sdk[train]" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out lands in the current directory
