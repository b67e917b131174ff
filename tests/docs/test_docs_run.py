"""The README and the quickstart docs run as printed.

In scope, each run top to bottom in its own scratch directory, HOME and ENGRAM_HOME (one shell
per document: `export`s and `cd`s carry over; Python blocks share one namespace):

- README.md: the two commands (marked not run), the local try against the Notion sandbox, the
  partner developer's Python, moving to PostgreSQL, training (marked not run)
- docs/server.md: running the server, the SDK client
- docs/connections.md: trying a connector against its sandbox
- docs/writing-a-connector.md: the import line and the `engram` session (its `python file=` blocks
  are written out into the scratch directory first; tests/framework/test_guide.py runs its tests)

What runs: blocks tagged ``python``, ``bash``, ``sh`` or ``console`` (``$ `` lines are commands,
the lines after one are its output, which must appear in what it printed, timings aside).
Untagged blocks are synopses, trees or output and are not run. ``<!-- not run in CI: REASON -->``
just before a block skips it and needs its reason. `engram serve`, `engram sandbox`, `engram
worker` (without --once) and `engram schedule run` are started and probed (/v1/health answers,
or their "listening"/"running" line appears); then stopped with Ctrl-C, or, written with a
trailing `&`, kept running until the document ends.

What the test changes, and only this: documented ports (`--port 8000`, `127.0.0.1:8765`) become
free ones, the same within a document; the README's example PostgreSQL URL becomes a scratch
database on ENGRAM_TEST_POSTGRES_URL's server; ENGRAM_BASE_MODEL names the tiny test model (so
`engram serve --warm` loads in a second), and ENGRAM_CACHE_DIR the session's scratch cache.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engram_sdk._pgtemp import temporary_database

from ._blocks import FENCE, DocError, Session, base_env, blocks, run_document

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/server.md", "docs/connections.md", "docs/writing-a-connector.md"]
PG_EXAMPLE = "postgresql+psycopg://engram@127.0.0.1:5432/engram"


def _session(tmp_path: Path, user_cache: Path, tiny_model: Path) -> Session:
    work = tmp_path / "work"
    work.mkdir()
    env = base_env(tmp_path, ENGRAM_CACHE_DIR=str(user_cache), ENGRAM_BASE_MODEL=str(tiny_model))
    return Session(env=env, cwd=work)


@pytest.mark.postgres
@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_blocks_run(doc: str, tmp_path: Path, user_cache: Path, tiny_model: Path) -> None:
    text = (ROOT / doc).read_text()
    session = _session(tmp_path, user_cache, tiny_model)
    for m in FENCE.finditer(text):  # the guide's files, where its session expects them
        rel = re.match(r"python file=(\S+)", m.group(1).strip())
        if rel:
            (session.cwd / rel.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (session.cwd / rel.group(1)).write_text(m.group(2))
    with temporary_database(prefix="engram_docs") as pg_url:
        session.substitutions[PG_EXAMPLE] = pg_url
        skipped = run_document(text, doc, session)
    assert all(b.skip for b in skipped)
    assert [b for b in blocks(text, doc) if not b.skip], f"{doc} has no block that runs"


# --- the runner itself ------------------------------------------------------------------------------


def _run(text: str, tmp_path: Path) -> list:
    return run_document(text, "t.md", Session(env=base_env(tmp_path), cwd=tmp_path))


def test_a_failing_block_fails(tmp_path: Path) -> None:
    with pytest.raises(DocError, match=r"t.md:1 \(bash\): `false` exited 1"):
        _run("```bash\ntrue\nfalse\n```\n", tmp_path)
    with pytest.raises(DocError, match=r"NameError: name 'home' is not defined"):
        _run("```python\nprint(home)\n```\n", tmp_path)


def test_a_console_block_checks_its_output(tmp_path: Path) -> None:
    _run("```console\n$ echo hello   world\nhello world\n```\n", tmp_path)
    with pytest.raises(DocError, match="not what the doc shows"):
        _run("```console\n$ echo hello\ngoodbye\n```\n", tmp_path)


def test_a_marked_block_is_skipped_and_needs_a_reason(tmp_path: Path) -> None:
    skipped = _run("<!-- not run in CI: it never ends -->\n```bash\nfalse\n```\n", tmp_path)
    assert [b.skip for b in skipped] == ["it never ends"]
    for marker in ("<!-- not run in CI -->", "<!-- not run in CI: -->"):
        with pytest.raises(DocError, match="gives no reason"):
            _run(f"{marker}\n```bash\ntrue\n```\n", tmp_path)


def test_state_carries_over_between_blocks(tmp_path: Path) -> None:
    _run("```bash\nexport GREETING=hi\nmkdir d && cd d\n```\n\n```python\nimport os\n"
         "assert os.environ['GREETING'] == 'hi' and os.getcwd().endswith('/d')\nx = 1\n```\n\n"
         "```python\nassert x == 1\n```\n", tmp_path)


def test_a_long_running_command_is_started_probed_and_stopped(tmp_path: Path) -> None:
    session = Session(env=base_env(tmp_path, ENGRAM_HOME=str(tmp_path / "home")), cwd=tmp_path)
    run_document("```bash\nengram sandbox notion --port 8765 &\n"
                 "python -c \"import httpx; httpx.get('http://127.0.0.1:8765/v1/users/me', headers="
                 "{'Authorization': 'Bearer secret_sandbox', 'Notion-Version': '2025-09-03'})"
                 ".raise_for_status()\"\n```\n", "t.md", session)
    assert session.ports["8765"] != "8765" and len(session.background) == 1
    assert session.background[0].poll() is not None  # stopped when the document ended
