"""`engram bench continual` on the tiny model: the month replays end to end through the CLI, every
figure of the issue is in its JSON, the table and the plot are written, a deleted page's question
is asked and scored, no hand-written question is ever a training question, and a malformed days
file is refused with the line and the reason."""

from __future__ import annotations

import json
import struct

import pytest

from engram_sdk import samples
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_training import continual_bench
from engram_training import dataset as D
from engram_training import facts as F
from engram_training import written as W
from engram_training.config import TrainConfig

FAST = {"epochs": 1, "max_examples": 80, "min_recall": 0, "general_tolerance": 1, "max_new_tokens": 4,
        "eval_batch_size": 64, "eval_baselines": [], "abstain_calibration_questions": 0}
FAST_ARGS = [arg for k, v in FAST.items() for arg in ("--set", f"{k}={','.join(v) if isinstance(v, list) else v}")]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_app(app, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_two_days_end_to_end_with_every_figure_table_and_plot(team_env, capsys, tmp_path):
    png = tmp_path / "plots" / "continual.png"
    code, out, err = _run(capsys, "bench", "continual", "--days", "2", "--plot", str(png), "--json", *FAST_ARGS)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    for key in continual_bench.JSON_KEYS:
        assert key in result, key
    assert [(p["day"], p["phase"]) for p in result["phases"]] == \
        [(0, "first"), (1, "day"), (1, "sleep"), (2, "day"), (2, "sleep")]
    # every run was trained and registered; gates are off, so each one was published and answered
    assert [p["trained"] for p in result["phases"]] == [1, 2, 3, 4, 5]
    assert [p["version"] for p in result["phases"]] == [1, 2, 3, 4, 5]
    assert result["sleep_config"]["eval_baselines"] == [] and result["days"] == 2
    # the tiny model knows nothing: the rates are measured (numbers), and a ratio over a day-1
    # recall of 0 is reported as undefined rather than as a number
    assert 0 <= result["day1_recall"] <= 1 and 0 <= result["retention"] <= 1
    assert (result["retention_ratio"] is None) == (result["day1_recall"] == 0)
    assert 0 <= result["edited_new_value_rate"] <= 1 and result["deleted_answered"] == 0
    assert isinstance(result["general_drift_points"], float) and result["perplexity_ratio"] > 0
    assert result["update_cost_10x"]["records"] == 10 * len(samples.load_records("marrowby"))
    assert result["update_cost_ratio_10x"] > 0 and result["update_cost_10x"]["examples"] > 0
    assert all(p["examples"] and p["seconds"] > 0 for p in result["phases"])
    # the table: a header and one row per phase, on stdout before the JSON line
    rows = [line.split() for line in out.strip().splitlines()[:-1]]
    assert rows[0][:3] == ["day", "phase", "version"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("0", "first", "v1"), ("1", "day", "v2"), ("1", "sleep", "v3"),
                                                      ("2", "day", "v4"), ("2", "sleep", "v5")]
    # the plot: a real PNG of the figure's size
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (720, 320)
    assert result["plot"] == str(png)
    assert "day 2 (2027-03-02): daytime update" in err  # progress goes to stderr


def test_a_deleted_page_is_asked_after_its_deletion_and_scored(team_env):
    records = samples.load_records("marrowby")
    day = {"day": 1, "date": "2027-03-01",
           "changes": [{"change": "delete", "entity_id": "mb-darkroom", "updated_at": "2027-03-01T09:00:00Z"}],
           "questions": [{"id": "gone", "kind": "deleted", "question": "what develops our films?",
                          "answers": ["Harwick"], "entities": ["mb-darkroom"]}]}
    day0 = W.days("marrowby")[0]
    month = [day0, *W.parse_days(json.dumps({"day": 0, "date": "2027-02-28"}) + "\n" + json.dumps(day),
                                 records)[1:]]
    config = TrainConfig(**FAST)
    out = continual_bench.replay(records, month, config, config, cost_ratio=False)
    day1 = [p for p in out["phases"] if p["day"] == 1]
    assert [p["phase"] for p in day1] == ["day", "sleep"]
    assert out["deleted_questions"] == 1 and out["deleted_answered"] in (0, 1)
    # the deleted page's question is not one of the still-true ones: retention is over day 0's alone
    assert out["retention"] is not None
    q = W.Question("gone", "deleted", "what develops our films?", ["Harwick"], [], ["mb-darkroom"], "", day=1)
    assert W.still_answers(q, "The Harwick AP-200 in the darkroom.") and not W.still_answers(q, "I don't know.")


def test_retired_questions_leave_retention_on_the_day_they_stop_being_true():
    month = W.days("marrowby")
    q = next(q for q in month[0].questions if q.until == 4)
    assert q.live_on(3) and not q.live_on(4) and not q.live_on(30)
    assert all(q.live_on(30) for d in month for q in d.questions if q.until is None)


@pytest.mark.parametrize("settings", [{}, {"short_answers": True, "abstain_invented_share": 0.08}])
def test_no_hand_written_question_of_the_month_is_ever_trained_on(tiny_model, settings):
    from transformers import AutoTokenizer

    month = W.days("marrowby")
    # every version of every page and thread the month ever holds, deleted ones included
    current = {r.entity_id: r for r in samples.load_records("marrowby")}
    ever = dict(current)
    for d in month:
        ever.update({r.entity_id: r for r in W.day_records(current, d.changes) if r.kind in ("document", "thread")})
    col = D.Collected(team_id="t", records={r.subject: r for r in ever.values()})
    ds = D.build(col, AutoTokenizer.from_pretrained(tiny_model), TrainConfig(**settings), continual=False)
    trained = {F.normalize(m[0]["content"]) for m in ds.examples} | {F.normalize(p.question) for p in ds.probe}
    asked = {F.normalize(q.question) for d in month for q in d.questions}
    assert len(asked) >= 100 and len(trained) > 200 and not trained & asked


RECORDS = samples.load_records("marrowby")
DAY0 = json.dumps({"day": 0, "date": "2027-02-28"})


def _day(**fields) -> str:
    return json.dumps({"day": 1, "date": "2027-03-01", "changes": [], "questions": [], **fields})


EDIT = {"change": "edit", "entity_id": "mb-home", "before": "at 8:15", "after": "at 8:00",
        "updated_at": "2027-03-01T08:00:00Z"}
QUESTION = {"id": "x", "kind": "single", "question": "when?", "answers": ["8:00"], "entities": ["mb-home"]}


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    (_day(day=2), "line 2 (day 2): days are numbered 0, 1, 2"),
    (_day(date="1 March"), '"date" must be YYYY-MM-DD'),
    (_day(changes=[{"change": "rename", "entity_id": "mb-home"}]), '"change" is one of new, edit, reply, delete'),
    (_day(changes=[{**EDIT, "before": "at 9:45"}]), "day 1: change 1: the edit's \"before\" must occur exactly once"),
    (_day(changes=[{"change": "delete", "entity_id": "mb-nothing"}]), "mb-nothing does not exist"),
    (_day(changes=[{"change": "reply", "entity_id": "mb-home", "message": {}}]), "a reply goes to a thread"),
    (_day(questions=[{**QUESTION, "kind": "guess"}]), "\"kind\" must be one of single, edit, deleted"),
    (_day(questions=[{**QUESTION, "answers": []}]), '"answers" must be a non-empty list of strings'),
    (_day(questions=[{**QUESTION, "kind": "edit"}]), 'an edit question lists the old value under "wrong"'),
    (_day(questions=[{**QUESTION, "until": 1}]), '"until" is the later day'),
    (_day(changes=[EDIT], questions=[{**QUESTION, "kind": "deleted"}]), "is not deleted that day"),
])
def test_a_malformed_day_is_refused_with_its_line_and_reason(line, message):
    with pytest.raises(W.DaysFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        W.parse_days(DAY0 + "\n" + line, RECORDS)


def test_a_question_retired_by_nothing_is_refused():
    text = "\n".join([DAY0.replace("}", ', "questions": [' + json.dumps({**QUESTION, "until": 1}) + "]}"),
                      _day(changes=[{**EDIT, "entity_id": "mb-clinics", "before": "£78", "after": "£80"}])])
    with pytest.raises(W.DaysFileError, match="stops being true on day 1, but nothing it names"):
        W.parse_days(text, RECORDS)


def test_the_cli_refuses_days_beyond_the_file_before_training(team_env, capsys):
    code, _, err = _run(capsys, "bench", "continual", "--days", "31", "--no-cost-ratio")
    assert code == 1 and "marrowby has days 1 to 30; --days 31 is outside them" in err
    assert len(err.strip().splitlines()) == 1


def test_forgetting_controls_replay_the_same_days_side_by_side(team_env, capsys):
    code, out, err = _run(capsys, "bench", "forgetting", "--days", "1", "--controls", "replay,kl", "--json",
                          *FAST_ARGS)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert [r["control"] for r in result["controls"]] == ["replay", "kl"]
    for row in result["controls"]:
        assert set(continual_bench.COMPARED) <= set(row)
        assert 0 <= row["day1_recall"] <= 1 and row["wall_seconds"] > 0
    runs = result["runs"]
    # the same days, gates open, and only the control's own settings differ
    assert runs["kl"]["config"]["kl_general"] == 1.0 and runs["replay"]["config"]["kl_general"] == 0.0
    for run in runs.values():
        assert run["config"]["min_recall"] == 0.0 and run["config"]["perplexity_tolerance"] is None
        assert [(p["day"], p["phase"]) for p in run["phases"]] == [(0, "first"), (1, "day")]
        assert all(p["published"] for p in run["phases"])
    assert {k for k in runs["kl"]["config"] if runs["kl"]["config"][k] != runs["replay"]["config"][k]} == {"kl_general"}
    table = out.strip().splitlines()[:-1]
    assert table[0].split()[0] == "control" and [line.split()[0] for line in table[1:]] == ["replay", "kl"]


def test_an_unknown_forgetting_control_is_refused_before_any_training(team_env, capsys):
    code, _, err = _run(capsys, "bench", "forgetting", "--controls", "replay,ewc")
    assert code != 0
    assert "unknown control(s) ewc; choose from replay, kl, low-rank, sleep" in " ".join(err.split())
    # a setting no control can train with is refused the same way, before the first control trains
    code, _, err = _run(capsys, "bench", "forgetting", "--controls", "replay", "--set", "kl_general=-1")
    assert code != 0 and "kl_general must be 0 (off) or positive" in " ".join(err.split())
