"""The adapter report's plots, drawn from adapter manifests: one function per figure, each returning
PNG bytes. Every plot of Engram is drawn here, so they share one look.

- ``loss_per_step``: the training loss of each version's run against its step
- ``scores_per_version``: recall, retention and general score per version (the base model's general
  score as a reference line)
- ``prompt_tokens_per_version``: the adapter's prompt tokens per question against what retrieval
  (the top-k BM25 chunks, and the single best chunk) puts in the base model's prompt
- ``continual_by_day``: ``engram bench continual``'s recall, retention and general score per
  simulated day, after each sleep and after each daytime update

matplotlib draws on its Agg canvas (``Figure`` + ``FigureCanvasAgg``, never pyplot): no display,
no global figure state, safe in the server's worker threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .registry import Version

__all__ = ["continual_by_day", "loss_points", "loss_per_step", "prompt_tokens_per_version", "scores_per_version"]

WIDTH, HEIGHT, DPI = 7.2, 3.2, 100  # 720 x 320 pixels
REJECTED = "#c0392b"


def loss_points(manifest: dict[str, Any]) -> tuple[list[int], list[float]]:
    """(steps, losses) of one run. The manifest keeps every ``loss_every``-th step's loss (about 50
    points); manifests written before ``loss_every`` existed used the same stride, from ``steps``."""
    losses = manifest.get("losses") or []
    every = manifest.get("loss_every") or max(1, int(manifest.get("metrics", {}).get("steps") or len(losses)) // 50)
    return [1 + i * every for i in range(len(losses))], [float(x) for x in losses]


def loss_per_step(versions: Sequence[Version]) -> bytes:
    fig, ax = _figure("Training loss per step")
    for v in versions:
        steps, losses = loss_points(v.manifest)
        if steps:
            ax.plot(steps, losses, marker="." if len(steps) < 20 else None, linewidth=1.4,
                    linestyle="--" if v.status == "rejected" else "-", label=_label(v))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return _png(fig, ax)


def scores_per_version(versions: Sequence[Version]) -> bytes:
    fig, ax = _figure("Recall, retention and general score per version")
    xs = [v.version for v in versions]
    for key, label, marker in (("recall", "recall", "o"), ("retention", "retention", "s"),
                               ("general_score", "general score", "^")):
        ax.plot(xs, [_num(v.manifest.get("metrics", {}).get(key)) for v in versions], marker=marker, label=label)
    base = [_num(v.manifest.get("metrics", {}).get("base_general_score")) for v in versions]
    if any(not math.isnan(b) for b in base):
        ax.plot(xs, base, linestyle=":", color="grey", label="base model general score")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("accuracy")
    _version_axis(ax, versions)
    return _png(fig, ax)


def prompt_tokens_per_version(versions: Sequence[Version]) -> bytes:
    fig, ax = _figure("Prompt tokens per question: adapter against retrieval")
    series = [("adapter_prompt_tokens", "adapter (closed book)"),
              ("rag_prompt_tokens", "retrieval, top-k chunks"),
              ("rag1_prompt_tokens", "retrieval, best chunk")]
    series = [(k, label) for k, label in series if any(k in v.manifest.get("metrics", {}) for v in versions)]
    width = 0.8 / max(len(series), 1)
    for i, (key, label) in enumerate(series):
        ax.bar([v.version + (i - (len(series) - 1) / 2) * width for v in versions],
               [_num(v.manifest.get("metrics", {}).get(key)) for v in versions], width=width, label=label)
    ax.set_ylabel("mean prompt tokens")
    _version_axis(ax, versions)
    return _png(fig, ax)


def continual_by_day(phases: Sequence[dict[str, Any]]) -> bytes:
    """``phases``: the rows of ``engram bench continual`` (day, phase, recall, retention, general,
    base_general). Solid lines after the sleep, dashed after the daytime update; day 0 is version 1,
    the start of both."""
    fig, ax = _figure("A month of updates: recall, retention and general score by day")
    slept = any(p["phase"] == "sleep" for p in phases)
    for key, label, marker, colour in (("recall", "recall of the day's changes", "o", "C0"),
                                       ("retention", "retention of earlier facts still true", "s", "C1"),
                                       ("general", "general score", "^", "C2")):
        for phase, style in (("sleep", "-"), ("day", "--")):
            points = [(p["day"], _num(p[key])) for p in phases if p["phase"] in (phase, "first")]
            if len(points) < 2:
                continue
            named = phase == "sleep" or not slept  # the axis label says which line is which phase
            ax.plot(*zip(*points), linestyle=style, marker=marker if phase == "sleep" else None, color=colour,
                    markersize=4, linewidth=1.4 if phase == "sleep" else 1.0, label=label if named else None)
    base = [_num(p.get("base_general")) for p in phases]
    if any(not math.isnan(b) for b in base):
        ax.plot([p["day"] for p in phases], base, linestyle=":", color="grey", label="base model general score")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("day (solid: after the sleep; dashed: after the daytime update)" if slept else "day")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig, ax)


# --- shared look --------------------------------------------------------------------------------------


def _figure(title: str) -> tuple[Any, Any]:
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _version_axis(ax: Any, versions: Sequence[Version]) -> None:
    ax.set_xticks([v.version for v in versions], [_label(v) for v in versions])
    ax.set_xlim(versions[0].version - 0.6, versions[-1].version + 0.6)
    for tick, v in zip(ax.get_xticklabels(), versions):
        if v.status == "rejected":
            tick.set_color(REJECTED)
    ax.set_xlabel("version (rejected in red)")


def _label(v: Version) -> str:
    return f"v{v.version}" + (" (rejected)" if v.status == "rejected" else "")


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan


def _png(fig: Any, ax: Any) -> bytes:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
