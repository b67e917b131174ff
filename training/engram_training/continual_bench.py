"""``engram bench continual``: a month of a team, replayed as it would arrive.

A shipped workspace's starting records train version 1. Then, for each day of its hand-written
``days.jsonl`` (``written.days``): the day's changes are signed and stored as connectors deliver
them, the daytime update runs as the scheduler's training job runs it (``train`` with the
production config: continual, bounded by its new events), the day's questions are asked, the
nightly sleep rebuilds the adapter from all current content (``from_scratch``: deleted pages leave
the weights) and the questions are asked again. The registry decides which version answers: a
candidate that fails a gate is kept but not published, exactly as in production.

After each phase, on the hand-written questions only (the trainer never sees them): recall of the
day's changes, retention of every earlier question still true (a question retires on the day an
edit or a deletion makes it untrue, its ``until``), edited facts answered with the new value and
not the old, and deleted pages still answered; with the general score and perplexity the current
version's own run measured against the base model, its cost in seconds and examples.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engram_sdk import TrainingError, parse_record, samples

from . import written as W
from .bench import _scratch
from .config import TrainConfig
from .train import Progress, RunResult, train

__all__ = ["CONTROLS", "DEFAULT_WORKSPACE", "JSON_KEYS", "OPEN_GATES", "Phase", "compare_controls",
           "default_plot_path", "replay", "run"]

DEFAULT_WORKSPACE = "marrowby"
TEAM = "month"
PADDING = 10  # the cost phase's store holds this many times the starting workspace
JSON_KEYS = ("retention_ratio", "edited_new_value_rate", "deleted_answered", "general_drift_points",
             "perplexity_ratio", "update_cost_ratio_10x")


@dataclass
class Phase:
    """One row of the table: the state after version 1 (``first``), a daytime update (``day``) or
    a sleep (``sleep``)."""

    day: int
    phase: str
    version: int | None  # the registry's current version, which answered
    trained: int | None  # the version this phase trained (None: the run stopped before one)
    published: bool | None
    reasons: list[str]
    recall: float | None  # the day's questions (its new content and edits)
    retention: float | None  # earlier days' questions still true
    edited: float | None  # the day's edit questions: new value, not the old one
    deleted_answered: int  # deleted pages' questions so far that the adapter still answers
    general: float | None
    base_general: float | None
    perplexity: float | None
    base_perplexity: float | None
    seconds: float  # the training call, evaluation and gates included: what the job costs
    examples: int | None
    ok: dict[str, bool] = field(default_factory=dict)  # question id -> answered right (deleted: still answered)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "ok"}


def run(config: TrainConfig, sleep_config: TrainConfig, *, workspace: str = DEFAULT_WORKSPACE, days: int = 30,
        sleep: bool = True, cost_ratio: bool = True, on_step: Callable[[str], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Replay the first ``days`` days of a shipped workspace's month (see ``replay``)."""
    month = W.days(workspace)
    if not 1 <= days < len(month):
        raise ValueError(f"{workspace} has days 1 to {len(month) - 1}; --days {days} is outside them")
    return {"workspace": workspace, **replay(samples.load_records(workspace), month[: days + 1], config, sleep_config,
                                             sleep=sleep, cost_ratio=cost_ratio, on_step=on_step,
                                             on_progress=on_progress)}


