"""One team's adapter report: a single self-contained HTML page (no script, no external request;
the plots are PNGs inside the page as data URIs). ``engram adapters report TEAM`` writes it and
``engram serve`` answers it at ``GET /v1/teams/{team}/adapters/report``; both call ``render``.

The page holds every version with its status, its gate figures (retention with its 95% interval,
perplexity on general text beside the base model's) and the reasons its gates gave, and
the plots of ``plots``: loss per step, recall / retention / general score per version, and the
adapter's prompt tokens against retrieval's.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from html import escape
from typing import Any

from engram_sdk import TrainingError

from . import plots
from .registry import Registry, Version

__all__ = ["FIGURES", "render"]

# (id, caption, drawing function): the figures of the page, in order.
FIGURES = (
    ("loss", "Training loss per step of each version's run", plots.loss_per_step),
    ("scores", "Recall (new content), retention (earlier content) and general score per version",
     plots.scores_per_version),
    ("tokens", "Prompt tokens per question: the adapter answers closed book, retrieval adds chunks",
     plots.prompt_tokens_per_version),
)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 64rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0 2rem; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.published { color: #1e7b34; } .rejected { color: #c0392b; } .current { font-weight: 600; }
figure { margin: 0 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
"""


def render(registry: Registry, team_id: str, *, now: datetime | None = None) -> str:
    """The report page of ``team_id``. Raises ``TrainingError`` for a team the store does not know
    and for a team with no adapter version yet."""
    versions = registry.versions(team_id)
    if not versions:
        if registry.store.count(team_id) == 0:
            raise TrainingError(f"unknown team {team_id}: it has no events and no adapter versions")
        raise TrainingError(f"team {team_id} has no adapter versions yet: run `engram train --team {team_id}`")
    now = now or datetime.now(timezone.utc)
    current = next((v.version for v in versions if v.current), None)
    figures = "\n".join(
        f'<figure id="{fid}"><img alt="{escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(draw(versions)).decode()}"><figcaption>{escape(caption)}</figcaption></figure>'
        for fid, caption, draw in FIGURES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Adapter report · {escape(team_id)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Adapter report · {escape(team_id)}</h1>
<p class="meta">{len(versions)} versions · current: {f"v{current}" if current else "none"} ·
generated {now.isoformat(timespec="seconds")}</p>
<h2>Versions</h2>
{_table(versions)}
<h2>Over time</h2>
{figures}
</body></html>
"""


COLUMNS = ("Version", "Status", "Created", "Recall", "Retention [95% interval]", "General (base)",
           "Perplexity (base)", "Prompt tokens", "Retrieval tokens", "Steps", "Final loss", "Gate reasons")


def _table(versions: list[Version]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    rows = "\n".join(_row(v) for v in reversed(versions))  # newest first
    return f'<table id="versions"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def _row(v: Version) -> str:
    m = v.manifest.get("metrics", {})
    reasons = v.manifest.get("gates", {}).get("reasons") or ([v.reason] if v.reason else [])
    if v.status == "published" and reasons:
        reasons = [*reasons, "published with --force"]
    general = _pct(m.get("general_score")) + (f" ({_pct(m['base_general_score'])})"
                                              if m.get("base_general_score") is not None else "")
    cells = [
        (f"v{v.version}" + (" · current" if v.current else ""), "current" if v.current else ""),
        (v.status, v.status),
        (v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "", ""),
        (_pct(m.get("recall")), "num"),
        (_pct(m.get("retention")) + (f" [{_pct(m['retention_interval'][0])}–{_pct(m['retention_interval'][1])}]"
                                     if m.get("retention_interval") else ""), "num"),
        (general, "num"),
        (_perplexity(m.get("perplexity")) + (f" ({_perplexity(m['base_perplexity'])})"
                                             if m.get("base_perplexity") is not None else ""), "num"),
        (_tokens(m.get("adapter_prompt_tokens")), "num"),
        (_tokens(m.get("rag_prompt_tokens")), "num"),
        (str(m.get("steps", "")), "num"),
        (f"{m['final_loss']:.3f}" if isinstance(m.get("final_loss"), (int, float)) else "–", "num"),
        ("; ".join(reasons) if reasons else "all gates passed", ""),
    ]
    tds = "".join(f'<td class="{cls}">{escape(text)}</td>' if cls else f"<td>{escape(text)}</td>"
                  for text, cls in cells)
    return f'<tr data-version="{v.version}" data-status="{escape(v.status)}">{tds}</tr>'


def _pct(x: Any) -> str:
    return f"{x:.0%}" if isinstance(x, (int, float)) else "–"


def _perplexity(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) else "–"


def _tokens(x: Any) -> str:
    return f"{x:.0f}" if isinstance(x, (int, float)) else "–"