def replay(records: list[Any], month: list[W.Day], config: TrainConfig, sleep_config: TrainConfig, *,
           sleep: bool = True, cost_ratio: bool = True, on_step: Callable[[str], None] | None = None,
           on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Version 1 on ``records``, then every day of ``month`` after day 0 (see the module docstring).
    ``config`` trains the daytime updates, ``sleep_config`` version 1 and the sleeps (both rebuild
    from all current content)."""
    say = on_step or (lambda m: None)
    started = time.perf_counter()
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="engram-continual-") as tmp:
        settings, store, keyring = _scratch(Path(tmp), TEAM)
        ask = _Asker(settings, store, config)
        try:
            current = {r.entity_id: r for r in records}
            samples.ingest(store, keyring, team_id=TEAM, records=records)
            say(f"day 0: version 1 on the {len(records)} starting records")
            phases.append(ask(month, 0, "first", *_timed(TEAM, store, settings, sleep_config, True, on_progress)))
            for d in month[1:]:
                delivered = W.day_records(current, d.changes)
                samples.ingest(store, keyring, team_id=TEAM, records=delivered)
                say(f"day {d.day} ({d.date}): daytime update on {len(delivered)} new records")
                phases.append(ask(month, d.day, "day", *_timed(TEAM, store, settings, config, False, on_progress)))
                if sleep:
                    say(f"day {d.day}: sleep (rebuilt from all current content)")
                    phases.append(ask(month, d.day, "sleep",
                                      *_timed(TEAM, store, settings, sleep_config, True, on_progress)))
        finally:
            store.close()
    cost = None
    if cost_ratio:
        say(f"cost: day 1's update on a store holding {PADDING}x the workspace")
        cost = _cost_10x(records, month[1], config, sleep_config, on_progress)
    return _summary(month, phases, cost, config, sleep_config, time.perf_counter() - started)


def _timed(team: str, store: Any, settings: Any, config: TrainConfig, from_scratch: bool,
           on_progress: Callable[[Progress], None] | None) -> tuple[RunResult | None, str | None, float]:
    """One training job as the scheduler runs it; a run with nothing to train is a result, not an
    error (a day whose only change is a deletion leaves nothing new to learn by day)."""
    t0 = time.perf_counter()
    try:
        r = train(team, store=store, settings=settings, config=config, from_scratch=from_scratch,
                  on_progress=on_progress)
        return r, None, time.perf_counter() - t0
    except TrainingError as exc:
        return None, str(exc), time.perf_counter() - t0


class _Asker:
    """Asks the hand-written questions with whichever version the registry says is current."""

    def __init__(self, settings: Any, store: Any, config: TrainConfig):
        from . import base as base_model
        from .registry import Registry

        self.base = base_model.load(settings.base_model, settings.cache_root)
        self.registry = Registry(store, settings.adapters_dir)
        self.config = config

    def __call__(self, month: list[W.Day], day: int, phase: str, run: RunResult | None, failure: str | None,
                 seconds: float) -> Phase:
        from .infer import Engine

        today = [q for q in month[day].questions if q.kind != "deleted"]
        earlier = [q for d in month[:day] for q in d.questions if q.kind != "deleted" and q.live_on(day)]
        deleted = [q for d in month[: day + 1] for q in d.questions if q.kind == "deleted"]
        asked = today + earlier + deleted
        current = self.registry.current(TEAM)
        metrics = current.manifest.get("metrics", {}) if current else {}
        # A threshold the serving config would apply is applied here too: the answers are the served ones.
        threshold = metrics.get("abstain_below") if self.config.abstain_by_confidence else None
        engine = Engine(self.base)
        try:
            if current is not None:
                engine.load("current", current.path)
            answers = engine.answer_many([q.question for q in asked], adapter="current" if current else None,
                                         max_new_tokens=self.config.max_new_tokens,
                                         batch_size=self.config.eval_batch_size, abstain_below=threshold)
        finally:
            engine.close()
        ok = {q.id: (W.still_answers(q, a.text) if q.kind == "deleted" else W.correct(q, a.text))
              for q, a in zip(asked, answers)}
        edits = [q for q in today if q.kind == "edit"]
        return Phase(
            day=day, phase=phase, version=current.version if current else None,
            trained=run.version.version if run else None, published=run.published if run else None,
            reasons=(run.reasons if run else [failure or ""]),
            recall=_rate(ok, today), retention=_rate(ok, earlier), edited=_rate(ok, edits),
            deleted_answered=sum(ok[q.id] for q in deleted),
            general=metrics.get("general_score"), base_general=metrics.get("base_general_score"),
            perplexity=metrics.get("perplexity"), base_perplexity=metrics.get("base_perplexity"),
            seconds=round(seconds, 1), examples=run.stats.get("examples") if run else None, ok=ok)


def _rate(ok: dict[str, bool], questions: list[W.Question]) -> float | None:
    return round(sum(ok[q.id] for q in questions) / len(questions), 3) if questions else None


def _cost_10x(records: list[Any], day: W.Day, config: TrainConfig, sleep_config: TrainConfig,
              on_progress: Callable[[Progress], None] | None) -> dict[str, Any]:
    """Day 1's daytime update on a store holding ``PADDING`` times the starting workspace (copies
    under other ids, trained into version 1 first), with day 1's own changes."""
    padded = records + [_copy(r, k) for k in range(1, PADDING) for r in records]
    with tempfile.TemporaryDirectory(prefix="engram-continual-cost-") as tmp:
        settings, store, keyring = _scratch(Path(tmp), TEAM)
        try:
            samples.ingest(store, keyring, team_id=TEAM, records=padded)
            first, failure, _ = _timed(TEAM, store, settings, sleep_config, True, on_progress)
            if first is None:
                raise TrainingError(f"the padded workspace's first version did not train: {failure}")
            changes = W.day_records({r.entity_id: r for r in records}, day.changes)
            samples.ingest(store, keyring, team_id=TEAM, records=changes)
            update, failure, seconds = _timed(TEAM, store, settings, config, False, on_progress)
        finally:
            store.close()
    return {"records": len(padded), "seconds": round(seconds, 1),
            "examples": update.stats.get("examples") if update else None, "failure": failure}


def _copy(record: Any, k: int) -> Any:
    data = json.loads(record.model_dump_json())
    data["entity_id"] = f"{data['entity_id']}-copy{k}"
    if data.get("parent_id"):
        data["parent_id"] = f"{data['parent_id']}-copy{k}"
    return parse_record(data)


def _summary(month: list[W.Day], phases: list[Phase], cost: dict[str, Any] | None,
             config: TrainConfig, sleep_config: TrainConfig, wall: float) -> dict[str, Any]:
    """The figures of the issue's "done when", each from the phase that settles a day (the sleep,
    or the daytime update with ``--no-sleep``)."""
    settled = {p.day: p for p in phases}  # the last phase of each day
    last = settled[month[-1].day]
    first_day = settled[1]
    day1 = [q for d in month[:2] for q in d.questions if q.kind != "deleted" and q.live_on(1)]
    day1_recall = _rate(first_day.ok, day1)
    retention = last.retention
    edits = [(settled[d.day], q) for d in month for q in d.questions if q.kind == "edit"]
    deleted = [(settled[d.day], q) for d in month for q in d.questions if q.kind == "deleted"]
    daytime = [p for p in phases if p.phase == "day"]
    normal = daytime[0].seconds if daytime else None
    return {
        "days": month[-1].day,
        "sleep": any(p.phase == "sleep" for p in phases),
        "retention_ratio": round(retention / day1_recall, 3) if retention is not None and day1_recall else None,
        "retention": retention,
        "day1_recall": day1_recall,
        "edited_new_value_rate": (round(sum(p.ok[q.id] for p, q in edits) / len(edits), 3) if edits else None),
        "deleted_answered": sum(p.ok[q.id] for p, q in deleted),
        "deleted_questions": len(deleted),
        "general_drift_points": (round(100 * (last.base_general - last.general), 1)
                                 if last.general is not None and last.base_general is not None else None),
        "perplexity_ratio": (round(last.perplexity / last.base_perplexity, 3)
                             if last.perplexity and last.base_perplexity else None),
        "update_cost_ratio_10x": (round(cost["seconds"] / normal, 2) if cost and normal and cost["failure"] is None
                                  else None),
        "update_cost_10x": cost,
        "update_seconds_mean": round(sum(p.seconds for p in daytime) / len(daytime), 1) if daytime else None,
        "update_examples_mean": (round(sum(p.examples or 0 for p in daytime) / len(daytime), 1) if daytime else None),
        "current_version": last.version,
        "phases": [p.row() for p in phases],
        "config": config.to_dict(),
        "sleep_config": sleep_config.to_dict(),
        "wall_seconds": round(wall, 1),
        "load_average": os.getloadavg()[0],
    }


# The forgetting controls the issue asks to compare on the same days (``engram bench forgetting``):
# settings on top of the production config, and whether the nightly sleep runs.
CONTROLS: dict[str, tuple[dict[str, Any], bool]] = {
    # today's: bounded replay of earlier examples and the base model's own general answers
    "replay": ({}, False),
    # the same, plus KL to the base model's distribution on the general answers
    "kl": ({"kl_general": 1.0}, False),
    # a rank-constrained update: a quarter of the default rank
    "low-rank": ({"rank": 4, "alpha": 8}, False),
    # nightly consolidation: each day's update, then a rebuild from all current content
    "sleep": ({}, True),
}
# Gates decide what is served; to compare what each control's adapter keeps, every version answers.
OPEN_GATES: dict[str, Any] = {"min_recall": 0.0, "general_tolerance": 1.0, "perplexity_tolerance": None,
                              "retention_tolerance": 1.0}
COMPARED = ("day1_recall", "retention", "retention_ratio", "edited_new_value_rate", "deleted_answered",
            "general_drift_points", "perplexity_ratio", "update_seconds_mean", "wall_seconds")


def compare_controls(overrides: dict[str, Any], *, controls: list[str], days: int,
                     workspace: str = DEFAULT_WORKSPACE, on_step: Callable[[str], None] | None = None,
                     on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Replay the same ``days`` of ``workspace`` once per control, gates open, and collect each
    run's figures (``COMPARED``) side by side."""
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown or not controls:
        raise ValueError(f"unknown control(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(CONTROLS)}")
    say = on_step or (lambda m: None)
    # every control's config is built before any trains: a bad combination fails in seconds, not hours
    configs = {name: TrainConfig(**{**overrides, **OPEN_GATES, **CONTROLS[name][0]}) for name in controls}
    rows, runs = [], {}
    for name in controls:
        settings, sleep = CONTROLS[name]
        config = configs[name]
        say(f"control {name}: {json.dumps(settings) if settings else 'the production settings'}"
            f"{', with the nightly sleep' if sleep else ''}")
        out = run(config, config, workspace=workspace, days=days, sleep=sleep, cost_ratio=False,
                  on_step=on_step, on_progress=on_progress)
        runs[name] = out
        rows.append({"control": name, **{k: out.get(k) for k in COMPARED}})
    return {"workspace": workspace, "days": days, "controls": rows, "runs": runs}


def default_plot_path() -> Path:
    """docs/continual.png in a clone (the figure docs/continual.md shows), else ./continual.png."""
    root = Path(__file__).resolve().parents[2]
    if (root / "docs").is_dir() and (root / "pyproject.toml").is_file():
        return root / "docs" / "continual.png"
    return Path("continual.png")
